"""Mixed streams end to end: layouts, regions, avatars, mix-minus, VAD, shared encoders."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from tessera.media.videoencoder import VideoEncoder
from tessera_client import ClientError, ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, api, joined, region_box
from tests.synthetic import (
    ColorVideoTrack,
    ToneTrack,
    close_to,
    collect_audio,
    mean_rgb,
    next_video_frame,
    tone_energy,
)

RED = (220, 30, 30)
GREEN = (30, 200, 30)
BLUE = (30, 30, 220)


def mixed_id(client: ConferenceClient) -> str:
    return f"{client.room_id}-common"


async def wait_layout(
    client: ConferenceClient, count: int, timeout: float = 20
) -> list[dict[str, Any]]:
    """The mixed stream's layout once it holds `count` streams."""

    def layout() -> tuple[list[dict[str, Any]]]:
        entries: list[dict[str, Any]] = client.streams[mixed_id(client)]["info"]["layout"]
        assert len(entries) == count, f"layout has {len(entries)} streams, expected {count}"
        return (entries,)  # a tuple: an empty layout is an answer too

    return (await eventually(layout, timeout, f"a layout of {count} streams"))[0]


async def frame_where(track: Any, check: Any, tries: int = 90) -> Any:
    frame = None
    for _ in range(tries):
        frame = await next_video_frame(track)
        if check(frame):
            return frame
    return frame


async def test_colours_land_in_their_regions(tessera: RunningServer) -> None:
    publishers = [await joined(tessera, name) for name in ("Ada Red", "Bo Green", "Cy Blue")]
    colours = {}
    for client, colour in zip(publishers, (RED, GREEN, BLUE), strict=True):
        pub = await client.publish(video=ColorVideoTrack(colour))
        await pub.wait_ready()
        colours[pub.id] = colour
    viewer = await joined(tessera, "viewer")
    mixed = viewer.streams[mixed_id(viewer)]
    assert mixed["type"] == "mixed"
    video = next(t for t in mixed["media"]["tracks"] if t["type"] == "video")
    assert video["parameters"]["resolution"] == {"width": 1280, "height": 720}
    layout = await wait_layout(viewer, 3)
    sub = await viewer.subscribe(mixed_id(viewer), audio=False)
    await sub.wait_ready()
    assert sub.video_track is not None

    def all_in_place(frame: Any) -> bool:
        return all(
            close_to(mean_rgb(frame, region_box(e["region"])), colours[e["stream"]]) for e in layout
        )

    frame = await frame_where(sub.video_track, all_in_place)
    assert (frame.width, frame.height) == (1280, 720)
    for entry in layout:
        assert close_to(mean_rgb(frame, region_box(entry["region"])), colours[entry["stream"]]), (
            entry
        )

    # The server agrees: three inputs in the layout.
    view = tessera.server.rooms[viewer.room_id].views["common"]  # type: ignore[index]
    assert len(view.layout.to_json()) == 3

    # Someone leaves: every participant gets the new layout.
    await publishers[2].leave()
    for client in (publishers[0], publishers[1], viewer):
        assert len(await wait_layout(client, 2)) == 2
    for client in (*publishers[:2], viewer):
        await client.leave()


async def test_audio_only_and_paused_video_show_an_avatar(tessera: RunningServer) -> None:
    speaker = await joined(tessera, "Grace Hopper")
    pub = await speaker.publish(audio=ToneTrack(330))
    await pub.wait_ready()
    cam = await joined(tessera, "Cam")
    cam_pub = await cam.publish(video=ColorVideoTrack(GREEN))
    await cam_pub.wait_ready()
    viewer = await joined(tessera, "viewer")
    layout = await wait_layout(viewer, 2)
    regions = {e["stream"]: region_box(e["region"]) for e in layout}
    sub = await viewer.subscribe(mixed_id(viewer), audio=False)
    await sub.wait_ready()
    assert sub.video_track is not None
    frame = await frame_where(
        sub.video_track, lambda f: close_to(mean_rgb(f, regions[cam_pub.id]), GREEN)
    )
    avatar = mean_rgb(frame, regions[pub.id])
    assert avatar.max() > 60, f"audio-only region is black: {avatar}"
    # Pausing the camera turns its region into an avatar too (not green, not black).
    await cam_pub.pause("video")
    frame = await frame_where(
        sub.video_track, lambda f: not close_to(mean_rgb(f, regions[cam_pub.id]), GREEN)
    )
    paused = mean_rgb(frame, regions[cam_pub.id])
    assert not close_to(paused, GREEN) and paused.max() > 60
    for client in (speaker, cam, viewer):
        await client.leave()


