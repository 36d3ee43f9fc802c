"""Room option selectActiveAudio: OWT's active audio streams, with real aiortc peers."""

from __future__ import annotations

from typing import Any

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, api
from tests.synthetic import ToneTrack, collect_audio, tone_energy

QUIET = 0.01  # about -43 dBov: speaking (over -50), but 30 dB under a loud talker
LOUD = 0.3


def active_streams(client: ConferenceClient) -> dict[str, dict[str, Any]]:
    """The room's active audio streams as this client knows them (OWT: info.type 'selecting')."""
    return {
        sid: s
        for sid, s in client.streams.items()
        if s.get("type") == "forward" and s.get("info", {}).get("type") == "selecting"
    }


def carried(client: ConferenceClient) -> dict[str, str]:
    """stream id of the publication carried -> id of the active audio stream carrying it.

    After an ``activeInput`` update the client holds the update's value ({id, volume}).
    """
    out = {}
    for sid, stream in active_streams(client).items():
        value = stream["info"]["activeInput"]
        input_id = value["id"] if isinstance(value, dict) else value
        if input_id != "unknown":
            out[input_id] = sid
    return out


FREQUENCIES = (300.0, 500.0, 700.0, 900.0)


async def hears(track: Any, frequency: float) -> None:
    """Wait until `frequency` dominates what the track plays (frames queued earlier go first)."""

    async def dominant() -> bool:
        samples = await collect_audio(track, 0.5)
        energy = {f: tone_energy(samples, f) for f in FREQUENCIES}
        return max(energy, key=lambda f: energy[f]) == frequency

    await eventually(dominant, what=f"{frequency:g} Hz heard")


async def test_active_audio_streams_follow_the_loudest_publishers(tessera: RunningServer) -> None:
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "town-hall", "options": {"selectActiveAudio": True}}
    )
    assert status == 200 and room["selectActiveAudio"] is True, room
    viewer = ConferenceClient()
    await viewer.join(tessera.token(room=room["id"], user="viewer"))

    # Three of them, in the login reply, as OWT lists them: audio-only forward streams of
    # info.type "selecting", nobody in them yet.
    streams = active_streams(viewer)
    assert len(streams) == 3
    for stream in streams.values():
        assert stream["info"]["owner"] == "unknown"
        assert stream["info"]["activeInput"] == "unknown"
        assert [t["type"] for t in stream["media"]["tracks"]] == ["audio"]
        assert stream["media"]["tracks"][0]["format"] == {
            "codec": "opus",
            "sampleRate": 48000,
            "channelNum": 2,
        }

    publishers = {}
    for user, frequency in (("ann", 300.0), ("ben", 500.0), ("cat", 700.0)):
        client = ConferenceClient()
        await client.join(tessera.token(room=room["id"], user=user))
        pub = await client.publish(audio=ToneTrack(frequency, QUIET))
        await pub.wait_ready()
        publishers[pub.id] = (client, frequency)
    await eventually(lambda: set(carried(viewer)) == set(publishers), what="three inputs ranked")

    # Subscribable like any stream: each carries its input's voice.
    subscriptions = {}
    for input_id, sid in carried(viewer).items():
        sub = await viewer.subscribe(sid)
        await sub.wait_ready()
        subscriptions[sid] = sub
        await hears(sub.audio_track, publishers[input_id][1])
    # The REST API lists them with their owner, as OWT's SelectInfo.
    status, listed = await api(tessera, "GET", f"/v1.1/rooms/{room['id']}/streams")
    assert status == 200
    owners = {s["info"]["owner"] for s in listed if s["info"].get("type") == "selecting"}
    assert owners == {client.participant_id for client, _ in publishers.values()}

    # A loud talker takes the slot of one of the quiet ones: that stream's subscribers
    # hear them now, without subscribing again, and everyone is told (activeInput update).
    loud = ConferenceClient()
    await loud.join(tessera.token(room=room["id"], user="dee"))
    loud_pub = await loud.publish(audio=ToneTrack(900.0, LOUD))
    await loud_pub.wait_ready()
    update = await viewer.next_event(
        "stream",
        lambda d: (
            d["status"] == "update"
            and d["data"]["field"] == "activeInput"
            and d["data"]["value"]["id"] == loud_pub.id
        ),
        timeout=20,
    )
    assert update["data"]["value"] == {"id": loud_pub.id, "volume": "major"}
    slot = update["id"]
    assert slot in subscriptions
    await hears(subscriptions[slot].audio_track, 900.0)

    # The loud talker leaves: its stream carries one of the others again.
    await loud.leave()
    await eventually(
        lambda: loud_pub.id not in carried(viewer) and len(carried(viewer)) == 3,
        what="the slot refilled",
    )

    # Not a publication: it cannot be mixed, paused, or removed over REST.
    path = f"/v1.1/rooms/{room['id']}/streams/{slot}"
    status, body = await api(
        tessera, "PATCH", path, [{"op": "add", "path": "/info/inViews", "value": "common"}]
    )
    assert status == 400, body
    status, body = await api(tessera, "DELETE", path)
    assert status == 400, body

    # Turned off over REST: the streams go, and their subscriptions end with OWT's reason.
    status, _ = await api(
        tessera, "PATCH", f"/v1/rooms/{room['id']}", {"options": {"selectActiveAudio": False}}
    )
    assert status == 200
    await eventually(lambda: not active_streams(viewer), what="the active streams removed")
    for sub in subscriptions.values():
        await eventually(lambda s=sub: s.ended.is_set(), what="the subscription ended")  # type: ignore[misc]
        assert sub.error == "Source stream loss"
    # And on again: three new streams, already carrying the room's publishers.
    status, _ = await api(
        tessera, "PATCH", f"/v1/rooms/{room['id']}", {"options": {"selectActiveAudio": True}}
    )
    assert status == 200
    await eventually(lambda: set(carried(viewer)) == set(publishers), what="ranked again")
    assert not set(active_streams(viewer)) & set(subscriptions)
    for client in (viewer, *(c for c, _ in publishers.values())):
        await client.leave()


async def test_bad_select_active_audio_is_refused_by_field(tessera: RunningServer) -> None:
    for value in ("yes", 1, None, [True]):
        status, body = await api(
            tessera, "POST", "/v1/rooms", {"name": "x", "options": {"selectActiveAudio": value}}
        )
        assert status == 400, body
        assert "selectActiveAudio" in body["error"]["message"], body
