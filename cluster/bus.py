"""Bus: messages between Tessera processes over Redis pub/sub.

Every process (a portal or an agent) is a *node* with a channel of its own,
``tessera:node:<id>``. A node sends another a **request** and awaits its reply
(with a timeout), or a one-way **message** (room events for a client).

- A request to a node nobody listens for fails at once: Redis's PUBLISH says how many
  subscribers got it, so a dead agent is known without waiting for a timeout.
- Everything a node sends leaves through one sender task, in order, pipelined: events for
  a client arrive in the order the room produced them (an SDP answer before "ready").
- Requests are handled concurrently; one-way messages in arrival order.
- When Redis goes away the node keeps trying to reconnect (with backoff) and resubscribes;
  meanwhile requests fail with :class:`BusUnavailable`, a clear error for the caller.

Bodies are JSON. The bus knows nothing of rooms: a request handler returns a JSON value
or raises :class:`RemoteError` (kind, message, data), which the caller receives as the
same exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "tessera:node:"
DEFAULT_TIMEOUT = 5.0
# Reconnection backoff after Redis is lost, in seconds (doubling up to the last).
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
# At most this many queued outgoing messages are pipelined in one round trip.
PIPELINE_BATCH = 256

RequestHandler = Callable[[str, Any, str], Awaitable[Any]]
MessageHandler = Callable[[str, Any, str], None]


def channel_of(node_id: str) -> str:
    return CHANNEL_PREFIX + node_id


class BusError(Exception):
    """A request that could not be answered; the message says why."""


class BusUnavailable(BusError):
    """This node cannot reach Redis right now."""


class NodeUnreachable(BusError):
    """No process listens for the node a request is for (it stopped or died)."""


class RequestTimeout(BusError):
    """The node did not answer in time."""


class RemoteError(BusError):
    """The node answered the request with an error (its handler refused it)."""

    def __init__(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.data = data or {}


@dataclass
class _Outgoing:
    channel: str
    payload: str
    sent: asyncio.Future[int]


class Bus:
    """One node's side of the bus: its channel, its requests out and in."""

    def __init__(self, url: str, node_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.node_id = node_id
        self.timeout = timeout
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=2.0)
        self._request_handler: RequestHandler | None = None
        self._message_handler: MessageHandler | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._outgoing: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._handling: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        self.connected = False
        self.closed = False

    # -- set-up -------------------------------------------------------------------

    def on_request(self, handler: RequestHandler) -> None:
        """``handler(method, body, sender)`` answers requests to this node."""
        self._request_handler = handler

    def on_message(self, handler: MessageHandler) -> None:
        """``handler(kind, body, sender)`` takes one-way messages, in arrival order."""
        self._message_handler = handler

    async def start(self, wait: float | None = 10.0) -> None:
        """Subscribe to this node's channel; wait up to ``wait`` s for Redis (None: not)."""
        self._tasks = [
            asyncio.create_task(self._receive_loop(), name=f"bus receive {self.node_id}"),
            asyncio.create_task(self._send_loop(), name=f"bus send {self.node_id}"),
        ]
        if wait is not None:
            try:
                await asyncio.wait_for(self._subscribed.wait(), wait)
            except TimeoutError:
                raise BusUnavailable(f"Redis at {self.url} did not answer in {wait:g} s") from None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self._tasks + list(self._handling):
            task.cancel()
        for task in self._tasks + list(self._handling):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BusUnavailable("the node is closing"))
        self._pending.clear()
        await self.redis.aclose()

    # -- sending --------------------------------------------------------------------

    async def request(
        self, node_id: str, method: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Ask ``node_id`` to run ``method``; its JSON answer, or a BusError saying why not."""
        if not self.connected:
            raise BusUnavailable("the cluster's Redis is unreachable")
        request_id = f"{self._prefix}-{next(self._ids)}"
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            message = {"t": "req", "id": request_id, "from": self.node_id, "m": method, "b": body}
            receivers = await self._publish(node_id, message)
            if receivers == 0:
                raise NodeUnreachable(f"node {node_id} is not running")
            limit = self.timeout if timeout is None else timeout
            try:
                return await asyncio.wait_for(reply, limit)
            except TimeoutError:
                raise RequestTimeout(
                    f"node {node_id} did not answer {method} in {limit:g} s"
                ) from None
        finally:
            self._pending.pop(request_id, None)

    async def send(self, node_id: str, kind: str, body: Any = None) -> bool:
        """A one-way message; False if no process listens for ``node_id``."""
        if not self.connected:
            return False
        message = {"t": "msg", "from": self.node_id, "k": kind, "b": body}
        return await self._publish(node_id, message) > 0

    def post(self, node_id: str, kind: str, body: Any = None) -> None:
        """A one-way message, queued without waiting (for callers that cannot await, such as
        the room service delivering events); sent in order after everything queued before."""
        if not self.connected:
            logger.warning(
                "bus down, message dropped",
                extra={"node": self.node_id, "to": node_id, "kind": kind},
            )
            return
        message = {"t": "msg", "from": self.node_id, "k": kind, "b": body}
        payload = json.dumps(message, separators=(",", ":"))
        sent: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # Nobody awaits it: retrieve a failure so asyncio does not log it as never retrieved.
        sent.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._outgoing.put_nowait(_Outgoing(channel_of(node_id), payload, sent))

    async def _publish(self, node_id: str, message: dict[str, Any]) -> int:
        payload = json.dumps(message, separators=(",", ":"))
        sent: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._outgoing.put_nowait(_Outgoing(channel_of(node_id), payload, sent))
        return await sent

    async def _send_loop(self) -> None:
        # One task sends everything, in order: a pipeline of PUBLISHes keeps their order.
        while True:
            batch = [await self._outgoing.get()]
            while not self._outgoing.empty() and len(batch) < PIPELINE_BATCH:
                batch.append(self._outgoing.get_nowait())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for item in batch:
                        pipe.publish(item.channel, item.payload)
                    counts = await pipe.execute()
            except (RedisError, OSError) as exc:
                for item in batch:
                    if not item.sent.done():
                        item.sent.set_exception(
                            BusUnavailable(f"the cluster's Redis failed: {exc}")
                        )
                continue
            for item, count in zip(batch, counts, strict=True):
                if not item.sent.done():
                    item.sent.set_result(int(count))

    # -- receiving ------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        attempt = 0
        while not self.closed:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel_of(self.node_id))
                if attempt:
                    logger.info("bus reconnected to Redis", extra={"node": self.node_id})
                attempt = 0
                self.connected = True
                self._subscribed.set()
                while True:
                    # A timeout, not a blocking read: the loop notices a dead connection.
                    raw = await pubsub.get_message(timeout=1.0)
                    if raw is not None:
                        self._dispatch(raw["data"])
            except (RedisError, OSError) as exc:
                if self.connected:
                    logger.warning(
                        "bus lost Redis, reconnecting: %s", exc, extra={"node": self.node_id}
                    )
                self.connected = False
                self._subscribed.clear()
                await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
                attempt += 1
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _dispatch(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
            kind = message["t"]
        except (ValueError, TypeError, KeyError):
            logger.warning("bus dropped a malformed message", extra={"node": self.node_id})
            return
        if kind == "rep":
            future = self._pending.get(str(message.get("id")))
            if future is not None and not future.done():
                if "e" in message:
                    error = message["e"] if isinstance(message["e"], dict) else {}
                    future.set_exception(
                        RemoteError(
                            str(error.get("kind", "error")),
                            str(error.get("message", "error")),
                            error.get("data") if isinstance(error.get("data"), dict) else None,
                        )
                    )
                else:
                    future.set_result(message.get("r"))
            return
        if kind == "req":
            task = asyncio.create_task(self._answer(message))
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)
            return
        if kind == "msg" and self._message_handler is not None:
            try:
                self._message_handler(
                    str(message.get("k")), message.get("b"), str(message.get("from"))
                )
            except Exception:
                logger.exception("bus message handler failed", extra={"node": self.node_id})

    async def _answer(self, message: dict[str, Any]) -> None:
        sender = str(message.get("from"))
        reply: dict[str, Any] = {"t": "rep", "id": message.get("id")}
        handler = self._request_handler
        try:
            if handler is None:
                raise RemoteError("unavailable", f"node {self.node_id} takes no requests")
            reply["r"] = await handler(str(message.get("m")), message.get("b"), sender)
        except RemoteError as exc:
            reply["e"] = {"kind": exc.kind, "message": exc.message, "data": exc.data}
        except Exception:
            logger.exception(
                "bus request failed", extra={"node": self.node_id, "method": message.get("m")}
            )
            reply["e"] = {"kind": "internal", "message": "Internal error"}
        try:
            await self._publish(sender, reply)
        except BusError:
            pass  # Redis is gone: the caller times out
        except (TypeError, ValueError):
            logger.exception("bus reply is not JSON", extra={"node": self.node_id})
            failed = {
                "t": "rep",
                "id": message.get("id"),
                "e": {"kind": "internal", "message": "Internal error"},
            }
            with contextlib.suppress(BusError):
                await self._publish(sender, failed)
