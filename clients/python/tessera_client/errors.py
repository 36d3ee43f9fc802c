"""Exceptions raised by the Tessera client."""

from __future__ import annotations

import json
from typing import Any


class ClientError(Exception):
    """An "error" reply from the portal; ``str(exc)`` is the server's message.

    Failures that are not a reply (a request that timed out, a connection that
    was lost, an offer/answer exchange that went wrong) are subclasses, so one
    ``except ClientError`` catches everything the portal conversation can raise.
    """

    def __init__(self, message: Any = "") -> None:
        super().__init__(message if isinstance(message, str) else _to_text(message))

    @property
    def message(self) -> str:
        """The server's message (the same as ``str(exc)``)."""
        return str(self)


class RequestTimeout(ClientError, TimeoutError):
    """A request got no acknowledgement, or an awaited event never came, in time."""


class ClientConnectionError(ClientError, ConnectionError):
    """The client is not connected to the portal, or the connection was lost mid-request."""


class NegotiationError(ClientError):
    """The offer/answer exchange for a publication or subscription failed locally."""


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
