"""Forward streams adapt: a subscriber whose link cannot carry the publisher gets a shared
transcoded rung, one transcode per rung, only while used (needs root: tests/netlab)."""

from __future__ import annotations

import time

import pytest

from tessera.webrtc_agent.forwardstream import ForwardStream
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.netclient import SubscriberProcess
from tests.netlab import open_netlab
from tests.support import RunningServer
from tests.synthetic import NoiseVideoTrack

LOWER = {(320, 180), (160, 90)}


def size_of(sub: SubscriberProcess) -> tuple[int, int]:
    sub.check_alive()
    latest = sub.report.latest()
    return int(latest.get("width", 0)), int(latest.get("height", 0))


@pytest.mark.timeout(300)
async def test_forward_subscriber_moves_to_a_rung_that_fits(
    tessera: RunningServer,
) -> None:
    alice = ConferenceClient()
    await alice.join(tessera.token(user="alice"))
    publication = await alice.publish(video=NoiseVideoTrack(640, 360, fps=30))
    await publication.wait_ready()
    room = tessera.server.rooms[alice.room_id]  # type: ignore[index]
    stream = room.streams[publication.id]
    assert isinstance(stream, ForwardStream)
    async with open_netlab() as lab:
        await lab.forward_tcp(tessera.port)
        bob = await SubscriberProcess.start(lab, tessera.token(user="bob"), publication.id)
        try:
            await eventually(
                lambda: size_of(bob) == (640, 360) and bob.report.latest()["frames"] >= 60,
                90,
                "bob decodes the publisher's stream as it is",
            )
            assert not stream.transcoders

            lab.set_rate(500, "down")
            lab.set_loss(0.02, "down")
            lab.set_delay(40)  # one way: 80 ms round trip
            limited = time.monotonic()
            await eventually(lambda: size_of(bob) in LOWER, 60, "bob on a lower rung")
            settled = time.monotonic()
            # One transcoder per rung in use, of a rung's size (no per-subscriber encode).
            assert {(f.width, f.height) for f in stream.transcoders} <= LOWER
            frames = bob.report.latest()["frames"]
            await eventually(
                lambda: size_of(bob) and bob.report.latest()["frames"] >= frames + 300,
                90,
                "300 frames behind the limit",
            )
            fps = bob.report.fps_since(settled)
            freeze = bob.report.longest_gap_since(settled + 1.0)
            sizes = [(f["width"], f["height"]) for f in bob.report.frames if f["t"] >= settled]
            adaptive = next(s.adaptive for _, s in room._subscriptions_of(publication.id))
            print(
                f"settled in {settled - limited:.1f} s; then {fps:.1f} fps, "
                f"longest gap {freeze:.0f} ms, sizes {sizes}; tbf dropped "
                f"{lab.shaper_drops('down')}; {adaptive.describe() if adaptive else None}"
            )
            # The figures are printed, not asserted: speed is for bench/ (see the README).

            lab.lift()
            lab.set_loss(0.0)
            lifted = time.monotonic()
            # Climbing back is the estimator's pace (aiortc's REMB grows a few % a second),
            # measured here, not asserted: issue 17's "within 20 s" is not met yet.
            try:
                await eventually(lambda: size_of(bob) == (640, 360), 45, "bob back on top")
                print(f"back on top {time.monotonic() - lifted:.1f} s after the limit was lifted")
            except AssertionError:
                print(f"not back on top 45 s after the limit was lifted: {size_of(bob)}")
        finally:
            await bob.stop()
            await alice.leave()


@pytest.mark.timeout(300)
async def test_subscribers_on_one_rung_share_one_transcode(tessera: RunningServer) -> None:
    alice = ConferenceClient()
    await alice.join(tessera.token(user="alice"))
    publication = await alice.publish(video=NoiseVideoTrack(640, 360, fps=30))
    await publication.wait_ready()
    room = tessera.server.rooms[alice.room_id]  # type: ignore[index]
    stream = room.streams[publication.id]
    assert isinstance(stream, ForwardStream)
    async with open_netlab() as lab_b, open_netlab() as lab_c:
        subscribers = []
        try:
            for lab, user in ((lab_b, "bob"), (lab_c, "carol")):
                await lab.forward_tcp(tessera.port)
                token = tessera.token(user=user)
                subscribers.append(await SubscriberProcess.start(lab, token, publication.id))
            for sub in subscribers:
                await eventually(lambda s=sub: size_of(s) == (640, 360), 60, "the publisher")
            for lab in (lab_b, lab_c):
                lab.set_rate(150, "down")  # only the 160x90 rung (72 kbit/s) fits
            await eventually(
                lambda: all(size_of(s) == (160, 90) for s in subscribers),
                90,
                "both on the 160x90 rung",
            )
            # Two subscribers on one rung: one decode, one scale + encode for both.
            assert [(f.width, f.height) for f in stream.transcoders] == [(160, 90)]
            transcoder = stream.transcoders[next(iter(stream.transcoders))]
            encoded = transcoder.encoded
            await eventually(lambda: transcoder.encoded > encoded + 30, 30, "the rung encodes")
        finally:
            for sub in subscribers:
                await sub.stop()
        # Nobody on a rung: no transcode (only while a subscriber uses it).
        await eventually(lambda: not stream.transcoders, 30, "the rungs' transcoders stopped")
    await alice.leave()
