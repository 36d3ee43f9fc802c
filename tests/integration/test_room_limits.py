"""Room options participantLimit, inputLimit and notifying, as OWT applies them; the
[limits] on recordings and streaming-outs per room and per service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera_client import ClientError, ConferenceClient
from tests.support import RunningServer, api, joined, room_with, start_server
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


async def test_recordings_and_streaming_outs_per_room_and_per_service(tmp_path: Path) -> None:
    tessera = await start_server(
        tmp_path,
        **{
            "limits.recordings_per_room": 2,
            "limits.recordings_per_service": 3,
            "limits.streaming_outs_per_room": 2,
            "limits.streaming_outs_per_service": 3,
        },
    )
    clients: list[ConferenceClient] = []
    try:
        streams = {}
        for name in ("first", "second"):
            room = await room_with(tessera, name)
            client = await joined(tessera, "a", room=room)
            publication = await client.publish(audio=ToneTrack(440.0))
            await publication.wait_ready()
            clients.append(client)
            streams[room] = publication.id
        (room_a, stream_a), (room_b, stream_b) = streams.items()

        def start(room: str, stream: str, what: str) -> Any:
            body: dict[str, Any] = {"media": {"audio": {"from": stream}, "video": False}}
            if what == "streaming-outs":
                body["protocol"] = "hls"  # served by Tessera: no server to push to
            return api(tessera, "POST", f"/v1/rooms/{room}/{what}", body)

        for what, noun in (("recordings", "recordings"), ("streaming-outs", "streaming-outs")):
            started = []
            for _ in range(2):
                status, output = await start(room_a, stream_a, what)
                assert status == 200, output
                started.append(output["id"])
            status, error = await start(room_a, stream_a, what)
            assert status == 403, error
            setting = noun.replace("-", "_")
            assert error["error"]["message"] == (
                f"Too many {noun} in this room (at most 2: [limits] {setting}_per_room)"
            )
            status, output = await start(room_b, stream_b, what)
            assert status == 200, output
            status, error = await start(room_b, stream_b, what)
            assert status == 403, error
            assert error["error"]["message"] == (
                f"Too many {noun} for this service (at most 3: [limits] {setting}_per_service)"
            )
            # One stopped: a place is free again, in that room and in the service.
            status, _ = await api(tessera, "DELETE", f"/v1/rooms/{room_a}/{what}/{started[0]}")
            assert status == 200
            status, output = await start(room_b, stream_b, what)
            assert status == 200, output
    finally:
        for client in clients:
            await client.leave()
        await tessera.stop()
