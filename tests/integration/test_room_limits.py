"""Room options participantLimit, inputLimit and notifying, as OWT applies them."""

from __future__ import annotations

from typing import Any

from tessera_client import ClientError, ConferenceClient
from tests.support import RunningServer, api
from tests.synthetic import ToneTrack


async def room_with(tessera: RunningServer, name: str, **options: Any) -> str:
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": name, "options": options})
    assert status == 200, room
    return str(room["id"])


async def join(tessera: RunningServer, room: str, user: str) -> ConferenceClient:
    client = ConferenceClient()
    await client.join(tessera.token(room=room, user=user))
    return client


async def test_participant_limit(tessera: RunningServer) -> None:
    room = await room_with(tessera, "small", participantLimit=2)
    first, second = await join(tessera, room, "a"), await join(tessera, room, "b")
    third = ConferenceClient()
    try:
        await third.join(tessera.token(room=room, user="c"))
        raise AssertionError("a third participant joined a room of two")
    except ClientError as exc:
        assert str(exc) == "Room is full"
    await second.leave()
    again = await join(tessera, room, "c")  # a place is free again
    for client in (first, again):
        await client.leave()


async def test_input_limit(tessera: RunningServer) -> None:
    room = await room_with(tessera, "one-voice", inputLimit=1)
    first, second = await join(tessera, room, "a"), await join(tessera, room, "b")
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
    watcher = await join(tessera, room, "watcher")
    other = await join(tessera, room, "other")
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
