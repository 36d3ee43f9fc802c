"""SignalingChannel: the Socket.IO connection to the portal, requests with acks, pushes in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import socketio
from socketio import exceptions as sio_exceptions

from .errors import ClientConnectionError, ClientError, RequestTimeout

logger = logging.getLogger("tessera_client")

#: The server pushes of the Client-Portal protocol, and Tessera's ``caption`` (live captions).
PUSH_EVENTS = ("participant", "stream", "text", "progress", "drop", "caption")


class SignalingChannel:
    """One Socket.IO connection (WebSocket transport) to the portal.

    Requests are emits answered by a two-argument ack ``(status, data)``; every
    server push goes to ``on_push(event, data)`` and a lost connection to
    ``on_disconnect(reason)``. Reconnecting and logging in again are the
    client's business: python-socketio's own reconnection is off, since it does
    not reconnect after a client-side engine.io abort (how tests simulate a
    network drop).
    """

    def __init__(
        self,
        on_push: Callable[[str, Any], None],
        on_disconnect: Callable[..., None],
        *,
        connect_timeout: float,
    ) -> None:
        self.sio: socketio.AsyncClient = socketio.AsyncClient(
            reconnection=False, handle_sigint=False
        )
        for event in PUSH_EVENTS:
            self.sio.on(event, _push_handler(event, on_push))
        self.sio.on("disconnect", on_disconnect)
        self.url: str | None = None
        self.headers: dict[str, str] = {}
        self.connect_timeout = connect_timeout
        self._pending: set[asyncio.Future[tuple[Any, ...]]] = set()

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    async def connect(self) -> None:
        await self.sio.connect(
            self.url,
            headers=self.headers,
            transports=["websocket"],
            wait_timeout=self.connect_timeout,
        )

    async def disconnect(self) -> None:
        """Close the connection, whatever state it is in; never raises."""
        try:
            if self.sio.connected:
                await self.sio.disconnect()
            elif self.sio.eio.state == "connected":
                await self.sio.eio.disconnect()
            # engine.io keeps its aiohttp session after a failed connection attempt.
            http = getattr(self.sio.eio, "http", None)
            if self.sio.eio.state == "disconnected" and http is not None and not http.closed:
                await http.close()
        except Exception:
            logger.debug("Disconnecting the socket failed", exc_info=True)

    async def emit(self, name: str, data: Any, timeout: float) -> Any:
        """Emit ``name`` and wait for its ack: the data on ``"ok"``, ClientError on ``"error"``."""
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

        def ack(*args: Any) -> None:
            if not future.done():
                future.set_result(args)

        self._pending.add(future)
        try:
            try:
                await self.sio.emit(name, data, callback=ack)
            except sio_exceptions.SocketIOError as exc:
                raise ClientConnectionError(
                    f"Cannot send '{name}': not connected to the portal"
                ) from exc
            try:
                args = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RequestTimeout(f"Request '{name}' timed out after {timeout:g} s") from None
        finally:
            self._pending.discard(future)
        status = args[0] if args else None
        payload = args[1] if len(args) > 1 else None
        if status in ("ok", "success"):
            return payload
        if status == "error":
            raise ClientError(payload)
        raise ClientError(f"Unexpected reply to '{name}': {list(args)!r}")

    def fail_pending(self, error: ClientError) -> None:
        """Every request still waiting for its ack fails with ``error``."""
        for future in list(self._pending):
            if not future.done():
                future.set_exception(error)
        self._pending.clear()


def _push_handler(event: str, on_push: Callable[[str, Any], None]) -> Callable[..., None]:
    def handler(*args: Any) -> None:
        on_push(event, args[0] if args else None)

    return handler
