"""PeerDirectory: which node holds each PeerJS peer id, so that an id is taken once.

The PeerJS gateway claims a peer's id in the directory before it says OPEN, and
releases it when the peer goes. A claim names the node (the portal process) holding
the peer's socket and a digest of the peer's token: the same token may take the id
over (a reconnect, maybe through another portal), another token gets ``ID-TAKEN``.
A claim lasts a *lease*: the holding node refreshes its peers' claims while they are
connected, so the ids of a portal that died free themselves when the lease runs out.

Two implementations of one interface (:class:`PeerDirectory`):

- :class:`MemoryPeerDirectory` (here): one process, ``tessera serve``. Several
  directories may share one :class:`MemoryPeerStore` (one per node), which the
  contract tests use to play a cluster in memory.
- ``RedisPeerDirectory`` (``tessera.portal.clusterpeers``): a cluster's portals
  sharing one Redis, claims made atomically in Redis.

Pure bookkeeping here; no sockets. Peer ids are per service (the PeerJS ``key``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

__all__ = [
    "DEFAULT_LEASE",
    "Claim",
    "ClaimOutcome",
    "DirectoryUnavailable",
    "HeldPeer",
    "MemoryPeerDirectory",
    "MemoryPeerStore",
    "PeerDirectory",
    "token_digest",
]

# Seconds a claim lasts without a refresh; the holder refreshes every third of it.
DEFAULT_LEASE = 10.0


class DirectoryUnavailable(Exception):
    """The directory cannot be reached (the cluster's Redis is down); the message says why."""


class ClaimOutcome(Enum):
    """What a claim of a peer id came to."""

    CLAIMED = "claimed"  # the id is now this node's
    TAKEN = "taken"  # another token holds it: ID-TAKEN
    FULL = "full"  # the service has its limit of peers open


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`PeerDirectory.claim`.

    ``previous`` is the node that held the id with the same token before (a takeover;
    ``None`` if the id was free) and ``previous_claim`` its claim, so that node can be
    told its socket is superseded.
    """

    outcome: ClaimOutcome
    claim_id: str = ""
    previous: str | None = None
    previous_claim: str = ""


@dataclass(frozen=True)
class HeldPeer:
    """A peer this node holds, as it refreshes it: its id, its claim and its token."""

    service_id: str
    peer_id: str
    claim_id: str
    token: str


def token_digest(token: str) -> str:
    """What the directory keeps of a token: enough to compare, nothing to reuse."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class PeerDirectory(Protocol):
    """Which node holds each (service, peer id); every call may raise DirectoryUnavailable."""

    @property
    def node_id(self) -> str: ...

    @property
    def lease(self) -> float: ...

    async def claim(
        self, service_id: str, peer_id: str, token: str, claim_id: str, *, limit: int
    ) -> Claim:
        """Take ``peer_id`` for this node, atomically cluster-wide.

        Free (or its lease ran out): claimed, unless the service already holds
        ``limit`` peers. Held with the same token (by any node): claimed, with
        ``previous`` naming the node that held it. Held with another token: TAKEN.
        """
        ...

    async def release(self, service_id: str, peer_id: str, claim_id: str) -> None:
        """Free the id if ``claim_id`` still holds it (a later claim is left alone)."""
        ...

    async def refresh(self, peers: Iterable[HeldPeer]) -> list[HeldPeer]:
        """Extend this node's claims; the ones lost to another claim are returned.

        A claim that vanished (its lease ran out while this node could not renew it,
        or the directory restarted empty) is made again if nobody else took the id.
        """
        ...

    async def holders(self, service_id: str, peer_ids: list[str]) -> list[str | None]:
        """The node holding each peer id, ``None`` for an id nobody holds."""
        ...

    async def peer_ids(self, service_id: str) -> list[str]:
        """Every peer id of the service held anywhere (the order is the implementation's)."""
        ...

    async def remember_token(
        self, token_id: str, service_id: str, peer_id: str, ttl: float
    ) -> None:
        """A single-use token (its id) opened ``peer_id``: for ``ttl`` seconds (the token's
        remaining life) the same peer may reopen with it, through any portal."""
        ...

    async def token_reopens(self, token_id: str, service_id: str, peer_id: str) -> bool:
        """Whether ``token_id`` opened this very peer (and has not expired)."""
        ...

    async def join_mesh(
        self, service_id: str, room: str, peer_id: str, *, limit: int
    ) -> list[str] | None:
        """Add ``peer_id`` to mesh room ``room``; the members before it, in joining order,
        or ``None`` if the room has ``limit`` members. Members whose claim ran out (their
        portal died) are dropped first."""
        ...

    async def leave_mesh(self, service_id: str, room: str, peer_id: str) -> list[str]:
        """Take ``peer_id`` out of mesh room ``room``; the members that remain."""
        ...


@dataclass
class _Entry:
    node: str
    token: str  # digest
    claim_id: str
    expires_at: float


class MemoryPeerStore:
    """The claims of every service, in this process; the directories of nodes share one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.entries: dict[str, dict[str, _Entry]] = {}  # service -> peer id -> claim
        self.meshes: dict[tuple[str, str], list[str]] = {}  # (service, room) -> members
        self.tokens: dict[str, tuple[str, str, float]] = {}  # token id -> service, peer, end

    def live(self, service_id: str, peer_id: str) -> _Entry | None:
        entry = self.entries.get(service_id, {}).get(peer_id)
        if entry is None or entry.expires_at <= self.clock():
            return None
        return entry

    def prune(self, service_id: str) -> dict[str, _Entry]:
        """The service's claims with expired ones dropped."""
        now = self.clock()
        claims = self.entries.get(service_id, {})
        for peer_id in [p for p, e in claims.items() if e.expires_at <= now]:
            del claims[peer_id]
        if not claims:
            self.entries.pop(service_id, None)
        return claims


class MemoryPeerDirectory:
    """A :class:`PeerDirectory` in this process's memory (one process: ``tessera serve``)."""

    def __init__(
        self,
        node_id: str = "local",
        store: MemoryPeerStore | None = None,
        *,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self._node_id = node_id
        self.store = store or MemoryPeerStore()
        self._lease = lease

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def lease(self) -> float:
        return self._lease

    async def claim(
        self, service_id: str, peer_id: str, token: str, claim_id: str, *, limit: int
    ) -> Claim:
        digest = token_digest(token)
        current = self.store.live(service_id, peer_id)
        previous, previous_claim = None, ""
        if current is not None:
            if current.token != digest:
                return Claim(ClaimOutcome.TAKEN)
            previous, previous_claim = current.node, current.claim_id
        elif len(self.store.prune(service_id)) >= limit:
            return Claim(ClaimOutcome.FULL)
        claims = self.store.entries.setdefault(service_id, {})
        claims.pop(peer_id, None)  # a new claim goes last in claiming order
        claims[peer_id] = _Entry(self._node_id, digest, claim_id, self.store.clock() + self._lease)
        return Claim(ClaimOutcome.CLAIMED, claim_id, previous, previous_claim)

    async def release(self, service_id: str, peer_id: str, claim_id: str) -> None:
        claims = self.store.entries.get(service_id, {})
        entry = claims.get(peer_id)
        if entry is not None and entry.claim_id == claim_id:
            del claims[peer_id]
            if not claims:
                self.store.entries.pop(service_id, None)

    async def refresh(self, peers: Iterable[HeldPeer]) -> list[HeldPeer]:
        lost = []
        expires_at = self.store.clock() + self._lease
        for held in peers:
            entry = self.store.live(held.service_id, held.peer_id)
            if entry is None:
                self.store.entries.setdefault(held.service_id, {})[held.peer_id] = _Entry(
                    self._node_id, token_digest(held.token), held.claim_id, expires_at
                )
            elif entry.claim_id == held.claim_id:
                entry.expires_at = expires_at
            else:
                lost.append(held)
        return lost

    async def holders(self, service_id: str, peer_ids: list[str]) -> list[str | None]:
        result: list[str | None] = []
        for peer_id in peer_ids:
            entry = self.store.live(service_id, peer_id)
            result.append(entry.node if entry is not None else None)
        return result

    async def peer_ids(self, service_id: str) -> list[str]:
        return list(self.store.prune(service_id))

    async def remember_token(
        self, token_id: str, service_id: str, peer_id: str, ttl: float
    ) -> None:
        now = self.store.clock()
        for known, (_, _, end) in list(self.store.tokens.items()):
            if end <= now:
                del self.store.tokens[known]
        if ttl > 0:
            self.store.tokens[token_id] = (service_id, peer_id, now + ttl)

    async def token_reopens(self, token_id: str, service_id: str, peer_id: str) -> bool:
        entry = self.store.tokens.get(token_id)
        return (
            entry is not None
            and entry[:2] == (service_id, peer_id)
            and entry[2] > self.store.clock()
        )

    async def join_mesh(
        self, service_id: str, room: str, peer_id: str, *, limit: int
    ) -> list[str] | None:
        members = [
            m
            for m in self.store.meshes.get((service_id, room), [])
            if m != peer_id and self.store.live(service_id, m) is not None
        ]
        if len(members) >= limit:
            return None
        self.store.meshes[service_id, room] = [*members, peer_id]
        return members

    async def leave_mesh(self, service_id: str, room: str, peer_id: str) -> list[str]:
        members = self.store.meshes.get((service_id, room), [])
        if peer_id in members:
            members.remove(peer_id)
        if not members:
            self.store.meshes.pop((service_id, room), None)
        return [m for m in members if self.store.live(service_id, m) is not None]
