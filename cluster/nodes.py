"""Nodes: each process of a cluster announces itself in Redis under a short lease.

A node writes its :class:`NodeInfo` (role, address, load) every ``interval`` seconds to
``tessera:node-info:<id>`` with an expiry of ``lease`` seconds, and keeps its id in the set
``tessera:nodes``. A node that stops renewing (killed, hung, cut off from Redis) vanishes
from the cluster when its lease runs out; everyone else sees that by the key being gone.

After each renewal ``after_renew`` runs (an agent claims its rooms again there).
A node that cannot renew its own lease for longer than the lease is told
(``on_lease_lost``): others may already have taken its rooms, so an agent must stop
hosting them (fencing). When Redis is back, the node registers again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .placement import NodeInfo, NodeLoad

logger = logging.getLogger(__name__)

NODES_KEY = "tessera:nodes"
INFO_PREFIX = "tessera:node-info:"
DEFAULT_LEASE = 5.0
DEFAULT_INTERVAL = 1.0


def info_key(node_id: str) -> str:
    return INFO_PREFIX + node_id


async def live_nodes(redis: aioredis.Redis) -> list[NodeInfo]:
    """Every node whose lease is current, in id order (expired ones are forgotten)."""
    ids = sorted(
        m.decode() if isinstance(m, bytes) else str(m) for m in await redis.smembers(NODES_KEY)
    )
    if not ids:
        return []
    values = await redis.mget([info_key(i) for i in ids])
    nodes, gone = [], []
    for node_id, value in zip(ids, values, strict=True):
        if value is None:
            gone.append(node_id)
            continue
        try:
            nodes.append(NodeInfo.from_json(json.loads(value)))
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable node record, skipped", extra={"node": node_id})
    if gone:
        await redis.srem(NODES_KEY, *gone)
    return nodes


class NodeLease:
    """This process's entry in the cluster, renewed while it lives."""

    def __init__(
        self,
        redis: aioredis.Redis,
        info: NodeInfo,
        load: Callable[[], NodeLoad],
        *,
        lease: float = DEFAULT_LEASE,
        interval: float = DEFAULT_INTERVAL,
        on_lease_lost: Callable[[], None] | None = None,
        after_renew: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.redis = redis
        self.info = info
        self.load = load
        self.lease = lease
        self.interval = interval
        self.on_lease_lost = on_lease_lost
        self.after_renew = after_renew
        self.renewed_at: float | None = None  # monotonic time of the last renewal
        # Monotonic time since when renewals have not failed (None: the last one failed).
        self.steady_since: float | None = None
        self.lost = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopped = False

    async def start(self) -> None:
        """Register now (raises if Redis cannot be reached), then keep renewing."""
        await self._renew()
        self._task = asyncio.create_task(self._loop(), name=f"lease {self.info.id}")

    def settled(self) -> bool:
        """True once renewals have gone through for a whole lease: after Redis came back
        (empty, maybe), every live node has written its lease and claims again by then."""
        return self.steady_since is not None and time.monotonic() - self.steady_since >= self.lease

    async def renew(self) -> None:
        """Renew now and return once Redis has it (raises if Redis cannot be reached)."""
        await self._renew()

    def renew_soon(self) -> None:
        """Renew at once (a drain flag changed, Redis came back)."""
        self._wake.set()

    def set_draining(self, draining: bool) -> None:
        self.info = replace(self.info, draining=draining)
        self.renew_soon()

    async def stop(self) -> None:
        """Leave the cluster at once (a clean shutdown): others need not wait for the lease."""
        # A flag as well as the cancel: Python 3.11's wait_for swallows a cancellation
        # that arrives as the wake-up event fires (a drain just before stopping does that).
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(info_key(self.info.id))
                pipe.srem(NODES_KEY, self.info.id)
                await pipe.execute()

    async def _renew(self) -> None:
        info = replace(self.info, load=self.load())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(info_key(info.id), json.dumps(info.to_json()), px=int(self.lease * 1000))
            pipe.sadd(NODES_KEY, info.id)
            await pipe.execute()
        self.renewed_at = time.monotonic()
        if self.steady_since is None:
            self.steady_since = self.renewed_at
        if self.lost:
            logger.info("node lease renewed after it was lost", extra={"node": info.id})
            self.lost = False
        if self.after_renew is not None:
            # An agent re-asserts its rooms here (a Redis that restarted empty forgot them).
            await self.after_renew()

    async def _loop(self) -> None:
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if self._stopped:
                return
            try:
                await self._renew()
            except (RedisError, OSError) as exc:
                if self.steady_since is not None:
                    logger.warning(
                        "node lease not renewed (Redis unreachable): %s",
                        exc,
                        extra={"node": self.info.id},
                    )
                self.steady_since = None
                since = time.monotonic() - (self.renewed_at or 0.0)
                if not self.lost and since >= self.lease:
                    self.lost = True
                    logger.error(
                        "node lease lost (Redis unreachable for %.1f s): %s",
                        since,
                        exc,
                        extra={"node": self.info.id},
                    )
                    if self.on_lease_lost is not None:
                        self.on_lease_lost()
