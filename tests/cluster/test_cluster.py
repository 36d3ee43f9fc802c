"""A real cluster on loopback: one redis-server, 2 portals and 3 agents as processes
(``tessera portal`` / ``tessera agent``), shared by this module's tests.

Clients on different portals meet in one room (forward and mixed streams, text), a token
is used once across portals, a client comes back through another portal with its
ticket, REST on either portal reaches a room hosted by an agent, and 30 rooms spread
over the agents."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tessera.cluster.status import format_status, read_status
from tessera_client import ConferenceClient, PeerClient
from tests.cluster.processes import (
    Cluster,
    NodeProcess,
    room_name,
    running_cluster,
)
from tests.eventually import eventually
from tests.ingest_sources import serving_folder, write_source
from tests.integration.test_bad_inputs import RawClient
from tests.synthetic import ColorVideoTrack, ToneTrack, close_to, mean_rgb, next_video_frame

RED = (230, 30, 30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), portals=2, agents=3) as running:
        yield running


async def joined(cluster: Cluster, portal: int, room: str, user: str) -> ConferenceClient:
    client = ConferenceClient()
    await client.join(cluster.token(portal, room, user))
    return client


async def cluster_status(cluster: Cluster) -> str:
    redis = aioredis.Redis.from_url(cluster.redis_url)
    try:
        return format_status(await read_status(redis))
    finally:
        await redis.aclose()


async def hosted_rooms(cluster: Cluster) -> dict[str, list[str]]:
    redis = aioredis.Redis.from_url(cluster.redis_url)
    try:
        return (await read_status(redis)).rooms
    finally:
        await redis.aclose()


async def test_clients_on_two_portals_meet_in_one_room(cluster: Cluster) -> None:
    room = room_name()
    alice = await joined(cluster, 0, room, "alice")
    bob = await joined(cluster, 1, room, "bob")
    assert alice.room_id == bob.room_id  # one room id for one name, cluster-wide
    join = await alice.next_event("participant", lambda d: d["action"] == "join")
    assert join["data"]["user"] == "bob"

    publication = await alice.publish(audio=ToneTrack(440), video=ColorVideoTrack(RED))
    await publication.wait_ready()
    await eventually(lambda: publication.id in bob.streams, 30, "alice's stream at bob")

    # Forward: bob, on the other portal, sees alice's picture.
    forward = await bob.subscribe(publication.id)
    await forward.wait_ready()
    assert forward.video_track is not None
    frame = await next_video_frame(forward.video_track)
    for _ in range(3):
        frame = await next_video_frame(forward.video_track)
    assert close_to(mean_rgb(frame), RED)

    # Mixed: the view holds alice's red picture.
    mixed = await bob.subscribe(f"{bob.room_id}-common", audio=False)
    await mixed.wait_ready()
    assert mixed.video_track is not None
    track = mixed.video_track

    async def red_in_the_mix() -> bool:
        frame = await next_video_frame(track)
        r, g, b = mean_rgb(frame)
        return r > 2 * g and r > 2 * b

    await eventually(red_in_the_mix, 30, "alice's picture in the mixed view")

    # Text across portals.
    await bob.send_text("hello from portal 2")
    text = await alice.next_event("text", lambda d: d["message"] == "hello from portal 2")
    assert text["from"] == bob.participant_id

    # The room is on one agent; the portals hold no room.
    hosted = await hosted_rooms(cluster)
    assert sum(room_id == alice.room_id for rooms in hosted.values() for room_id in rooms) == 1
    for portal in (0, 1):
        status, participants = await cluster.rest(
            portal, "GET", f"/v1/rooms/{alice.room_id}/participants"
        )
        assert status == 200
        assert sorted(p["user"] for p in participants) == ["alice", "bob"]
        # Bob's subscriptions and the mixed one's estimate, from the agent (plain data).
        bobs = next(p for p in participants if p["user"] == "bob")["subscriptions"]
        assert {s["id"] for s in bobs} == {forward.id, mixed.id}
        assert "adaptive" in next(s for s in bobs if s["id"] == mixed.id)
    # The page's connection-quality request, routed to the room's agent too.
    figures = await alice.request("connection-quality")
    listed = {p["id"] for p in figures["participants"]}
    assert listed == {alice.participant_id, bob.participant_id}

    await bob.leave()
    left = await alice.next_event("participant", lambda d: d["action"] == "leave")
    assert left["data"] == bob.participant_id
    await alice.leave()
    await eventually(
        lambda: rooms_without(cluster, alice.room_id), 20, "the room released by its agent"
    )


async def rooms_without(cluster: Cluster, room_id: str) -> bool:
    hosted = await hosted_rooms(cluster)
    return all(room_id not in rooms for rooms in hosted.values())


async def test_a_token_is_used_once_across_portals(cluster: Cluster) -> None:
    token = cluster.token(0, room_name(), "once")
    first = RawClient()
    await first.connect(cluster.portals[0].url)
    status, _ = await first.login(token)
    assert status == "ok"
    second = RawClient()
    await second.connect(cluster.portals[1].url)
    status, message = await second.login(token)
    assert status == "error" and "used" in message.lower()
    await first.request("logout")
    await first.sio.disconnect()
    await second.sio.disconnect()


async def test_relogin_through_another_portal(cluster: Cluster) -> None:
    room = room_name()
    watcher = await joined(cluster, 1, room, "watcher")
    first = RawClient()
    await first.connect(cluster.portals[0].url)
    status, info = await first.request(
        "login",
        {
            "token": cluster.token(0, room, "traveller"),
            "userAgent": {"sdk": {"type": "Raw", "version": "1"}},
            "protocol": "1.2",
            "reconnection": True,
        },
    )
    assert status == "ok", info
    ticket, participant = info["reconnectionTicket"], info["id"]
    # The connection is lost without a logout; the client comes back through portal 2.
    await first.sio.eio.disconnect(abort=True)
    second = RawClient()
    await second.connect(cluster.portals[1].url)
    status, relogged = await second.request("relogin", ticket)
    assert status == "ok", relogged
    # The same participant: the watcher never saw it leave, and a text reaches it.
    texts: list[Any] = []
    second.sio.on("text", lambda data: texts.append(data))
    await watcher.send_text("still there?", to=participant)
    await eventually(lambda: [t for t in texts if t["message"] == "still there?"], 20, "text")
    assert participant in watcher.participants
    await second.request("logout")
    await second.sio.disconnect()
    await watcher.leave()


async def test_rest_on_any_portal(cluster: Cluster) -> None:
    status, created = await cluster.rest(0, "POST", "/v1/rooms", {"name": "stored-" + room_name()})
    assert status == 200, created
    room_id = created["_id"] if "_id" in created else created["id"]
    status, got = await cluster.rest(1, "GET", f"/v1/rooms/{room_id}")
    assert status == 200 and got["name"] == created["name"]
    # Not hosted: answered from the store.
    status, streams = await cluster.rest(1, "GET", f"/v1/rooms/{room_id}/streams")
    assert (status, streams) == (200, [])
    # Hosted once someone joins through a portal: the other portal's REST reaches it.
    member = await joined(cluster, 0, room_id, "member")
    status, participants = await cluster.rest(1, "GET", f"/v1/rooms/{room_id}/participants")
    assert status == 200 and [p["user"] for p in participants] == ["member"]
    status, _ = await cluster.rest(1, "DELETE", f"/v1/rooms/{room_id}")
    assert status == 200
    await eventually(
        lambda: member.dropped.is_set(), 20, "the member dropped when its room was deleted"
    )


async def test_rooms_spread_over_the_agents(cluster: Cluster) -> None:
    clients = [await joined(cluster, i % 2, room_name(), f"u{i}") for i in range(30)]
    hosted = await hosted_rooms(cluster)
    ours = {c.room_id for c in clients}
    counts = [len(ours & set(rooms)) for rooms in hosted.values()]
    assert sum(counts) == 30 and len(counts) == 3
    # Placed by load (rooms placed count at once): spread, not piled on one agent. (An agent
    # whose CPU is far above the others', or over the limit, rightly gets fewer or none.)
    assert max(counts) <= 20 and sum(c > 0 for c in counts) >= 2, (
        counts,
        await cluster_status(cluster),
    )
    await asyncio.gather(*(c.leave() for c in clients))


async def test_peers_on_two_portals_connect_and_call(cluster: Cluster) -> None:
    alice = PeerClient(cluster.portals[0].url, "default", peer_id=f"alice-{uuid.uuid4().hex[:6]}")
    bob = PeerClient(cluster.portals[1].url, "default", peer_id=f"bob-{uuid.uuid4().hex[:6]}")
    await alice.open()
    await bob.open()
    try:
        assert bob.id is not None
        link = await alice.connect(bob.id, timeout=20)
        remote = await bob.next_connection(timeout=20)
        link.send({"hello": "across portals"})
        assert await remote.recv(timeout=20) == {"hello": "across portals"}
        calling = asyncio.ensure_future(alice.call(bob.id, video=ColorVideoTrack(RED), timeout=20))
        incoming = await bob.next_call(timeout=20)
        await incoming.answer()
        await calling
        frame = await next_video_frame(await incoming.track("video", timeout=20))
        assert close_to(mean_rgb(frame), RED)
    finally:
        await alice.close()
        await bob.close()


async def test_a_process_joining_the_cluster_leaves_running_rooms_alone(cluster: Cluster) -> None:
    """A portal or agent starting (or restarting) is never the only process on the store:
    the recordings and ad-hoc rooms other agents run are not closed as an earlier run's."""
    room = room_name()
    alice = await joined(cluster, 0, room, "alice")
    publication = await alice.publish(video=ColorVideoTrack(RED))
    await publication.wait_ready()
    view = f"{alice.room_id}-common"
    status, recording = await cluster.rest(
        1,
        "POST",
        f"/v1/rooms/{alice.room_id}/recordings",
        {"container": "mkv", "media": {"video": {"from": view}, "audio": False}},
    )
    assert status == 200, recording
    late = [
        NodeProcess(role, cluster.config, cluster.redis_url, f"{role}-late")
        for role in ("agent", "portal")
    ]
    try:
        for node in late:
            node.start()
            node.wait_up()
        bob = await joined(cluster, 1, room, "bob")
        assert bob.room_id == alice.room_id  # the ad-hoc name still names the running room
        path = f"/v1/rooms/{alice.room_id}/recordings/{recording['id']}"
        status, now = await cluster.rest(0, "GET", path)
        assert (status, now["state"]) == (200, "recording")
        status, _ = await cluster.rest(0, "DELETE", path)
        assert status == 200
        await bob.leave()
    finally:
        for node in late:
            assert node.terminate() == 0
            assert node.errors() == []
    await alice.leave()


