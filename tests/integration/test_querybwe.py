"""subscription-control querybwe: each subscriber's own estimate, from what its receiver reports."""

from __future__ import annotations

from typing import Any

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from tessera_client import ClientError, Subscription
from tests.eventually import eventually
from tests.support import NO_LADDER, RunningServer, joined, room_with
from tests.synthetic import ColorVideoTrack, ToneTrack, next_video_frame


class ReportedBandwidth:
    """A subscriber's real aiortc receiver that reports `bitrate` as its estimate (REMB).

    The receiver's own estimator is switched off so that the only REMB it sends is
    the figure given, as a receiver behind a link of that capacity would report.
    """

    def __init__(self, subscription: Subscription, bitrate: int) -> None:
        self.receiver: Any = subscription.transceivers["video"].receiver
        self.receiver._RTCRtpReceiver__remote_bitrate_estimator = None
        self.bitrate = bitrate

    async def report(self) -> None:
        sources = self.receiver.getSynchronizationSources()
        assert sources, "no media received yet"
        remb = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=self.receiver._RTCRtpReceiver__rtcp_ssrc,
            media_ssrc=0,
            fci=pack_remb_fci(self.bitrate, [sources[0].source]),
        )
        await self.receiver._send_rtcp(remb)


async def test_two_subscribers_get_their_own_receivers_estimates(tessera: RunningServer) -> None:
    # Forward subscribers on a ladder answer with the adaptive estimate (its own test):
    # here the receivers' REMB figures themselves, unadapted.
    room = await room_with(tessera, "no-ladder", transcoding=NO_LADDER)
    publisher = await joined(tessera, "cam", room=room)
    pub = await publisher.publish(video=ColorVideoTrack((40, 160, 40)))
    await pub.wait_ready()
    reports = {}
    subscriptions = {}
    # Exact in REMB's 18-bit mantissa, and outside aiortc's 250 kbit/s..1.5 Mbit/s clamp.
    for user, bitrate in (("slow", 150_000), ("fast", 2_400_000)):
        client = await joined(tessera, user, room=room)
        await eventually(lambda c=client: pub.id in c.streams, what=f"{user} sees the stream")  # type: ignore[misc]
        sub = await client.subscribe(pub.id)
        await sub.wait_ready()
        assert sub.video_track is not None
        await next_video_frame(sub.video_track, timeout=20)
        reports[user] = ReportedBandwidth(sub, bitrate)
        subscriptions[user] = sub

    async def estimate_is(user: str) -> bool:
        await reports[user].report()
        return await subscriptions[user].query_bwe() == reports[user].bitrate

    # Polled gently: the portal limits a client's request rate.
    await eventually(lambda: estimate_is("slow"), what="the slow estimate", interval=0.2)
    await eventually(lambda: estimate_is("fast"), what="the fast estimate", interval=0.2)
    # Each keeps its own figure: reporting to one does not move the other's.
    assert await subscriptions["slow"].query_bwe() == 150_000

    # A receiver that reports no estimate (aiortc's audio receivers send no REMB) gets a
    # clear error, not a made-up figure.
    listener = await joined(tessera, "listener")
    speaker = await listener.publish(audio=ToneTrack(440))
    await speaker.wait_ready()
    await eventually(lambda: speaker.id in listener.streams, what="the audio stream")
    audio_sub = await listener.subscribe(speaker.id)
    await audio_sub.wait_ready()
    try:
        await audio_sub.query_bwe()
        raise AssertionError("an estimate was given for a subscription nobody estimated")
    except ClientError as exc:
        assert "No bandwidth estimate yet" in str(exc)
    for client in (publisher, listener, *(s.client for s in subscriptions.values())):
        await client.leave()