async def test_mix_minus_and_active_speaker(tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    bob = await joined(tessera, "bob")
    a_pub = await alice.publish(audio=ToneTrack(440, amplitude=0.4))
    b_pub = await bob.publish(audio=ToneTrack(1000, amplitude=0.05))
    await a_pub.wait_ready()
    await b_pub.wait_ready()
    listener = await joined(tessera, "listener")
    subs = {}
    for client in (alice, listener):
        sub = await client.subscribe(mixed_id(client), video=False)
        await sub.wait_ready()
        subs[client.participant_id] = sub
    own_track = subs[alice.participant_id].audio_track
    full_track = subs[listener.participant_id].audio_track
    assert own_track is not None and full_track is not None

    async def mixes_are_right() -> bool:
        # A second of each mix, side by side; the first ones may predate a tone.
        own, full = await asyncio.gather(
            collect_audio(own_track, 1.0), collect_audio(full_track, 1.0)
        )
        # Alice hears Bob but not herself; the listener hears both.
        assert tone_energy(own, 1000) > 0.2
        assert tone_energy(own, 440) < 0.02
        assert tone_energy(full, 440) > 0.2 and tone_energy(full, 1000) > 0.01
        return True

    await eventually(mixes_are_right, what="Alice hears Bob only, the listener both")
    # Alice is the loud one: she becomes the active input (Bob may have been it for a moment
    # when his tone reached the mixer first).
    await listener.next_event(
        "stream",
        lambda d: (
            d["status"] == "update" and d["data"] == {"field": "activeInput", "value": a_pub.id}
        ),
        timeout=15,
    )
    assert listener.streams[mixed_id(listener)]["info"]["activeInput"] == a_pub.id
    for client in (alice, bob, listener):
        await client.leave()


async def test_only_the_loudest_talkers_are_mixed(tessera: RunningServer) -> None:
    # [mixer] max_mixed_talkers = 3 (the default): three loud talkers and a quiet one.
    tones = {"alice": 440, "bob": 700, "carol": 1000, "dave": 1300}
    clients = {name: await joined(tessera, name) for name in tones}
    for name, freq in tones.items():
        amplitude = 0.005 if name == "dave" else 0.2
        pub = await clients[name].publish(audio=ToneTrack(freq, amplitude=amplitude))
        await pub.wait_ready()
    listener = await joined(tessera, "listener")
    subs = {}
    for name in ("alice", "dave"):
        subs[name] = await clients[name].subscribe(mixed_id(clients[name]), video=False)
    subs["listener"] = await listener.subscribe(mixed_id(listener), video=False)
    for sub in subs.values():
        await sub.wait_ready()

    async def talkers_are_mixed() -> bool:
        # Dave may have had a place first: the loud ones take it (a second of each mix).
        seconds = [collect_audio(sub.audio_track, 1.0) for sub in subs.values()]  # type: ignore[arg-type]
        heard = dict(zip(subs, await asyncio.gather(*seconds), strict=True))
        # Everyone hears the three talkers but nobody hears themselves; dave, not among
        # the talkers, shares the listeners' mix, which does not hold him.
        for name in ("listener", "dave"):
            for talker in ("alice", "bob", "carol"):
                assert tone_energy(heard[name], tones[talker]) > 0.1, (name, talker)
            assert tone_energy(heard[name], tones["dave"]) < 0.002, name
        assert tone_energy(heard["alice"], tones["alice"]) < 0.02
        assert tone_energy(heard["alice"], tones["bob"]) > 0.1
        return True

    await eventually(talkers_are_mixed, what="the three loudest mixed, minus each one")
    for client in (*clients.values(), listener):
        await client.leave()


async def test_speaker_change_moves_active_input(tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    bob = await joined(tessera, "bob")
    a_pub = await alice.publish(audio=ToneTrack(440, amplitude=0.3))
    await a_pub.wait_ready()
    listener = await joined(tessera, "listener")
    sub = await listener.subscribe(mixed_id(listener), video=False)
    await sub.wait_ready()
    first = await listener.next_event(
        "stream", lambda d: d["status"] == "update" and d["data"]["field"] == "activeInput"
    )
    assert first["data"]["value"] == a_pub.id
    # Alice falls silent, Bob starts talking.
    await a_pub.pause("audio")
    b_pub = await bob.publish(audio=ToneTrack(700, amplitude=0.3))
    await b_pub.wait_ready()
    update = await listener.next_event(
        "stream",
        lambda d: (
            d["status"] == "update" and d["data"] == {"field": "activeInput", "value": b_pub.id}
        ),
        timeout=15,
    )
    assert update["data"]["value"] == b_pub.id
    for client in (alice, bob, listener):
        await client.leave()


async def test_subscribers_of_one_format_share_one_encoder(tessera: RunningServer) -> None:
    pub_client = await joined(tessera, "pub")
    pub = await pub_client.publish(video=ColorVideoTrack(RED))
    await pub.wait_ready()
    viewers = [await joined(tessera, f"v{i}") for i in range(3)]
    before = VideoEncoder.created
    subs = [await v.subscribe(mixed_id(v), audio=False) for v in viewers[:2]]
    small = await viewers[2].subscribe(
        mixed_id(viewers[2]),
        audio=False,
        video_parameters={"resolution": {"width": 640, "height": 360}, "framerate": 15},
    )
    for sub in (*subs, small):
        await sub.wait_ready()
        assert sub.video_track is not None
        await next_video_frame(sub.video_track)
    view = tessera.server.rooms[pub_client.room_id].views["common"]  # type: ignore[index]
    sizes = sorted((s.width, s.height) for s in view.video_outputs)
    assert sizes == [(640, 360), (1280, 720)]
    assert VideoEncoder.created == before + 2  # two formats, three subscribers
    frame = await next_video_frame(small.video_track)  # type: ignore[arg-type]
    assert (frame.width, frame.height) == (640, 360)
    with pytest.raises(ClientError, match="Resolution is not acceptable"):
        await viewers[0].subscribe(
            mixed_id(viewers[0]),
            audio=False,
            video_parameters={"resolution": {"width": 7, "height": 9}},
        )
    for sub in subs:
        await sub.unsubscribe()
    await small.unsubscribe()
    # Nobody watches: nothing runs.
    await eventually(lambda: view.video_outputs == {} and not view.running, what="view stopped")
    for client in (pub_client, *viewers):
        await client.leave()


async def test_set_region_get_region_mix_unmix(tessera: RunningServer) -> None:
    a = await joined(tessera, "a")
    b = await joined(tessera, "b")
    a_pub = await a.publish(video=ColorVideoTrack(RED))
    b_pub = await b.publish(video=ColorVideoTrack(BLUE))
    await a_pub.wait_ready()
    await b_pub.wait_ready()
    layout = await wait_layout(a, 2)
    first = layout[0]["region"]["id"]
    region_of = {e["stream"]: e["region"]["id"] for e in layout}
    assert await a_pub.control("get-region", "common") == {"region": region_of[a_pub.id]}
    other = region_of[b_pub.id]
    await a_pub.control("set-region", {"view": "common", "region": other})
    await a.next_event("stream", lambda d: d["status"] == "update")
    assert await a_pub.control("get-region", "common") == {"region": other}
    # Another participant (a viewer here) may not move a's stream: as OWT, owners only.
    viewer = await joined(tessera, "v", role="viewer")
    with pytest.raises(ClientError, match="not the owner of the stream"):
        await viewer.request(
            "stream-control",
            {
                "id": a_pub.id,
                "operation": "set-region",
                "data": {"view": "common", "region": first},
            },
        )
    with pytest.raises(ClientError, match="not the owner of the stream"):
        await b.request(
            "stream-control",
            {
                "id": a_pub.id,
                "operation": "set-region",
                "data": {"view": "common", "region": first},
            },
        )
    assert await a_pub.control("get-region", "common") == {"region": other}
    await viewer.leave()
    with pytest.raises(ClientError, match="does NOT exist"):
        await a_pub.control("set-region", {"view": "common", "region": "99"})
    with pytest.raises(ClientError, match="View does NOT exist"):
        await a_pub.control("mix", "nope")
    await a_pub.control("unmix", "common")
    assert len(await wait_layout(b, 1)) == 1
    assert a.streams[a_pub.id]["info"]["inViews"] in ([], ["common"])  # OWT does not push inViews
    await a_pub.control("mix", "common")
    assert len(await wait_layout(b, 2)) == 2
    assert first  # the layout had a first region
    for client in (a, b):
        await client.leave()


def test_box_helper() -> None:
    assert region_box({"area": {"left": "1/2", "top": "0/1", "width": "1/2", "height": "1/2"}}) == (
        0.5,
        0.0,
        0.5,
        0.5,
    )
    assert np.isclose(
        sum(region_box({"area": {"left": "1/3", "top": "1/3", "width": "1/3", "height": "0/1"}})), 1
    )


async def test_rest_layout_and_in_views(tessera: RunningServer) -> None:
    a = await joined(tessera, "a")
    b = await joined(tessera, "b")
    a_pub = await a.publish(video=ColorVideoTrack(RED))
    b_pub = await b.publish(video=ColorVideoTrack(BLUE))
    await a_pub.wait_ready()
    await b_pub.wait_ready()
    layout = await wait_layout(a, 2)
    room = a.room_id
    swapped = [
        {"stream": layout[1]["stream"], "region": layout[0]["region"]},
        {"stream": layout[0]["stream"], "region": layout[1]["region"]},
    ]
    status, info = await api(
        tessera,
        "PATCH",
        f"/v1.1/rooms/{room}/streams/{room}-common",
        [{"op": "replace", "path": "/info/layout", "value": swapped}],
    )
    assert status == 200, info
    where = {e["stream"]: e["region"]["id"] for e in info["info"]["layout"]}
    assert where == {
        layout[1]["stream"]: layout[0]["region"]["id"],
        layout[0]["stream"]: layout[1]["region"]["id"],
    }
    await b.next_event("stream", lambda d: d["status"] == "update" and d["id"] == f"{room}-common")
    # A bad layout changes nothing.
    status, error = await api(
        tessera,
        "PATCH",
        f"/v1.1/rooms/{room}/streams/{room}-common",
        [
            {
                "op": "replace",
                "path": "/info/layout",
                "value": [{"stream": "ghost", "region": layout[0]["region"]}],
            }
        ],
    )
    assert status == 400 and "ghost" in error["error"]["message"]
    # Unmix over REST.
    status, _ = await api(
        tessera,
        "PATCH",
        f"/v1.1/rooms/{room}/streams/{a_pub.id}",
        [{"op": "remove", "path": "/info/inViews", "value": "common"}],
    )
    assert status == 200
    assert [e["stream"] for e in await wait_layout(b, 1)] == [b_pub.id]
    for client in (a, b):
        await client.leave()


async def test_active_speaker_moves_into_the_primary_region(tessera: RunningServer) -> None:
    views = [
        {
            "label": "common",
            "video": {
                "keepActiveInputPrimary": True,
                "layout": {"templates": {"base": "lecture"}},
            },
        }
    ]
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "lecture", "options": {"views": views}}
    )
    assert status == 200, room
    quiet = ConferenceClient()
    await quiet.join(tessera.token(room=room["id"], user="quiet"))
    loud = ConferenceClient()
    await loud.join(tessera.token(room=room["id"], user="loud"))
    q_pub = await quiet.publish(video=ColorVideoTrack(GREEN), audio=ToneTrack(300, amplitude=0.001))
    await q_pub.wait_ready()
    l_pub = await loud.publish(video=ColorVideoTrack(RED), audio=ToneTrack(500, amplitude=0.4))
    await l_pub.wait_ready()
    layout = await wait_layout(quiet, 2)
    assert {e["stream"]: e["region"]["id"] for e in layout}[q_pub.id] == "1"
    listener = ConferenceClient()
    await listener.join(tessera.token(room=room["id"], user="listener"))
    sub = await listener.subscribe(f"{room['id']}-common", video=False)
    await sub.wait_ready()

    def loud_in_the_primary_region() -> bool:
        layout = listener.streams[f"{room['id']}-common"]["info"]["layout"]
        return {e["stream"]: e["region"]["id"] for e in layout}.get(l_pub.id) == "1"

    await eventually(loud_in_the_primary_region, what="the loud one in region 1")
    for client in (quiet, loud, listener):
        await client.leave()


