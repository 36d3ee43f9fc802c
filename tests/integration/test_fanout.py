"""The shared fan-out with real peers: identical pictures, NACK from the shared history through
a lossy relay, a PLI storm coalesced, and a subscriber that stops reading costs the others nothing.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import re
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from bench.subscribers import HeaderCountingClient
from tessera.media.mediasource import PacketSource
from tessera.media.rtpfanout import SharedRtpTrack
from tessera.webrtc_agent.forwardstream import ForwardStream
from tessera.webrtc_agent.subscription import Subscription
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import NO_LADDER, RunningServer, room_with
from tests.synthetic import ColorVideoTrack, RealTimePace

VIDEO_CLOCK = 90000
BITS = 8  # frame number bits stamped into each picture
BLOCK = 40  # pixels per bit block


class StampedVideoTrack(MediaStreamTrack):
    """A moving picture with its frame number stamped in blocks that survive compression."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        x = np.linspace(0, 4 * np.pi, width)
        y = np.linspace(0, 3 * np.pi, height)
        self._pattern = np.add.outer(np.sin(y), np.cos(x))
        self._pace = RealTimePace()
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        await self._pace.until(self._count, self.fps)
        n = self._count
        luma = (128 + 50 * np.roll(self._pattern, 4 * n, axis=1)).astype(np.uint8)
        luma[:BLOCK, :] = 0
        for bit in range(BITS):
            if (n >> bit) & 1:
                luma[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255
        chroma = np.full((self.height // 2, self.width), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(np.vstack([luma, chroma]), format="yuv420p")
        frame.pts = n * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


def stamp(picture: np.ndarray) -> int:
    """The frame number a StampedVideoTrack wrote into a decoded picture (its Y plane)."""
    number = 0
    for bit in range(BITS):
        block = picture[5 : BLOCK - 5, bit * BLOCK + 5 : (bit + 1) * BLOCK - 5]
        if block.mean() > 128:
            number |= 1 << bit
    return number


async def pictures(track: MediaStreamTrack, count: int) -> dict[int, np.ndarray]:
    """`count` decoded pictures (Y planes) by the frame number stamped in them."""
    got: dict[int, np.ndarray] = {}
    for _ in range(count):
        frame = await asyncio.wait_for(track.recv(), 30)
        assert isinstance(frame, av.VideoFrame)
        y = frame.to_ndarray(format="yuv420p")[: frame.height]
        got[stamp(y)] = y
    return got


def server_track(tessera: RunningServer, subscription_id: str, kind: str = "video") -> Any:
    for transport in tessera.server.agent.transports.values():
        session = transport.sessions.get(subscription_id)
        if isinstance(session, Subscription):
            return session.tracks[kind].packet_track
    raise AssertionError(f"no subscription {subscription_id} on the server")


def forward_video(tessera: RunningServer, room_id: str, stream_id: str) -> PacketSource:
    stream = tessera.server.rooms[room_id].streams[stream_id]
    assert isinstance(stream, ForwardStream)
    source = stream.tracks["video"]
    assert isinstance(source, PacketSource)
    return source


async def publish(
    tessera: RunningServer, track: MediaStreamTrack, room: str = "default"
) -> tuple[ConferenceClient, str]:
    publisher = ConferenceClient()
    await publisher.join(tessera.token(user="publisher", room=room))
    publication = await publisher.publish(video=track)
    await publication.wait_ready()
    return publisher, publication.id


async def test_subscribers_decode_identical_pictures(tessera: RunningServer) -> None:
    publisher, stream_id = await publish(tessera, StampedVideoTrack())
    viewers = []
    for name in ("ann", "ben"):
        viewer = ConferenceClient()
        await viewer.join(tessera.token(user=name))
        viewers.append(viewer)
    subscriptions = [await v.subscribe(stream_id, audio=False) for v in viewers]
    for subscription in subscriptions:
        await subscription.wait_ready()
        assert isinstance(server_track(tessera, subscription.id), SharedRtpTrack)
    tracks = [s.video_track for s in subscriptions]
    assert tracks[0] is not None and tracks[1] is not None
    first, second = await asyncio.gather(pictures(tracks[0], 45), pictures(tracks[1], 45))
    common = sorted(set(first) & set(second))
    assert len(common) >= 20, (sorted(first), sorted(second))
    differing = [n for n in common if not np.array_equal(first[n], second[n])]
    assert differing == []
    # Each subscriber has its own SSRC and sequence numbers over the one shared payload.
    sent = [server_track(tessera, s.id) for s in subscriptions]
    output = sent[0].output
    assert output is sent[1].output
    # Both receivers' reports reach the one output, aggregated there.
    await eventually(lambda: output.receiver_summary()["reports"] == 2, what="two receivers' RRs")
    # aiortc's own per-sender figures (getStats, RTCP SR) count what the worker sent.
    for subscription, track in zip(subscriptions, sent, strict=True):
        sender = next(
            t.sender
            for transport in tessera.server.agent.transports.values()
            if subscription.id in transport.sessions
            for t in transport.pc.getTransceivers()
            if t.sender.track is track
        )
        stats = [s for s in (await sender.getStats()).values() if s.type == "outbound-rtp"]
        assert stats[0].packetsSent > 0 and stats[0].packetsSent <= track.packets_sent
    for viewer in [*viewers, publisher]:
        await viewer.leave()


def is_rtp(data: bytes) -> bool:
    # RTP/SRTP, not RTCP (RFC 5761: RTCP types 192-223 in the second byte), not STUN or DTLS.
    return len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 224


class DroppingRelay(asyncio.DatagramProtocol):
    """A UDP relay between one client and the server that drops every n-th RTP packet to it."""

    def __init__(self, server: tuple[str, int], drop_every: int, spare: int = 15) -> None:
        self.server = server
        self.drop_every = drop_every
        self.spare = spare  # the first RTP packets pass (the first keyframe)
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.rtp = 0
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr == self.server:
            if self.client is None:
                return
            if is_rtp(data):
                self.rtp += 1
                if self.rtp > self.spare and self.rtp % self.drop_every == 0:
                    self.dropped += 1
                    return
            self.transport.sendto(data, self.client)
            return
        if self.client is None:
            self.client = addr
        if addr == self.client:
            self.transport.sendto(data, self.server)


class RelayedClient(ConferenceClient):
    """A client that reaches the server only through a relay: the answer's candidates are
    rewritten to the relay's address (the server then sees the relay as a peer-reflexive
    candidate and sends there)."""

    relay: DroppingRelay
    relay_port = 0

    def _ensure_pc(self) -> RTCPeerConnection:
        pc = super()._ensure_pc()
        if getattr(pc, "_relayed", False):
            return pc
        apply = pc.setRemoteDescription

        async def through_relay(description: RTCSessionDescription) -> None:
            lines = []
            for line in description.sdp.splitlines():
                if line.startswith("a=candidate:"):
                    found = re.search(r" udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host", line)
                    if found is None or self.relay.server[1]:
                        continue  # one IPv4 host candidate only, through the relay
                    # Before the answer applies: its ICE checks go out right after.
                    self.relay.server = (found.group(1), int(found.group(2)))
                    line = line.replace(f" {found.group(2)} typ", f" {self.relay_port} typ")
                lines.append(line)
            await apply(RTCSessionDescription(sdp="\r\n".join(lines) + "\r\n", type="answer"))

        pc.setRemoteDescription = through_relay  # type: ignore[method-assign]
        pc._relayed = True  # type: ignore[attr-defined]
        return pc


async def test_a_lossy_subscriber_gets_packets_back_from_the_shared_history(
    tessera: RunningServer,
) -> None:
    # Without forward ladders: this lossy subscriber is to stay on the stream as it is
    # (tests/integration/test_forward_adaptive.py moves one to a rung).
    room = await room_with(tessera, "no-ladder", transcoding=NO_LADDER)
    publisher, stream_id = await publish(tessera, StampedVideoTrack(), room)
    direct = ConferenceClient()
    await direct.join(tessera.token(user="direct", room=room))
    direct_sub = await direct.subscribe(stream_id, audio=False)
    await direct_sub.wait_ready()
    loop = asyncio.get_running_loop()
    relay = DroppingRelay(("127.0.0.1", 0), drop_every=6)
    # On every address: the server's candidate address, which the answer names, reaches it.
    transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("0.0.0.0", 0))
    try:
        lossy = RelayedClient()
        lossy.relay = relay
        lossy.relay_port = transport.get_extra_info("sockname")[1]
        await lossy.join(tessera.token(user="lossy", room=room))

        subscription = await lossy.subscribe(stream_id, audio=False)
        assert relay.server[1] != 0
        await subscription.wait_ready()
        track = subscription.video_track
        assert track is not None
        sent = server_track(tessera, subscription.id)
        assert isinstance(sent, SharedRtpTrack)
        got = await pictures(track, 90)
        assert len(got) >= 80  # the pictures came through, losses and all
        await eventually(lambda: relay.dropped >= 10, 60, what="the relay dropping packets")
        # The receiver NACKed what the relay dropped; the server answered from the output's
        # history (it keeps none per subscriber), the relay passing most retransmissions.
        await eventually(
            lambda: sent.retransmitted >= relay.dropped // 2,
            what=f"retransmissions ({sent.retransmitted}) for {relay.dropped} dropped",
        )
        assert sent.retransmitted > 0
        # The subscriber that lost nothing was sent no retransmission.
        assert server_track(tessera, direct_sub.id).retransmitted == 0
        await lossy.leave()
    finally:
        transport.close()
    await direct.leave()
    await publisher.leave()


def video_ssrc(client: ConferenceClient) -> int:
    """The SSRC the server's answer announced for the subscription's video."""
    assert client.pc is not None and client.pc.remoteDescription is not None
    found = re.search(r"a=ssrc:(\d+) ", client.pc.remoteDescription.sdp)
    assert found is not None
    return int(found.group(1))


async def test_a_pli_storm_from_100_subscribers_asks_one_keyframe_per_interval(
    tessera: RunningServer,
) -> None:
    publisher, stream_id = await publish(tessera, ColorVideoTrack((50, 90, 200), fps=15))
    viewers: list[HeaderCountingClient] = []

    async def viewer(number: int) -> HeaderCountingClient:
        client = HeaderCountingClient()
        await client.join(tessera.token(user=f"viewer{number}", role="viewer"))
        subscription = await client.subscribe(stream_id, audio=False)
        await subscription.wait_ready()
        await asyncio.wait_for(client.first_frame.wait(), 60)
        return client

    for batch in range(10):
        viewers += await asyncio.gather(*(viewer(batch * 10 + i) for i in range(10)))
    source = forward_video(tessera, publisher.room_id or "", stream_id)
    requester = source._keyframes  # type: ignore[attr-defined]
    interval = requester._min_interval
    requests = 0
    request = requester.request

    def counted() -> None:
        nonlocal requests
        requests += 1
        request()

    requester.request = counted
    await eventually(lambda: requester._pending is None, what="no keyframe request pending")
    # When each keyframe request left for the publisher (the loop's clock, as the limiter's).
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    send = requester._send

    def timed_send() -> None:
        fired.append(loop.time())
        send()

    requester._send = timed_send
    rounds = 3
    for round_ in range(1, rounds + 1):
        # One real RTCP PLI from each of the 100 receivers.
        for client in viewers:
            assert client.pc is not None
            receiver = next(t.receiver for t in client.pc.getTransceivers() if t.kind == "video")
            await receiver._send_rtcp_pli(video_ssrc(client))
        await eventually(
            lambda round_=round_: requests >= 100 * round_, 30, what=f"round {round_} of PLIs"
        )
    await eventually(lambda: requester._pending is None, what="the deferred request sent")
    # 300 PLIs became a few keyframe requests, never two within one interval (a slower
    # machine only spreads them further apart).
    assert 1 <= len(fired) < requests
    gaps = [later - earlier for earlier, later in itertools.pairwise(fired)]
    assert all(gap >= interval * 0.99 for gap in gaps), gaps
    for client in viewers:
        await client.leave()
    await publisher.leave()


async def test_a_subscriber_that_stops_reading_does_not_slow_the_others(
    tessera: RunningServer,
) -> None:
    publisher, stream_id = await publish(tessera, ColorVideoTrack((200, 60, 60), fps=15))
    clients: list[HeaderCountingClient] = []
    for name in ("stalled", "one", "two"):
        client = HeaderCountingClient()
        await client.join(tessera.token(user=name, role="viewer"))
        subscription = await client.subscribe(stream_id, audio=False)
        await subscription.wait_ready()
        await asyncio.wait_for(client.first_frame.wait(), 30)
        clients.append(client)
    stalled, healthy = clients[0], clients[1:]
    # It stops reading its socket: the kernel's receive buffer fills and drops the rest.
    assert stalled.pc is not None
    ice = stalled.pc.getTransceivers()[0].receiver.transport.transport
    ice._connection._nominated[1].protocol.transport.pause_reading()
    source = forward_video(tessera, publisher.room_id or "", stream_id)
    frames_then = source.packets
    stalled_then = stalled.frames
    healthy_then = [c.frames for c in healthy]
    await eventually(lambda: source.packets >= frames_then + 60, 60, what="4 s of frames")
    made = source.packets - frames_then
    # Every frame the publisher sent in that time reached each healthy subscriber.
    await eventually(
        lambda: all(c.frames - n >= made - 2 for c, n in zip(healthy, healthy_then, strict=True)),
        what=f"the healthy subscribers' {made} frames",
    )
    # (What its ICE queue held when it stopped may still be counted: not more.)
    assert stalled.frames - stalled_then < made // 2
    for client in clients:
        await client.leave()
    await publisher.leave()
