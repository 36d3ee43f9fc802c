"""Server: the assembly of one process: config, store, the room service, the front ends, the
HTTP app, and their lifecycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web
from prometheus_client import generate_latest

from tessera.conference.events import LocalRouter
from tessera.conference.records import ServiceRecord
from tessera.conference.roomservice import RoomService
from tessera.conference.selfcheck import (
    MediaCheckFailed,
    PrivateNameMissing,
    check_private_names,
    media_self_check,
    release_caches,
)
from tessera.conference.settings import ConferenceSettings
from tessera.conference.sqlitestore import SqliteStore
from tessera.conference.store import Store, bootstrap_default_service

from . import portal, roompeer
from .config import Config, ConfigError
from .connectionlimits import ConnectionLimitError
from .eio3gateway import attach_socketio
from .heap import HeapReclaimer
from .listener import listen, probe_listen
from .looplag import LoopLagMonitor
from .malloc import fix_malloc_trim_threshold, limit_malloc_arenas, trim_heap
from .metrics import create_registry
from .peerdirectory import PeerDirectory
from .peergateway import PeerGateway, PeerRelay
from .portal import Portal
from .rest import RestContext, setup_rest
from .serverrecord import ServerRecord, record_path, remove_record, write_record
from .startupfailure import explain_listen_failure, explain_storage_failure
from .webapp import setup_web
from .whip import FRONT_END as WHIP_FRONT_END
from .whip import WhipGateway

logger = logging.getLogger(__name__)
# Seconds clients get to close their connections after `drop` on shutdown.
DROP_GRACE = 2.0

MIB = 1 << 20
SERVER_KEY: web.AppKey[Server] = web.AppKey("server")
# /readyz judges the load by the event-loop lag of the last this many seconds.
READY_WINDOW = 2.0


def conference_settings(config: Config, advertised_host: Any) -> ConferenceSettings:
    """What the room service needs of the configuration."""
    return ConferenceSettings(
        recording_dir=config.recording_dir(),
        hls_dir=config.data_dir() / "hls",
        recording_disk_reserve=config.recording.disk_reserve_mb * MIB,
        advertised_host=advertised_host,
        secure=config.server.secure,
        token_lifetime=config.tokens.lifetime,
        single_use_tokens=config.tokens.single_use,
        reconnection_keep=config.portal.reconnection_keep,
        ticket_lifetime=config.portal.ticket_lifetime,
        text_max_length=config.portal.text_max_length,
        rooms_per_service=config.limits.rooms_per_service,
        recordings_per_room=config.limits.recordings_per_room,
        recordings_per_service=config.limits.recordings_per_service,
        streaming_outs_per_room=config.limits.streaming_outs_per_room,
        streaming_outs_per_service=config.limits.streaming_outs_per_service,
        publications_per_participant=config.limits.publications_per_participant,
        subscriptions_per_participant=config.limits.subscriptions_per_participant,
        stun_servers=tuple(config.webrtc.stun_servers),
        connect_timeout=config.webrtc.connect_timeout,
        keyframe_min_interval=config.webrtc.keyframe_min_interval,
        max_transcodes=config.webrtc.max_transcodes,
        frame_timeout=config.mixer.frame_timeout,
        max_mixed_talkers=config.mixer.max_mixed_talkers,
        overlays=tuple(config.mixer.overlays),
    )


class Server:
    """The assembly: config, store, the room service and the front ends that call it
    (Socket.IO portal, PeerJS gateway with the room peer; REST and the web app are
    mounted on the app), and their lifecycle. Rooms never call back into it: the room
    service reaches the front ends through its router.
    """

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        *,
        conference: RoomService | None = None,
        router: LocalRouter | None = None,
        default_service: ServiceRecord | None = None,
        peer_directory: PeerDirectory | None = None,
        peer_relay: PeerRelay | None = None,
    ) -> None:
        self.config = config
        self.port = config.server.port  # the bound port, once listening (server.port may be 0)
        if conference is None:
            # The embedded default: one process, its rooms, SQLite. The database is read
            # and written directly only here (start-up) and by tests; the room service
            # uses it through SqliteStore, on a thread of its own.
            self.store: Store | None = store or Store(config.database_path())
            self.default_service = bootstrap_default_service(self.store, config.service)
            self.router = LocalRouter()
            self.conference_store: SqliteStore | None = SqliteStore(self.store)
            self.conference = RoomService(
                conference_settings(config, self.advertised_host),
                self.conference_store,
                self.router,
            )
        else:
            # A cluster's portal: the room service (its store, its router) is made and
            # closed by the caller (portal/clusterportal.py).
            assert router is not None and default_service is not None
            self.store = None
            self.conference_store = None
            self.default_service = default_service
            self.router = router
            self.conference = conference
        # Engine.IO refuses (by closing the connection) only far larger frames;
        # up to that the portal answers an oversized request with an error.
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            cors_allowed_origins="*",  # per-service origins are checked at login
            max_http_buffer_size=max(config.portal.max_message_bytes * 32, 2_000_000),
            logger=False,
            engineio_logger=False,
            # A frozen or vanished client is noticed after ping_interval + ping_timeout.
            # Engine.IO advertises the interval in whole seconds, cut down (0.5 -> 0): a
            # client would then expect pings sooner than they come and drop a healthy
            # connection every cycle. The grace rounds the advertised interval up instead.
            ping_interval=(
                config.portal.ping_interval,
                math.ceil(config.portal.ping_interval) - config.portal.ping_interval,
            ),
            ping_timeout=config.portal.ping_timeout,
        )
        self.portal = Portal(self.conference, config, self.sio)
        self.peers = PeerGateway(
            self.conference, config, directory=peer_directory, relay=peer_relay
        )  # the peer model's endpoint
        self.router.register(portal.FRONT_END, self.portal)
        self.router.register(roompeer.FRONT_END, self.peers.room_peer)
        self.whip = WhipGateway(self.conference, config)  # WHIP ingest and WHEP playback
        self.router.register(WHIP_FRONT_END, self.whip)
        self.loop_lag = LoopLagMonitor()
        self.heap = HeapReclaimer(release=[release_caches])
        # Without this the process never shrinks (see HeapReclaimer for why not right now).
        self.conference.room_closed_listeners.append(self.heap.schedule)
        self.closing = False
        self._drained: asyncio.Future[None] | None = None
        self._sockets_closed = False

    @property
    def rooms(self) -> dict[str, Any]:
        """Every loaded room (for tests and operators; front ends go through the service)."""
        return self.conference.rooms

    @property
    def agent(self) -> Any:
        """The WebRTC sessions of every room (for tests and leak checks)."""
        return self.conference.agent

    def advertised_host(self) -> str:
        """`host:port` written into join tokens."""
        return self.config.advertised_host(self.port)

    # -- lifecycle ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {**self.conference.stats(), "loopLagP99": self.loop_lag.percentile(99)}

    async def drain(self) -> None:
        """The start of a shutdown: refuse logins, tell every client (`drop`), then
        finalise every recording and streaming-out (idempotent)."""
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._drain())
        await asyncio.shield(self._drained)

    async def _drain(self) -> None:
        self.closing = True
        self.conference.closing = True
        logger.info("shutting down: logins refused, dropping every participant")
        await self.portal.drop_all()
        await self.conference.drain()

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
        """Close the front ends, then every room and transport, then the store."""
        self.closing = True
        await self.peers.close()
        await self.whip.close()
        await self.conference.close()
        self.heap.close()
        if self.conference_store is not None:
            await self.conference_store.close()
        if self.store is not None:
            self.store.close()


def create_app(
    config: Config, store: Store | None = None, *, server: Server | None = None
) -> web.Application:
    """The aiohttp application: Socket.IO portal and REST API on one port (of ``server``,
    or of the embedded default's server made here)."""
    limit_malloc_arenas(config.server.malloc_arenas)
    fix_malloc_trim_threshold(config.server.malloc_trim_threshold)
    # Always (a few ms): without these names media breaks at the first call, so the
    # media_check switch does not skip it. Raises PrivateNameMissing naming each one.
    check_private_names()
    if config.server.media_check:
        # Before anything is built (a failure leaves nothing open), on this thread: what
        # the check allocates lands in the main malloc arena, whose top malloc_trim gives
        # back (another arena's it does not).
        media_self_check(trim_heap)
    server = server or Server(config, store)
    app = web.Application(client_max_size=config.portal.max_message_bytes * 16)
    app[SERVER_KEY] = server
    attach_socketio(app, server.sio)  # Engine.IO 4 clients, and 3 (socket.io-client 2.x)
    setup_rest(
        app,
        RestContext(server.conference, server.default_service.id, server.peers.close_service),
    )
    server.peers.add_routes(app)
    server.whip.add_routes(app)
    setup_web(app, server.conference, config, server.default_service.id)
    app.router.add_get("/hls/{streaming}/{file}", _hls_file)
    registry = create_registry(
        server.conference, server.loop_lag, lambda: len(server.portal.connections)
    )

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
        await server.conference.start()
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


async def _hls_file(request: web.Request) -> web.StreamResponse:
    """An HLS playlist or segment: the unguessable streaming-out id is the capability."""
    server = request.app[SERVER_KEY]
    streaming_id = request.match_info["streaming"]
    name = request.match_info["file"]
    directory = await server.conference.hls_directory(streaming_id[:128])
    if directory is None:
        raise web.HTTPNotFound(text="No such HLS stream")
    if "/" in name or name.startswith(".") or not name.endswith((".m3u8", ".ts")):
        raise web.HTTPNotFound(text="No such HLS file")
    path = directory / name
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


async def _serve(
    config: Config,
    app: web.Application | None = None,
    *,
    on_listening: Callable[[str], Awaitable[None]] | None = None,
    on_stopped: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Serve ``app`` (the embedded default's, made here, if None) until SIGTERM/SIGINT.
    A cluster's portal passes its app, and joins/leaves the cluster in the hooks.
    Every start-up failure is one line on stderr and exit status 1, never a traceback."""
    embedded = app is None
    if config.server.port:
        # Before the self-check and the room service start: a taken port is then one line,
        # not one after their start and shutdown logs.
        try:
            probe_listen(config.server.host, config.server.port)
        except OSError as exc:
            host, port = config.server.host, config.server.port
            return _failed_start(explain_listen_failure(exc, host, port), exc)
    try:
        app = app or create_app(config)
    except MediaCheckFailed as exc:
        # Logged line by line already; the exit says it once more, for whoever started it.
        print(f"tessera: {exc} (set [server] media_check = false to start anyway)", file=sys.stderr)
        return 1
    except PrivateNameMissing as exc:
        logger.error("start-up check failed: %s", exc)
        print(f"tessera: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:
        return _failed_start(explain_storage_failure(exc, str(config.data_dir())), exc)
    except ConfigError:
        raise  # the CLI names the key (exit status 2)
    except Exception as exc:  # the process boundary: whatever it was, one line
        return _failed_start(f"start-up failed: {type(exc).__name__}: {exc}", exc)
    server = app[SERVER_KEY]
    deadline = config.server.shutdown_timeout
    # Clients have had `drop` and a disconnect by the time aiohttp waits for
    # connections: one that lingers (aiohttp waits twice this) is cut.
    linger = min(0.5, deadline / 8)
    try:
        runner, _ = await listen(app, config, config.server.host, config.server.port, linger)
    except ConnectionLimitError as exc:
        logger.error("cannot listen: %s", exc)
        print(f"tessera: {exc}", file=sys.stderr)
        await server.close()
        return 1
    except OSError as exc:
        await server.close()
        host, port = config.server.host, config.server.port
        return _failed_start(explain_listen_failure(exc, host, port), exc)
    except Exception as exc:  # the process boundary: whatever it was, one line
        await server.close()
        return _failed_start(f"start-up failed: {type(exc).__name__}: {exc}", exc)
    server.port = int(runner.addresses[0][1])
    record = _record_listening(config, server) if embedded else None
    # What start-up made (modules, the self-check's leftovers) lives as long as the
    # process: out of the collector's sight, a full collection (the heap reclaim after a
    # room closes, on the event loop) costs what rooms made, not tens of milliseconds more.
    gc.collect()
    gc.freeze()
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
    if on_listening is not None:
        await on_listening(url)
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
    if on_stopped is not None:
        await on_stopped()
    if record is not None:
        remove_record(record, os.getpid())
    logger.info("stopped in %.1f s", time.monotonic() - started)
    return 0


def _failed_start(message: str, exc: BaseException) -> int:
    """One line for whoever started the server (the traceback only at log level debug)."""
    logger.debug("start-up failure", exc_info=exc)
    print(f"tessera: {message}", file=sys.stderr)
    return 1


def _record_listening(config: Config, server: Server) -> Path | None:
    """Record where this server listens (`tessera token` reads it); None if it cannot."""
    database = config.database_path()
    if str(database) == ":memory:":
        return None  # no other process can share its services: nothing to point at
    path = record_path(config.data_dir())
    record = ServerRecord(
        host=server.advertised_host(),
        secure=config.server.secure,
        pid=os.getpid(),
        database=str(database),
    )
    try:
        write_record(path, record)
    except OSError as exc:
        # Serving matters more: `tessera token` then says which server it assumed.
        logger.warning("cannot record where the server listens in %s: %s", path, exc)
        return None
    return path


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
