"""REST: OWT's routes for what is outside Tessera (SIP calls, media analytics).

OWT serves them with separate agents (a SIP gateway, GStreamer analytics);
Tessera has neither. Every method on them answers 501 with a JSON error that
says so, after authentication and the room lookup like any other route, so
that an application learns the reason rather than a bare 404. (OWT itself,
deployed without those agents, answers a failed call with a 5xx too.)
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import not_implemented
from .resource import BOTH, Resource, Route

_OUTSIDE = {
    "sipcalls": "SIP calls are outside Tessera: it has no SIP gateway (OWT's sip-portal)",
    "analytics": "Media analytics are outside Tessera: it has no analytics agent",
}


class Outside(Resource):
    """sipcalls and analytics: a clear 501 on every method."""

    def routes(self) -> list[Route]:
        routes: list[Route] = []
        for name in _OUTSIDE:
            handler = self._refuse(name)
            for path in (f"/rooms/{{room}}/{name}", f"/rooms/{{room}}/{name}/{{item}}"):
                for method in ("GET", "POST", "PATCH", "DELETE"):
                    routes.append((method, path, handler, BOTH))
        return routes

    def _refuse(self, name: str) -> Handler:
        message = _OUTSIDE[name]

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._room(request)  # an unknown room is still a 404
            raise not_implemented(message)

        return handler
