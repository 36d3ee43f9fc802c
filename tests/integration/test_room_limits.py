"""Room options participantLimit, inputLimit and notifying, as OWT applies them."""

from __future__ import annotations

from tessera_client import ClientError, ConferenceClient
from tests.support import RunningServer, joined, room_with
from tests.synthetic import ToneTrack


async def test_participant_limit(tessera: RunningServer) -> None:
    room = await room_with(tessera, "small", participantLimit=2)
    first, second = await joined(tessera, "a", room=room), await joined(tessera, "b", room=room)
    third = ConferenceClient()
    try:
        await third.join(tessera.token(room=room, user="c"))
        raise AssertionError("a third participant joined a room of two")
    except ClientError as exc:
        assert str(exc) == "Room is full"
    await second.leave()
    again = await joined(tessera, "c", room=room)  # a place is free again
    for client in (first, again):
        await client.leave()


async def test_input_limit(tessera: RunningServer) -> None:
    room = await room_with(tessera, "one-voice", inputLimit=1)
    first, second = await joined(tessera, "a", room=room), await joined(tessera, "b", room=room)
    pub = await first.publish(audio=ToneTrack(300))
    await pub.wait_ready()
    try:
        await second.publish(audio=ToneTrack(400))
        raise AssertionError("a second input was published into a room of one")
    except ClientError as exc:
        assert str(exc) == "Too many inputs"
    await pub.unpublish()
    later = await second.publish(audio=ToneTrack(400))
    await later.wait_ready()
    for client in (first, second):
        await client.leave()


async def test_notifying_off_sends_no_participant_or_stream_events(tessera: RunningServer) -> None:
    room = await room_with(
        tessera,
        "quiet",
        notifying={"participantActivities": False, "streamChange": False},
    )
    watcher = await joined(tessera, "watcher", room=room)
    other = await joined(tessera, "other", room=room)
    pub = await other.publish(audio=ToneTrack(300))
    await pub.wait_ready()
    await pub.unpublish()
    # A text sent after all that arrives after any event it caused (one ordered connection).
    await other.send_text("done")
    await watcher.next_event("text", lambda d: d["message"] == "done", timeout=20)
    assert watcher.events.pending("participant") == []
    assert watcher.events.pending("stream") == []
    for client in (watcher, other):
        await client.leave()
