"""The conference page, the admin page, and the demo app-server endpoints behind them.

In OWT a page never holds a service key: an application server issues join tokens
and calls the REST API for it. ``/demo/`` is a small such app server built in, so
that ``tessera serve`` works out of the box: it issues tokens for the default
service and lets moderators change the layout and record. A page proves who it is
with its reconnection ticket (``Authorization: Ticket <ticket>``), which only the
participant holds. By default it answers only on loopback (``[web] demo``).

Static files: ``/`` (index.html), ``/admin`` (admin.html), ``/static/`` (the rest of
web/), ``/vendor/socket.io-client/`` and ``/vendor/peerjs/`` (from node_modules).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tessera.conference.api import Conference
from tessera.conference.errors import ConferenceError
from tessera.conference.outputs import PLAYABLE
from tessera.conference.requests import ParticipantInfo
from tessera.config.validation import check_name

from .config import Config

logger = logging.getLogger(__name__)

# Packages the page imports, from node_modules/<package>/dist.
VENDOR_PACKAGES = ("socket.io-client", "peerjs")
# How long a recording's download link stays valid.
DOWNLOAD_LINK_LIFETIME = 600
LAYOUT_BASES = ("fluid", "lecture", "gallery")


class DemoError(web.HTTPException):
    """A refused demo request: JSON ``{"error": {"code": <status>, "message": ...}}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps({"error": {"code": status, "message": message}}),
            content_type="application/json",
        )


def setup_web(
    app: web.Application, conference: Conference, config: Config, default_service_id: str
) -> None:
    """Mount the pages and, if allowed by ``[web] demo``, the demo endpoints (which issue
    tokens for the service ``default_service_id``)."""
    if not config.web.enabled:
        return
    web_dir = config.web_dir()
    if not (web_dir / "index.html").is_file():
        logger.warning("no conference page, / is not served", extra={"directory": str(web_dir)})
    else:
        _mount_pages(app, web_dir)
    node_modules = config.node_modules_dir()
    for package in VENDOR_PACKAGES:
        dist = node_modules / package / "dist"
        if dist.is_dir():
            app.router.add_static(f"/vendor/{package}/", dist, append_version=False)
        else:
            logger.warning(
                "vendor package missing (run `npm ci`), the page cannot load it",
                extra={"package": package, "directory": str(dist)},
            )
    if config.web.demo != "off":
        DemoApp(conference, config, default_service_id).mount(app)


