"""The cluster's Redis restarted (killed, then started again empty on the same port) under
a running room (real processes: one redis-server, 1 portal, 1 agent).

What a user can expect of a Redis that comes back *empty* (one without persistence;
``tessera cluster up`` runs Redis with an append-only file, so there nothing is lost):

- every process reconnects by itself: the bus resubscribes, leases are written again,
  and the agent claims its running rooms again (placement and ad-hoc room names), so
  the rooms carry on and nobody places them elsewhere;
- media never stops (it goes between the clients and the agent);
- each portal writes its configured service (and its default room) again, and every
  process its reconnection-ticket secret, so tokens and tickets issued before keep
  working;
- what only Redis knew is gone: services and stored rooms made over REST, finished
  recordings' records, and which tokens were used (a token still valid may be used once
  more);
- while Redis is down, requests fail at once with a clear error (REST 503, a Socket.IO
  error reply naming Redis), never a hang; nothing crashes.

Redis must be back within the agents' lease (``[cluster] lease``): an agent cut off for
longer closes its rooms, since another agent may host them by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tessera.cluster.roomplacement import RoomPlacement
from tessera.cluster.status import read_status
from tessera_client import ClientError, ConferenceClient
from tests.cluster.processes import Cluster, running_cluster
from tests.cluster.test_portal_killed import FrameClock
from tests.eventually import eventually
from tests.synthetic import ColorVideoTrack, ToneTrack

# The module's cluster starts within the first test's time, and the test waits on a Redis
# stop and restart and on every node coming back: 120 s (the default) is too short under load.
pytestmark = pytest.mark.timeout(240)

BLUE = (30, 30, 230)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory: Path = tmp_path_factory.mktemp("redis-restart")
    with running_cluster(directory, portals=1, agents=1, cluster={"lease": 5.0}) as running:
        yield running


async def test_a_room_carries_on_through_a_redis_restart(
    cluster: Cluster,
) -> None:
    nodes, redis = cluster, cluster.redis
    assert redis is not None
    room = "redis-restart"
    alice = ConferenceClient()
    bob = ConferenceClient()
    carol = ConferenceClient()
    dave = ConferenceClient()
    clock: FrameClock | None = None
    store = aioredis.Redis.from_url(redis.url)
    try:
        await alice.join(nodes.token(0, room, "alice"))
        await bob.join(nodes.token(0, room, "bob"))
        publication = await alice.publish(audio=ToneTrack(440), video=ColorVideoTrack(BLUE))
        await publication.wait_ready()
        await eventually(lambda: publication.id in bob.streams, 30, "alice's stream at bob")
        forward = await bob.subscribe(publication.id, audio=False)
        await forward.wait_ready()
        assert forward.video_track is not None
        clock = FrameClock(forward.video_track)
        await eventually(lambda: len(clock.times) >= 3, 30, "frames before the restart")
        late_token = nodes.token(0, "after-the-restart", "dave")  # issued before, used after

        redis.kill()
        down_at = time.monotonic()
        # Requests while Redis is down: a clear error at once, not a hang.
        status, body = await nodes.rest(0, "GET", "/v1/rooms")
        assert status == 503, body
        assert "redis" in str(body).lower(), body
        with pytest.raises(ClientError) as refused:
            await bob.send_text("while Redis is down")
        assert "redis" in str(refused.value).lower(), refused.value
        with pytest.raises(ClientError) as refused:
            await ConferenceClient(reconnect=False).join(nodes.token(0, room, "eve"))
        assert "redis" in str(refused.value).lower(), refused.value
        await eventually(lambda: clock.first_after(down_at), 20, "frames while Redis is down")
        # Down long enough for every process to miss a lease renewal.
        await eventually(
            lambda: all(
                any(str(line.get("msg")).startswith("node lease not renewed") for line in n.lines)
                for n in nodes.portals + nodes.agents
            ),
            20,
            "every process missed a lease renewal",
        )

        await asyncio.to_thread(redis.start)
        up_at = time.monotonic()
        placement = RoomPlacement(store)
        agent = nodes.agents[0].node_id

        async def reclaimed() -> bool:
            status = await read_status(store)
            roles = sorted(n.role for n in status.nodes)
            placed = await placement.agent_of(alice.room_id or "")
            return roles == ["agent", "portal"] and placed == agent

        await eventually(reclaimed, 30, "nodes back in Redis and the room claimed again")
        settled = time.monotonic() - up_at
        await eventually(
            lambda: store.exists("tessera:service:default"), 30, "the default service written again"
        )
        await eventually(lambda: clock.first_after(up_at), 20, "frames after the restart")

        # Requests work again: text across the room, a new client in the same room (the
        # ad-hoc name still names it), a token issued before the restart in a new room.
        async def text_goes_through() -> bool:
            try:
                await bob.send_text("after the restart")
            except ClientError:
                return False
            return True

        await eventually(text_goes_through, 30, "a text accepted after the restart")
        await alice.next_event("text", lambda d: d["message"] == "after the restart")
        # A ticket issued before the restart still brings a client back (its connection
        # cut: it reconnects and relogins by itself).
        await bob.sio.eio.disconnect(abort=True)
        await eventually(lambda: bob.reconnections >= 1, 30, "bob relogged in with his ticket")
        await carol.join(nodes.token(0, room, "carol"))
        assert carol.room_id == alice.room_id
        assert set(bob.participants) >= {alice.participant_id, carol.participant_id}
        await dave.join(late_token)
        assert dave.room_id not in (None, alice.room_id)
        assert not alice.dropped.is_set() and not bob.dropped.is_set()
        print(
            f"\nRedis restart: down {up_at - down_at:.2f} s; nodes and placement back "
            f"{settled:.2f} s after Redis"
        )
    finally:
        if clock is not None:
            await clock.close()
        for client in (alice, bob, carol, dave):
            await client.leave()
        await store.aclose()
