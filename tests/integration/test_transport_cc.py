"""Transport-wide congestion control: a subscriber that sends transport-cc feedback and no
REMB (as Chromium does once the packets carry transport-wide sequence numbers) is moved
along the view's ladder by the server's own delay-based estimate.

The subscriber is a real aiortc peer behind the shaping relay (tests/shapingrelay.py)
whose offer carries transport-cc, answering with feedback (tests/twccreceiver.py).
"""

from __future__ import annotations

import time
from typing import Any

from tessera.media.transportcc import TransportFeedback
from tests.eventually import eventually
from tests.integration.test_adaptive import (
    Received,
    adaptive_of,
    fits,
    ladder_room,
    limited,
    mixed,
    published,
    receiving,
    sending_chosen,
)
from tests.shapingrelay import RelayedClient, resume_at_keyframes
from tests.support import RunningServer
from tests.synthetic import ColorVideoTrack
from tests.twccreceiver import TransportCcFeedback, answered_transport_cc, offer_transport_cc


class TransportCcClient(RelayedClient):
    """A relayed client whose offers carry transport-cc on their video m-lines."""

    def _via_relay(self, data: dict[str, Any]) -> str:
        return offer_transport_cc(super()._via_relay(data))


async def test_transport_cc_is_answered_on_subscriptions_video_only(
    tessera: RunningServer,
) -> None:
    room = await ladder_room(tessera)
    async with (
        published(tessera, room),
        limited(tessera, room, "both", TransportCcClient) as (client, _),
    ):
        # Its own camera first: a publication's m-line must not get transport-cc (the
        # server's receiver sends no such feedback, and a browser would hold its rate down).
        publication = await client.publish(video=ColorVideoTrack((200, 40, 40)))
        await publication.wait_ready()
        subscription = await client.subscribe(mixed(client))
        await subscription.wait_ready()
        answer = client.pc.remoteDescription.sdp
        assert answered_transport_cc(answer) == [
            ("video", "recvonly", False),  # the server receives the camera
            ("audio", "sendonly", False),  # audio carries no transport-wide numbers
            ("video", "sendonly", True),
        ]
        adaptive = adaptive_of(tessera, subscription.id)
        track = adaptive.track
        await eventually(lambda: track.transport_cc is not None, what="transport-cc in use")
        transport_cc = track.transport_cc
        assert transport_cc is not None

        # Hostile feedback: a truncated one is refused with its reason; one naming packets
        # never sent, at absurd times, is counted and changes nothing.
        dtls = subscription.transceivers["video"].receiver.transport
        truncated = TransportFeedback(1, 0, 100, 0, (1_000, 2_000, None)).to_bytes()[:-4]
        truncated = truncated[:2] + (len(truncated) // 4 - 1).to_bytes(2, "big") + truncated[4:]
        await dtls._send_rtp(truncated)
        await dtls._send_rtp(TransportFeedback(1, 0, 40_000, 1, (0, 8_000_000, None)).to_bytes())
        await eventually(
            lambda: transport_cc.malformed == 1 and transport_cc.unknown >= 3,
            what="the bad feedback counted",
        )
        assert transport_cc.bitrate is None or transport_cc.bitrate >= 30_000
        assert adaptive.rung == 0 and not adaptive.closed


async def test_a_subscriber_is_stepped_down_by_delay_alone_and_climbs_back(
    tessera: RunningServer,
) -> None:
    room = await ladder_room(tessera)
    async with (
        published(tessera, room),
        limited(tessera, room, "twcc", TransportCcClient) as (client, relay),
    ):
        subscription = await client.subscribe(mixed(client), audio=False)
        resume_at_keyframes(subscription)
        feedback = TransportCcFeedback(subscription.transceivers["video"].receiver)
        await subscription.wait_ready()
        assert subscription.video_track is not None
        adaptive = adaptive_of(tessera, subscription.id)
        received = Received()
        try:
            async with receiving(subscription.video_track, received):
                await eventually(
                    lambda: (
                        adaptive.describe()["transportCc"]
                        and adaptive.rung == 0
                        and sending_chosen(adaptive)
                        and len(received.times) >= 30
                    ),
                    60,
                    what="the top rung, estimated from transport-cc feedback",
                )
                described = adaptive.describe()
                assert described["remb"] is None  # the subscriber sends none
                assert described["delayBasedBitrate"] is not None and described["feedbacks"] > 0

                # A deep queue: the link delays what it cannot carry and drops nothing, so
                # neither loss nor NACKs say it is congested; only the growing delay does.
                relay.shape(250_000, queue_delay=20.0)
                limited_at = time.monotonic()
                dropped_at_step: list[int] = []

                def stepped_down() -> bool:
                    if adaptive.rung > 0 and not dropped_at_step:
                        dropped_at_step.append(relay.dropped)
                    return bool(dropped_at_step)

                await eventually(stepped_down, 60, what="a step down on delay")
                stepped_in = time.monotonic() - limited_at
                await eventually(
                    lambda: fits(adaptive, 250_000), 60, what="a rung that fits 250 kbit/s"
                )
                described = adaptive.describe()
                print(
                    f"stepped down {stepped_in:.1f} s after the limit, with"
                    f" {dropped_at_step[0]} packets dropped; on rung {adaptive.rung},"
                    f" delay-based {described['delayBasedBitrate']} bit/s"
                    f" ({described['delayState']}), {described['feedbacks']} feedbacks"
                )
                assert dropped_at_step == [0], "the step down waited for loss"

                relay.shape(None)
                lifted = time.monotonic()
                await eventually(
                    lambda: adaptive.rung == 0 and sending_chosen(adaptive),
                    90,
                    what="climbing back to the top rung",
                )
                print(f"back on the top rung {time.monotonic() - lifted:.1f} s after the lift")
        finally:
            feedback.close()
        assert feedback.sent > 0 and adaptive.track.transport_cc is not None
        assert adaptive.track.transport_cc.malformed == 0
