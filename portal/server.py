"""Server: assembles the store, rooms, portal, WebRTC agent and HTTP app; owns their lifecycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import sys
import threading
import time
import weakref
from typing import Any

import socketio
from aiohttp import web
from prometheus_client import generate_latest

from tessera.conference.room import Room
from tessera.conference.roomoptions import RoomOptions, parse_room_options
from tessera.conference.store import ServiceRecord, Store, bootstrap_default_service, new_room_id
from tessera.conference.tokens import issue_token
from tessera.media.aiortcext import (
    PrivateNameMissing,
    check_dtls_srtp,
    check_msid_stream,
    check_private_names,
)
from tessera.mixer.avatar import forget_avatars
from tessera.mixer.selfcheck import check_media
from tessera.recorder.recording import Recording, StoredRecording
from tessera.recorder.streamingout import StreamingOut
from tessera.webrtc_agent.agent import WebrtcAgent

from .config import Config
from .heap import HeapReclaimer
from .looplag import LoopLagMonitor
from .malloc import fix_malloc_trim_threshold, limit_malloc_arenas, trim_heap
from .messages import RequestError
from .metrics import create_registry
from .peergateway import PeerGateway
from .portal import Portal

logger = logging.getLogger(__name__)
# Seconds clients get to close their connections after `drop` on shutdown.
DROP_GRACE = 2.0

SERVER_KEY: web.AppKey[Server] = web.AppKey("server")
# The media self-check passed in this process (its libraries stay as they are).
_media_checked = False
# /readyz judges the load by the event-loop lag of the last this many seconds.
READY_WINDOW = 2.0


class Server:
    """The parent of everything: services' rooms, the portal and the WebRTC agent.

    Rooms defined over REST live in the store and are loaded when someone
    joins; ad-hoc rooms live only while they have participants.
    """

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config.database_path())
        self.default_service = bootstrap_default_service(self.store, config)
        self.ticket_secret = secrets.token_bytes(32)
        self.agent = WebrtcAgent(
            stun_servers=list(config.webrtc.stun_servers),
            keyframe_min_interval=config.webrtc.keyframe_min_interval,
        )
        # Engine.IO refuses (by closing the connection) only far larger frames;
        # up to that the portal answers an oversized request with an error.
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            cors_allowed_origins="*",  # per-service origins are checked at login
            max_http_buffer_size=max(config.portal.max_message_bytes * 32, 2_000_000),
            logger=False,
            engineio_logger=False,
            # A frozen or vanished client is noticed after ping_interval + ping_timeout.
            ping_interval=config.portal.ping_interval,
            ping_timeout=config.portal.ping_timeout,
        )
        self.portal = Portal(self, self.sio)
        self.peers = PeerGateway(self)  # the PeerJS-compatible endpoint (peer model)
        self.loop_lag = LoopLagMonitor()
        self.heap = HeapReclaimer(release=[forget_avatars])
        self.rooms: dict[str, Room] = {}
        # Every recording of this run, running or finished, for REST listing and download.
        self.recordings: dict[str, tuple[str, str, Recording]] = {}
        self._close_interrupted_recordings()
        self.streaming_outs: dict[str, tuple[str, str, StreamingOut]] = {}
        self.port = config.server.port  # the bound port, once listening (server.port may be 0)
        # Weak: a lock lives only while a join holds or awaits it (one per room name ever
        # joined would pile up otherwise).
        self._room_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.closing = False
        self._drained: asyncio.Future[None] | None = None
        self._sockets_closed = False

    def advertised_host(self) -> str:
        """`host:port` written into join tokens."""
        return self.config.advertised_host(self.port)

    def join_token(
        self, service: ServiceRecord, room: str, options: RoomOptions, user: str, role: str
    ) -> str:
        """A join token for `user` in `room` (id or name) with `role`, one of the room's roles.

        Raises ValueError naming the problem (an unknown role, a bad claim).
        """
        if options.role(role) is None:
            roles = ", ".join(r.role for r in options.roles)
            raise ValueError(f"role {role[:64]!r} is not a role of this room (roles: {roles})")
        return issue_token(
            service_id=service.id,
            key=service.key,
            room=room,
            user=user,
            role=role,
            host=self.advertised_host(),
            secure=self.config.server.secure,
            lifetime=self.config.tokens.lifetime,
        )

    # -- services and origins -------------------------------------------

    def check_origin(self, service: ServiceRecord, origin: str | None) -> None:
        """Refuse a browser whose Origin is not on the service's list (if it has one)."""
        allowed = service.allowed_origins
        if origin and allowed and "*" not in allowed and origin not in allowed:
            logger.warning("origin refused", extra={"service": service.id, "origin": origin})
            raise RequestError(f"Origin {origin} is not allowed")

    # -- rooms ----------------------------------------------------------

    def loaded_room(self, service_id: str, ref: str) -> Room | None:
        room = self.rooms.get(ref)
        if room is not None and room.service_id == service_id:
            return room
        for room in self.rooms.values():
            if room.service_id == service_id and room.name == ref and not room.persistent:
                return room
        return None

    async def find_room(self, service: ServiceRecord, ref: str, *, create: bool) -> Room | None:
        """The room `ref` (an id or a name) of `service`, loading or creating it."""
        lock = self._room_locks.setdefault((service.id, ref), asyncio.Lock())
        async with lock:
            room = self.loaded_room(service.id, ref)
            if room is not None and not room.closed:
                return room
            record = self.store.get_room(service.id, ref) or self.store.find_room_by_name(
                service.id, ref
            )
            if record is not None:
                room = self.rooms.get(record.id)
                if room is None or room.closed:
                    options = parse_room_options(record.options)
                    room = Room(self, service.id, record.id, record.name, options, persistent=True)
                    self.rooms[room.id] = room
                return room
            if not create:
                return None
            limit = self.config.limits.rooms_per_service
            if sum(1 for r in self.rooms.values() if r.service_id == service.id) >= limit:
                raise RequestError(f"Too many rooms for this service (at most {limit})")
            room = Room(
                self,
                service.id,
                new_room_id(),
                ref,
                parse_room_options({"name": ref}),
                persistent=False,
            )
            self.rooms[room.id] = room
            logger.info(
                "ad-hoc room created",
                extra={"service": service.id, "room": room.id, "room_name": ref},
            )
            return room

    def _close_interrupted_recordings(self) -> None:
        # A recording still "recording" in the store was cut off by a stop or
        # a crash: its WebM/Matroska file plays up to the cut.
        for recording_id, info in self.store.interrupted_recordings():
            info["state"] = "stopped"
            info["reason"] = "the server stopped while recording; the file ends where it was cut"
            self.store.update_recording(recording_id, info)

    def recording_started(self, room: Room, recording: Recording) -> None:
        self.recordings[recording.id] = (room.service_id, room.id, recording)
        self._save_recording(room.service_id, room.id, recording)

    def recording_finished(self, room: Room, recording: Recording) -> None:
        self._save_recording(room.service_id, room.id, recording)

    def _save_recording(self, service_id: str, room_id: str, recording: Recording) -> None:
        try:
            self.store.save_recording(
                recording.id, service_id, room_id, recording.describe(), str(recording.path)
            )
        except Exception:
            logger.exception(
                "cannot save a recording in the store",
                extra={"room": room_id, "recording": recording.id},
            )

    def find_recording(
        self, service_id: str, room_id: str, recording_id: str
    ) -> Recording | StoredRecording | None:
        return next(
            (r for r in self.recordings_of(service_id, room_id) if r.id == recording_id), None
        )

    def streaming_out_started(self, room: Room, out: StreamingOut) -> None:
        self.streaming_outs[out.id] = (room.service_id, room.id, out)

    def streaming_outs_of(self, service_id: str, room_id: str) -> list[StreamingOut]:
        return [
            o for s, rid, o in self.streaming_outs.values() if s == service_id and rid == room_id
        ]

    def recordings_of(self, service_id: str, room_id: str) -> list[Recording | StoredRecording]:
        """This run's recordings of a room, then those of earlier runs."""
        live: list[Recording | StoredRecording] = [
            r for s, rid, r in self.recordings.values() if s == service_id and rid == room_id
        ]
        known = {r.id for r in live}
        for recording_id, info, file in self.store.list_recordings(service_id, room_id):
            if recording_id not in known:
                live.append(StoredRecording(recording_id, info, file))
        return live

    async def room_empty(self, room: Room) -> None:
        """The last participant left: an ad-hoc room ends; a stored room is unloaded."""
        if room.participants:
            return
        self.rooms.pop(room.id, None)
        await room.close()
        if not room.persistent:
            logger.info("ad-hoc room removed", extra={"room": room.id, "room_name": room.name})
        # Without this the process never shrinks (see HeapReclaimer for why not right now).
        self.heap.schedule()

    async def reload_room_options(self, room_id: str, options: RoomOptions) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.options = options

    async def delete_room(self, room: Room) -> None:
        self.rooms.pop(room.id, None)
        for participant in list(room.participants.values()):
            await self.portal.kick(participant)
        await room.close()
        self.heap.schedule()

    # -- lifecycle ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "rooms": len(self.rooms),
            "participants": sum(len(r.participants) for r in self.rooms.values()),
            "loopLagP99": self.loop_lag.percentile(99),
            **self.agent.stats(),
        }

    async def drain(self) -> None:
        """The start of a shutdown: refuse logins, tell every client (`drop`), then
        finalise every recording and streaming-out (idempotent)."""
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._drain())
        await asyncio.shield(self._drained)

    async def _drain(self) -> None:
        self.closing = True
        rooms = list(self.rooms.values())
        logger.info("shutting down: logins refused, dropping every participant")
        for room in rooms:
            for participant in list(room.participants.values()):
                if participant.sid is not None:
                    await self.portal.emit("drop", participant.sid, None)
        # Recordings first: a streaming-out to a stalled server must not cost a file.
        recordings = [r for room in rooms for r in room.recordings.values()]
        await asyncio.gather(*(r.stop() for r in recordings), return_exceptions=True)
        logger.info("shutting down: %d recordings finalised", len(recordings))
        outs = [o for room in rooms for o in room.streaming_outs.values()]
        await asyncio.gather(*(o.stop() for o in outs), return_exceptions=True)

    async def shutdown(self) -> None:
        """Drain (logins refused, `drop`, recordings finalised), then close the sockets."""
        await self.drain()
        if self._sockets_closed:
            return
        self._sockets_closed = True
        # Clients close their sockets on `drop`; wait for that (briefly) while aiohttp still
        # reads them: once its own shutdown begins it ignores incoming frames, and a close
        # from a browser would go unseen until the Engine.IO ping timeout.
        await self.portal.wait_disconnected(
            min(DROP_GRACE, self.config.server.shutdown_timeout / 2)
        )
        # Open WebSockets would hold the HTTP server's shutdown until its timeout.
        # (Engine.IO's disconnect-all is not used: it waits for every polling client's
        # next request. What still lingers is cut by aiohttp's shutdown timeout.)
        sids = list(self.portal.connections)
        await asyncio.gather(*(self.sio.disconnect(sid) for sid in sids), return_exceptions=True)
        await self.sio.shutdown()
        await self.peers.close()

    async def close(self) -> None:
        """Drop every participant, close every room and transport, then the store."""
        self.closing = True
        await self.peers.close()
        for room in list(self.rooms.values()):
            await room.close()
        self.rooms.clear()
        self.heap.close()
        await self.agent.close()
        self.store.close()


