"""The PeerJS peer model across portals: a peer directory in Redis, a relay on the bus.

A portal of a cluster builds its PeerJS gateway with these two instead of the
in-memory directory of one process::

    directory, relay = cluster_peer_model(bus)          # bus: this portal's started Bus
    gateway = PeerGateway(conference, config, directory=directory, relay=relay)
    bus.on_message(relay.message_handler(fallback=other_handler))

:class:`RedisPeerDirectory` keeps, per service, a hash of peer id -> claim (the node
holding the peer's socket, a digest of its token, a claim id) and a sorted set of
peer id -> lease end (Redis's clock, ms). Every change is one Lua script, so a claim is
atomic cluster-wide: an id is taken exactly once (PeerJS ``ID-TAKEN`` across portals),
and the per-service peer limit counts every portal's peers. A claim whose lease ran
out is as good as absent, so the peers of a portal that died are free again after
one lease (the gateway refreshes its peers' claims every third of it).

Mesh rooms (PeerJS ``ROOM-JOIN``) of a cluster are a list of members per room in
joining order; members whose claim ran out are dropped whenever the room is joined or
left, so a dead portal's peers do not fill it.

:class:`BusPeerRelay` carries PeerJS messages to the node holding their destination
as bus messages (``peer.relay``), hands back those whose peer had gone
(``peer.bounced``), and tells a node that its peer reconnected elsewhere
(``peer.superseded``). Its :meth:`BusPeerRelay.message_handler` takes those kinds
and passes any other to ``fallback``, so the portal can chain its other handlers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tessera.cluster.bus import Bus, BusError, MessageHandler
from tessera.portal.peerdirectory import (
    DEFAULT_LEASE,
    Claim,
    ClaimOutcome,
    DirectoryUnavailable,
    HeldPeer,
    token_digest,
)
from tessera.portal.peergateway import PeerRelayReceiver
from tessera.portal.peerserver import MAX_QUEUED_PER_DESTINATION

logger = logging.getLogger(__name__)

CLAIMS_PREFIX = "tessera:peers:"  # + service id: hash of peer id -> claim (JSON)
LEASES_PREFIX = "tessera:peer-leases:"  # + service id: zset of peer id -> lease end (ms)
TOKEN_PREFIX = "tessera:peer-token:"  # + token id: [service, peer] it opened, until it expires
MESH_PREFIX = "tessera:mesh:"  # + len(service id):service id:room: list of members

RELAY = "peer.relay"
BOUNCED = "peer.bounced"
SUPERSEDED = "peer.superseded"

# Redis's own clock, in ms, so that every portal agrees on when a lease ends.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: claims, leases. ARGV: peer, node, token digest, claim id, lease ms, limit.
# -> {outcome, previous node, previous claim}
_CLAIM = (
    _NOW
    + """
local previous, previous_claim = '', ''
local current = redis.call('HGET', KEYS[1], ARGV[1])
local lease_end = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
if current and lease_end > now then
  local record = cjson.decode(current)
  if record.token ~= ARGV[3] then return {'taken', record.node, ''} end
  previous, previous_claim = record.node, record.claim
else
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
    redis.call('HDEL', KEYS[1], id)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return {'full', '', ''} end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({node=ARGV[2], token=ARGV[3], claim=ARGV[4]}))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
return {'claimed', previous, previous_claim}
"""
)

# KEYS: claims, leases. ARGV: peer, claim id.
_RELEASE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and cjson.decode(current).claim == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 0
"""

# KEYS: claims, leases. ARGV: node, lease ms, then (peer, claim id, token digest) triples.
# -> the peers whose claim another one replaced
_REFRESH = (
    _NOW
    + """
local lost = {}
for i = 3, #ARGV, 3 do
  local peer, claim, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[1], peer)
  local lease_end = tonumber(redis.call('ZSCORE', KEYS[2], peer) or '0')
  if current and lease_end > now and cjson.decode(current).claim ~= claim then
    table.insert(lost, peer)
  else
    -- Ours, or vanished (a lease that ran out, a Redis that restarted empty): hold it again.
    redis.call('HSET', KEYS[1], peer, cjson.encode({node=ARGV[1], token=token, claim=claim}))
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), peer)
  end
end
return lost
"""
)

# KEYS: claims, leases. ARGV: peers. -> the node holding each, '' for none
_HOLDERS = (
    _NOW
    + """
local nodes = {}
for i, peer in ipairs(ARGV) do
  local current = redis.call('HGET', KEYS[1], peer)
  local lease_end = tonumber(redis.call('ZSCORE', KEYS[2], peer) or '0')
  if current and lease_end > now then nodes[i] = cjson.decode(current).node else nodes[i] = '' end
end
return nodes
"""
)

