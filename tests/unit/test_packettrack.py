"""PacketTrack: shared packets into one sender, keyframe-gated, retimed on switch."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import pytest

from tessera.media.mediasource import KeyframeRequester, PacketSource
from tessera.media.packettrack import MAX_QUEUED_VIDEO, PacketTrack
from tests.eventually import eventually


class CountingSource(PacketSource):
    """A real PacketSource that counts keyframe requests."""

    def __init__(self) -> None:
        super().__init__("video", "vp8", 90000)
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


def packet(pts: int, payload: bytes = b"\x11\x00") -> av.Packet:
    p = av.Packet(payload)
    p.pts = pts
    p.time_base = Fraction(1, 90000)
    return p


async def test_starts_at_a_keyframe_and_asks_for_one() -> None:
    source = CountingSource()
    track = PacketTrack("video", source)
    assert source.keyframe_requests == 1 and source.sink_count == 1
    source.emit(packet(0), keyframe=False)
    source.emit(packet(3000), keyframe=True)
    source.emit(packet(6000), keyframe=False)
    first = await track.recv()
    second = await track.recv()
    assert (first.pts, second.pts) == (3000, 6000)
    track.stop()
    assert source.sink_count == 0


async def test_shares_packets_without_copying() -> None:
    source = CountingSource()
    a, b = PacketTrack("video", source), PacketTrack("video", source)
    p = packet(0)
    source.emit(p, keyframe=True)
    assert (await a.recv()) is p and (await b.recv()) is p


async def test_switching_source_continues_the_timeline() -> None:
    one, two = CountingSource(), CountingSource()
    track = PacketTrack("video", one)
    one.emit(packet(90000), keyframe=True)
    await track.recv()
    track.attach(two)
    assert one.sink_count == 0 and two.sink_count == 1 and two.keyframe_requests == 1
    two.emit(packet(5_000_000), keyframe=True)
    two.emit(packet(5_003_000), keyframe=False)
    assert (await track.recv()).pts == 93000
    assert (await track.recv()).pts == 96000


async def test_a_reader_that_stalls_is_reset_to_the_next_keyframe() -> None:
    source = CountingSource()
    track = PacketTrack("video", source)
    source.emit(packet(0), keyframe=True)
    for i in range(1, MAX_QUEUED_VIDEO + 5):
        source.emit(packet(i * 3000), keyframe=False)
    assert track.dropped >= MAX_QUEUED_VIDEO
    source.emit(packet(10**6), keyframe=True)
    assert (await track.recv()).pts == 10**6


async def test_paused_track_drops_and_resumes_on_keyframe() -> None:
    source = CountingSource()
    track = PacketTrack("video", source)
    source.emit(packet(0), keyframe=True)
    track.set_paused(True)
    source.emit(packet(3000), keyframe=True)
    track.set_paused(False)
    source.emit(packet(6000), keyframe=False)
    source.emit(packet(9000), keyframe=True)
    assert (await track.recv()).pts == 9000


async def test_recv_ends_when_stopped() -> None:
    from aiortc.mediastreams import MediaStreamError

    track = PacketTrack("video", CountingSource())
    waiter = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiter


async def test_keyframe_requests_are_rate_limited_but_not_lost() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    requester = KeyframeRequester(lambda: sent.append(loop.time()), min_interval=0.2)
    for _ in range(5):
        requester.request()
    assert len(sent) == 1
    # The deferred one goes out at the end of the interval, not before (a lower bound: a
    # busy machine can only make it later).
    await eventually(lambda: len(sent) == 2, what="the deferred request")
    assert sent[1] - sent[0] >= 0.19
    requester.close()


async def test_a_first_picture_waits_a_shorter_interval_than_a_repeat() -> None:
    # Nine participants joining at once: each one's first keyframe comes within the short
    # first interval of the last, not the whole interval meant for repeated requests.
    sent: list[float] = []
    requester = KeyframeRequester(
        lambda: sent.append(time.monotonic()), min_interval=30.0, first_interval=0.05
    )
    requester.request()  # the last keyframe, just sent
    requester.request()  # a repeat: deferred by the whole interval
    requester.request_first()  # a newcomer: brings the deferred one forward
    requester.request_first()  # another: the one coming is soon enough
    assert len(sent) == 1
    await eventually(lambda: len(sent) == 2, what="the newcomer's keyframe")
    assert sent[1] - sent[0] >= 0.045
    requester.request()  # a repeat after it still waits the whole interval
    assert len(sent) == 2 and requester._pending is not None
    requester.close()
