"""The ownership tree: finished outputs leave memory (their records stay), closes carry
their reason to the clients and the log."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from tests.eventually import eventually
from tests.support import RunningServer, api, joined
from tests.synthetic import ColorVideoTrack, ToneTrack

RED = (220, 30, 30)


async def test_finished_recordings_and_streaming_outs_leave_memory(
    tessera: RunningServer,
) -> None:
    alice = await joined(tessera, "alice")
    publication = await alice.publish(video=ColorVideoTrack(RED), audio=ToneTrack(440.0))
    await publication.wait_ready()
    room_id = alice.room_id
    assert room_id is not None
    room = tessera.server.rooms[room_id]
    path = f"/v1/rooms/{room_id}"
    media = {"audio": {"from": publication.id}, "video": {"from": publication.id}}

    # Stopped over REST: it leaves the room; GET and the list read its record.
    status, rec = await api(tessera, "POST", f"{path}/recordings", {"media": media})
    assert status == 200, rec
    assert list(room.recordings) == [rec["id"]]
    status, _ = await api(tessera, "DELETE", f"{path}/recordings/{rec['id']}")
    assert status == 200
    assert room.recordings == {}
    status, got = await api(tessera, "GET", f"{path}/recordings/{rec['id']}")
    assert status == 200 and got["state"] == "stopped" and "reason" not in got, got
    status, listed = await api(tessera, "GET", f"{path}/recordings?state=all")
    assert [r["id"] for r in listed] == [rec["id"]]

    # A served HLS streaming-out, stopped: gone from memory, its record and files stay.
    body: dict[str, Any] = {"protocol": "hls", "parameters": {"hlsTime": 1}, "media": media}
    status, out = await api(tessera, "POST", f"{path}/streaming-outs", body)
    assert status == 200, out
    playlist = tessera.url + out["url"]

    async def served() -> bool:
        async with aiohttp.ClientSession() as session, session.get(playlist) as resp:
            return resp.status == 200 and "#EXTINF" in await resp.text()

    await eventually(served, what="the HLS playlist served")
    status, _ = await api(tessera, "DELETE", f"{path}/streaming-outs/{out['id']}")
    assert status == 200
    assert room.streaming_outs == {}
    status, got = await api(tessera, "GET", f"{path}/streaming-outs/{out['id']}")
    assert status == 200 and got["state"] == "stopped", got
    assert await served(), "the finished HLS is still served"

    # Ended by its source leaving: the reason is kept with the record.
    status, rec = await api(tessera, "POST", f"{path}/recordings", {"media": media})
    assert status == 200, rec
    await publication.unpublish()
    await eventually(lambda: not room.recordings, what="the recording ended with its source")
    status, got = await api(tessera, "GET", f"{path}/recordings/{rec['id']}")
    assert got["state"] == "stopped" and got["reason"] == "Source stream loss", got
    counts = tessera.server.conference.counters()
    assert counts.recordings == {"stopped": 2} and counts.streaming_outs == {"stopped": 1}
    await alice.leave()


async def test_a_deleted_room_drops_its_clients_and_says_why(
    tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tessera")
    status, created = await api(tessera, "POST", "/v1/rooms", {"name": "doomed"})
    assert status == 200, created
    room_id = created["_id"]
    alice = await joined(tessera, "alice", room=room_id)
    bob = await joined(tessera, "bob", room=room_id)
    publication = await alice.publish(video=ColorVideoTrack(RED))
    await publication.wait_ready()
    status, rec = await api(
        tessera,
        "POST",
        f"/v1/rooms/{room_id}/recordings",
        {"media": {"video": {"from": f"{room_id}-common"}}},
    )
    assert status == 200, rec

    status, _ = await api(tessera, "DELETE", f"/v1/rooms/{room_id}")
    assert status == 200
    # Each client hears it is dropped (OWT's `drop`), and its session ends.
    for client in (alice, bob):
        await client.next_event("drop")
    assert room_id not in tessera.server.rooms and tessera.server.agent.transports == {}
    reason = "the room was deleted"

    # The recording's stop reaches the store after its room closed (the store's writes queue).
    def stored() -> bool:
        service_id = tessera.server.default_service.id
        records = tessera.server.store.list_recordings(service_id, room_id)
        assert [(i, info["state"], info.get("reason")) for i, info, _ in records] == [
            (rec["id"], "stopped", f"the room closed: {reason}")
        ]
        return True

    await eventually(stored, what="the stopped recording stored")
    # The room is gone; its recording stays reachable by the room's id (issue 22 item 5).
    status, info = await api(tessera, "GET", f"/v1/rooms/{room_id}/recordings/{rec['id']}")
    assert status == 200 and info["reason"] == f"the room closed: {reason}", info
    messages = [r.getMessage() for r in caplog.records]
    assert f"room closed: {reason}" in messages
    assert sum(m == f"participant left: {reason}" for m in messages) == 2
