"""Eio3Session: one Engine.IO 3 client (socket.io-client 2.x), carried into python-engineio.

The session is an ordinary socket of python-engineio's server
(``engineio.async_socket.AsyncSocket``, kept in the server's ``sockets`` like
every Engine.IO 4 client's), so python-socketio reaches it as it reaches any
other client: it sends through the socket's queue, disconnects it through
``close``, and hears its messages through ``receive``. This class carries that
socket over Engine.IO 3's transports instead of python-engineio's own:

- long-polling with protocol 3's payloads (``<length>:<packet>``), upgraded to
  a WebSocket after a ``2probe``/``3probe`` exchange, or a WebSocket from the start;
- protocol 3's heartbeat: the client pings, the server pongs, and a client that
  sends nothing for ``ping_interval + ping_timeout`` is closed (python-engineio
  pings Engine.IO 4 clients itself; for this socket its pinging stays off);
- Socket.IO 4's packets (``socketio4``): the default namespace is joined on the
  client's behalf, and python-socketio's replies are rewritten where 4 differs.

Anything malformed raises Eio3ProtocolError; the caller closes the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from engineio import packet as engine_packet
from engineio.async_socket import AsyncSocket

from .engineio3 import (
    Eio3Error,
    Packet,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)
from .socketio4 import (
    IMPLICIT_CONNECT,
    Sio4Error,
    Sio4Unsupported,
    check_client_packet,
    to_client_packet,
)

logger = logging.getLogger(__name__)

# Seconds a client has to finish a WebSocket upgrade it started (engine.io 3's default).
UPGRADE_TIMEOUT = 10.0
# WebSocket close codes (RFC 6455) for a client that broke the protocol.
WS_PROTOCOL_ERROR = 1002
WS_UNSUPPORTED_DATA = 1003


# What of python-engineio the session relies on (pinned in pyproject.toml).
ENGINE_NAMES = ("sockets", "handlers", "reason", "generate_id", "ping_interval", "ping_timeout")
SOCKET_NAMES = (
    "queue",
    "receive",
    "send",
    "close",
    "last_ping",
    "connected",
    "upgraded",
    "closed",
    "closing",
)


def check_engine(eio: Any) -> None:
    """Raise RuntimeError naming what of python-engineio the session needs and is missing."""
    missing = [f"AsyncServer.{n}" for n in ENGINE_NAMES if not hasattr(eio, n)]
    try:
        socket = AsyncSocket(eio, "check")
    except Exception as exc:
        missing.append(f"AsyncSocket(server, sid): {exc!r}")
    else:
        missing += [f"AsyncSocket.{n}" for n in SOCKET_NAMES if not hasattr(socket, n)]
    if not isinstance(getattr(eio, "sockets", None), dict):
        missing.append("AsyncServer.sockets (a dict)")
    if missing:
        raise RuntimeError(
            "python-engineio lacks what Engine.IO 3 clients need: " + ", ".join(missing)
        )


class Eio3ProtocolError(Exception):
    """An Engine.IO 3 client broke the protocol; str() says how (for the log and the 400)."""

    # The WebSocket close code that says so.
    close_code = WS_PROTOCOL_ERROR


class Eio3Unsupported(Eio3ProtocolError):
    """Well-formed Engine.IO 3 input the portal does not take (binary data)."""

    close_code = WS_UNSUPPORTED_DATA


class Eio3Session:
    """One Engine.IO 3 client: a python-engineio socket served over protocol 3's transports.

    ``transport`` is "polling" until an upgrade completes, or "websocket" from the
    start. ``pings`` counts the client's heartbeats. ``on_finished`` is called
    once, when the session is over (closed by either side, timed out, or broken).
    """

    def __init__(
        self,
        eio: Any,
        sid: str,
        transport: str,
        address: str | None,
        on_finished: Callable[[Eio3Session], None],
    ) -> None:
        self.eio = eio
        self.sid = sid
        self.transport = transport
        self.address = address
        self.probing = False  # a WebSocket is attached, its probe awaited
        self.upgrading = False  # probed: the client pauses polling to upgrade
        self.pings = 0
        self.socket = AsyncSocket(eio, sid)
        # Protocol 3 clients ping the server; python-engineio's own pinging (of Engine.IO
        # 4 clients) would close this socket for not answering pings it never sent.
        self.socket.last_ping = None
        self._on_finished = on_finished
        self._ended = asyncio.Event()
        # One reader of the socket's queue at a time: the waiting GET, or the WebSocket.
        self._reading = asyncio.Lock()
        self._polling_get = False
        self._polling_post = False
        self._liveness: asyncio.TimerHandle | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def finished(self) -> bool:
        return self._ended.is_set()

    def log_ids(self) -> dict[str, Any]:
        return {"sid": self.sid, "address": self.address, "transport": self.transport}

    def handshake(self, upgrades: list[str]) -> Packet:
        """The open packet: the session id, the upgrades offered and the heartbeat (in ms)."""
        data = {
            "sid": self.sid,
            "upgrades": upgrades,
            "pingInterval": int(self.eio.ping_interval * 1000),
            "pingTimeout": int(self.eio.ping_timeout * 1000),
        }
        return Packet(PacketType.OPEN, json.dumps(data, separators=(",", ":")))

    async def open(self, environ: dict[str, Any]) -> bool:
        """Register the socket with python-engineio and connect it; False if refused."""
        self.eio.sockets[self.sid] = self.socket
        # python-engineio's "connect" event, as its own handshake raises it (python-socketio
        # keeps `environ` for the connection's namespaces).
        handler = self.eio.handlers.get("connect")
        accepted: Any = None
        if handler is not None:
            try:
                accepted = handler(self.sid, environ)
                if inspect.isawaitable(accepted):
                    accepted = await accepted
            except Exception:
                logger.exception("Engine.IO connect handler failed", extra=self.log_ids())
                accepted = False
        if accepted is not None and accepted is not True:
            self._finish()
            return False
        self.socket.connected = True
        if self.transport == "websocket":
            self.socket.upgraded = True
        self._arm_liveness()
        # Socket.IO 4: the default namespace is joined without asking.
        await self.socket.receive(engine_packet.Packet(engine_packet.MESSAGE, IMPLICIT_CONNECT))
        return True

    # -- long-polling -------------------------------------------------------

    def queued(self) -> list[Packet]:
        """What is waiting to be sent, without waiting (the handshake's first response)."""
        packets, _ = self._translate(self._drain())
        return packets

    async def poll(self) -> str:
        """The payload for a long-polling GET: waits until there is something to send."""
        if self.upgrading:
            # The client pauses polling to upgrade; it gets no more packets this way.
            return encode_payload([Packet(PacketType.NOOP)])
        if self._polling_get:
            raise Eio3ProtocolError("a second GET while one is waiting")
        self._polling_get = True
        try:
            async with self._reading:
                packets, ended = await self._take()
        finally:
            self._polling_get = False
        if ended:
            if not any(p.type == PacketType.CLOSE for p in packets):
                packets.append(Packet(PacketType.CLOSE))
            self._finish()
        return encode_payload(packets)

    async def post(self, body: str) -> None:
        """The packets of a long-polling POST, handled in order."""
        if self._polling_post:
            raise Eio3ProtocolError("a second POST while one is being read")
        self._polling_post = True
        try:
            try:
                packets = decode_payload(body)
            except Eio3Error as exc:
                raise Eio3ProtocolError(f"malformed payload: {exc}") from None
            for packet in packets:
                if self.finished:
                    break
                await self._receive(packet)
        finally:
            self._polling_post = False

    # -- WebSocket ------------------------------------------------------------

    async def upgrade(self, ws: web.WebSocketResponse) -> None:
        """Upgrade a polling session to ``ws`` (prepared) and serve it until it closes.

        A probe that fails closes ``ws`` only; the session goes on polling.
        """
        self.probing = True
        try:
            upgraded = await self._probe(ws)
        except (ConnectionError, RuntimeError) as exc:
            logger.info("Engine.IO 3 upgrade abandoned: %r", exc, extra=self.log_ids())
            upgraded = False
        finally:
            self.probing = self.upgrading = False
        if not upgraded:
            await ws.close()
            return
        self.transport = "websocket"
        self.socket.upgraded = True
        logger.debug("Engine.IO 3 client upgraded to WebSocket", extra=self.log_ids())
        await self._serve_websocket(ws)

    async def serve_websocket(self, ws: web.WebSocketResponse) -> None:
        """Serve a session opened on ``ws`` (a WebSocket from the start)."""
        try:
            await ws.send_str(encode_packet(self.handshake([])))
        except (ConnectionError, RuntimeError):
            await self.close(self.eio.reason.TRANSPORT_CLOSE)
            return
        await self._serve_websocket(ws)

    async def _probe(self, ws: web.WebSocketResponse) -> bool:
        first = await _next_text(ws)
        if first != "2probe":
            logger.info(
                "Engine.IO 3 upgrade abandoned: no probe (%.20r)", first, extra=self.log_ids()
            )
            return False
        self._arm_liveness()
        # From here the client pauses polling: a GET gets a noop, not packets.
        self.upgrading = True
        await ws.send_str("3probe")
        # Ends the GET that is waiting, so that the client can pause polling.
        await self._send(engine_packet.Packet(engine_packet.NOOP))
        second = await _next_text(ws)
        if second != "5":
            logger.info(
                "Engine.IO 3 upgrade abandoned: no upgrade packet (%.20r)",
                second,
                extra=self.log_ids(),
            )
            return False
        self._arm_liveness()
        return True

    async def _serve_websocket(self, ws: web.WebSocketResponse) -> None:
        writer = asyncio.ensure_future(self._write_websocket(ws))
        reason = self.eio.reason.TRANSPORT_CLOSE
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    try:
                        packet = decode_packet(message.data)
                    except Eio3Error as exc:
                        raise Eio3ProtocolError(f"malformed packet: {exc}") from None
                    await self._receive(packet)
                    if self.finished:
                        break
                elif message.type == WSMsgType.BINARY:
                    raise Eio3Unsupported("binary frames are not supported")
                elif message.type == WSMsgType.ERROR:
                    # aiohttp has closed it already (a frame past max_http_buffer_size: 1009).
                    logger.warning(
                        "Engine.IO 3 WebSocket closed: %s", ws.exception(), extra=self.log_ids()
                    )
                    reason = self.eio.reason.TRANSPORT_ERROR
                    break
        except Eio3ProtocolError as exc:
            logger.warning("Engine.IO 3 client refused: %s", exc, extra=self.log_ids())
            reason = self.eio.reason.TRANSPORT_ERROR
            await ws.close(code=exc.close_code, message=str(exc)[:120].encode())
        finally:
            await self.close(reason)
            (failure,) = await asyncio.gather(writer, return_exceptions=True)
            if isinstance(failure, Exception):
                logger.error(
                    "Engine.IO 3 WebSocket writer failed: %r", failure, extra=self.log_ids()
                )
            await ws.close()

    async def _write_websocket(self, ws: web.WebSocketResponse) -> None:
        try:
            async with self._reading:
                while True:
                    packets, ended = await self._take()
                    for packet in packets:
                        if isinstance(packet.data, bytes):
                            await ws.send_bytes(bytes([PacketType.MESSAGE]) + packet.data)
                        else:
                            await ws.send_str(encode_packet(packet))
                    if ended or any(p.type == PacketType.CLOSE for p in packets):
                        break
        except (ConnectionError, RuntimeError) as exc:
            # The peer went away while we wrote; the reader sees the close too.
            logger.debug("Engine.IO 3 WebSocket write failed: %r", exc, extra=self.log_ids())
        await ws.close()

    # -- both transports ------------------------------------------------------

    async def _receive(self, packet: Packet) -> None:
        """One packet from the client."""
        if self.socket.closed or self.socket.closing:
            return  # (closed by the server: what the client still sends is moot)
        # Any packet shows the client is alive (as engine.io 3 counts it).
        self._arm_liveness()
        if packet.type == PacketType.PING:
            self.pings += 1
            await self._send(engine_packet.Packet(engine_packet.PONG))
        elif packet.type == PacketType.MESSAGE:
            if isinstance(packet.data, bytes):
                raise Eio3Unsupported("binary messages are not supported")
            try:
                text = check_client_packet(packet.data or "")
            except Sio4Unsupported as exc:
                raise Eio3Unsupported(str(exc)) from None
            except Sio4Error as exc:
                raise Eio3ProtocolError(str(exc)) from None
            await self.socket.receive(engine_packet.Packet(engine_packet.MESSAGE, text))
        elif packet.type == PacketType.CLOSE:
            await self.close(self.eio.reason.CLIENT_DISCONNECT)
        elif packet.type != PacketType.NOOP:
            raise Eio3ProtocolError(f"a client does not send {packet.type.name} packets here")

    async def _send(self, packet: Any) -> None:
        if not self.socket.closed and not self.socket.closing:
            await self.socket.send(packet)

    async def _take(self) -> tuple[list[Packet], bool]:
        """Wait for something to send: (packets, whether the session has ended).

        Never returns nothing while the session goes on (an empty polling response
        is a parse error to the client).
        """
        queue = self.socket.queue
        while True:
            items = self._drain()
            if not items and not self.finished:
                getter = asyncio.ensure_future(queue.get())
                ender = asyncio.ensure_future(self._ended.wait())
                try:
                    await asyncio.wait({getter, ender}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ender.cancel()
                    getter.cancel()  # (a done task stays done; a waiting get takes nothing)
                if getter.done() and not getter.cancelled():
                    queue.task_done()
                    items = [getter.result(), *self._drain()]
            packets, closing = self._translate(items)
            if packets or closing or self.finished:
                return packets, closing or self.finished

    def _drain(self) -> list[Any]:
        queue = self.socket.queue
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
            queue.task_done()
        return items

    def _translate(self, items: list[Any]) -> tuple[list[Packet], bool]:
        """python-engineio's packets as protocol 3 packets; True once a close is among them."""
        packets: list[Packet] = []
        for item in items:
            kind = PacketType(item.packet_type)
            if kind == PacketType.MESSAGE and isinstance(item.data, str):
                packets.append(Packet(kind, to_client_packet(item.data)))
            elif kind == PacketType.MESSAGE:
                packets.append(Packet(kind, bytes(item.data)))
            elif kind == PacketType.PING:
                continue  # (python-engineio does not ping this socket; a 3 client would not answer)
            else:
                packets.append(Packet(kind, item.data if isinstance(item.data, str) else None))
            if kind == PacketType.CLOSE:
                return packets, True
        return packets, False

    # -- the end --------------------------------------------------------------

    def _arm_liveness(self) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
        if not self.finished:
            self._liveness = asyncio.get_running_loop().call_later(
                self.eio.ping_interval + self.eio.ping_timeout, self._timed_out
            )

    def _timed_out(self) -> None:
        self._liveness = None
        logger.info(
            "Engine.IO 3 client silent for %.0f s (ping timeout), closing",
            self.eio.ping_interval + self.eio.ping_timeout,
            extra=self.log_ids(),
        )
        # Kept on the session: the loop holds tasks only weakly.
        self._closing = asyncio.ensure_future(self.close(self.eio.reason.PING_TIMEOUT))
        self._closing.add_done_callback(self._closed_after_timeout)

    def _closed_after_timeout(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "closing a silent Engine.IO 3 client failed: %r",
                task.exception(),
                extra=self.log_ids(),
            )

    async def close_gracefully(self) -> None:
        """Close the socket after what is queued: the client gets it, then a close packet."""
        if not self.socket.closed and not self.socket.closing:
            await self.socket.close(
                wait=False, abort=False, reason=self.eio.reason.SERVER_DISCONNECT
            )

    async def close(self, reason: str) -> None:
        """Close the socket (python-socketio hears the disconnect with ``reason``) and end."""
        if not self.socket.closed and not self.socket.closing:
            await self.socket.close(wait=False, abort=True, reason=reason)
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self._ended.set()
        if self._liveness is not None:
            self._liveness.cancel()
            self._liveness = None
        if self.eio.sockets.get(self.sid) is self.socket:
            del self.eio.sockets[self.sid]
        # Nothing more goes out: what is left is dropped (and python-engineio's
        # close(wait=True), should it be waiting on the queue, returns).
        self._drain()
        self._on_finished(self)


async def _next_text(ws: web.WebSocketResponse) -> str | None:
    """The next text frame within the upgrade timeout, or None (anything else, or none)."""
    with contextlib.suppress(TimeoutError):
        message = await asyncio.wait_for(ws.receive(), UPGRADE_TIMEOUT)
        if message.type == WSMsgType.TEXT:
            return str(message.data)
    return None