# KEYS: leases. -> peers whose lease has not run out
_PEER_IDS = (
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""
)


# KEYS: claims, leases, mesh room. ARGV: peer, limit. -> {1 joined or 0 full, members before}
_JOIN_MESH = (
    _NOW
    + """
local kept = {}
for _, member in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  local lease_end = tonumber(redis.call('ZSCORE', KEYS[2], member) or '0')
  if member ~= ARGV[1] and lease_end > now then table.insert(kept, member) end
end
if #kept >= tonumber(ARGV[2]) then return {0, kept} end
redis.call('DEL', KEYS[3])
for _, member in ipairs(kept) do redis.call('RPUSH', KEYS[3], member) end
redis.call('RPUSH', KEYS[3], ARGV[1])
return {1, kept}
"""
)

# KEYS: claims, leases, mesh room. ARGV: peer. -> the members that remain (with a live claim)
_LEAVE_MESH = (
    _NOW
    + """
redis.call('LREM', KEYS[3], 0, ARGV[1])
local kept = {}
for _, member in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  local lease_end = tonumber(redis.call('ZSCORE', KEYS[2], member) or '0')
  if lease_end > now then table.insert(kept, member) end
end
return kept
"""
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPeerDirectory:
    """A :class:`~tessera.portal.peerdirectory.PeerDirectory` shared by every portal of a
    cluster through Redis (see the module docstring for the keys)."""

    def __init__(self, redis: aioredis.Redis, node_id: str, *, lease: float = DEFAULT_LEASE):
        self.redis = redis
        self._node_id = node_id
        self._lease = lease
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._refresh = redis.register_script(_REFRESH)
        self._holders = redis.register_script(_HOLDERS)
        self._peer_ids = redis.register_script(_PEER_IDS)
        self._join_mesh = redis.register_script(_JOIN_MESH)
        self._leave_mesh = redis.register_script(_LEAVE_MESH)

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def lease(self) -> float:
        return self._lease

    @staticmethod
    def _keys(service_id: str) -> list[str]:
        return [CLAIMS_PREFIX + service_id, LEASES_PREFIX + service_id]

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self._lease * 1000))

    async def claim(
        self, service_id: str, peer_id: str, token: str, claim_id: str, *, limit: int
    ) -> Claim:
        args: list[str | int] = [
            peer_id,
            self._node_id,
            token_digest(token),
            claim_id,
            self._lease_ms,
            limit,
        ]
        try:
            outcome, previous, previous_claim = await self._claim(
                keys=self._keys(service_id), args=args
            )
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None
        kind = ClaimOutcome(_text(outcome))
        if kind is not ClaimOutcome.CLAIMED:
            return Claim(kind)
        return Claim(kind, claim_id, _text(previous) or None, _text(previous_claim))

    async def release(self, service_id: str, peer_id: str, claim_id: str) -> None:
        try:
            await self._release(keys=self._keys(service_id), args=[peer_id, claim_id])
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None

    async def refresh(self, peers: Iterable[HeldPeer]) -> list[HeldPeer]:
        by_service: dict[str, list[HeldPeer]] = {}
        for held in peers:
            by_service.setdefault(held.service_id, []).append(held)
        lost: list[HeldPeer] = []
        try:
            for service_id, held_peers in by_service.items():
                args: list[str | int] = [self._node_id, self._lease_ms]
                for held in held_peers:
                    args += [held.peer_id, held.claim_id, token_digest(held.token)]
                gone = {
                    _text(p) for p in await self._refresh(keys=self._keys(service_id), args=args)
                }
                lost += [held for held in held_peers if held.peer_id in gone]
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None
        return lost

    async def holders(self, service_id: str, peer_ids: list[str]) -> list[str | None]:
        if not peer_ids:
            return []
        try:
            nodes = await self._holders(keys=self._keys(service_id), args=peer_ids)
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None
        return [_text(node) or None for node in nodes]

    async def peer_ids(self, service_id: str) -> list[str]:
        try:
            ids = await self._peer_ids(keys=[LEASES_PREFIX + service_id])
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None
        return [_text(peer_id) for peer_id in ids]

    async def remember_token(
        self, token_id: str, service_id: str, peer_id: str, ttl: float
    ) -> None:
        if ttl <= 0:
            return
        value = json.dumps([service_id, peer_id])
        try:
            await self.redis.set(TOKEN_PREFIX + token_id, value, px=max(1, int(ttl * 1000)))
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None

    async def token_reopens(self, token_id: str, service_id: str, peer_id: str) -> bool:
        try:
            value = await self.redis.get(TOKEN_PREFIX + token_id)
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None
        if value is None:
            return False
        try:
            return bool(json.loads(value) == [service_id, peer_id])
        except ValueError:
            logger.warning("unreadable peer token record, ignored", extra={"token": token_id})
            return False

    @classmethod
    def _mesh_keys(cls, service_id: str, room: str) -> list[str]:
        # The length keeps "a" + "b:c" apart from "a:b" + "c".
        return [*cls._keys(service_id), f"{MESH_PREFIX}{len(service_id)}:{service_id}:{room}"]

    async def join_mesh(
        self, service_id: str, room: str, peer_id: str, *, limit: int
    ) -> list[str] | None:
        try:
            joined, members = await self._join_mesh(
                keys=self._mesh_keys(service_id, room), args=[peer_id, limit]
            )
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None
        return [_text(m) for m in members] if int(joined) else None

    async def leave_mesh(self, service_id: str, room: str, peer_id: str) -> list[str]:
        try:
            members = await self._leave_mesh(keys=self._mesh_keys(service_id, room), args=[peer_id])
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(f"the cluster's Redis failed: {exc}") from None
        return [_text(m) for m in members]