async def test_a_streaming_in_is_pulled_by_the_agent_of_its_room(
    cluster: Cluster, tmp_path: Path
) -> None:
    # A stored room nobody is in: the POST places it on an agent, which pulls the source.
    status, created = await cluster.rest(0, "POST", "/v1/rooms", {"name": "in-" + room_name()})
    assert status == 200, created
    room_id = created["_id"]
    write_source(tmp_path / "red.mp4", video="mpeg4", colour=RED)
    async with serving_folder(tmp_path) as base:
        status, info = await cluster.rest(
            1,
            "POST",
            f"/v1/rooms/{room_id}/streaming-ins",
            {"connection": {"url": f"{base}/red.mp4"}},
        )
        assert status == 200, info
        assert info["info"]["type"] == "streaming" and info["info"]["status"] == "streaming"
        assert room_id in {r for rooms in (await hosted_rooms(cluster)).values() for r in rooms}
        viewer = await joined(cluster, 0, room_id, "viewer")
        assert info["id"] in viewer.streams
        subscription = await viewer.subscribe(info["id"], audio=False)
        await subscription.wait_ready()
        assert subscription.video_track is not None
        frame = await next_video_frame(subscription.video_track, 30)
        for _ in range(3):
            frame = await next_video_frame(subscription.video_track, 30)
        assert close_to(mean_rgb(frame), RED)
        status, listed = await cluster.rest(0, "GET", f"/v1/rooms/{room_id}/streaming-ins")
        assert status == 200 and [s["id"] for s in listed] == [info["id"]]
        status, _ = await cluster.rest(
            0, "DELETE", f"/v1/rooms/{room_id}/streaming-ins/{info['id']}"
        )
        assert status == 200
        removed = await viewer.next_event("stream", lambda d: d["status"] == "remove", 20)
        assert removed["id"] == info["id"]
        await viewer.leave()