async def test_h264_subscriber_gets_an_h264_encode_of_the_view(tessera: RunningServer) -> None:
    pub_client = await joined(tessera, "pub")
    pub = await pub_client.publish(video=ColorVideoTrack(GREEN))
    await pub.wait_ready()
    viewer = await joined(tessera, "viewer")
    sub = await viewer.subscribe(mixed_id(viewer), audio=False, video_codecs=["h264"])
    await sub.wait_ready()
    assert sub.video_track is not None
    frame = await frame_where(
        sub.video_track, lambda f: close_to(mean_rgb(f, (0.3, 0.3, 0.4, 0.4)), GREEN)
    )
    assert close_to(mean_rgb(frame, (0.3, 0.3, 0.4, 0.4)), GREEN)
    view = tessera.server.rooms[viewer.room_id].views["common"]  # type: ignore[index]
    assert [s.codec for s in view.video_outputs] == ["h264"]
    for client in (pub_client, viewer):
        await client.leave()


async def test_auto_mix_off_waits_for_mix(tessera: RunningServer) -> None:
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "manual", "options": {"autoMix": False}}
    )
    assert status == 200, room
    a = ConferenceClient()
    await a.join(tessera.token(room=room["id"], user="a"))
    pub = await a.publish(video=ColorVideoTrack(RED))
    await pub.wait_ready()
    assert a.streams[f"{room['id']}-common"]["info"]["layout"] == []
    await pub.control("mix", "common")
    assert [e["stream"] for e in await wait_layout(a, 1)] == [pub.id]
    await a.leave()


