"""Media-path properties: keyframe requests, leftovers, and a responsive loop under load."""

from __future__ import annotations

import asyncio
import threading

from tessera.media.mediasource import is_keyframe
from tessera.webrtc_agent.forwardstream import ForwardStream
from tessera_client import ConferenceClient
from tests.support import RunningServer
from tests.synthetic import ColorVideoTrack, next_video_frame


class KeyframeCounter:
    """A packet sink on a forward track that counts keyframes passing through."""

    def __init__(self) -> None:
        self.keyframes = 0

    def on_packet(self, packet: object, keyframe: bool) -> None:
        if keyframe:
            self.keyframes += 1


async def test_subscriber_pli_reaches_publisher_rate_limited(tessera: RunningServer) -> None:
    alice = ConferenceClient()
    await alice.join(tessera.token(user="alice"))
    bob = ConferenceClient()
    await bob.join(tessera.token(user="bob"))
    publication = await alice.publish(video=ColorVideoTrack((10, 200, 10)))
    await publication.wait_ready()
    sub = await bob.subscribe(publication.id)
    await sub.wait_ready()
    assert sub.video_track is not None
    await next_video_frame(sub.video_track)
    stream = tessera.server.rooms[alice.room_id].streams[publication.id]  # type: ignore[index]
    assert isinstance(stream, ForwardStream)
    track = stream.tracks["video"]
    counter = KeyframeCounter()
    track.add_sink(counter)
    await asyncio.sleep(1.2)  # past the rate limit window of the first request
    sent_before = track._keyframes.sent
    # Real RTCP PLIs from the subscriber's receiver, ten in a burst.
    assert bob.pc is not None
    receiver = next(t.receiver for t in bob.pc.getTransceivers() if t.kind == "video")
    ssrc = receiver.getSynchronizationSources()[0].source
    for _ in range(10):
        await receiver._send_rtcp_pli(ssrc)
    await asyncio.sleep(0.5)
    # One PLI went to the publisher, and its keyframe came back through.
    assert track._keyframes.sent == sent_before + 1
    assert counter.keyframes >= 1
    await asyncio.sleep(1.0)
    assert track._keyframes.sent <= sent_before + 2  # the deferred one at most
    assert is_keyframe("vp8", b"\x10")  # sanity of the detector the counter relies on
    await alice.leave()
    await bob.leave()


async def test_nothing_is_left_behind(tessera: RunningServer) -> None:
    await asyncio.sleep(0.2)
    threads_before = {t.name for t in threading.enumerate()}
    clients = []
    for name in ("a", "b", "c"):
        client = ConferenceClient()
        await client.join(tessera.token(user=name))
        clients.append(client)
    pubs = [await c.publish(video=ColorVideoTrack((100, 100, 100))) for c in clients]
    for pub in pubs:
        await pub.wait_ready()
    subs = [
        await clients[0].subscribe(pubs[1].id),
        await clients[1].subscribe(pubs[2].id, video_parameters={"framerate": 15}),
        await clients[2].subscribe(pubs[0].id),
    ]
    for sub in subs:
        await sub.wait_ready()
        assert sub.video_track is not None
        await next_video_frame(sub.video_track)
    for client in clients:
        await client.leave()
    await asyncio.sleep(1.0)
    server = tessera.server
    assert server.agent.transports == {}
    assert server.conference.participants == {}
    assert server.rooms == {}
    leftover = {
        t.name
        for t in threading.enumerate()
        if t.name not in threads_before and not t.name.startswith("asyncio_")
    }
    assert leftover == set(), leftover
    tasks = [t for t in asyncio.all_tasks() if not t.done() and "RTC" in repr(t.get_coro())]
    assert tasks == [], tasks


async def test_loop_stays_responsive_with_20_connections(tessera: RunningServer) -> None:
    """10 publishers and 10 subscribers (clients in this process too): report the loop lag."""
    publishers = []
    for i in range(10):
        client = ConferenceClient()
        await client.join(tessera.token(user=f"pub{i}"))
        publishers.append(client)
    pubs = [
        await c.publish(video=ColorVideoTrack((20 * i, 50, 100), width=320, height=180, fps=15))
        for i, c in enumerate(publishers)
    ]
    for pub in pubs:
        await pub.wait_ready()
    viewers = []
    subs = []
    for i in range(10):
        client = ConferenceClient()
        await client.join(tessera.token(user=f"sub{i}"))
        viewers.append(client)
        subs.append(await client.subscribe(pubs[i].id))
    for sub in subs:
        await sub.wait_ready()
    monitor = tessera.server.loop_lag
    monitor.reset()
    received = 0

    async def drain(sub: object) -> None:
        nonlocal received
        track = sub.video_track  # type: ignore[attr-defined]
        while True:
            await track.recv()
            received += 1

    drains = [asyncio.ensure_future(drain(s)) for s in subs]
    await asyncio.sleep(4)
    for d in drains:
        d.cancel()
    p50, p99 = monitor.percentile(50), monitor.percentile(99)
    print(
        f"\n20 connections: loop lag p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"{received / 4:.0f} frames/s delivered"
    )
    assert received > 10 * 4 * 10  # most of 10 x 15 fps arrived
    assert p99 < 0.25  # generous: the clients share this loop and these two cores
    for client in publishers + viewers:
        await client.leave()
