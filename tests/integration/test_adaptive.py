"""Adaptive delivery of a mixed view: real aiortc subscribers behind a shaping relay on loopback.

Each limited subscriber reaches the server through `tests.shapingrelay` (a
token bucket with a tail-dropping queue, as `tc tbf`, plus random loss and a
fixed delay) and decodes on from the next keyframe after a gap NACK did not
fill, as a browser does (aiortc's receiver would wait for 128 more packets).
Its own RTCP moves it along the view's ladder. Times are read
off the decoded frames' RTP timestamps (media time, which a loaded machine
does not stretch); how long each step took is printed, not asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci

from tessera.media.rtpfanout import switch_rung
from tessera.media.rtpheader import vp8_picture_id
from tessera.mixer.mixedstream import MixedStream
from tessera.webrtc_agent.adaptive import AdaptiveVideo
from tessera.webrtc_agent.subscription import Subscription
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.integration.test_fanout import StampedVideoTrack
from tests.shapingrelay import RelayedClient, ShapingRelay, relayed_client, resume_at_keyframes
from tests.support import RunningServer, api

CLOCK = 90000
SMALL = (90, 160)  # every picture is compared at the lowest rung's size
# The view of these tests: 640x360 (a quarter of the default's pixels, for a loaded 2-core
# machine running server and clients at once) with a ladder of the shape.
VIEW = {
    "label": "common",
    "video": {
        "parameters": {"resolution": {"width": 640, "height": 360}, "bitrate": 800},
        "ladder": [
            {"resolution": {"width": 480, "height": 270}, "bitrate": 420},
            {"resolution": {"width": 320, "height": 180}, "bitrate": 200},
            {"resolution": {"width": 160, "height": 90}, "bitrate": 80},
        ],
    },
}


@dataclass
class Received:
    """What one subscriber decoded: per frame its media time (s), size and a small picture."""

    times: list[float] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    pictures: dict[int, np.ndarray] = field(default_factory=dict)  # by RTP timestamp
    keep_pictures: bool = False
    _last_rtp: int | None = None
    _unwrapped = 0

    def add(self, frame: av.VideoFrame) -> None:
        rtp = int(frame.pts or 0) & 0xFFFFFFFF
        if self._last_rtp is not None:
            self._unwrapped += (rtp - self._last_rtp + 2**31) % 2**32 - 2**31
        self._last_rtp = rtp
        self.times.append(self._unwrapped / CLOCK)
        self.sizes.append((frame.width, frame.height))
        if self.keep_pictures:
            y = frame.to_ndarray(format="yuv420p")[: frame.height].astype(np.float32)
            fy, fx = frame.height // SMALL[0], frame.width // SMALL[1]
            small = y[: SMALL[0] * fy, : SMALL[1] * fx].reshape(SMALL[0], fy, SMALL[1], fx)
            self.pictures[rtp] = small.mean(axis=(1, 3))

    def gap_at(self, index: int) -> str:
        """Where the longest gap from frame `index` on is: the sizes on either side."""
        times = self.times[index:]
        if len(times) < 2:
            return "none"
        at = index + int(np.argmax(np.diff(times)))
        (w0, h0), (w1, h1) = self.sizes[at], self.sizes[at + 1]
        return f"{w0}x{h0} -> {w1}x{h1}"

    def since(self, index: int) -> tuple[float, float, int]:
        """From frame `index` on: the longest gap (s), the frame rate, the frame count."""
        times = self.times[index:]
        if len(times) < 2:
            return 0.0, 0.0, len(times)
        gaps = np.diff(times)
        return float(gaps.max()), (len(times) - 1) / (times[-1] - times[0]), len(times)


@contextlib.asynccontextmanager
async def receiving(track: MediaStreamTrack, received: Received) -> AsyncIterator[None]:
    async def run() -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                received.add(frame)

    task = asyncio.ensure_future(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def server_subscription(tessera: RunningServer, subscription_id: str) -> Subscription:
    for transport in tessera.server.agent.transports.values():
        session = transport.sessions.get(subscription_id)
        if isinstance(session, Subscription):
            return session
    raise AssertionError(f"no subscription {subscription_id} on the server")


def adaptive_of(tessera: RunningServer, subscription_id: str) -> AdaptiveVideo:
    adaptive = server_subscription(tessera, subscription_id).adaptive
    assert adaptive is not None, "the subscription does not adapt"
    return adaptive


async def ladder_room(tessera: RunningServer) -> str:
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "ladder", "options": {"views": [VIEW]}}
    )
    assert status == 200, room
    return str(room["id"])


@contextlib.asynccontextmanager
async def published(
    tessera: RunningServer, room: str, fps: int = 15
) -> AsyncIterator[ConferenceClient]:
    publisher = ConferenceClient()
    await publisher.join(tessera.token(room=room, user="publisher"))
    publication = await publisher.publish(video=StampedVideoTrack(fps=fps))
    await publication.wait_ready()
    try:
        yield publisher
    finally:
        await publisher.leave()


@contextlib.asynccontextmanager
async def limited(
    tessera: RunningServer, room: str, user: str, client_class: type[RelayedClient] = RelayedClient
) -> AsyncIterator[tuple[RelayedClient, ShapingRelay]]:
    client, relay, transport = await relayed_client(client_class)
    try:
        await client.join(tessera.token(room=room, user=user))
        yield client, relay
        await client.leave()
    finally:
        transport.close()


def view_of(tessera: RunningServer, client: ConferenceClient) -> MixedStream:
    view = tessera.server.rooms[client.room_id].views["common"]  # type: ignore[index]
    assert isinstance(view, MixedStream)
    return view


def mixed(client: ConferenceClient) -> str:
    return f"{client.room_id}-common"


def fits(adaptive: AdaptiveVideo, bitrate: int) -> bool:
    """The chosen rung fits `bitrate`, and the subscriber is sent that rung already."""
    return adaptive.rungs[adaptive.rung].bitrate <= bitrate and sending_chosen(adaptive)


def sending_chosen(adaptive: AdaptiveVideo) -> bool:
    source = adaptive.track.source
    height = getattr(source, "settings", None) and source.settings.height  # type: ignore[union-attr]
    return adaptive.track._pending is None and height == adaptive.rungs[adaptive.rung].height


async def test_a_limited_subscriber_settles_on_a_rung_that_fits_and_climbs_back(
    tessera: RunningServer,
) -> None:
    room = await ladder_room(tessera)
    async with published(tessera, room), limited(tessera, room, "weak") as (client, relay):
        relay.shape(500_000, loss=0.02, delay=0.08)
        subscription = await client.subscribe(mixed(client), audio=False)
        resume_at_keyframes(subscription)
        await subscription.wait_ready()
        assert subscription.video_track is not None
        adaptive = adaptive_of(tessera, subscription.id)
        assert [r.bitrate for r in adaptive.rungs] == [800_000, 420_000, 200_000, 80_000]
        received = Received()
        async with receiving(subscription.video_track, received):
            started = time.monotonic()
            await eventually(
                lambda: fits(adaptive, 420_000),
                60,
                what="settling on a rung that fits 500 kbit/s",
            )
            rung = adaptive.rung
            # Settled: the subscriber decodes the rung it was switched to.
            size = (adaptive.rungs[rung].width, adaptive.rungs[rung].height)
            await eventually(lambda: received.sizes[-1] == size, 60, what=f"{size} decoded")
            settled_in = time.monotonic() - started
            first = len(received.times)
            await eventually(
                lambda: len(received.times) - first >= 180,
                60,
                what="six seconds of frames after settling",
            )
            gap, fps, count = received.since(first)
            print(  # the figures of the run, for the report
                f"settled on rung {rung} in {settled_in:.1f} s; then {count} frames at"
                f" {fps:.1f} fps, longest gap {gap * 1000:.0f} ms; relay dropped"
                f" {relay.dropped} of {relay.dropped + relay.forwarded}"
            )
            assert fps >= 25, f"{fps:.1f} fps after settling"
            assert gap <= 0.5, f"a freeze of {gap * 1000:.0f} ms after settling"
            assert max(received.sizes[first:])[1] <= 270  # no top rung while limited

            # The limit is lifted: the subscriber climbs one rung per probe, without a gap.
            relay.shape(None)
            lifted = time.monotonic()
            climb_from = len(received.times)
            view = view_of(tessera, client)
            skipped = view.stats.dropped
            await eventually(
                lambda: adaptive.rung == 0 and sending_chosen(adaptive),
                90,
                what="climbing to the top rung",
            )
            climbed_in = time.monotonic() - lifted
            await eventually(lambda: received.sizes[-1] == (640, 360), 30, what="the top rung")
            gap, fps, count = received.since(climb_from)
            skipped = view.stats.dropped - skipped
            print(
                f"climbed to the top in {climbed_in:.1f} s; {count} frames at {fps:.1f} fps,"
                f" longest gap {gap * 1000:.0f} ms ({received.gap_at(climb_from)}) across"
                f" {adaptive.chooser.switches} switches; the view skipped {skipped} ticks"
            )
            # Ticks the view itself skipped (a starved machine: every rung and subscriber
            # misses them) are not the switch's; counted apart, printed above.
            assert gap <= 0.5 + skipped / 30, f"a gap of {gap * 1000:.0f} ms while switching up"
        described = adaptive.describe()
        assert described["rung"] == 0 and described["rungSwitches"] >= 2
        assert described["reports"] > 0 and described["estimatedBitrate"] is not None


async def test_a_drop_from_2_mbits_to_300_kbits_recovers(tessera: RunningServer) -> None:
    room = await ladder_room(tessera)
    async with published(tessera, room), limited(tessera, room, "dropping") as (client, relay):
        relay.shape(2_000_000)
        subscription = await client.subscribe(mixed(client), audio=False)
        resume_at_keyframes(subscription)
        await subscription.wait_ready()
        assert subscription.video_track is not None
        adaptive = adaptive_of(tessera, subscription.id)
        received = Received()
        async with receiving(subscription.video_track, received):
            await eventually(
                lambda: (
                    adaptive.rung == 0 and sending_chosen(adaptive) and len(received.times) >= 60
                ),
                60,
                what="frames of the top rung",
            )
            relay.shape(300_000)
            dropped = time.monotonic()
            await eventually(
                lambda: fits(adaptive, 200_000),
                60,
                what="a rung that fits 300 kbit/s",
            )
            switched = len(received.times)
            # Recovered: the subscriber decodes the rung it was switched to. The switch itself
            # may freeze (the link fell under the old rung: its queued packets are dropped and
            # the decoder waits for the new rung's keyframe); after it, no freeze.
            rung = adaptive.rungs[adaptive.rung]
            size = (rung.width, rung.height)
            await eventually(lambda: received.sizes[-1] == size, 60, what=f"{size} decoded")
            first = len(received.times)
            await eventually(
                lambda: len(received.times) - first >= 60, 60, what="frames flowing again"
            )
            switch_gap, _, _ = received.since(switched)
            gap, fps, _ = received.since(first)
            print(
                f"300 kbit/s: on rung {adaptive.rung} and decoded after"
                f" {time.monotonic() - dropped:.1f} s (the switch froze {switch_gap:.2f} s);"
                f" then {fps:.1f} fps, longest gap {gap:.2f} s"
            )
            assert gap <= 0.5 and fps >= 25, (gap, fps)


async def test_subscribers_on_different_rungs_see_the_same_picture(
    tessera: RunningServer,
) -> None:
    # At the view's frame rate: every canvas tick differs from the next (the check can fail).
    room = await ladder_room(tessera)
    async with (
        published(tessera, room, fps=30) as publisher,
        limited(tessera, room, "weak") as (client, relay),
    ):
        relay.shape(300_000)
        direct = ConferenceClient()
        await direct.join(tessera.token(room=room, user="direct"))
        subscriptions = [
            await direct.subscribe(mixed(direct), audio=False),
            await client.subscribe(mixed(client), audio=False),
        ]
        resume_at_keyframes(subscriptions[1])
        for subscription in subscriptions:
            await subscription.wait_ready()
        top, low = (adaptive_of(tessera, s.id) for s in subscriptions)
        await eventually(
            lambda: low.rung >= 2 and sending_chosen(low), 60, what="a rung that fits 300 kbit/s"
        )
        assert top.rung == 0
        # Both rungs come from the one view: the same canvas, the same encoders' ticks; the
        # rungs passed on the way down are encoded no more.
        view = tessera.server.rooms[publisher.room_id].views["common"]  # type: ignore[index]
        assert isinstance(view, MixedStream)
        await eventually(
            lambda: (
                {o.settings.height for o in view.video_outputs.values()}
                == {360, low.rungs[low.rung].height}
            ),
            30,
            what="only the two rungs in use encoded",
        )
        received = [Received(keep_pictures=True), Received(keep_pictures=True)]
        tracks = [s.video_track for s in subscriptions]
        assert tracks[0] is not None and tracks[1] is not None
        async with receiving(tracks[0], received[0]), receiving(tracks[1], received[1]):
            await eventually(
                lambda: min(len(r.pictures) for r in received) >= 60, 60, what="pictures of both"
            )
            # The top's pictures go on past the low's: every low picture has its counterpart.
            enough = len(received[0].pictures) + 30
            received[1].keep_pictures = False
            await eventually(lambda: len(received[0].pictures) >= enough, 60, what="more pictures")
        # Each low picture against every top one: the closest is of the same canvas tick, one
        # fixed media-time offset apart for all (each receiver counts from its first frame).
        tops = sorted(received[0].pictures.items())
        offsets: list[int] = []
        for rtp, picture in sorted(received[1].pictures.items()):
            diffs = [(float(np.abs(top - picture).mean()), top_rtp) for top_rtp, top in tops]
            _, best_rtp = min(diffs)
            # Signed: the best match may be a timestamp or two behind (a switch's nudge).
            offsets.append(round(((best_rtp - rtp + 2**31) % 2**32 - 2**31) / 3000))
        common = max(set(offsets), key=offsets.count)

        def counterpart(rtp: int, ticks: int) -> np.ndarray | None:
            # The rungs' timestamps may differ by 1 more for each switch (see _take_pending).
            for nudge in (0, -1, 1, -2, 2):
                found = received[0].pictures.get((rtp + ticks * 3000 + nudge) & 0xFFFFFFFF)
                if found is not None:
                    return found
            return None

        same, apart = [], []
        for rtp, picture in received[1].pictures.items():
            top, other = counterpart(rtp, common), counterpart(rtp, common + 4)
            if top is not None and other is not None:
                same.append(float(np.abs(top - picture).mean()))
                apart.append(float(np.abs(other - picture).mean()))
        print(
            f"same canvas: {len(same)} pairs {common} ticks apart, mean |diff| {np.mean(same):.1f};"
            f" 4 ticks later {np.mean(apart):.1f}"
        )
        assert len(same) >= 20, offsets
        assert np.mean(same) < 6, same
        # The input moves every tick: the comparison tells one canvas from another.
        assert np.mean(apart) > 2 * np.mean(same), (same, apart)
        await direct.leave()


class RembSender:
    """A subscriber's real aiortc receiver made to send a REMB of a given figure."""

    def __init__(self, subscription: Any) -> None:
        self.receiver: Any = subscription.transceivers["video"].receiver

    async def send(self, bitrate: int) -> None:
        sources = self.receiver.getSynchronizationSources()
        assert sources, "no media received yet"
        remb = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=self.receiver._RTCRtpReceiver__rtcp_ssrc,
            media_ssrc=0,
            fci=pack_remb_fci(bitrate, [sources[0].source]),
        )
        await self.receiver._send_rtcp(remb)


