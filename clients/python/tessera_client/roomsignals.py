"""Hand raises and reactions as room text messages (a Tessera extension of OWT's ``text``).

A signal travels as the ``message`` string of an ordinary ``text`` request, so the
portal and every OWT client pass it on unchanged; an OWT client shows it as plain
text. Its body is one JSON object whose ``tessera`` key names the signal::

    {"tessera": "hand", "raised": true, "text": "raised a hand"}
    {"tessera": "reaction", "emoji": "👍", "text": "reacted 👍"}

``text`` is for people reading it in a client that does not know the extension;
receivers ignore it and any other key. Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

#: The reactions every Tessera client shows (the page has a button for each).
REACTIONS: tuple[str, ...] = ("👍", "👏", "😂", "❤️", "🎉", "😮")

#: The key that marks a text message as a signal.
SIGNAL_KEY = "tessera"


class SignalError(ValueError):
    """A text message claims to be a signal but is not a valid one."""


@dataclass(frozen=True)
class HandSignal:
    """A participant raised (``raised``) or lowered their hand."""

    raised: bool


@dataclass(frozen=True)
class ReactionSignal:
    """A participant reacted with one of :data:`REACTIONS`."""

    emoji: str


Signal = HandSignal | ReactionSignal


def encode_hand(raised: bool) -> str:
    """The ``text`` message that raises or lowers the sender's hand."""
    words = "raised a hand" if raised else "lowered their hand"
    return _dump({SIGNAL_KEY: "hand", "raised": bool(raised), "text": words})


def encode_reaction(emoji: str) -> str:
    """The ``text`` message of a reaction; ``emoji`` must be one of :data:`REACTIONS`."""
    if emoji not in REACTIONS:
        raise SignalError(f"Unknown reaction {_quote(emoji)}: one of {' '.join(REACTIONS)}")
    return _dump({SIGNAL_KEY: "reaction", "emoji": emoji, "text": f"reacted {emoji}"})


def parse_signal(message: object) -> Signal | None:
    """The signal a ``text`` message carries; None for plain text.

    Raises :class:`SignalError`, naming the problem, for a message that is a JSON
    object with a ``tessera`` key but not a signal this version understands.
    """
    if not isinstance(message, str) or not message.lstrip().startswith("{"):
        return None
    try:
        body = json.loads(message)
    except ValueError:
        return None  # text that happens to start with a brace
    if not isinstance(body, dict) or SIGNAL_KEY not in body:
        return None
    kind = body[SIGNAL_KEY]
    if kind == "hand":
        raised = body.get("raised")
        if not isinstance(raised, bool):
            raise SignalError("A hand signal needs 'raised': true or false")
        return HandSignal(raised)
    if kind == "reaction":
        emoji = body.get("emoji")
        if emoji not in REACTIONS:
            raise SignalError(f"Unknown reaction {_quote(emoji)}: one of {' '.join(REACTIONS)}")
        return ReactionSignal(str(emoji))
    raise SignalError(f"Unknown signal {_quote(kind)}: 'hand' or 'reaction'")


def _quote(value: object) -> str:
    """A value as JSON (the JavaScript client words its errors alike)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _dump(body: dict[str, object]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
