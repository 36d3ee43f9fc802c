"""Turn pydantic validation errors into one short, human-readable line.

Config files, room options from the REST API and client requests are all
validated with pydantic; whoever caused the error should read *where* it is (a
dotted path such as ``views.0.video.parameters.framerate``) and *why*, not a
multi-line pydantic report with documentation links.
"""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
from pydantic_core import ErrorDetails

__all__ = ["describe_validation_error", "error_path", "format_error"]

# More errors than this in one message helps nobody: show the first few.
_MAX_ERRORS = 5


def error_path(loc: Sequence[int | str]) -> str:
    """Join a pydantic error location into a dotted path (``views.0.label``)."""
    return ".".join(str(part) for part in loc)


def format_error(error: ErrorDetails) -> str:
    """One error as ``path: reason`` (just ``reason`` for a top-level error)."""
    path = error_path(error["loc"])
    message = error["msg"]
    # Errors raised by our own validators carry pydantic's "Value error, " prefix.
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{path}: {message}" if path else message


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """Summarise a ValidationError as ``path: reason; path: reason``."""
    errors = exc.errors(include_url=False)
    parts = [format_error(error) for error in errors[:_MAX_ERRORS]]
    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more errors")
    return "; ".join(parts) if parts else str(exc)


# Longest user or room name accepted from outside (REST bodies, the demo endpoints).
MAX_NAME_LENGTH = 256


def check_name(value: object, field: str) -> str:
    """A user or room name: a non-empty printable string; ValueError naming ``field`` if not."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_NAME_LENGTH
        or not value.isprintable()
    ):
        raise ValueError(
            f"{field} must be a non-empty string of at most {MAX_NAME_LENGTH} printable characters"
        )
    return value
