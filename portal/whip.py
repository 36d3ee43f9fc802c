"""WhipGateway: WHIP ingest (RFC 9725) and WHEP playback, a front end of the room service.

Routes (``README.md`` has the user's view):

- ``POST /whip/{room}``: an SDP offer publishes its audio/video into the room as a forward
  stream (the same room-service ``publish`` as a Socket.IO client's);
- ``POST /whep/{room}/views/{label}`` and ``POST /whep/{room}/streams/{stream}``: a
  receive-only offer subscribes to a view's mixed stream or to any stream of the room;
- ``PATCH`` / ``DELETE`` ``/whip/sessions/{id}`` (``/whep/sessions/{id}``): trickled
  client candidates, and the end of the session; ``OPTIONS`` everywhere for CORS.

Each session is one participant of the room (joined with the bearer token, a Tessera
join token or a bare JWT its service signed) with one transport. The offer is applied
with the room service's ``signaling`` call; its answer comes back as the ``progress``
``soac`` event every front end gets, which works the same in one process and across a
cluster. Whatever fails after the participant joined makes it leave: a refused offer
leaves no participant, stream, transport or session behind.

aiortc neither trickles its own candidates (the answer has them all) nor restarts ICE:
``PATCH`` takes the client's trickled candidates (204) and answers an ICE restart with
422, as RFC 9725 4.3.2 asks of a session that supports one of the two.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tessera.conference.api import Conference
from tessera.conference.background import spawn
from tessera.conference.errors import ConferenceError
from tessera.conference.events import TRANSPORT_EVENT, ClientAddress
from tessera.conference.offers import offer_sections
from tessera.conference.requests import (
    JoinRequest,
    ParticipantRef,
    PublishRequest,
    PublishTrack,
    SignalingRequest,
    SubscribeRequest,
    SubscribeTrack,
)

from .config import Config
from .whipinputs import (
    WhipInputError,
    bearer_token,
    check_if_match,
    ice_server_links,
    ice_ufrag,
    is_ice_restart,
    parse_sdpfrag,
    refused_mids,
)

logger = logging.getLogger(__name__)

# The name this front end registers with the room service's router.
FRONT_END = "whip"
SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
# An offer of a few m-lines is a few KB; more is not an offer.
MAX_OFFER_BYTES = 64 * 1024
# Seconds the room service has to answer an offer (its soac event).
ANSWER_TIMEOUT = 20.0
ALLOW_ENDPOINT = "POST, OPTIONS"
ALLOW_SESSION = "PATCH, DELETE, OPTIONS"

Kind = Literal["whip", "whep"]


@dataclass
class WhipSession:
    """One WHIP ingest or WHEP playback: a participant of the room with one transport."""

    id: str
    kind: Kind
    service_id: str
    participant: ParticipantRef
    token_digest: bytes
    answer: asyncio.Future[str]
    transport_id: str | None = None
    media_session: str | None = None  # the stream id (WHIP) or subscription id (WHEP)
    mids: list[str] = field(default_factory=list)
    failure: str | None = None
    remote_ufrag: str | None = None
    closed: bool = False

    @property
    def etag(self) -> str:
        # One ICE session for the session's life: ICE restarts are refused.
        return f'"{self.id}"'

    @property
    def location(self) -> str:
        return f"/{self.kind}/sessions/{self.id}"

    @property
    def log_ids(self) -> dict[str, str]:
        return {
            "service": self.service_id,
            "room": self.participant.room_id,
            "participant": self.participant.participant_id,
            "session": self.id,
            "front_end": self.kind,
        }


class WhipRefusal(Exception):
    """A request refused with an HTTP status; the message is the response body."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _status_of(exc: ConferenceError) -> int:
    # The room service answers a role's missing permission with 400 (OWT's soac error).
    if exc.message.startswith("Permission denied"):
        return 403
    return exc.status


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class WhipGateway:
    """The WHIP and WHEP endpoints of every service; a front end of the room service
    (its sessions' events come in through :meth:`deliver`)."""

    def __init__(self, conference: Conference, config: Config) -> None:
        self.conference = conference
        self.config = config
        self.sessions: dict[str, WhipSession] = {}
        self.closed = False

    # -- FrontEnd (the room service's events) -----------------------------

    def deliver(self, key: str, event: str, data: Any) -> None:
        session = self.sessions.get(key)
        if session is None or not isinstance(data, dict):
            return
        if data.get("id") != session.transport_id:
            return
        status = data.get("status")
        if event == "progress" and status == "soac":
            description = data.get("data")
            sdp = description.get("sdp") if isinstance(description, dict) else None
            if isinstance(sdp, str) and not session.answer.done():
                session.answer.set_result(sdp)
        elif event == "progress" and status == "error":
            reason = str(data.get("data") or "the session failed")
            session.failure = session.failure or reason
            if session.answer.done():
                spawn(self.end(session, reason), f"ending a failed {session.kind} session")
        elif event == TRANSPORT_EVENT and status == "closed":
            reason = str(data.get("reason") or "the transport closed")
            spawn(self.end(session, reason), f"ending a {session.kind} session")

    def disconnect(
        self, key: str, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None:
        # Removed from the room (REST drop, room deleted): the participant is gone already.
        session = self.sessions.pop(key, None)
        if session is not None:
            session.closed = True
            logger.info(f"{session.kind} session removed: %s", reason, extra=session.log_ids)

    # -- routes -----------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_post("/whip/{room}", self._whip_post)
        router.add_route("OPTIONS", "/whip/{room}", self._endpoint_options)
        router.add_post("/whep/{room}/views/{label}", self._whep_view_post)
        router.add_route("OPTIONS", "/whep/{room}/views/{label}", self._endpoint_options)
        router.add_post("/whep/{room}/streams/{stream}", self._whep_stream_post)
        router.add_route("OPTIONS", "/whep/{room}/streams/{stream}", self._endpoint_options)
        for kind in ("whip", "whep"):
            path = f"/{kind}/sessions/{{session}}"
            router.add_patch(path, self._patch)
            router.add_delete(path, self._delete)
            router.add_route("OPTIONS", path, self._session_options)
        router.add_get("/whep/", self._player_page)

    async def _player_page(self, request: web.Request) -> web.StreamResponse:
        page = self.config.web_dir() / "whep" / "index.html"
        if not self.config.web.enabled or not page.is_file():
            raise web.HTTPNotFound(text="No WHEP player page")
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

    @staticmethod
    def _cors(request: web.Request, allow: str) -> dict[str, str]:
        # Any page may call: the bearer token (and the service's allowed origins, checked
        # with it) decides, as on Socket.IO.
        return {
            "Access-Control-Allow-Origin": request.headers.get("Origin", "*"),
            "Access-Control-Allow-Methods": allow,
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
            "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Accept-Post",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }

    async def _endpoint_options(self, request: web.Request) -> web.StreamResponse:
        headers = {**self._cors(request, ALLOW_ENDPOINT), "Accept-Post": SDP}
        return web.Response(status=204, headers=headers)

    async def _session_options(self, request: web.Request) -> web.StreamResponse:
        headers = {**self._cors(request, ALLOW_SESSION), "Accept-Patch": SDPFRAG}
        return web.Response(status=204, headers=headers)

    def _refused(self, request: web.Request, refusal: WhipRefusal, allow: str) -> web.Response:
        logger.info(
            "%s %s refused: %s",
            request.method,
            request.path,
            refusal.message,
            extra={"status": refusal.status},
        )
        headers = self._cors(request, allow)
        if refusal.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="tessera"'
        return web.Response(
            status=refusal.status,
            text=refusal.message + "\n",
            content_type="text/plain",
            headers=headers,
        )

    async def _whip_post(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, "whip", None, None)

    async def _whep_view_post(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, "whep", request.match_info["label"], None)

    async def _whep_stream_post(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, "whep", None, request.match_info["stream"])

    async def _post(
        self, request: web.Request, kind: Kind, label: str | None, stream_id: str | None
    ) -> web.StreamResponse:
        try:
            session = await self._start(request, kind, label, stream_id)
        except WhipRefusal as refusal:
            return self._refused(request, refusal, ALLOW_ENDPOINT)
        answer = session.answer.result()
        headers = {
            **self._cors(request, ALLOW_ENDPOINT),
            "Location": session.location,
            "ETag": session.etag,
            "Accept-Patch": SDPFRAG,
        }
        response = web.Response(status=201, text=answer, content_type=SDP, headers=headers)
        for link in ice_server_links(list(self.config.webrtc.stun_servers)):
            response.headers.add("Link", link)
        return response

    # -- starting a session -----------------------------------------------

    async def _start(
        self, request: web.Request, kind: Kind, label: str | None, stream_id: str | None
    ) -> WhipSession:
        if self.closed or self.conference.closing:
            raise WhipRefusal("Server is shutting down", 503)
        try:
            token = bearer_token(request.headers.get("Authorization"))
        except WhipInputError as exc:
            raise WhipRefusal(exc.message, exc.status) from None
        origin = request.headers.get("Origin")
        try:
            # Not used up yet: a malformed offer does not cost the client its token.
            grant, token_id, expires_at = await self.conference.authenticate(
                token, origin, consume=False
            )
        except ConferenceError as exc:
            raise WhipRefusal(exc.message, _status_of(exc)) from None
        sdp = await self._read_offer(request)
        try:
            sections = offer_sections(sdp)
        except ConferenceError as exc:
            raise WhipRefusal(exc.message, 400) from None
        if kind == "whip":
            offered = [(mid, k) for mid, k, sends in sections if sends]
            if not offered:
                raise WhipRefusal("Invalid offer: it sends no audio or video", 400)
        else:
            offered = [(mid, k) for mid, k, _ in sections]
            if not offered:
                raise WhipRefusal("Invalid offer: it has no audio or video m-line", 400)
        room = request.match_info["room"]
        await self._check_room(grant.service_id, grant.room, room)
        if not await self.conference.consume_token(token_id, expires_at):
            raise WhipRefusal("Token has already been used", 401)
        key = uuid.uuid4().hex
        try:
            joined = await self.conference.join(
                JoinRequest(
                    service_id=grant.service_id,
                    room=grant.room,
                    user=grant.user,
                    role=grant.role,
                    client=ClientAddress(front_end=FRONT_END, key=key),
                )
            )
        except ConferenceError as exc:
            raise WhipRefusal(exc.message, _status_of(exc)) from None
        session = WhipSession(
            id=key,
            kind=kind,
            service_id=grant.service_id,
            participant=joined.participant,
            token_digest=_digest(token),
            answer=asyncio.get_running_loop().create_future(),
            remote_ufrag=ice_ufrag(sdp),
        )
        self.sessions[key] = session
        try:
            if kind == "whip":
                await self._publish(session, offered)
            else:
                await self._subscribe(session, offered, label, stream_id)
            await self._negotiate(session, sdp)
        except WhipRefusal as refusal:
            await self.end(session, refusal.message)
            raise
        except ConferenceError as exc:
            await self.end(session, exc.message)
            raise WhipRefusal(exc.message, _status_of(exc)) from None
        except BaseException:
            # A failure of ours (or the client went away): leave nothing behind.
            await asyncio.shield(self.end(session, "the request failed"))
            raise
        logger.info(
            f"{kind} session started",
            extra={**session.log_ids, "transport": session.transport_id, "mids": session.mids},
        )
        return session

    async def _read_offer(self, request: web.Request) -> str:
        if request.content_type != SDP:
            raise WhipRefusal(f"Content-Type must be {SDP}", 415)
        if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
            raise WhipRefusal(f"Offer is longer than {MAX_OFFER_BYTES} bytes", 413)
        body = await request.content.read(MAX_OFFER_BYTES + 1)
        if len(body) > MAX_OFFER_BYTES:
            raise WhipRefusal(f"Offer is longer than {MAX_OFFER_BYTES} bytes", 413)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WhipRefusal("Invalid offer: it is not UTF-8 text", 400) from None
        if not text.strip():
            raise WhipRefusal("Invalid offer: the body is empty", 400)
        return text

    async def _check_room(self, service_id: str, granted: str, named: str) -> None:
        """The URL's room must be the token's (each named by id or by name)."""
        if named == granted:
            return
        try:
            same = await self.conference.room_id(service_id, named) == (
                await self.conference.room_id(service_id, granted)
            )
        except ConferenceError:
            same = False
        if not same:
            raise WhipRefusal(f"The token does not grant room {named[:128]}", 403)

    async def _publish(self, session: WhipSession, offered: list[tuple[str, str]]) -> None:
        tracks = [
            PublishTrack(kind=kind, mid=mid, source="mic" if kind == "audio" else "camera")  # type: ignore[arg-type]
            for mid, kind in offered
        ]
        result = await self.conference.publish(
            session.participant, PublishRequest(tracks=tracks, attributes={"ingest": "whip"})
        )
        session.transport_id = result.transport_id
        session.media_session = result.id
        session.mids = [mid for mid, _ in offered]

    async def _subscribe(
        self,
        session: WhipSession,
        offered: list[tuple[str, str]],
        label: str | None,
        stream_id: str | None,
    ) -> None:
        room = await self.conference.room_info(session.participant)
        streams = [s for s in room.get("streams", []) if isinstance(s, dict)]
        if label is not None:
            stream = next(
                (
                    s
                    for s in streams
                    if s.get("type") == "mixed" and (s.get("info") or {}).get("label") == label
                ),
                None,
            )
            if stream is None:
                raise WhipRefusal(f"View {label[:64]} does NOT exist", 404)
        else:
            stream = next((s for s in streams if s.get("id") == stream_id), None)
            if stream is None:
                raise WhipRefusal("Stream does NOT exist", 404)
        kinds = {
            t.get("type")
            for t in (stream.get("media") or {}).get("tracks", [])
            if isinstance(t, dict)
        }
        tracks = [
            SubscribeTrack(kind=kind, mid=mid, stream_id=stream["id"])  # type: ignore[arg-type]
            for mid, kind in offered
            if kind in kinds
        ]
        if not tracks:
            raise WhipRefusal("The stream has none of the offer's media kinds", 400)
        result = await self.conference.subscribe(
            session.participant, SubscribeRequest(tracks=tracks)
        )
        session.transport_id = result.transport_id
        session.media_session = result.id
        session.mids = [t.mid for t in tracks]

    async def _negotiate(self, session: WhipSession, sdp: str) -> None:
        assert session.transport_id is not None
        await self.conference.signaling(
            session.participant,
            SignalingRequest(transport_id=session.transport_id, type="offer", sdp=sdp),
        )
        try:
            answer = await asyncio.wait_for(asyncio.shield(session.answer), ANSWER_TIMEOUT)
        except TimeoutError:
            raise WhipRefusal("The room did not answer the offer in time", 503) from None
        refused = refused_mids(answer, session.mids)
        if refused or session.failure is not None:
            reason = (
                session.failure or f"The room does not accept the offer's media (mid {refused[0]})"
            )
            raise WhipRefusal(reason, 400)

    # -- the session resource -----------------------------------------------

    def _session(self, request: web.Request) -> WhipSession:
        kind = request.path.split("/", 2)[1]
        session = self.sessions.get(request.match_info["session"])
        if session is None or session.kind != kind:
            raise WhipRefusal("Session does NOT exist", 404)
        try:
            token = bearer_token(request.headers.get("Authorization"))
        except WhipInputError as exc:
            raise WhipRefusal(exc.message, exc.status) from None
        # The token that started the session (checked then; it may have expired since).
        if not hmac.compare_digest(_digest(token), session.token_digest):
            raise WhipRefusal("The token is not the one that started this session", 401)
        return session

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        try:
            session = self._session(request)
            if request.content_type != SDPFRAG:
                raise WhipRefusal(f"Content-Type must be {SDPFRAG}", 415)
            if_match = request.headers.get("If-Match")
            try:
                check_if_match(if_match, session.etag)
                fragment = parse_sdpfrag(await request.text())
            except WhipInputError as exc:
                raise WhipRefusal(exc.message, exc.status) from None
            if is_ice_restart(fragment, if_match, session.remote_ufrag):
                raise WhipRefusal(
                    "ICE restart is not supported (aiortc cannot restart ICE): "
                    "DELETE the session and POST a new offer",
                    422,
                )
            assert session.transport_id is not None
            for mid, candidate in fragment.candidates:
                await self.conference.signaling(
                    session.participant,
                    SignalingRequest(
                        transport_id=session.transport_id,
                        type="candidate",
                        candidate={
                            "candidate": f"candidate:{candidate}" if candidate else "",
                            "sdpMid": mid,
                            "sdpMLineIndex": None if mid is not None else 0,
                        },
                    ),
                )
        except WhipRefusal as refusal:
            return self._refused(request, refusal, ALLOW_SESSION)
        except ConferenceError as exc:
            return self._refused(request, WhipRefusal(exc.message, 400), ALLOW_SESSION)
        return web.Response(status=204, headers=self._cors(request, ALLOW_SESSION))

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        try:
            session = self._session(request)
        except WhipRefusal as refusal:
            return self._refused(request, refusal, ALLOW_SESSION)
        await self.end(session, f"the {session.kind} client ended it (DELETE)")
        return web.Response(status=200, headers=self._cors(request, ALLOW_SESSION))

    # -- ending -------------------------------------------------------------

    async def end(self, session: WhipSession, reason: str) -> None:
        """Idempotent: the session's participant leaves the room (its transport goes too)."""
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        logger.info(f"{session.kind} session ended: %s", reason, extra=session.log_ids)
        try:
            await self.conference.leave(session.participant, reason)
        except ConferenceError:
            pass  # gone already (its room closed)

    async def close(self) -> None:
        """Every session ends (the server is shutting down)."""
        self.closed = True
        for session in list(self.sessions.values()):
            await self.end(session, "the server is shutting down")