async def test_bad_feedback_keeps_a_sane_rung_and_starves_nobody(tessera: RunningServer) -> None:
    room = await ladder_room(tessera)
    async with published(tessera, room), limited(tessera, room, "silent") as (silent, relay):
        bad = ConferenceClient()
        await bad.join(tessera.token(room=room, user="bad"))
        good = ConferenceClient()
        await good.join(tessera.token(room=room, user="good"))
        subs = {
            "bad": await bad.subscribe(mixed(bad), audio=False),
            "good": await good.subscribe(mixed(good), audio=False),
        }
        relay.drop_feedback = True  # from the start: the server never hears this receiver
        subs["silent"] = await silent.subscribe(mixed(silent), audio=False)
        resume_at_keyframes(subs["silent"])
        for sub in subs.values():
            await sub.wait_ready()
        adaptive = {name: adaptive_of(tessera, sub.id) for name, sub in subs.items()}
        received = {name: Received() for name in subs}
        async with contextlib.AsyncExitStack() as stack:
            for name, sub in subs.items():
                assert sub.video_track is not None
                await stack.enter_async_context(receiving(sub.video_track, received[name]))
            await eventually(lambda: len(received["bad"].times) >= 10, 60, what="bad's frames")
            remb = RembSender(subs["bad"])
            # Receivers' own estimators off: only the figures below are sent.
            remb.receiver._RTCRtpReceiver__remote_bitrate_estimator = None
            for figure in (0, 1, 2**40 - 1):
                await remb.send(figure)
            await eventually(
                lambda: adaptive["bad"].last.rejected >= 3, 30, what="the absurd REMBs rejected"
            )
            first = {name: len(r.times) for name, r in received.items()}
            await eventually(
                lambda: all(len(r.times) - first[n] >= 90 for n, r in received.items()),
                90,
                what="three seconds of frames for everyone",
            )
        assert adaptive["bad"].last.remb is None  # none of them was taken
        assert adaptive["bad"].rung == 0 and adaptive["good"].rung == 0
        # No feedback at all: the rung holds (the top, as without a ladder), never "fresh".
        assert adaptive["silent"].rung == 0 and not adaptive["silent"].last.fresh
        assert adaptive["silent"].last.reports == 0
        for name, r in received.items():
            gap, fps, _ = r.since(first[name])
            assert gap <= 0.5 and fps >= 25, (name, gap, fps)
        # querybwe: the adaptive estimate of a subscriber that reports (its own figures).
        reply = await good.request(
            "subscription-control", {"id": subs["good"].id, "operation": "querybwe"}
        )
        assert reply["estimatedBitrate"] > 0 and reply["adaptive"]["rung"] == 0
        # Prometheus: adaptive subscribers per view and rung.
        async with (
            aiohttp.ClientSession() as session,
            session.get(tessera.url + "/metrics") as resp,
        ):
            text = await resp.text()
        labels = f'resolution="640x360",rung="0",view="{room}-common"'
        assert f"tessera_adaptive_subscribers{{{labels}}} 3.0" in text, text
        await bad.leave()
        await good.leave()