def create_app(config: Config, store: Store | None = None) -> web.Application:
    """The aiohttp application: Socket.IO portal and REST API on one port."""
    limit_malloc_arenas(config.server.malloc_arenas)
    fix_malloc_trim_threshold(config.server.malloc_trim_threshold)
    # Always (a few ms): without these names media breaks at the first call, so the
    # media_check switch does not skip it. Raises PrivateNameMissing naming each one.
    check_private_names()
    if config.server.media_check:
        # Before anything is built (a failure leaves nothing open), on this thread: what
        # the check allocates lands in the main malloc arena, whose top malloc_trim gives
        # back (another arena's it does not).
        media_self_check()
    server = Server(config, store)
    app = web.Application(client_max_size=config.portal.max_message_bytes * 16)
    app[SERVER_KEY] = server
    server.sio.attach(app)
    from .rest import setup_rest

    setup_rest(app, server)
    server.peers.add_routes(app)
    from .webapp import setup_web

    setup_web(app, server)
    app.router.add_get("/hls/{streaming}/{file}", _hls_file)
    registry = create_registry(server)

    async def metrics(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=generate_latest(registry), content_type="text/plain", charset="utf-8"
        )

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.StreamResponse:
        if server.closing:
            return web.json_response({"status": "shutting down"}, status=503)
        lag, limit = server.loop_lag.recent(90, READY_WINDOW), config.server.ready_max_loop_lag
        if lag > limit:
            reason = f"event-loop lag {lag * 1000:.0f} ms is above {limit * 1000:.0f} ms"
            return web.json_response({"status": "overloaded", "reason": reason}, status=503)
        return web.json_response({"status": "ready"})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

    async def lifecycle(app: web.Application) -> Any:
        server.loop_lag.start()
        server.peers.start()
        yield
        await server.loop_lag.stop()
        await server.close()

    async def shutdown(app: web.Application) -> None:
        # Long-lived Socket.IO connections would otherwise hold shutdown open.
        await server.shutdown()

    app.on_shutdown.append(shutdown)
    app.cleanup_ctx.append(lifecycle)
    return app