async def test_metrics_health_and_readiness(tessera: RunningServer) -> None:
    import aiohttp

    pub_client = await joined(tessera, "pub")
    pub = await pub_client.publish(video=ColorVideoTrack(RED), audio=ToneTrack(440))
    await pub.wait_ready()
    viewer = await joined(tessera, "viewer")
    sub = await viewer.subscribe(mixed_id(viewer))
    await sub.wait_ready()
    view = tessera.server.rooms[viewer.room_id].views["common"]  # type: ignore[index]
    async with aiohttp.ClientSession() as session:
        async with session.get(tessera.url + "/metrics") as resp:
            assert resp.status == 200
        # The rate is over the time between two scrapes: let the view make a second's frames.
        made = view.stats.frames + 30
        await eventually(lambda: view.stats.frames >= made, what="30 more frames of the view")
        async with session.get(tessera.url + "/metrics") as resp:
            text = await resp.text()
        async with session.get(tessera.url + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(tessera.url + "/readyz") as resp:
            assert resp.status == 200

    def value(name: str) -> float:
        line = next(line for line in text.splitlines() if line.startswith(name))
        return float(line.rsplit(" ", 1)[1])

    assert value("tessera_participants") == 2
    assert value("tessera_publications") == 1 and value("tessera_subscriptions") == 1
    assert value("tessera_views_running") == 1 and value("tessera_encoders") == 1
    assert value('tessera_transports{state="connected"}') == 2
    # Achieved, never above the view's 30 fps (how near it comes is bench/load.py's figure).
    assert 0 < value(f'tessera_view_fps{{view="{mixed_id(viewer)}"}}') <= 33
    assert value(f'tessera_view_frames_total{{view="{mixed_id(viewer)}"}}') >= made
    assert value("process_resident_memory_bytes") > 0
    assert "tessera_event_loop_lag_seconds" in text
    for client in (pub_client, viewer):
        await client.leave()


async def test_metrics_count_the_decoded_frames_a_views_inputs_deliver(
    tessera: RunningServer,
) -> None:
    import aiohttp

    viewer = await joined(tessera, "viewer")
    sub = await viewer.subscribe(mixed_id(viewer))
    await sub.wait_ready()
    view = tessera.server.rooms[viewer.room_id].views["common"]  # type: ignore[index]
    # Composing with no input yet: nothing decoded reached the view.
    composed = view.stats.frames + 10
    await eventually(lambda: view.stats.frames >= composed, what="10 frames of the empty view")
    assert view.stats.input_frames == 0
    pub_client = await joined(tessera, "pub")
    pub = await pub_client.publish(video=ColorVideoTrack(RED))
    await pub.wait_ready()
    await eventually(lambda: view.stats.input_frames >= 30, what="30 decoded input frames")
    async with aiohttp.ClientSession() as session:
        async with session.get(tessera.url + "/metrics") as resp:
            text = await resp.text()
    name = f'tessera_view_input_frames_total{{view="{mixed_id(viewer)}"}}'
    line = next(line for line in text.splitlines() if line.startswith(name))
    assert float(line.rsplit(" ", 1)[1]) >= 30
    for client in (pub_client, viewer):
        await client.leave()
