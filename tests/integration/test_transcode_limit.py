"""The agent's limit on forward transcodes (`[webrtc] max_transcodes`): a subscription that
needs one more is refused by name, an adaptive forward subscriber keeps a rung that runs,
and a transcode that stops makes room for the next."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tessera.webrtc_agent.forwardstream import ForwardStream
from tessera.webrtc_agent.transcodelimit import TranscodeLimit
from tessera_client import ClientError
from tests.eventually import eventually
from tests.integration.test_adaptive import adaptive_of, limited
from tests.shapingrelay import resume_at_keyframes
from tests.support import RunningServer, joined
from tests.synthetic import ColorVideoTrack, NoiseVideoTrack, next_video_frame

RED = (200, 30, 30)


@pytest.fixture
def transcodes(tessera: RunningServer) -> Iterator[TranscodeLimit]:
    limit: TranscodeLimit = tessera.server.agent.transcodes
    configured = limit.limit
    yield limit
    limit.limit = configured


async def test_a_transcode_past_the_limit_is_refused_until_one_stops(
    tessera: RunningServer, transcodes: TranscodeLimit
) -> None:
    transcodes.limit = transcodes.running + 1  # room for one more
    alice = await joined(tessera, "alice")
    bob, carol = await joined(tessera, "bob"), await joined(tessera, "carol")
    publication = await alice.publish(video=ColorVideoTrack(RED, width=640, height=360))
    await publication.wait_ready()
    for viewer in (bob, carol):
        await eventually(lambda v=viewer: publication.id in v.streams, what="the stream")  # type: ignore[misc]
    small = {"resolution": {"width": 320, "height": 180}}
    first = await bob.subscribe(publication.id, audio=False, video_parameters=small)
    await first.wait_ready()
    assert first.video_track is not None
    frame = await next_video_frame(first.video_track, timeout=20)
    assert (frame.width, frame.height) == (320, 180)

    other = {"resolution": {"width": 480, "height": 270}}
    refused = transcodes.refused
    with pytest.raises(ClientError, match="No transcoding capacity"):
        second = await carol.subscribe(publication.id, audio=False, video_parameters=other)
        await second.wait_ready()
    assert transcodes.refused == refused + 1
    # The same format rides the running transcode: no capacity needed.
    same = await carol.subscribe(publication.id, audio=False, video_parameters=small)
    await same.wait_ready()
    await same.unsubscribe()

    # The first transcode stops with its last subscriber: the next one runs.
    stream = tessera.server.rooms[alice.room_id].streams[publication.id]  # type: ignore[index]
    assert isinstance(stream, ForwardStream)
    await first.unsubscribe()
    await eventually(lambda: not stream.transcoders, what="the transcode stopped")
    second = await carol.subscribe(publication.id, audio=False, video_parameters=other)
    await second.wait_ready()
    assert second.video_track is not None
    frame = await next_video_frame(second.video_track, timeout=20)
    assert (frame.width, frame.height) == (480, 270)
    for client in (alice, bob, carol):
        await client.leave()


async def test_an_adaptive_forward_subscriber_keeps_a_rung_that_runs(
    tessera: RunningServer, transcodes: TranscodeLimit
) -> None:
    configured = transcodes.limit
    transcodes.limit = transcodes.running  # no room for another
    alice = await joined(tessera, "alice")
    publication = await alice.publish(video=NoiseVideoTrack(320, 180, fps=15))
    await publication.wait_ready()
    assert alice.room_id is not None
    async with limited(tessera, alice.room_id, "weak") as (client, relay):
        await eventually(lambda: publication.id in client.streams, what="the stream")
        relay.shape(150_000)  # well under the noise's bitrate: the link is congested
        subscription = await client.subscribe(publication.id, audio=False)
        resume_at_keyframes(subscription)
        await subscription.wait_ready()
        adaptive = adaptive_of(tessera, subscription.id)
        assert len(adaptive.rungs) == 2  # 320x180 as published, 160x90 transcoded
        await eventually(
            lambda: adaptive.chooser.refused >= 1, 60, what="a step down that cannot be had"
        )
        described = adaptive.describe()
        assert described["rung"] == 0 and described["rungsRefused"] >= 1, described
        assert described["rungSwitches"] == 0, described
        stream = tessera.server.rooms[alice.room_id].streams[publication.id]  # type: ignore[index]
        assert isinstance(stream, ForwardStream) and not stream.transcoders
        assert adaptive.track.source is stream.tracks["video"]  # still the publisher's packets

        # Room for a transcode again: the next step down is had.
        transcodes.limit = configured
        await eventually(
            lambda: (
                adaptive.rung == 1
                and adaptive.track._pending is None
                and adaptive.track.source in stream.transcoders.values()
            ),
            60,
            what="the transcoded rung",
        )
    await alice.leave()