class MediaCheckFailed(RuntimeError):
    """The media self-check found a codec or DTLS-SRTP not working: the server does not start."""


def media_self_check() -> None:
    """Composite, encode and decode with every codec, and make a DTLS-SRTP handshake.

    Once per process, on the main thread before anything serves; blocks for
    about 0.1 s. Raises MediaCheckFailed naming what does not work.
    """
    global _media_checked
    if _media_checked:
        return
    started = time.perf_counter()
    failures = list(check_media().failures)
    try:
        check_dtls_srtp()
    except Exception as exc:  # any failure is the finding
        failures.append(f"DTLS-SRTP: {type(exc).__name__}: {exc}")
    try:
        check_msid_stream()
    except Exception as exc:
        failures.append(f"msid stream ids: {type(exc).__name__}: {exc}")
    if failures:
        for failure in failures:
            logger.error("media self-check failed: %s", failure, extra={"check": failure})
        raise MediaCheckFailed("media self-check failed: " + "; ".join(failures))
    _media_checked = True
    gc.collect()
    trim_heap()
    seconds = time.perf_counter() - started
    logger.info(
        "media self-check passed in %.0f ms", seconds * 1000, extra={"seconds": round(seconds, 3)}
    )


async def _hls_file(request: web.Request) -> web.StreamResponse:
    """An HLS playlist or segment: the unguessable streaming-out id is the capability."""
    server = request.app[SERVER_KEY]
    streaming_id = request.match_info["streaming"]
    name = request.match_info["file"]
    entry = server.streaming_outs.get(streaming_id)
    if entry is None or entry[2].hls_directory is None:
        raise web.HTTPNotFound(text="No such HLS stream")
    if "/" in name or name.startswith(".") or not name.endswith((".m3u8", ".ts")):
        raise web.HTTPNotFound(text="No such HLS file")
    path = entry[2].hls_directory / name
    if not path.is_file():
        raise web.HTTPNotFound(text="No such HLS file")
    content_type = "application/vnd.apple.mpegurl" if name.endswith(".m3u8") else "video/mp2t"
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
    )


