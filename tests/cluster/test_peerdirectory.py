"""The peer directory's contract, on both implementations: in memory and on a real Redis.

Each test plays two portals ("portal-1", "portal-2") sharing one directory: two
MemoryPeerDirectory on one MemoryPeerStore, or two RedisPeerDirectory on one redis-server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tessera.portal.clusterpeers import RedisPeerDirectory
from tessera.portal.peerdirectory import (
    ClaimOutcome,
    DirectoryUnavailable,
    HeldPeer,
    MemoryPeerDirectory,
    MemoryPeerStore,
    PeerDirectory,
)
from tests.eventually import eventually
from tests.redisserver import RedisServer

SERVICE = "svc"
LIMIT = 100


@dataclass
class Directories:
    """A way to make directories of one shared store, one per node."""

    make: Callable[..., PeerDirectory]


@pytest.fixture(params=["memory", "redis"])
async def directories(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Directories]:
    if request.param == "memory":
        store = MemoryPeerStore()
        yield Directories(lambda node, lease=10.0: MemoryPeerDirectory(node, store, lease=lease))
        return
    server = RedisServer(tmp_path / "redis")
    await server.start()
    clients: list[aioredis.Redis] = []

    def make(node: str, lease: float = 10.0) -> PeerDirectory:
        client = aioredis.Redis.from_url(server.url)
        clients.append(client)
        return RedisPeerDirectory(client, node, lease=lease)

    try:
        yield Directories(make)
    finally:
        for client in clients:
            await client.aclose()
        await server.stop()


async def test_an_id_is_claimed_once_and_the_same_token_takes_it_over(
    directories: Directories,
) -> None:
    one, two = directories.make("portal-1"), directories.make("portal-2")
    first = await one.claim(SERVICE, "alice", "token-a", "c1", limit=LIMIT)
    assert (first.outcome, first.claim_id, first.previous) == (ClaimOutcome.CLAIMED, "c1", None)
    assert await two.holders(SERVICE, ["alice", "bob"]) == ["portal-1", None]
    # Another token, on any portal: ID-TAKEN.
    taken = await two.claim(SERVICE, "alice", "token-b", "c2", limit=LIMIT)
    assert taken.outcome is ClaimOutcome.TAKEN
    assert (await one.claim(SERVICE, "alice", "token-b", "c3", limit=LIMIT)).outcome is (
        ClaimOutcome.TAKEN
    )
    # The same token (the peer reconnecting through the other portal): taken over.
    moved = await two.claim(SERVICE, "alice", "token-a", "c4", limit=LIMIT)
    assert (moved.outcome, moved.previous, moved.previous_claim) == (
        ClaimOutcome.CLAIMED,
        "portal-1",
        "c1",
    )
    assert await one.holders(SERVICE, ["alice"]) == ["portal-2"]
    # Ids are per service.
    other = await one.claim("other-service", "alice", "token-b", "c5", limit=LIMIT)
    assert other.outcome is ClaimOutcome.CLAIMED


async def test_release_frees_only_the_current_claim(directories: Directories) -> None:
    one, two = directories.make("portal-1"), directories.make("portal-2")
    await one.claim(SERVICE, "alice", "token-a", "c1", limit=LIMIT)
    await two.claim(SERVICE, "alice", "token-a", "c2", limit=LIMIT)
    # portal-1 hears its old socket close after portal-2 took the peer over.
    await one.release(SERVICE, "alice", "c1")
    assert await one.holders(SERVICE, ["alice"]) == ["portal-2"]
    await two.release(SERVICE, "alice", "c2")
    assert await one.holders(SERVICE, ["alice"]) == [None]
    assert await one.peer_ids(SERVICE) == []
    assert (await one.claim(SERVICE, "alice", "token-z", "c3", limit=LIMIT)).outcome is (
        ClaimOutcome.CLAIMED
    )


async def test_listing_and_the_limit_count_every_portal(directories: Directories) -> None:
    one, two = directories.make("portal-1"), directories.make("portal-2")
    await one.claim(SERVICE, "alice", "a", "c1", limit=3)
    await two.claim(SERVICE, "bob", "b", "c2", limit=3)
    await two.claim(SERVICE, "carol", "c", "c3", limit=3)
    assert sorted(await one.peer_ids(SERVICE)) == ["alice", "bob", "carol"]
    assert await one.peer_ids("other-service") == []
    full = await one.claim(SERVICE, "dave", "d", "c4", limit=3)
    assert full.outcome is ClaimOutcome.FULL
    # A takeover is no new peer: it is let in at the limit.
    assert (await one.claim(SERVICE, "bob", "b", "c5", limit=3)).outcome is ClaimOutcome.CLAIMED
    await one.release(SERVICE, "alice", "c1")
    assert (await one.claim(SERVICE, "dave", "d", "c6", limit=3)).outcome is ClaimOutcome.CLAIMED


async def test_a_claim_nobody_refreshes_runs_out_and_refresh_holds_it_again(
    directories: Directories,
) -> None:
    # portal-1 "dies" holding alice: nobody refreshes her claim.
    dead = directories.make("portal-1", lease=0.3)
    other = directories.make("portal-2", lease=0.3)
    await dead.claim(SERVICE, "alice", "token-a", "c1", limit=LIMIT)

    async def freed() -> bool:
        return await other.holders(SERVICE, ["alice"]) == [None]

    await eventually(freed, what="alice's claim running out")
    assert await other.peer_ids(SERVICE) == []
    # A claim that ran out is refreshed back into place (the holder was only slow)...
    held = HeldPeer(SERVICE, "alice", "c1", "token-a")
    assert await dead.refresh([held]) == []
    assert await other.holders(SERVICE, ["alice"]) == ["portal-1"]
    # ... unless another peer took the id meanwhile: then the claim is lost.
    await eventually(freed, what="alice's claim running out again")
    assert (await other.claim(SERVICE, "alice", "token-b", "c2", limit=LIMIT)).outcome is (
        ClaimOutcome.CLAIMED
    )
    assert await dead.refresh([held]) == [held]
    assert await dead.holders(SERVICE, ["alice"]) == ["portal-2"]


async def test_refresh_keeps_the_holders_claims_and_reports_the_lost_ones(
    directories: Directories,
) -> None:
    one, two = directories.make("portal-1"), directories.make("portal-2")
    await one.claim(SERVICE, "alice", "a", "c1", limit=LIMIT)
    await one.claim("other", "bob", "b", "c2", limit=LIMIT)
    await two.claim(SERVICE, "alice", "a", "c3", limit=LIMIT)  # alice moved to portal-2
    kept = HeldPeer("other", "bob", "c2", "b")
    moved = HeldPeer(SERVICE, "alice", "c1", "a")
    assert await one.refresh([moved, kept]) == [moved]
    assert await one.holders("other", ["bob"]) == ["portal-1"]
    assert await one.refresh([]) == []


async def test_mesh_rooms_keep_joining_order_a_limit_and_drop_dead_members(
    directories: Directories,
) -> None:
    one, two = directories.make("portal-1"), directories.make("portal-2")
    for peer, directory in (("alice", one), ("bob", two), ("carol", one)):
        await directory.claim(SERVICE, peer, peer, "c-" + peer, limit=LIMIT)
    assert await one.join_mesh(SERVICE, "huddle", "alice", limit=3) == []
    assert await two.join_mesh(SERVICE, "huddle", "bob", limit=3) == ["alice"]
    assert await one.join_mesh(SERVICE, "huddle", "carol", limit=2) is None  # full
    assert await one.join_mesh(SERVICE, "other", "carol", limit=2) == []  # rooms apart
    assert await one.join_mesh("other-service", "huddle", "carol", limit=2) == []
    assert await one.leave_mesh(SERVICE, "huddle", "alice") == ["bob"]
    assert await one.join_mesh(SERVICE, "huddle", "alice", limit=3) == ["bob"]
    # bob moves to a portal that then dies: his claim runs out, and the room drops him.
    dying = directories.make("portal-3", lease=0.3)
    await dying.claim(SERVICE, "bob", "bob", "c-bob-3", limit=LIMIT)

    async def bob_gone() -> bool:
        return await one.holders(SERVICE, ["bob"]) == [None]

    await eventually(bob_gone, what="bob's claim running out")
    assert await one.join_mesh(SERVICE, "huddle", "carol", limit=2) == ["alice"]
    assert await one.leave_mesh(SERVICE, "huddle", "carol") == ["alice"]
    assert await one.leave_mesh(SERVICE, "huddle", "alice") == []
    assert await one.join_mesh(SERVICE, "huddle", "alice", limit=1) == []  # empty again


async def test_a_single_use_token_reopens_its_own_peer_on_any_portal_until_it_expires(
    directories: Directories,
) -> None:
    one, two = directories.make("portal-1"), directories.make("portal-2")
    await one.remember_token("jti", SERVICE, "alice", ttl=0.3)
    await one.remember_token("spent", SERVICE, "bob", ttl=0)  # already expired: not kept
    assert await two.token_reopens("jti", SERVICE, "alice")
    assert not await two.token_reopens("jti", SERVICE, "bob")
    assert not await two.token_reopens("jti", "other-service", "alice")
    assert not await two.token_reopens("spent", SERVICE, "bob")
    assert not await two.token_reopens("unknown", SERVICE, "alice")

    async def expired() -> bool:
        return not await two.token_reopens("jti", SERVICE, "alice")

    await eventually(expired, what="the token's memory running out with the token")


async def test_redis_restarted_empty_gets_the_claims_back_and_a_redis_down_is_a_clear_error(
    redis_server: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    directory = RedisPeerDirectory(client, "portal-1")
    try:
        await directory.claim(SERVICE, "alice", "a", "c1", limit=LIMIT)
        await redis_server.stop()
        with pytest.raises(DirectoryUnavailable, match="Redis failed"):
            await directory.claim(SERVICE, "bob", "b", "c2", limit=LIMIT)
        for call in (
            directory.holders(SERVICE, ["alice"]),
            directory.peer_ids(SERVICE),
            directory.release(SERVICE, "alice", "c1"),
            directory.refresh([HeldPeer(SERVICE, "alice", "c1", "a")]),
        ):
            with pytest.raises(DirectoryUnavailable):
                await call
        await redis_server.start()  # empty: the scripts and the claims are gone
        assert await directory.holders(SERVICE, ["alice"]) == [None]
        assert await directory.refresh([HeldPeer(SERVICE, "alice", "c1", "a")]) == []
        assert await directory.holders(SERVICE, ["alice"]) == ["portal-1"]
        assert (await directory.claim(SERVICE, "alice", "z", "c3", limit=LIMIT)).outcome is (
            ClaimOutcome.TAKEN
        )
    finally:
        await client.aclose()