class BusPeerRelay:
    """The gateway's :class:`~tessera.portal.peergateway.PeerRelay` over a node's Bus."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.receiver: PeerRelayReceiver | None = None

    def attach(self, receiver: PeerRelayReceiver) -> None:
        self.receiver = receiver

    async def forward(self, node: str, service_id: str, messages: list[dict[str, Any]]) -> bool:
        try:
            return await self.bus.send(node, RELAY, {"service": service_id, "messages": messages})
        except BusError as exc:
            # Redis failed under the send: as if the node were gone (the messages wait here).
            logger.warning("peer messages not relayed to %s: %s", node, exc)
            return False

    def supersede(self, node: str, service_id: str, peer_id: str, claim_id: str) -> None:
        self.bus.post(node, SUPERSEDED, {"service": service_id, "peer": peer_id, "claim": claim_id})

    def bounce(self, node: str, service_id: str, messages: list[dict[str, Any]]) -> None:
        self.bus.post(node, BOUNCED, {"service": service_id, "messages": messages})

    def message_handler(self, fallback: MessageHandler | None = None) -> MessageHandler:
        """The bus handler of ``peer.*`` messages; any other kind goes to ``fallback``."""

        def handle(kind: str, body: Any, sender: str) -> None:
            if kind not in (RELAY, BOUNCED, SUPERSEDED):
                if fallback is not None:
                    fallback(kind, body, sender)
                else:
                    logger.warning(
                        "unexpected bus message %r dropped", kind, extra={"from": sender}
                    )
                return
            receiver = self.receiver
            if receiver is None:
                logger.warning("peer message before the gateway attached, dropped")
                return
            try:
                if kind == SUPERSEDED:
                    service_id, peer_id, claim_id = _superseded_body(body)
                    receiver.superseded(service_id, peer_id, claim_id)
                    return
                service_id, messages = _messages_body(body)
            except ValueError as exc:
                logger.warning("malformed %s from %s dropped: %s", kind, sender, exc)
                return
            if kind == RELAY:
                receiver.relayed(service_id, messages, sender)
            else:
                receiver.bounced(service_id, messages)

        return handle


def _superseded_body(body: Any) -> tuple[str, str, str]:
    if not isinstance(body, dict):
        raise ValueError("body is not an object")
    values = body.get("service"), body.get("peer"), body.get("claim")
    if not all(isinstance(v, str) and v for v in values):
        raise ValueError("service, peer and claim must be strings")
    return str(values[0]), str(values[1]), str(values[2])


def _messages_body(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """A relayed batch: a service id and PeerJS messages each with a type, src and dst."""
    if not isinstance(body, dict):
        raise ValueError("body is not an object")
    service_id, messages = body.get("service"), body.get("messages")
    if not isinstance(service_id, str) or not service_id:
        raise ValueError("service must be a string")
    if not isinstance(messages, list) or not 0 < len(messages) <= MAX_QUEUED_PER_DESTINATION:
        raise ValueError(f"messages must be a list of 1 to {MAX_QUEUED_PER_DESTINATION}")
    for message in messages:
        if not isinstance(message, dict) or not all(
            isinstance(message.get(field), str) for field in ("type", "src", "dst")
        ):
            raise ValueError("a message without a type, src and dst")
    return service_id, messages


def cluster_peer_model(
    bus: Bus, *, lease: float = DEFAULT_LEASE
) -> tuple[RedisPeerDirectory, BusPeerRelay]:
    """The directory and relay of a cluster portal's PeerJS gateway, on its node's bus."""
    return RedisPeerDirectory(bus.redis, bus.node_id, lease=lease), BusPeerRelay(bus)


__all__ = [
    "BOUNCED",
    "RELAY",
    "SUPERSEDED",
    "BusPeerRelay",
    "RedisPeerDirectory",
    "cluster_peer_model",
]
