"""REST management API: OWT 5.x's, route by route and shape by shape.

Application servers written for OWT manage Tessera the way they managed OWT:
the same routes under ``/v1`` and ``/v1.1`` (rooms, tokens, participants,
streams, recordings, streaming-outs) and ``/services``, the same JSON shapes
(``/v1`` and ``/v1.1`` stream formats, the token as the answer's text), the
same MAuth request signatures, the same error body ``{"error": {"code": 1003,
"message": "Room not found"}}`` with OWT's codes. For people with curl,
``Authorization: Bearer <service key>`` or ``Bearer <HS256 JWT signed with the
service key, iss = service id>`` works too. SIP calls and analytics are outside
Tessera: their routes answer 501 saying so. docs/owt-compatibility.md lists
every route, what OWT does and what Tessera does.

One middleware authenticates every request under ``/v1``, ``/v1.1`` and
``/services`` before its handler runs, and turns every refusal into a JSON
error and one log line; handlers raise :class:`RestError` and never build
error responses themselves. Every room lookup is scoped to the authenticated
service: another service's rooms do not exist (404).
"""

from __future__ import annotations

from .api import REST_API_KEY, RestApi, setup_rest
from .bodies import MAX_BODY_BYTES
from .errors import ErrorCode, RestError
from .resource import RestContext

__all__ = [
    "MAX_BODY_BYTES",
    "REST_API_KEY",
    "ErrorCode",
    "RestApi",
    "RestContext",
    "RestError",
    "setup_rest",
]
