"""The REST API's routes and its one middleware: authentication and error replies."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from tessera.conference.errors import ConferenceError

from .auth import CREDENTIALS, Authenticator
from .bodies import MAX_BODY_BYTES, loggable
from .errors import ErrorCode, RestError, bad_request
from .outside import Outside
from .participants import Participants
from .recordings import Recordings
from .resource import Resource, RestContext
from .rooms import Rooms
from .services import Services
from .streamingins import StreamingIns
from .streamingouts import StreamingOuts
from .streams import Streams
from .tokens import Tokens

logger = logging.getLogger(__name__)

API_PREFIXES = ("/v1/", "/v1.1/", "/services/")
API_ROOTS = ("/v1", "/v1.1", "/services")
_CHALLENGE = 'MAuth realm="tessera", Bearer realm="tessera"'


class RestApi:
    """The REST management API on a room service: its resources, routes and middleware."""

    def __init__(self, context: RestContext, *, max_skew_ms: int = 300_000) -> None:
        self.context = context
        # Replaceable in tests: MAuth timestamps are checked against it.
        self.clock: Callable[[], float] = time.time
        self.auth = Authenticator(context.conference, lambda: self.clock(), max_skew_ms)
        self.resources: list[Resource] = [
            Rooms(context),
            Tokens(context),
            Participants(context),
            Streams(context),
            Recordings(context),
            StreamingOuts(context),
            StreamingIns(context),
            Services(context),
            Outside(context),
        ]

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for resource in self.resources:
            for method, path, handler, prefixes in resource.routes():
                # Express (OWT) ignores a trailing slash, and OWT's nuve.js sends one.
                for prefix in prefixes:
                    for variant in (prefix + path, prefix + path + "/"):
                        router.add_route(method, variant, handler)

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate, run the handler, and turn any refusal into a JSON error."""
        path = request.path
        if not path.startswith(API_PREFIXES) and path not in API_ROOTS:
            return await handler(request)
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            return self._preflight(origin)
        service_id: str | None = None
        try:
            credentials = await self.auth.authenticate(request)
            service_id = credentials.service.id
            self.auth.check_origin(credentials.service, origin)
            request[CREDENTIALS] = credentials
            response = await handler(request)
        except RestError as exc:
            response = self._refuse(request, service_id, exc)
        except ConferenceError as exc:
            refusal = RestError(exc.status, ErrorCode(exc.code), exc.message)
            response = self._refuse(request, service_id, refusal)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = self._refuse(request, service_id, self._from_http(request, exc))
        except Exception:
            logger.exception(
                "REST request failed", extra={"method": request.method, "path": loggable(path)}
            )
            return self._error_response(RestError(500, ErrorCode.UNEXPECTED, "Internal error"))
        if origin and response.status != 403:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    def _preflight(self, origin: str | None) -> web.Response:
        # A browser's CORS preflight carries no credentials; the real request is checked.
        response = web.Response(status=204)
        if origin:
            response.headers.update(
                {
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600",
                    "Vary": "Origin",
                }
            )
        return response

    @staticmethod
    def _from_http(request: web.Request, exc: web.HTTPException) -> RestError:
        if exc.status == 404:
            return RestError(404, ErrorCode.NOT_FOUND, "Resource not found")
        if exc.status == 405:
            return bad_request(f"Method {request.method} is not allowed here", 405)
        if exc.status == 413:
            return bad_request(f"Request body is larger than {MAX_BODY_BYTES} bytes", 413)
        return RestError(exc.status, ErrorCode.BAD_REQUEST, exc.reason)

    def _refuse(self, request: web.Request, service_id: str | None, exc: RestError) -> web.Response:
        logger.info(
            "REST request refused: %d %s",
            exc.status,
            loggable(exc.message),
            extra={
                "service": service_id,
                "method": request.method,
                "path": loggable(request.path),
                "address": request.remote,
            },
        )
        return self._error_response(exc)

    @staticmethod
    def _error_response(exc: RestError) -> web.Response:
        headers = {"WWW-Authenticate": _CHALLENGE} if exc.status == 401 else None
        return web.json_response(
            {"error": {"code": int(exc.code), "message": exc.message}},
            status=exc.status,
            headers=headers,
        )


REST_API_KEY = web.AppKey("tessera_rest_api", RestApi)


def setup_rest(app: web.Application, context: RestContext) -> None:
    """Add the REST management API (routes and its middleware) to ``app``."""
    api = RestApi(context)

    @web.middleware
    async def rest_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await api.handle(request, handler)

    app.middlewares.append(rest_middleware)
    api.add_routes(app.router)
    app[REST_API_KEY] = api
