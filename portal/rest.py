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

import copy
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NoReturn

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler

from tessera.mixer.layout import LayoutError
from tessera.recorder.muxer import CONTAINERS, MuxerError
from tessera.recorder.recording import MediaChoice, Recording, StoredRecording
from tessera.recorder.streamingout import StreamingOut
from tessera.webrtc_agent.mediasource import ParameterError, Stream

from .mauth import AuthError, NonceCache, parse_mauth, verify_mauth
from .participant import Participant
from .room import Room
from .roomoptions import OptionsError, RoomOptions, merge_room_options, parse_room_options
from .store import NotFoundError, RoomRecord, ServiceRecord, new_room_id
from .validation import check_name

if TYPE_CHECKING:
    from .server import Server

__all__ = ["MAX_BODY_BYTES", "ErrorCode", "RestApi", "RestError", "setup_rest"]

logger = logging.getLogger(__name__)

API_PREFIXES = ("/v1/", "/v1.1/")
# Room options with many custom layouts stay far below this; anything bigger is a mistake.
MAX_BODY_BYTES = 256 * 1024
MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100
MAX_PATCH_OPERATIONS = 32
MAX_ID_LENGTH = 128
MAX_BEARER_LENGTH = 8192
# Clock difference tolerated for the iat/exp/nbf of a Bearer JWT, in seconds.
JWT_LEEWAY = 60
_CHALLENGE = 'MAuth realm="tessera", Bearer realm="tessera"'
# JWT claims of a join token (portal.tokens): such a JWT grants a seat in a room, not the API.
_JOIN_TOKEN_CLAIMS = ("room", "user", "role")
_LAYOUT_STREAM_RE = re.compile(r"^/info/layout/(\d+)/stream$")


class ErrorCode(IntEnum):
    """OWT's error codes (RESTAPI.md, section 3)."""

    NOT_FOUND = 1001
    SERVICE_NOT_FOUND = 1002
    ROOM_NOT_FOUND = 1003
    STREAM_NOT_FOUND = 1004
    PARTICIPANT_NOT_FOUND = 1005
    AUTHENTICATION = 1101
    PERMISSION_DENIED = 1102
    BAD_REQUEST = 1301
    UNEXPECTED = 2001


class RestError(Exception):
    """A refused request: HTTP status, OWT error code and a message naming what is wrong."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad_request(message: str, status: int = 400) -> RestError:
    return RestError(status, ErrorCode.BAD_REQUEST, message)


def _unauthorized(message: str) -> RestError:
    return RestError(401, ErrorCode.AUTHENTICATION, message)


@dataclass(frozen=True)
class Credentials:
    """Who is calling: the service, and with MAuth an optional user and role for tokens."""

    service: ServiceRecord
    method: str
    user: str | None = None
    role: str | None = None


CREDENTIALS = web.RequestKey("tessera_rest_credentials", Credentials)


@dataclass(frozen=True)
class RoomRef:
    """A room of the calling service: stored (``record``), loaded (``loaded``) or both."""

    id: str
    record: RoomRecord | None
    loaded: Room | None

    def options(self) -> RoomOptions:
        if self.loaded is not None:
            return self.loaded.options
        assert self.record is not None
        return parse_room_options(self.record.options)

    def to_json(self) -> dict[str, Any]:
        """OWT's room object: ``_id`` (and ``id``) plus the options."""
        if self.record is not None:
            data, name = self.record.options, self.record.name
        else:
            assert self.loaded is not None
            data, name = self.loaded.settings, self.loaded.name
        return _room_json(self.id, name, data)


def _room_json(room_id: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"_id": room_id, "id": room_id, **options, "name": name}


