"""The languages captions can be recognised in (pure)."""

from __future__ import annotations

# Each language's model folder inside the pocketsphinx package (it ships its English
# model; no other model is ever downloaded).
LANGUAGES: dict[str, str] = {"en-US": "en-us"}


def check_language(language: str) -> str:
    """``language`` if a recogniser can be built for it, else ValueError naming those that can."""
    if language not in LANGUAGES:
        known = ", ".join(sorted(LANGUAGES))
        raise ValueError(
            f"captions in {language!r} are not available (the recogniser has a model for: {known})"
        )
    return language
