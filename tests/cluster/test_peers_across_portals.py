"""PeerJS peers on different portals of a cluster (one real redis-server, a Bus each).

Two PeerJS front ends in this test process share one room service, as a cluster's
portals share its agents; a third runs as a process of its own and is killed to play
a portal that died. Clients: bare PeerServer WebSockets and PeerClient (aiortc).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tessera.conference.store import ServiceRecord
from tessera.conference.tokens import issue_token
from tessera.portal.server import Server
from tessera_client import PeerClient
from tests.cluster.peer_portal import PeerPortal, peer_config, start_peer_portal
from tests.eventually import eventually, within
from tests.integration.test_peer import RawPeer
from tests.redisserver import RedisServer
from tests.synthetic import ColorVideoTrack, close_to, mean_rgb, next_video_frame

pytestmark = pytest.mark.timeout(90)

SERVICE = "default"  # the default service's id: the PeerJS key


@dataclass
class Cluster:
    redis: RedisServer
    server: Server
    one: PeerPortal
    two: PeerPortal


@pytest.fixture
async def cluster(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    config = peer_config(tmp_path / "data")
    server = Server(config)
    portals: list[PeerPortal] = []
    try:
        for node in ("portal-1", "portal-2"):
            portals.append(
                await start_peer_portal(server.conference, config, redis_server.url, node)
            )
        yield Cluster(redis_server, server, *portals)
    finally:
        # Each close bounded and named (a teardown once hung here for 90 s, unexplained).
        for portal in portals:
            await within(portal.stop(), 70, f"the portal on {portal.url} stopping")
        await within(server.close(), 30, "the room service closing")


async def raw_peer(portal_url: str, peer_id: str, token: str = "secret") -> RawPeer:
    session = aiohttp.ClientSession()
    url = portal_url.replace("http", "ws", 1) + "/peerjs/peerjs"
    query = f"?key={SERVICE}&id={peer_id}&token={token}&version=1.5.5"
    return RawPeer(await session.ws_connect(url + query), session)


async def listed(portal: PeerPortal) -> list[str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{portal.url}/peerjs/{SERVICE}/peers") as resp:
            assert resp.status == 200
            return sorted(await resp.json())


async def test_open_id_taken_relay_and_leave_across_portals(cluster: Cluster) -> None:
    alice = await raw_peer(cluster.one.url, "alice")
    bob = await raw_peer(cluster.two.url, "bob")
    try:
        assert await alice.recv() == {"type": "OPEN"}
        assert await bob.recv() == {"type": "OPEN"}
        # One id, once in the cluster: another token on the other portal is refused.
        intruder = await raw_peer(cluster.two.url, "alice", token="other")
        assert await intruder.recv() == {"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}
        assert await intruder.closed()
        await intruder.close()
        assert await listed(cluster.one) == await listed(cluster.two) == ["alice", "bob"]
        # Signaling goes from one portal to the other as if local, src filled in.
        offer = {"sdp": {"type": "offer", "sdp": "v=0"}, "type": "media", "connectionId": "mc_1"}
        await alice.send(type="OFFER", dst="bob", payload=offer)
        assert await bob.recv() == {"type": "OFFER", "src": "alice", "dst": "bob", "payload": offer}
        await bob.send(type="ANSWER", dst="alice", payload={"connectionId": "mc_1"})
        assert await alice.recv() == {
            "type": "ANSWER",
            "src": "bob",
            "dst": "alice",
            "payload": {"connectionId": "mc_1"},
        }
        for n in range(5):
            await alice.send(type="CANDIDATE", dst="bob", payload={"candidate": {"n": n}})
        received = [await bob.recv() for _ in range(5)]
        assert [m["payload"]["candidate"]["n"] for m in received] == list(range(5))  # in order
        await bob.send(type="LEAVE", dst="alice")
        assert await alice.recv() == {"type": "LEAVE", "src": "bob", "dst": "alice"}
        # bob goes: his id is free on every portal, and a message for him waits, then expires.
        await bob.close()

        async def bob_gone() -> bool:
            return await listed(cluster.one) == ["alice"]

        await eventually(bob_gone, what="bob released in the directory")
        await alice.send(type="OFFER", dst="bob", payload={"connectionId": "mc_2"})
        assert await alice.recv() == {"type": "EXPIRE", "src": "bob", "dst": "alice"}
        # A message for an absent peer that then opens on the other portal reaches it.
        await alice.send(type="OFFER", dst="carol", payload={"connectionId": "mc_3"})
        await alice.send(type="CANDIDATE", dst="carol", payload={"candidate": {"n": 1}})
        carol = await raw_peer(cluster.two.url, "carol")
        try:
            assert await carol.recv() == {"type": "OPEN"}
            first, second = await carol.recv(), await carol.recv()
            assert (first["type"], first["src"], second["type"]) == ("OFFER", "alice", "CANDIDATE")
        finally:
            await carol.close()
    finally:
        await alice.close()
        await bob.close()


async def test_a_peer_reconnecting_through_the_other_portal_takes_its_id_along(
    cluster: Cluster,
) -> None:
    alice = await raw_peer(cluster.one.url, "alice", token="mine")
    bob = await raw_peer(cluster.one.url, "bob")
    peers = [alice, bob]
    try:
        assert await alice.recv() == await bob.recv() == {"type": "OPEN"}
        # Only now: a portal claims the id after its socket's handshake, so a second
        # socket opened at once could claim it first and be the one superseded.
        moved = await raw_peer(cluster.two.url, "alice", token="mine")
        peers.append(moved)
        assert await moved.recv() == {"type": "OPEN"}
        assert await alice.closed()  # the old socket, on portal-1, is superseded
        await eventually(
            lambda: cluster.one.gateway.registry.get(SERVICE, "alice") is None,
            what="portal-1 forgetting alice",
        )
        await bob.send(type="OFFER", dst="alice", payload={"connectionId": "mc_1"})
        assert (await moved.recv())["src"] == "bob"
        assert await listed(cluster.one) == ["alice", "bob"]
    finally:
        for peer in peers:
            await peer.close()


async def test_python_peers_on_two_portals_call_and_talk(cluster: Cluster) -> None:
    alice = PeerClient(cluster.one.url, SERVICE, peer_id="alice")
    bob = PeerClient(cluster.two.url, SERVICE, peer_id="bob")
    await alice.open()
    await bob.open()
    try:
        link = await alice.connect("bob", timeout=20)
        remote = await bob.next_connection(timeout=20)
        link.send({"hello": "bob"})
        assert await remote.recv(timeout=20) == {"hello": "bob"}
        remote.send(["hi", 1])
        assert await link.recv(timeout=20) == ["hi", 1]
        calling = asyncio.ensure_future(
            alice.call("bob", video=ColorVideoTrack((255, 0, 0)), timeout=20)
        )
        incoming = await bob.next_call(timeout=20)
        assert incoming.peer == "alice"
        await incoming.answer(video=ColorVideoTrack((0, 0, 255)))
        call = await calling
        red = await next_video_frame(await incoming.track("video", timeout=20))
        blue = await next_video_frame(await call.track("video", timeout=20))
        assert close_to(mean_rgb(red), (255, 0, 0)) and close_to(mean_rgb(blue), (0, 0, 255))
    finally:
        await alice.close()
        await bob.close()


async def test_a_silent_peer_expires_and_its_contact_on_the_other_portal_hears_leave(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    config = peer_config(tmp_path / "data", **{"peer.alive_timeout": 1.5})
    server = Server(config)
    one = await start_peer_portal(server.conference, config, redis_server.url, "portal-1")
    two = await start_peer_portal(server.conference, config, redis_server.url, "portal-2")
    alice = await raw_peer(one.url, "alice")
    bob = await raw_peer(two.url, "bob")
    beating = asyncio.ensure_future(keep_alive(alice))
    try:
        assert await alice.recv() == await bob.recv() == {"type": "OPEN"}
        await alice.send(type="OFFER", dst="bob", payload={"connectionId": "mc_1"})
        assert (await bob.recv())["src"] == "alice"
        # bob sends no heartbeat: portal-2 expires him, and alice hears LEAVE from portal-1.
        assert await alice.recv() == {"type": "LEAVE", "src": "bob", "dst": "alice"}
        assert await bob.closed()
    finally:
        beating.cancel()
        await alice.close()
        await bob.close()
        await one.stop()
        await two.stop()
        await server.close()


async def keep_alive(peer: RawPeer) -> None:
    while True:
        await peer.send(type="HEARTBEAT")
        await asyncio.sleep(0.3)  # stimulus: beats well inside the 1.5 s alive timeout


async def test_a_dead_portals_peers_are_absent_and_their_ids_free_again(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cluster.peer_portal",
            cluster.redis.url,
            "portal-3",
            str(tmp_path / "data-3"),
            str(port_file),
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        await eventually(lambda: port_file.exists() and port_file.read_text().strip(), 60)
        doomed_url = f"http://127.0.0.1:{int(port_file.read_text())}"
        doomed = await raw_peer(doomed_url, "dora")
        assert await doomed.recv() == {"type": "OPEN"}
        alice = await raw_peer(cluster.one.url, "alice")
        assert await alice.recv() == {"type": "OPEN"}
        await alice.send(type="OFFER", dst="dora", payload={"connectionId": "mc_1"})
        assert (await doomed.recv())["src"] == "alice"
        process.send_signal(signal.SIGKILL)
        process.wait()
        await doomed.close()
        # Nobody listens for portal-3 any more: dora is absent, her messages expire.
        await alice.send(type="OFFER", dst="dora", payload={"connectionId": "mc_2"})
        assert await alice.recv() == {"type": "EXPIRE", "src": "dora", "dst": "alice"}

        # Her claim runs out with nobody to refresh it; then anyone may be dora.
        async def dora_opens_on_portal_two() -> bool:
            peer = await raw_peer(cluster.two.url, "dora", token="new-dora")
            try:
                message = await peer.recv()
                if message == {"type": "OPEN"}:
                    await peer.send(type="OFFER", dst="alice", payload={"connectionId": "mc_3"})
                    return (await alice.recv())["src"] == "dora"
                assert message["type"] == "ID-TAKEN", message
                return False
            finally:
                await peer.close()

        assert await eventually(dora_opens_on_portal_two, what="dora's id free again")
        await alice.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_mesh_room_spans_portals(cluster: Cluster) -> None:
    alice = await raw_peer(cluster.one.url, "alice")
    bob = await raw_peer(cluster.two.url, "bob")
    try:
        assert await alice.recv() == await bob.recv() == {"type": "OPEN"}
        await alice.send(type="ROOM-JOIN", payload={"room": "huddle"})
        assert await alice.recv() == {
            "type": "ROOM-MEMBERS",
            "payload": {"room": "huddle", "members": []},
        }
        await bob.send(type="ROOM-JOIN", payload={"room": "huddle"})
        assert await bob.recv() == {
            "type": "ROOM-MEMBERS",
            "payload": {"room": "huddle", "members": ["alice"]},
        }
        assert await alice.recv() == {
            "type": "ROOM-PEER-JOINED",
            "src": "bob",
            "payload": {"room": "huddle", "peer": "bob"},
        }
        await bob.send(type="ROOM-LEAVE", payload={"room": "huddle"})
        assert await alice.recv() == {
            "type": "ROOM-PEER-LEFT",
            "src": "bob",
            "payload": {"room": "huddle", "peer": "bob"},
        }
        await bob.send(type="ROOM-JOIN", payload={"room": "huddle"})
        assert (await bob.recv())["payload"]["members"] == ["alice"]
        assert (await alice.recv())["type"] == "ROOM-PEER-JOINED"
        # Going away leaves every room: the member on the other portal hears it.
        await bob.close()
        assert await alice.recv() == {
            "type": "ROOM-PEER-LEFT",
            "src": "bob",
            "payload": {"room": "huddle", "peer": "bob"},
        }
    finally:
        await alice.close()
        await bob.close()


async def test_python_peers_on_two_portals_meet_in_a_mesh_room(cluster: Cluster) -> None:
    p1 = PeerClient(cluster.one.url, SERVICE, peer_id="p1")
    p2 = PeerClient(cluster.two.url, SERVICE, peer_id="p2")
    await p1.open()
    await p2.open()
    try:
        await p1.join_room("huddle", video=ColorVideoTrack((255, 0, 0)), timeout=20)
        room = await p2.join_room("huddle", video=ColorVideoTrack((0, 255, 0)), timeout=20)
        assert set(room.calls) == {"p1"}
        calls = await room.wait_for_streams(1)
        frame = await next_video_frame(calls["p1"].remote_tracks["video"])
        assert close_to(mean_rgb(frame), (255, 0, 0))
    finally:
        await p1.close()
        await p2.close()


async def test_a_single_use_token_reopens_its_peer_through_the_other_portal_only(
    cluster: Cluster,
) -> None:
    service = ServiceRecord(id="locked", key="k" * 43, peer_tokens=True)
    cluster.server.store.put_service(service)
    token = issue_token(
        service_id=service.id,
        key=service.key,
        room="r",
        user="ann",
        role="presenter",
        host="127.0.0.1",
        secure=False,
        lifetime=60,
    )

    async def open_on(portal: PeerPortal, peer_id: str) -> RawPeer:
        session = aiohttp.ClientSession()
        url = portal.url.replace("http", "ws", 1) + "/peerjs/peerjs"
        params = {"key": service.id, "id": peer_id, "token": token}
        return RawPeer(await session.ws_connect(url, params=params), session)

    ann = await open_on(cluster.one, "ann")
    assert await ann.recv() == {"type": "OPEN"}
    await ann.close()

    async def released() -> bool:
        holders = await cluster.one.gateway.directory.holders(service.id, ["ann"])
        return holders == [None]

    await eventually(released, what="ann released")
    again = await open_on(cluster.two, "ann")  # the same peer, through the other portal
    thief = await open_on(cluster.two, "thief")
    try:
        assert await again.recv() == {"type": "OPEN"}
        message = await thief.recv()
        assert message["type"] == "ERROR" and "already been used" in message["payload"]["msg"]
    finally:
        await again.close()
        await thief.close()
