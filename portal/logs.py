"""Structured logs: one event a line, logfmt or JSON, carrying the ids it is about.

A log call names what happened in its message and the ids it concerns in
``extra`` (``logger.info("stream added", extra={"room": r, "stream": s})``).
Ids that hold for a whole request or task (the connection, participant and
room a Socket.IO request comes from) are bound once with :func:`log_context`
and appear on every line logged inside it, including lines from tasks it
starts (asyncio copies context variables into new tasks).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

__all__ = [
    "ID_FIELDS",
    "StructuredFormatter",
    "configure_logging",
    "log_context",
    "set_process_ids",
]

LogFormat = Literal["text", "json"]

# The ids, in the order they are written; other `extra` keys follow them.
ID_FIELDS = (
    "node",
    "service",
    "room",
    "participant",
    "stream",
    "subscription",
    "transport",
    "view",
    "recording",
    "streaming_out",
    "sid",
)

# Attributes every LogRecord has: anything else on a record came from `extra`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

_context: ContextVar[Mapping[str, str] | None] = ContextVar("tessera_log_context", default=None)
# Ids of the whole process (a cluster node's id), on every line of every thread.
_process_ids: dict[str, str] = {}


def set_process_ids(**ids: str) -> None:
    """Add ``ids`` to every line this process logs from now on (a cluster node's id)."""
    _process_ids.update(ids)


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Add `ids` (None values skipped) to every line logged inside the block."""
    bound = {**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(bound)
    try:
        yield
    finally:
        _context.reset(token)


class StructuredFormatter(logging.Formatter):
    """Formats a record as one logfmt line (``text``) or one JSON object (``json``).

    Fields: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``,
    ``msg``, then the ids from the context and ``extra``, then ``exc`` (the
    traceback, newlines escaped: a line is still one event).
    """

    def __init__(self, style: LogFormat = "text") -> None:
        super().__init__()
        if style not in ("text", "json"):
            raise ValueError(f"log format must be 'text' or 'json', not {style!r}")
        self.style = style

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The event as an ordered dict of field name to value."""
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        out: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        context = {**_process_ids, **(_context.get() or {})}
        for key in ID_FIELDS:
            value = extra.pop(key, None)
            if value is None:
                value = context.get(key)
            if value is not None:
                out[key] = value
        for key, value in context.items():
            out.setdefault(key, value)
        for key, value in extra.items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return out

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.style == "json":
            return json.dumps(fields, default=str, ensure_ascii=False)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


def _logfmt_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' ="\\') and text.isprintable():
        return text
    # json.dumps quotes and escapes (", \, newlines, control characters) as logfmt readers expect.
    return json.dumps(text, ensure_ascii=False)


def configure_logging(level: str, style: LogFormat = "text") -> None:
    """Log to stderr at `level` (DEBUG..ERROR), one event a line in `style`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(style))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # ICE chatter (every candidate pair check) is noise at INFO.
    if logging.getLevelName(level) > logging.DEBUG:
        logging.getLogger("aioice").setLevel(logging.WARNING)