# -- request parsing helpers (pure) ---------------------------------------


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def parse_json_body(raw: bytes) -> Any:
    """Decode a request body; RestError (400) saying what is wrong with it."""
    if not raw.strip():
        raise _bad_request("Request body is empty: expected JSON")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise _bad_request("Request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int too long
        raise _bad_request(f"Request body is not valid JSON: {exc}") from None


def _expect_object(data: Any, what: str = "Request body") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _bad_request(f"{what} must be a JSON object, not {_json_type(data)}")
    return data


def _expect_patch(data: Any) -> list[dict[str, Any]]:
    """A JSON-patch array: 1..MAX_PATCH_OPERATIONS objects with op, path and value."""
    if not isinstance(data, list):
        raise _bad_request(
            f"Request body must be a JSON array of patch operations, not {_json_type(data)}"
        )
    if not data:
        raise _bad_request("Request body is an empty list of patch operations")
    if len(data) > MAX_PATCH_OPERATIONS:
        raise _bad_request(f"At most {MAX_PATCH_OPERATIONS} patch operations are accepted")
    operations = []
    for index, item in enumerate(data):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise _bad_request(f"{where}: a patch operation must be an object")
        unknown = sorted(set(item) - {"op", "path", "value"})
        if unknown:
            raise _bad_request(f"{where}.{unknown[0]}: unknown field (expected op, path, value)")
        for field in ("op", "path"):
            if not isinstance(item.get(field), str):
                raise _bad_request(f"{where}.{field}: a string is required")
        if "value" not in item:
            raise _bad_request(f"{where}.value: a value is required")
        operations.append(item)
    return operations


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_name(value: Any, field: str) -> str:
    try:
        return check_name(value, field)
    except ValueError as exc:
        raise _bad_request(str(exc)) from None


def _options_error(exc: OptionsError, prefix: str) -> RestError:
    # OptionsError reads "path: reason; path: reason"; name the fields as the client sent them.
    parts = []
    for part in str(exc).split("; "):
        if prefix and ": " in part and not part.startswith("and "):
            part = prefix + part
        parts.append(part)
    return _bad_request("Invalid room options: " + "; ".join(parts))


def _split_room_body(body: dict[str, Any], room_id: str | None) -> tuple[Any, dict[str, Any], str]:
    """(name or None, options, field prefix) of a room body.

    OWT documents ``{name, options}`` (RoomConfig) but its PUT really takes the
    room object itself; both are accepted, and a room object fetched with GET
    (with its ``_id``) can be sent back as it is.
    """
    body = dict(body)
    for key in ("_id", "id"):
        if key in body:
            value = body.pop(key)
            if room_id is None:
                raise _bad_request(f"{key}: a new room's id is chosen by the server")
            if value != room_id:
                raise _bad_request(f"{key}: does not match the room in the URL")
    if "options" in body:
        unknown = sorted(set(body) - {"name", "options"})
        if unknown:
            raise _bad_request(f"{unknown[0]}: unknown field (expected name and options)")
        options = _expect_object(body["options"], "options")
        return body.get("name"), dict(options), "options."
    return body.get("name"), body, ""


def _parse_paging(query: Any) -> tuple[int, int] | None:
    if "page" not in query and "per_page" not in query:
        return None
    values: dict[str, int] = {}
    for field, default, upper in (
        ("page", 1, 1_000_000),
        ("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE),
    ):
        text = query.get(field)
        if text is None:
            values[field] = default
            continue
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= upper:
            raise _bad_request(f"{field} must be an integer from 1 to {upper}")
        values[field] = int(text)
    return values["page"], values["per_page"]


def _loggable(text: str, limit: int = 300) -> str:
    """``text`` shortened, with control characters escaped: a client cannot forge log lines."""
    text = text[:limit]
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def _path_id(request: web.Request, name: str, code: ErrorCode, what: str) -> str:
    value = request.match_info[name]
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise RestError(404, code, f"{what} not found")
    return value


# -- the API --------------------------------------------------------------


class RestApi:
    """Handlers of the REST management API, bound to one Server."""

    def __init__(self, server: Server, *, max_skew_ms: int = 300_000) -> None:
        self.server = server
        self.max_skew_ms = max_skew_ms
        self.nonces = NonceCache(max_skew_ms=max_skew_ms)
        self.clock: Callable[[], float] = time.time

    # -- routes ---------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        def add(method: str, path: str, handler: Handler, prefixes: Iterable[str]) -> None:
            # Express (OWT) ignores a trailing slash, and OWT's nuve.js sends one.
            for prefix in prefixes:
                for variant in (prefix + path, prefix + path + "/"):
                    router.add_route(method, variant, handler)

        v1 = ("/v1",)
        both = ("/v1", "/v1.1")
        add("POST", "/rooms", self.create_room, v1)
        add("GET", "/rooms", self.list_rooms, v1)
        add("GET", "/rooms/{room}", self.get_room, v1)
        add("PUT", "/rooms/{room}", self.replace_room, v1)
        add("PATCH", "/rooms/{room}", self.patch_room, v1)
        add("DELETE", "/rooms/{room}", self.delete_room, v1)
        add("POST", "/rooms/{room}/tokens", self.create_token, v1)
        add("GET", "/rooms/{room}/participants", self.list_participants, both)
        add("GET", "/rooms/{room}/participants/{participant}", self.get_participant, both)
        add("PATCH", "/rooms/{room}/participants/{participant}", self.patch_participant, both)
        add("DELETE", "/rooms/{room}/participants/{participant}", self.delete_participant, both)
        add("GET", "/rooms/{room}/streams", self.list_streams, both)
        add("GET", "/rooms/{room}/streams/{stream}", self.get_stream, both)
        add("PATCH", "/rooms/{room}/streams/{stream}", self.patch_stream, both)
        add("DELETE", "/rooms/{room}/streams/{stream}", self.delete_stream, both)
        add("POST", "/rooms/{room}/recordings", self.create_recording, both)
        add("GET", "/rooms/{room}/recordings", self.list_recordings, both)
        add("GET", "/rooms/{room}/recordings/{recording}", self.get_recording, both)
        add("PATCH", "/rooms/{room}/recordings/{recording}", self.patch_recording, both)
        add("DELETE", "/rooms/{room}/recordings/{recording}", self.delete_recording, both)
        add("GET", "/rooms/{room}/recordings/{recording}/file", self.download_recording, both)
        add("POST", "/rooms/{room}/streaming-outs", self.create_streaming_out, both)
        add("GET", "/rooms/{room}/streaming-outs", self.list_streaming_outs, both)
        add("GET", "/rooms/{room}/streaming-outs/{streaming}", self.get_streaming_out, both)
        add("PATCH", "/rooms/{room}/streaming-outs/{streaming}", self.patch_streaming_out, both)
        add("DELETE", "/rooms/{room}/streaming-outs/{streaming}", self.delete_streaming_out, both)

    # -- middleware: authentication and error translation ----------------

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate, run the handler, and turn any refusal into a JSON error."""
        path = request.path
        if not path.startswith(API_PREFIXES) and path not in ("/v1", "/v1.1"):
            return await handler(request)
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            return self._preflight(origin)
        service_id: str | None = None
        try:
            credentials = self.authenticate(request)
            service_id = credentials.service.id
            self._check_origin(credentials.service, origin)
            request[CREDENTIALS] = credentials
            response = await handler(request)
        except RestError as exc:
            response = self._refuse(request, service_id, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = self._refuse(request, service_id, self._from_http(request, exc))
        except Exception:
            logger.exception(
                "REST request failed", extra={"method": request.method, "path": _loggable(path)}
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
            return _bad_request(f"Method {request.method} is not allowed here", 405)
        if exc.status == 413:
            return _bad_request(f"Request body is larger than {MAX_BODY_BYTES} bytes", 413)
        return RestError(exc.status, ErrorCode.BAD_REQUEST, exc.reason)

    def _refuse(self, request: web.Request, service_id: str | None, exc: RestError) -> web.Response:
        logger.info(
            "REST request refused: %d %s",
            exc.status,
            _loggable(exc.message),
            extra={
                "service": service_id,
                "method": request.method,
                "path": _loggable(request.path),
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

    # -- authentication -------------------------------------------------

    def authenticate(self, request: web.Request) -> Credentials:
        """The calling service, from an MAuth or Bearer Authorization header."""
        header = request.headers.get("Authorization", "").strip()
        if not header:
            raise _unauthorized("Authorization header is missing (MAuth or Bearer)")
        scheme, _, rest = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "mauth":
            return self._mauth(header)
        if scheme == "bearer":
            return self._bearer(rest.strip())
        raise _unauthorized(
            f"Authorization scheme {scheme[:20]!r} is not supported (MAuth or Bearer)"
        )

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _mauth(self, header: str) -> Credentials:
        try:
            parsed = parse_mauth(header)
            service = self.server.store.get_service(parsed.service_id)
            if service is None:
                raise AuthError("mauth_serviceid names no service")
            now = self._now_ms()
            verify_mauth(parsed, service.key, now, self.max_skew_ms)
            self.nonces.check(service.id, parsed.cnonce, parsed.timestamp, now)
            return Credentials(service, "mauth", user=parsed.user, role=parsed.role)
        except AuthError as exc:
            raise _unauthorized(f"MAuth: {exc}") from None

    def _bearer(self, token: str) -> Credentials:
        if not token:
            raise _unauthorized("Bearer token is missing")
        if len(token) > MAX_BEARER_LENGTH:
            raise _unauthorized("Bearer token is too long")
        service = self._service_by_key(token)
        if service is not None:
            return Credentials(service, "key")
        if token.count(".") == 2:
            return Credentials(self._service_by_jwt(token), "jwt")
        raise _unauthorized("Bearer token is neither a service key nor a JWT")

    def _service_by_key(self, token: str) -> ServiceRecord | None:
        # Compare with every key, in constant time each, so timing tells nothing.
        found = None
        candidate = token.encode("utf-8", "surrogatepass")
        for service in self.server.store.list_services():
            if hmac.compare_digest(service.key.encode("utf-8"), candidate) and service.key:
                found = service
        return found

    def _service_by_jwt(self, token: str) -> ServiceRecord:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _unauthorized("Bearer token is neither a service key nor a valid JWT") from None
        if header.get("alg") != "HS256":
            raise _unauthorized("Bearer JWT must be signed with HS256")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise _unauthorized("Bearer JWT has no 'iss' claim naming the service")
        service = self.server.store.get_service(issuer)
        if service is None or not service.key:
            raise _unauthorized("Bearer JWT 'iss' names no service")
        try:
            jwt.decode(
                token,
                service.key,
                algorithms=["HS256"],
                options={"require": ["exp", "iss"]},
                leeway=JWT_LEEWAY,
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("Bearer JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("Bearer JWT is not yet valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"Bearer JWT has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("Bearer JWT signature does not match") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise _unauthorized(f"Bearer JWT is invalid: {exc}") from None
        if any(claim in claims for claim in _JOIN_TOKEN_CLAIMS):
            # A join token's JWT is signed with the same key; it must not open the API.
            raise _unauthorized("A join token cannot be used for the REST API")
        return service

    @staticmethod
    def _check_origin(service: ServiceRecord, origin: str | None) -> None:
        allowed = service.allowed_origins
        if origin and allowed and "*" not in allowed and origin not in allowed:
            raise RestError(
                403, ErrorCode.PERMISSION_DENIED, f"Origin {origin[:200]} is not allowed"
            )

    # -- request helpers --------------------------------------------------

    @staticmethod
    def _credentials(request: web.Request) -> Credentials:
        return request[CREDENTIALS]

    async def _read_json(self, request: web.Request) -> Any:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise _bad_request(f"Request body is larger than {MAX_BODY_BYTES} bytes", 413)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _bad_request(f"Request body is larger than {MAX_BODY_BYTES} bytes", 413)
            chunks.append(chunk)
        return parse_json_body(b"".join(chunks))

    def _loaded_room(self, service: ServiceRecord, room_id: str) -> Room | None:
        room = self.server.rooms.get(room_id)
        if room is None or room.service_id != service.id or room.closed:
            return None
        return room

    def _room(self, request: web.Request) -> RoomRef:
        service = self._credentials(request).service
        room_id = _path_id(request, "room", ErrorCode.ROOM_NOT_FOUND, "Room")
        record = self.server.store.get_room(service.id, room_id)
        loaded = self._loaded_room(service, room_id)
        if record is None and loaded is None:
            raise RestError(404, ErrorCode.ROOM_NOT_FOUND, "Room not found")
        return RoomRef(room_id, record, loaded)

    # -- rooms ----------------------------------------------------------

    async def create_room(self, request: web.Request) -> web.StreamResponse:
        service = self._credentials(request).service
        body = _expect_object(await self._read_json(request))
        name, options, prefix = _split_room_body(body, None)
        name = _check_name(name, "name")
        limit = self.server.config.limits.rooms_per_service
        if self.server.store.count_rooms(service.id) >= limit:
            raise RestError(
                403,
                ErrorCode.PERMISSION_DENIED,
                f"Too many rooms for this service (at most {limit})",
            )
        try:
            parsed = parse_room_options({**options, "name": name})
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        record = RoomRecord(
            id=new_room_id(), service_id=service.id, name=name, options=parsed.to_json()
        )
        try:
            self.server.store.create_room(record)
        except NotFoundError:
            raise _unauthorized("The service no longer exists") from None
        logger.info(
            "room created over REST",
            extra={"service": service.id, "room": record.id, "room_name": name},
        )
        return web.json_response(_room_json(record.id, record.name, record.options))

    async def list_rooms(self, request: web.Request) -> web.StreamResponse:
        service = self._credentials(request).service
        paging = _parse_paging(request.query)
        store = self.server.store
        # Stored rooms first, in creation order; then ad-hoc rooms alive right now.
        adhoc = sorted(
            (
                room
                for room in self.server.rooms.values()
                if room.service_id == service.id and not room.persistent and not room.closed
            ),
            key=lambda room: room.id,
        )
        if paging is None:
            stored = self._all_stored(service.id)
            rooms = [_room_json(r.id, r.name, r.options) for r in stored]
            rooms += [_room_json(r.id, r.name, r.settings) for r in adhoc]
            return web.json_response(rooms)
        page, per_page = paging
        start = (page - 1) * per_page
        stored = store.list_rooms(service.id, page, per_page)
        rooms = [_room_json(r.id, r.name, r.options) for r in stored]
        if len(stored) < per_page:
            stored_total = start + len(stored) if stored else len(self._all_stored(service.id))
            offset = max(0, start - stored_total)
            extra = adhoc[offset : offset + per_page - len(stored)]
            rooms += [_room_json(r.id, r.name, r.settings) for r in extra]
        return web.json_response(rooms)

    def _all_stored(self, service_id: str) -> list[RoomRecord]:
        records: list[RoomRecord] = []
        page = 1
        while True:
            chunk = self.server.store.list_rooms(service_id, page, MAX_PER_PAGE)
            records.extend(chunk)
            if len(chunk) < MAX_PER_PAGE:
                return records
            page += 1

    async def get_room(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._room(request).to_json())

    def _stored_room(self, request: web.Request) -> tuple[RoomRef, RoomRecord]:
        ref = self._room(request)
        if ref.record is None:
            raise RestError(
                409,
                ErrorCode.BAD_REQUEST,
                "Room is an ad-hoc room (created by a join token) and has no stored options "
                "to change; create a room with POST /v1/rooms to configure it",
            )
        return ref, ref.record

    async def replace_room(self, request: web.Request) -> web.StreamResponse:
        ref, record = self._stored_room(request)
        body = _expect_object(await self._read_json(request))
        name, options, prefix = _split_room_body(body, ref.id)
        name = record.name if name is None else _check_name(name, f"{prefix}name")
        try:
            parsed = parse_room_options({**options, "name": name})
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        return await self._save_room(ref, record, parsed)

    async def patch_room(self, request: web.Request) -> web.StreamResponse:
        ref, record = self._stored_room(request)
        body = _expect_object(await self._read_json(request))
        name, patch, prefix = _split_room_body(body, ref.id)
        if name is not None:
            patch["name"] = _check_name(name, f"{prefix}name")
        try:
            parsed = merge_room_options(parse_room_options(record.options), patch)
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        return await self._save_room(ref, record, parsed)

    async def _save_room(
        self, ref: RoomRef, record: RoomRecord, options: RoomOptions
    ) -> web.StreamResponse:
        name = _check_name(options.name, "name")
        updated = RoomRecord(
            id=record.id, service_id=record.service_id, name=name, options=options.to_json()
        )
        try:
            self.server.store.update_room(updated)
        except NotFoundError:
            raise RestError(404, ErrorCode.ROOM_NOT_FOUND, "Room not found") from None
        await self.server.reload_room_options(ref.id, options)
        logger.info("room options updated", extra={"service": record.service_id, "room": record.id})
        return web.json_response(_room_json(updated.id, updated.name, updated.options))

    async def delete_room(self, request: web.Request) -> web.StreamResponse:
        ref = self._room(request)
        service = self._credentials(request).service
        if ref.record is not None:
            self.server.store.delete_room(service.id, ref.id)
        if ref.loaded is not None:
            await self.server.delete_room(ref.loaded)
        logger.info("room deleted over REST", extra={"service": service.id, "room": ref.id})
        return web.Response(text="Room deleted")

    # -- tokens ---------------------------------------------------------

    async def create_token(self, request: web.Request) -> web.StreamResponse:
        credentials = self._credentials(request)
        service = credentials.service
        ref = self._room(request)
        body = _expect_object(await self._read_json(request))
        unknown = sorted(set(body) - {"user", "role", "preference"})
        if unknown:
            raise _bad_request(f"{unknown[0]}: unknown field (expected user, role, preference)")
        # As in OWT, MAuth's mauth_username/mauth_role may name them instead of the body.
        user = _check_name(body.get("user", credentials.user), "user")
        role = body.get("role", credentials.role)
        if not isinstance(role, str) or not role:
            raise _bad_request("role must be a non-empty string")
        preference = body.get("preference")
        if preference is not None and not isinstance(preference, dict):
            raise _bad_request("preference must be an object (OWT's {isp, region})")
        try:
            token = self.server.join_token(service, ref.id, ref.options(), user, role)
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        logger.info(
            "token issued",
            extra={"service": service.id, "room": ref.id, "user": user, "role": role},
        )
        return web.json_response(token)

    # -- participants ---------------------------------------------------

    def _participant(self, request: web.Request) -> tuple[Room, Participant]:
        ref = self._room(request)
        participant_id = _path_id(
            request, "participant", ErrorCode.PARTICIPANT_NOT_FOUND, "Participant"
        )
        participant = ref.loaded.participants.get(participant_id) if ref.loaded else None
        if ref.loaded is None or participant is None:
            raise RestError(404, ErrorCode.PARTICIPANT_NOT_FOUND, "Participant not found")
        return ref.loaded, participant

    async def list_participants(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request).loaded
        participants = list(room.participants.values()) if room is not None else []
        return web.json_response([p.rest_info() for p in participants])

    async def get_participant(self, request: web.Request) -> web.StreamResponse:
        _, participant = self._participant(request)
        return web.json_response(participant.rest_info())

    async def patch_participant(self, request: web.Request) -> web.StreamResponse:
        _, participant = self._participant(request)
        operations = _expect_patch(await self._read_json(request))
        permission = _permission_copy(participant.permission)
        for index, operation in enumerate(operations):
            _apply_permission(permission, operation, f"[{index}]")
        participant.permission = permission
        logger.info("participant permission set to %s", permission, extra=participant.log_ids)
        return web.json_response(participant.rest_info())

    async def delete_participant(self, request: web.Request) -> web.StreamResponse:
        _, participant = self._participant(request)
        await self.server.portal.kick(participant)
        logger.info("participant dropped over REST", extra=participant.log_ids)
        return web.Response()

    # -- streams --------------------------------------------------------

    def _stream(self, request: web.Request) -> tuple[Room, Stream]:
        ref = self._room(request)
        stream_id = _path_id(request, "stream", ErrorCode.STREAM_NOT_FOUND, "Stream")
        stream = ref.loaded.streams.get(stream_id) if ref.loaded else None
        if ref.loaded is None or stream is None:
            raise RestError(404, ErrorCode.STREAM_NOT_FOUND, "Stream not found")
        return ref.loaded, stream

    async def list_streams(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request).loaded
        streams = list(room.streams.values()) if room is not None else []
        return web.json_response([stream.info() for stream in streams])

    async def get_stream(self, request: web.Request) -> web.StreamResponse:
        _, stream = self._stream(request)
        return web.json_response(stream.info())

    async def patch_stream(self, request: web.Request) -> web.StreamResponse:
        room, stream = self._stream(request)
        operations = _expect_patch(await self._read_json(request))
        # Validate everything first: a patch applies whole or not at all.
        changes = [
            _stream_change(room, stream, operation, f"[{index}]")
            for index, operation in enumerate(operations)
        ]
        for change in changes:
            change()
        return web.json_response(stream.info())

    async def delete_stream(self, request: web.Request) -> web.StreamResponse:
        room, stream = self._stream(request)
        if stream.type != "forward":
            raise _bad_request("Only a forward stream can be removed; a mixed stream is a view")
        owner = next((p for p in room.participants.values() if stream.id in p.publications), None)
        if owner is not None:
            owner.end_session(stream.id)
        else:
            room.remove_stream(stream.id)
        logger.info("stream removed over REST", extra={"room": room.id, "stream": stream.id})
        return web.Response()

    # -- recordings -----------------------------------------------------

    def _recording(self, request: web.Request) -> tuple[RoomRef, Recording | StoredRecording]:
        ref = self._room(request)
        service = self._credentials(request).service
        recording_id = _path_id(request, "recording", ErrorCode.NOT_FOUND, "Recording")
        recording = self.server.find_recording(service.id, ref.id, recording_id)
        if recording is None:
            raise RestError(404, ErrorCode.NOT_FOUND, "Recording not found")
        return ref, recording

    async def create_recording(self, request: web.Request) -> web.StreamResponse:
        service = self._credentials(request).service
        ref = self._room(request)
        body = _recording_request(await self._read_json(request))
        if not service.recording:
            raise RestError(
                403, ErrorCode.PERMISSION_DENIED, "Recording is switched off for this service"
            )
        if ref.loaded is None:
            raise _bad_request("The room has no streams to record (nobody is in it)")
        try:
            recording = ref.loaded.start_recording(body.container, body.media)
        except (ParameterError, MuxerError) as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(recording.describe())

    async def list_recordings(self, request: web.Request) -> web.StreamResponse:
        ref = self._room(request)
        service = self._credentials(request).service
        recordings = self.server.recordings_of(service.id, ref.id)
        return web.json_response([r.describe() for r in recordings])

    async def get_recording(self, request: web.Request) -> web.StreamResponse:
        _, recording = self._recording(request)
        return web.json_response(recording.describe())

    async def patch_recording(self, request: web.Request) -> web.StreamResponse:
        ref, recording = self._recording(request)
        operations = _expect_patch(await self._read_json(request))
        sources = _source_patch(operations)
        if ref.loaded is None or recording.state != "recording":
            raise _bad_request("The recording is not running")
        try:
            recording.update(ref.loaded.streams, sources.get("audio"), sources.get("video"))
        except ParameterError as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(recording.describe())

    async def delete_recording(self, request: web.Request) -> web.StreamResponse:
        _, recording = self._recording(request)
        await recording.stop()
        return web.json_response(recording.describe())

    async def download_recording(self, request: web.Request) -> web.StreamResponse:
        _, recording = self._recording(request)
        if recording.state == "recording":
            raise _bad_request("The recording is still running; stop it first", 409)
        if not recording.path.is_file():
            raise RestError(404, ErrorCode.NOT_FOUND, "The recording has no file")
        return web.FileResponse(
            recording.path,
            headers={
                "Content-Disposition": f'attachment; filename="{recording.path.name}"',
            },
        )

    # -- streaming-outs -------------------------------------------------

    def _streaming_out(self, request: web.Request) -> tuple[RoomRef, StreamingOut]:
        ref = self._room(request)
        service = self._credentials(request).service
        streaming_id = _path_id(request, "streaming", ErrorCode.NOT_FOUND, "Streaming-out")
        entry = self.server.streaming_outs.get(streaming_id)
        if entry is None or entry[0] != service.id or entry[1] != ref.id:
            raise RestError(404, ErrorCode.NOT_FOUND, "Streaming-out not found")
        return ref, entry[2]

    async def create_streaming_out(self, request: web.Request) -> web.StreamResponse:
        ref = self._room(request)
        body = _expect_object(await self._read_json(request))
        protocol = body.get("protocol", "rtmp")
        if protocol not in ("rtmp", "hls"):
            raise _bad_request("protocol: expected rtmp or hls")
        url = body.get("url")
        if protocol == "rtmp" and not isinstance(url, str):
            raise _bad_request("url: an rtmp:// URL is required")
        parameters: dict[str, Any] = {}
        hls = body.get("parameters") or {}
        if not isinstance(hls, dict):
            raise _bad_request("parameters: an object is required")
        for key, name in (("hlsTime", "hls_time"), ("hlsListSize", "hls_list_size")):
            value = hls.get(key)
            if value is not None:
                if not isinstance(value, int) or not 1 <= value <= 60:
                    raise _bad_request(f"parameters.{key}: a whole number from 1 to 60")
                parameters[name] = value
        unknown = sorted(set(body) - {"protocol", "url", "parameters", "media"})
        if unknown:
            raise _bad_request(
                f"{unknown[0]}: unknown field (expected protocol, url, parameters, media)"
            )
        media = _recording_request({"media": body.get("media")}).media
        if ref.loaded is None:
            raise _bad_request("The room has no streams (nobody is in it)")
        try:
            out = ref.loaded.start_streaming_out(
                str(protocol), url if protocol == "rtmp" else None, media, parameters
            )
        except (ParameterError, MuxerError) as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(out.describe())

    async def list_streaming_outs(self, request: web.Request) -> web.StreamResponse:
        ref = self._room(request)
        service = self._credentials(request).service
        outs = self.server.streaming_outs_of(service.id, ref.id)
        return web.json_response([o.describe() for o in outs])

    async def get_streaming_out(self, request: web.Request) -> web.StreamResponse:
        _, out = self._streaming_out(request)
        return web.json_response(out.describe())

    async def patch_streaming_out(self, request: web.Request) -> web.StreamResponse:
        ref, out = self._streaming_out(request)
        operations = _expect_patch(await self._read_json(request))
        sources = _source_patch(operations)
        if ref.loaded is None or out.state not in ("connecting", "streaming"):
            raise _bad_request("The streaming-out is not running")
        try:
            out.update(ref.loaded.streams, sources.get("audio"), sources.get("video"))
        except ParameterError as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(out.describe())

    async def delete_streaming_out(self, request: web.Request) -> web.StreamResponse:
        _, out = self._streaming_out(request)
        await out.stop()
        return web.json_response(out.describe())


def _source_patch(operations: list[dict[str, Any]]) -> dict[str, str]:
    """[{op: replace, path: /media/{audio,video}/from, value: stream id}] -> {kind: id}."""
    sources: dict[str, str] = {}
    for index, operation in enumerate(operations):
        path, op, value = operation["path"], operation["op"], operation["value"]
        if path not in ("/media/audio/from", "/media/video/from"):
            raise _bad_request(f"[{index}].path: expected /media/audio/from or /media/video/from")
        if op != "replace":
            raise _bad_request(f"[{index}].op: {path} takes 'replace'")
        if not isinstance(value, str) or not value:
            raise _bad_request(f"[{index}].value: a stream id is required")
        sources[path.split("/")[2]] = value
    return sources


# -- recording requests (pure) -------------------------------------------------


@dataclass
class RecordingRequest:
    """A checked POST /recordings body."""

    container: str
    media: MediaChoice


def _recording_request(body: Any) -> RecordingRequest:
    """OWT's {container, media: {audio: {from} | false, video: {from, parameters} | false}}."""
    data = _expect_object(body)
    unknown = sorted(set(data) - {"container", "media"})
    if unknown:
        raise _bad_request(f"{unknown[0]}: unknown field (expected container, media)")
    container = data.get("container", "auto")
    if container not in ("auto", *CONTAINERS):
        raise _bad_request(f"container: expected one of auto, {', '.join(CONTAINERS)}")
    media = data.get("media")
    if not isinstance(media, dict):
        raise _bad_request("media: an object with audio and/or video is required")
    sources: dict[str, str | None] = {}
    parameters: dict[str, Any] | None = None
    video_format: dict[str, Any] | None = None
    for kind in ("audio", "video"):
        value = media.get(kind, False)
        if value is False or value is None:
            sources[kind] = None
            continue
        if not isinstance(value, dict) or not isinstance(value.get("from"), str):
            raise _bad_request(f'media.{kind}: expected {{"from": <stream id>}} or false')
        extra = sorted(set(value) - {"from", "parameters", "format"})
        if extra:
            raise _bad_request(f"media.{kind}.{extra[0]}: unknown field")
        sources[kind] = value["from"][:MAX_ID_LENGTH]
        if kind == "video" and value.get("parameters") is not None:
            if not isinstance(value["parameters"], dict):
                raise _bad_request("media.video.parameters: an object is required")
            parameters = value["parameters"]
        if kind == "video" and value.get("format") is not None:
            if not isinstance(value["format"], dict):
                raise _bad_request('media.video.format: an object like {"codec": "h264"}')
            video_format = value["format"]
    if sources["audio"] is None and sources["video"] is None:
        raise _bad_request("media: at least one of audio and video is required")
    return RecordingRequest(
        container=str(container),
        media=MediaChoice(
            audio_from=sources["audio"],
            video_from=sources["video"],
            video_parameters=parameters,
            video_format=video_format,
        ),
    )


# -- JSON-patch semantics (pure) ---------------------------------------------

_PERMISSION_PATH_RE = re.compile(r"^/permission/(publish|subscribe)(?:/(audio|video))?$")


def _permission_copy(permission: dict[str, Any]) -> dict[str, Any]:
    copy = dict(permission)
    for action in ("publish", "subscribe"):
        current = permission.get(action)
        current = current if isinstance(current, dict) else {}
        copy[action] = {
            "audio": bool(current.get("audio", False)),
            "video": bool(current.get("video", False)),
        }
    return copy


def _apply_permission(permission: dict[str, Any], operation: dict[str, Any], where: str) -> None:
    """Apply one OWT PermissionUpdate to ``permission`` (already copied)."""
    path, value = operation["path"], operation["value"]
    match = _PERMISSION_PATH_RE.match(path)
    if match is None:
        raise _bad_request(
            f"{where}.path: {path[:80]!r} cannot be changed; expected /permission/publish, "
            "/permission/subscribe or one of their /audio and /video"
        )
    if operation["op"] != "replace":
        raise _bad_request(f"{where}.op: only 'replace' is supported")
    action, kind = match[1], match[2]
    if kind is not None:
        if not isinstance(value, bool):
            raise _bad_request(f"{where}.value: {path} takes true or false")
        permission[action][kind] = value
        return
    if isinstance(value, bool):
        permission[action] = {"audio": value, "video": value}
        return
    if not isinstance(value, dict):
        raise _bad_request(f"{where}.value: {path} takes false or {{audio: bool, video: bool}}")
    unknown = sorted(set(value) - {"audio", "video"})
    if unknown:
        raise _bad_request(f"{where}.value.{unknown[0]}: unknown field (expected audio, video)")
    for key in ("audio", "video"):
        if not isinstance(value.get(key), bool):
            raise _bad_request(f"{where}.value.{key}: true or false is required")
    permission[action] = {"audio": value["audio"], "video": value["video"]}


def _stream_change(
    room: Room, stream: Stream, operation: dict[str, Any], where: str
) -> Callable[[], None]:
    """Check one OWT StreamUpdate and return the change to make, or raise RestError."""
    path, op, value = operation["path"], operation["op"], operation["value"]
    if path in ("/media/audio/status", "/media/video/status"):
        kind = path.split("/")[2]
        if op != "replace":
            raise _bad_request(f"{where}.op: {path} takes 'replace'")
        if value not in ("active", "inactive"):
            raise _bad_request(f"{where}.value: {path} takes 'active' or 'inactive'")
        if stream.type != "forward":
            raise _bad_request(f"{where}: only a forward stream's track status can be changed")
        if not stream.has_track(kind):
            raise _bad_request(f"{where}: the stream has no {kind} track")
        return lambda: room.set_track_status(stream.id, kind, value == "active")
    if path == "/info/inViews":
        if stream.type != "forward":
            raise _bad_request(f"{where}: only forward streams are mixed into views")
        if op not in ("add", "remove"):
            raise _bad_request(f"{where}.op: /info/inViews takes 'add' or 'remove'")
        if not isinstance(value, str) or value not in room.views:
            raise _bad_request(f"{where}.value: view {str(value)[:64]!r} does NOT exist")
        if op == "add":
            return lambda: room.mix(stream.id, value)
        return lambda: room.unmix(stream.id, value)
    match = _LAYOUT_STREAM_RE.match(path)
    if path == "/info/layout" or match:
        view = room.views.get(getattr(stream, "label", ""))
        if stream.type != "mixed" or view is None:
            raise _bad_request(f"{where}: only a mixed stream has a layout")
        if op != "replace":
            raise _bad_request(f"{where}.op: {path} takes 'replace'")
        if match:
            layout = view.layout.to_json()
            index = int(match.group(1))
            if index >= len(layout):
                raise _bad_request(f"{where}.path: the layout has no entry {index}")
            if not isinstance(value, str):
                raise _bad_request(f"{where}.value: a stream id is required")
            layout[index] = {**layout[index], "stream": value}
            value = layout
        if not isinstance(value, list):
            raise _bad_request(f"{where}.value: a list of {{stream, region}} is required")
        trial = copy.deepcopy(view.layout)
        try:
            trial.apply(value)
        except LayoutError as exc:
            raise _bad_request(f"{where}.value: {exc}") from None
        new_layout = value
        return lambda: view.apply_layout(new_layout)
    raise _bad_request(
        f"{where}.path: {path[:80]!r} cannot be changed; expected /media/audio/status, "
        "/media/video/status, /info/inViews or /info/layout"
    )


REST_API_KEY = web.AppKey("tessera_rest_api", RestApi)


def setup_rest(app: web.Application, server: Server) -> None:
    """Add the REST management API (routes and its middleware) to ``app``."""
    api = RestApi(server)

    @web.middleware
    async def rest_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await api.handle(request, handler)

    app.middlewares.append(rest_middleware)
    api.add_routes(app.router)
    app[REST_API_KEY] = api