def run(config: Config) -> int:
    """`tessera serve`: serve until SIGTERM or SIGINT, then shut down within
    ``server.shutdown_timeout``; the exit status is 1 if that took too long."""
    return asyncio.run(_serve(config))


async def _serve(config: Config) -> int:
    try:
        app = create_app(config)
    except MediaCheckFailed as exc:
        # Logged line by line already; the exit says it once more, for whoever started it.
        print(f"tessera: {exc} (set [server] media_check = false to start anyway)", file=sys.stderr)
        return 1
    except PrivateNameMissing as exc:
        logger.error("start-up check failed: %s", exc)
        print(f"tessera: {exc}", file=sys.stderr)
        return 1
    server = app[SERVER_KEY]
    deadline = config.server.shutdown_timeout
    # Clients have had `drop` and a disconnect by the time aiohttp waits for
    # connections: one that lingers (aiohttp waits twice this) is cut.
    linger = min(0.5, deadline / 8)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=linger)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
    server.port = int(runner.addresses[0][1])
    url = f"http://{config.advertised_host(server.port)}"
    # Before the line that says we are up: a SIGTERM right after it is a clean stop, not a kill.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info(
        "Tessera listening on %s (Socket.IO portal and REST /v1); "
        "get a join token with: tessera token %s --user NAME --role presenter",
        url,
        config.service.default_room,
        extra={"url": url, "service": server.default_service.id},
    )
    await stop.wait()
    started = time.monotonic()
    # The last resort if the loop thread itself is stuck in a blocking call. Never cancelled:
    # after `_stop`, asyncio.run still joins the default executor and the interpreter still
    # joins aiortc's non-daemon decoder threads, either of which can hang; a daemon timer
    # does not keep a clean exit waiting.
    watchdog = threading.Timer(deadline, _exit_now, args=(deadline,))
    watchdog.daemon = True
    watchdog.start()
    try:
        # Keep a little of the deadline for the interpreter to exit.
        await asyncio.wait_for(_stop(server, runner), deadline - min(0.5, deadline / 4))
    except TimeoutError:
        _exit_now(deadline)
    logger.info("stopped in %.1f s", time.monotonic() - started)
    return 0


async def _stop(server: Server, runner: web.AppRunner) -> None:
    # Logins are refused while the listening socket is still open: a client
    # that connects now hears why, rather than finding nobody there.
    await server.drain()
    await runner.cleanup()


def _exit_now(deadline: float) -> None:
    # Past the deadline: asyncio.run would still wait for executor threads
    # (a stuck muxer or pusher), so leave without it.
    logger.error("shutdown took longer than %.1f s (server.shutdown_timeout); exiting", deadline)
    logging.shutdown()
    os._exit(1)