async def test_a_switch_between_rungs_has_no_gap(tessera: RunningServer) -> None:
    room = await ladder_room(tessera)
    async with published(tessera, room), limited(tessera, room, "switching") as (client, _):
        subscription = await client.subscribe(mixed(client), audio=False)
        await subscription.wait_ready()
        assert subscription.video_track is not None
        adaptive = adaptive_of(tessera, subscription.id)
        adaptive.close()  # the test moves it: every rung, down and up
        picture_ids = note_picture_ids(subscription)
        received = Received()
        async with receiving(subscription.video_track, received):
            await eventually(lambda: len(received.times) >= 15, 60, what="frames of the top")
            for rung in (3, 1, 2, 0):
                switch_rung(adaptive.track, adaptive.stream.rung_source(adaptive.format, rung))
                size = (adaptive.rungs[rung].width, adaptive.rungs[rung].height)
                await eventually(
                    lambda s=size: received.sizes[-1] == s,
                    60,
                    what=f"{size} decoded",  # type: ignore[misc]
                )
                first = len(received.times)
                await eventually(lambda f=first: len(received.times) - f >= 15, 60, what="frames")  # type: ignore[misc]
        gap, _, count = received.since(0)
        print(f"{count} frames across 4 switches: longest gap {gap * 1000:.0f} ms")
        # No freeze at a switch: the old rung played until the new rung's keyframe.
        assert gap <= 0.2, f"a gap of {gap * 1000:.0f} ms"
        assert adaptive.track.rung_switches == 4
        # Each rung numbers its own VP8 pictures; the subscriber sees one sequence going on
        # (a browser drops a keyframe whose PictureID is not newer than the last decoded).
        steps = [(b - a) & 0x7FFF for a, b in itertools.pairwise(picture_ids)]
        jumps = [step for step in steps if 64 < step < 0x7FFF - 64]
        assert len(picture_ids) > 60 and not jumps, jumps


def note_picture_ids(subscription: Any) -> list[int]:
    """The VP8 PictureIDs a subscriber's receiver gets, one per picture, in arrival order."""
    picture_ids: list[int] = []
    buffer = subscription.transceivers["video"].receiver._RTCRtpReceiver__jitter_buffer
    add = buffer.add

    def add_and_note(packet: RtpPacket) -> Any:
        found = vp8_picture_id(packet.payload)
        if found is not None and (not picture_ids or picture_ids[-1] != found[0]):
            picture_ids.append(found[0])
        return add(packet)

    buffer.add = add_and_note
    return picture_ids