def _mount_pages(app: web.Application, web_dir: Path) -> None:
    def page(name: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(web_dir / name, headers={"Cache-Control": "no-cache"})

        return handler

    app.router.add_get("/", page("index.html"))
    app.router.add_get("/admin", page("admin.html"))
    app.router.add_static("/static/", web_dir, append_version=False)


# Headers a reverse proxy adds: behind one every client would look local.
PROXY_HEADERS = ("forwarded", "x-real-ip", "via")


def demo_refusal(config: Config, request: web.Request) -> str | None:
    """Why the demo endpoints refuse ``request``, or None.

    With ``[server] public_host`` or ``secure`` set, clients come through a public name or
    a TLS proxy: off unless ``[web] demo_with_public_host``. In ``"loopback"`` mode the
    server must listen on loopback, the peer be loopback, the ``Host`` a loopback name,
    and no header say that a proxy passed the request on.
    """
    server = config.server
    if (server.public_host or server.secure) and not config.web.demo_with_public_host:
        return "[server] public_host or secure is set and [web] demo_with_public_host is not"
    if config.web.demo == "on":
        return None
    if not _is_loopback(server.host):
        return "the server does not listen on loopback ([web] demo)"
    if not _is_loopback(request.remote):
        return "not a loopback client ([web] demo)"
    for name in request.headers:
        lowered = name.lower()
        if lowered in PROXY_HEADERS or lowered.startswith("x-forwarded-"):
            return f"the request was passed on by a proxy ({name} header)"
    host = request.headers.get("Host", "")
    if not _is_loopback(_host_name(host)):
        return f"Host {host[:100]!r} is not a loopback name"
    return None


def _host_name(host: str) -> str:
    """The name of a ``Host`` header without its port (IPv6 literals unbracketed)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class DemoApp:
    """The built-in app server of the conference page (see the module docstring)."""

    def __init__(self, conference: Conference, config: Config, service_id: str) -> None:
        self.conference = conference
        self.config = config
        self.service_id = service_id
        # Signs the recordings' download links (valid for this process's life).
        self._link_secret = secrets.token_bytes(32)

    def mount(self, app: web.Application) -> None:
        @web.middleware
        async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
            # aiohttp's own 404/405 are plain text; the page reads {"error": {"message"}}.
            try:
                response: web.StreamResponse = await handler(request)
                return response
            except DemoError:
                raise
            except web.HTTPException as exc:
                if not request.path.startswith("/demo/") or exc.status_code < 400:
                    raise
                raise DemoError(exc.status_code, exc.reason) from None

        app.middlewares.append(json_errors)
        add = app.router.add_route
        add("POST", "/demo/token", self.create_token)
        add("PUT", "/demo/layout", self.set_layout)
        add("GET", "/demo/layout", self.get_layout)
        add("GET", "/demo/recordings", self.list_recordings)
        add("POST", "/demo/recordings", self.start_recording)
        add("DELETE", "/demo/recordings/{recording}", self.stop_recording)
        add("GET", "/demo/recordings/{recording}/file", self.download)

    # -- checks ---------------------------------------------------------

    def _check_allowed(self, request: web.Request) -> None:
        reason = demo_refusal(self.config, request)
        if reason is None:
            return
        logger.warning(
            "demo request refused: %s",
            reason,
            extra={
                "method": request.method,
                "path": request.path[:200],  # the formatter escapes it
                "address": request.remote,
            },
        )
        raise DemoError(403, f"The demo endpoints refuse this request: {reason}")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > 16384:
            raise DemoError(413, "Request body is too large")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise DemoError(400, "Request body must be JSON") from None
        if not isinstance(body, dict):
            raise DemoError(400, "Request body must be a JSON object")
        return body

    async def _participant(self, request: web.Request) -> ParticipantInfo:
        """The caller, proved by its current reconnection ticket."""
        header = request.headers.get("Authorization", "")
        scheme, _, ticket = header.partition(" ")
        if scheme != "Ticket" or not ticket:
            raise DemoError(401, "Authorization: Ticket <reconnection ticket> is required")
        try:
            return await self.conference.participant_of_ticket(ticket.strip())
        except ConferenceError as exc:
            raise DemoError(401, str(exc)) from None

    async def _moderator(self, request: web.Request) -> ParticipantInfo:
        caller = await self._participant(request)
        if caller.role not in self.config.web.moderator_roles:
            raise DemoError(
                403,
                f"Role {caller.role} may not do this (moderator roles: "
                f"{', '.join(self.config.web.moderator_roles) or 'none'})",
            )
        return caller

    # -- tokens ---------------------------------------------------------

    async def create_token(self, request: web.Request) -> web.StreamResponse:
        """``{room, user, role}`` → ``{token, role, moderator}`` for the default service."""
        self._check_allowed(request)
        body = await self._body(request)
        unknown = sorted(set(body) - {"room", "user", "role"})
        if unknown:
            raise DemoError(400, f"{unknown[0]}: unknown field (expected room, user, role)")
        service_id = self.service_id
        try:
            room_ref = check_name(body.get("room") or self.config.service.default_room, "room")
            user = check_name(body.get("user"), "user")
        except ValueError as exc:
            raise DemoError(400, str(exc)) from None
        role = body.get("role", "presenter")
        if not isinstance(role, str) or not role:
            raise DemoError(400, "role must be a non-empty string")
        try:
            issued = await self.conference.issue_token(service_id, room_ref, user, role, adhoc=True)
        except ConferenceError as exc:
            raise DemoError(exc.status, str(exc)) from None
        logger.info(
            "demo token issued",
            extra={
                "service": service_id,
                "room": issued.room_id,
                "room_name": issued.room_name,
                "user": user,
                "role": role,
            },
        )
        return web.json_response(
            {
                "token": issued.token,
                "role": role,
                "moderator": role in self.config.web.moderator_roles,
            }
        )

    # -- layout ---------------------------------------------------------

    async def set_layout(self, request: web.Request) -> web.StreamResponse:
        """``{view, base}``: switch a view of the caller's room to fluid or lecture."""
        self._check_allowed(request)
        caller = await self._moderator(request)
        body = await self._body(request)
        base = body.get("base")
        if base not in LAYOUT_BASES:
            raise DemoError(400, f"base must be one of {', '.join(LAYOUT_BASES)}")
        label = body.get("view")
        try:
            result = await self.conference.set_view_template(
                caller.participant.room_id, label if isinstance(label, str) else None, base
            )
        except ConferenceError as exc:
            raise DemoError(exc.status, str(exc)) from None
        logger.info(
            "demo layout set",
            extra={
                "room": caller.participant.room_id,
                "participant": caller.participant.participant_id,
                "view": result["view"],
                "base": base,
            },
        )
        return web.json_response(result)

    async def get_layout(self, request: web.Request) -> web.StreamResponse:
        """``?view=label``: the region set a view of the caller's room shows now,
        ``{view, base, bases, layout}``; ``bases`` are those ``PUT`` takes (a view
        presents a screen share by itself: ``presentation`` is not one of them)."""
        self._check_allowed(request)
        caller = await self._moderator(request)
        label = request.query.get("view")
        try:
            result = await self.conference.view_template(caller.participant.room_id, label)
        except ConferenceError as exc:
            raise DemoError(exc.status, str(exc)) from None
        return web.json_response({**result, "bases": list(LAYOUT_BASES)})

    # -- recordings -----------------------------------------------------

    def _describe(self, caller: ParticipantInfo, info: dict[str, Any]) -> dict[str, Any]:
        info = dict(info)
        service_id, room_id = caller.service_id, caller.participant.room_id
        if info.get("state") != "recording":
            expires = int(time.time()) + DOWNLOAD_LINK_LIFETIME
            signature = self._link_signature(service_id, room_id, info["id"], expires)
            info["download"] = (
                f"/demo/recordings/{info['id']}/file?service={service_id}"
                f"&room={room_id}&expires={expires}&signature={signature}"
            )
        info.pop("storage", None)  # the server's file path is none of the page's business
        return info

    def _link_signature(
        self, service_id: str, room_id: str, recording_id: str, expires: int
    ) -> str:
        message = f"{service_id},{room_id},{recording_id},{expires}".encode()
        return hmac.new(self._link_secret, message, hashlib.sha256).hexdigest()

    async def list_recordings(self, request: web.Request) -> web.StreamResponse:
        self._check_allowed(request)
        caller = await self._participant(request)
        recordings = await self.conference.list_recordings(
            caller.service_id, caller.participant.room_id
        )
        return web.json_response([self._describe(caller, r) for r in recordings])

    async def start_recording(self, request: web.Request) -> web.StreamResponse:
        """``{view}``: record a view of the caller's room (its mixed audio and video)."""
        self._check_allowed(request)
        caller = await self._moderator(request)
        body = await self._body(request)
        label = body.get("view")
        try:
            # A container the page's browser plays (REST's "auto" is OWT's: Matroska).
            recording = await self.conference.record_view(
                caller.service_id,
                caller.participant.room_id,
                label if isinstance(label, str) else None,
                PLAYABLE,
            )
        except ConferenceError as exc:
            raise DemoError(exc.status, str(exc)) from None
        logger.info(
            "demo recording started",
            extra={
                "room": caller.participant.room_id,
                "participant": caller.participant.participant_id,
                "recording": recording["id"],
            },
        )
        return web.json_response(self._describe(caller, recording))

    async def stop_recording(self, request: web.Request) -> web.StreamResponse:
        self._check_allowed(request)
        caller = await self._moderator(request)
        recording_id = request.match_info["recording"]
        try:
            recording = await self.conference.stop_recording(
                caller.service_id, caller.participant.room_id, recording_id
            )
        except ConferenceError as exc:
            raise DemoError(exc.status, "Recording not found in this room") from None
        logger.info(
            "demo recording stopped",
            extra={
                "room": caller.participant.room_id,
                "participant": caller.participant.participant_id,
                "recording": recording_id,
            },
        )
        return web.json_response(self._describe(caller, recording))

    async def download(self, request: web.Request) -> web.StreamResponse:
        """A finished recording's file; the signed link from the list is the permission."""
        self._check_allowed(request)
        query = request.query
        service_id, room_id = query.get("service", ""), query.get("room", "")
        recording_id = request.match_info["recording"]
        try:
            expires = int(query.get("expires", ""))
        except ValueError:
            raise DemoError(403, "The download link is malformed") from None
        expected = self._link_signature(service_id, room_id, recording_id, expires)
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        if not hmac.compare_digest(expected.encode(), query.get("signature", "").encode()):
            raise DemoError(403, "The download link is not valid")
        if expires < time.time():
            raise DemoError(403, "The download link has expired; reload the list")
        try:
            path = await self.conference.recording_file(service_id, room_id, recording_id)
        except ConferenceError as exc:
            message = "The recording has no file" if exc.status == 404 else str(exc)
            raise DemoError(exc.status, message) from None
        return web.FileResponse(
            path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'}
        )
