"""REST management API: OWT's ``/v1`` rooms, tokens, participants and streams.

Application servers written for OWT manage Tessera the way they managed OWT:
same paths, same JSON shapes, the same MAuth request signatures, the same
error body ``{"error": {"code": 1003, "message": "Room not found"}}`` with
OWT's codes. For people with curl, ``Authorization: Bearer <service key>`` or
``Bearer <HS256 JWT signed with the service key, iss = service id>`` works too.

One middleware authenticates every request under ``/v1`` and ``/v1.1`` before
its handler runs, and turns every refusal into a JSON error and one log line;
handlers raise :class:`RestError` and never build error responses themselves.
Every room lookup is scoped to the authenticated service: another service's
rooms do not exist (404).
"""

from __future__ import annotations

from .api import REST_API_KEY, RestApi, setup_rest
from .bodies import MAX_BODY_BYTES
from .errors import ErrorCode, RestError

__all__ = ["MAX_BODY_BYTES", "REST_API_KEY", "ErrorCode", "RestApi", "RestError", "setup_rest"]
