"""The picture of a real room: labels, the muted mark, the speaker border, presentation.

Real publishers over loopback (synthetic colours and tones), a real subscriber
decoding the mixed view's VP8: what a participant or a recording sees.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from tessera.mixer.decorations import SPEAKER_COLOUR, Decorated, Decorations, LabelStyle, label_size
from tessera.mixer.layout import Area, region_rect
from tessera.mixer.overlay import EXAMPLE_OVERLAY
from tessera.mixer.textrender import default_renderer
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, api, joined, room_with
from tests.synthetic import ColorVideoTrack, ToneTrack, next_video_frame

W, H = 1280, 720
GREY = (90, 90, 90)
NAMES = ("Ada Lovelace", "Grace Hopper", "王小明")


def mixed_id(client: ConferenceClient) -> str:
    return f"{client.room_id}-common"


def rects(client: ConferenceClient) -> dict[str, tuple[int, int, int, int]]:
    """Each shown stream's pixel rectangle in the view, from the layout clients get."""
    layout: list[dict[str, Any]] = client.streams[mixed_id(client)]["info"]["layout"]
    return {e["stream"]: region_rect(Area.from_json(e["region"]["area"]), W, H) for e in layout}


def ring_share(rgb: np.ndarray, rect: tuple[int, int, int, int]) -> float:
    """How much of a region's edge (2 px inside it) is the speaker's colour."""
    x, y, w, h = rect
    ring = np.concatenate([rgb[y + 1, x + 8 : x + w - 8], rgb[y + 8 : y + h - 8, x + 1]])
    return float(np.all(np.abs(ring - np.array(SPEAKER_COLOUR)) < 60, axis=1).mean())


def label_agreement(
    rgb: np.ndarray, rect: tuple[int, int, int, int], name: str, text: str, muted: bool
) -> float:
    """IoU of the bright pixels of ``name``'s label with a reference rendering of ``text``."""
    decorations = Decorations(LabelStyle(), H)
    tile = decorations.label_tile(Decorated(rect, "x", name, muted))
    assert tile is not None
    x, y = decorations.label_position(rect, tile)
    size = label_size(H, rect[3])
    pad = max(2, size // 4)
    if muted:  # the text starts after the mark
        x += tile.height - 2 * max(1, pad // 2) + pad
    found = rgb[y + pad : y + tile.height - pad, x + pad : x + tile.width - pad].min(axis=2) > 150
    image: Image.Image = default_renderer().render(text, size)
    reference = np.asarray(image)[..., 3] > 110
    hh = min(found.shape[0], reference.shape[0])
    ww = max(found.shape[1], reference.shape[1])
    a = np.zeros((hh, ww), bool)
    b = np.zeros((hh, ww), bool)
    a[:, : found.shape[1]] = found[:hh]
    b[:, : reference.shape[1]] = reference[:hh]
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def red_mark(rgb: np.ndarray, rect: tuple[int, int, int, int]) -> int:
    x, y, w, h = rect
    part = rgb[y : y + h, x : x + w].astype(int)
    return int(((part[..., 0] > 160) & (part[..., 1] < 100) & (part[..., 2] < 100)).sum())


async def test_labels_marks_speaker_and_presentation_in_a_real_room(
    tessera: RunningServer,
) -> None:
    clients = [await joined(tessera, name) for name in NAMES]
    tones = [ToneTrack(440, amplitude=0.4), ToneTrack(1000, amplitude=0.0), ToneTrack(700, 0.0)]
    pubs = []
    for client, tone in zip(clients, tones, strict=True):
        pub = await client.publish(audio=tone, video=ColorVideoTrack(GREY, 320, 240))
        await pub.wait_ready()
        pubs.append(pub)
    await pubs[2].pause("audio")  # 王小明 mutes the microphone
    viewer = await joined(tessera, "viewer")

    def three_shown() -> bool:
        return len(rects(viewer)) == 3

    await eventually(three_shown, 20, "three cameras in the layout")
    # Audio too: the view's audio thread is what hears who speaks.
    sub = await viewer.subscribe(mixed_id(viewer))
    await sub.wait_ready()
    assert sub.video_track is not None
    track = sub.video_track
    latest: dict[str, np.ndarray] = {}

    async def frame_shows(check: Any) -> bool:
        latest["rgb"] = (await next_video_frame(track)).to_ndarray(format="rgb24")
        return bool(check(latest["rgb"], rects(viewer)))

    ada, grace, wang = (pub.id for pub in pubs)

    def ada_speaks_and_wang_is_muted(rgb: np.ndarray, where: dict[str, Any]) -> bool:
        assert ring_share(rgb, where[ada]) > 0.7, "no border on Ada"
        assert ring_share(rgb, where[grace]) < 0.2 and ring_share(rgb, where[wang]) < 0.2
        assert red_mark(rgb, where[wang]) > 30, "no muted mark on 王小明"
        assert red_mark(rgb, where[ada]) == 0 and red_mark(rgb, where[grace]) == 0
        return True

    async def first_picture() -> bool:
        return await frame_shows(ada_speaks_and_wang_is_muted)

    await eventually(first_picture, 30, "Ada's border and 王小明's muted mark")
    rgb, where = latest["rgb"], rects(viewer)
    for pub, name in zip(pubs, NAMES, strict=True):
        muted = pub.id == wang
        right = label_agreement(rgb, where[pub.id], name, name, muted)
        assert right > 0.5, (name, right)
        others = [label_agreement(rgb, where[pub.id], name, o, muted) for o in NAMES if o != name]
        assert max(others) < right - 0.2, (name, right, others)

    # Grace speaks, Ada stops: the border moves to Grace.
    tones[0].amplitude, tones[1].amplitude = 0.0, 0.4

    async def grace_has_the_border() -> bool:
        return await frame_shows(
            lambda rgb, where: (
                ring_share(rgb, where[grace]) > 0.7 and ring_share(rgb, where[ada]) < 0.2
            )
        )

    await eventually(grace_has_the_border, 30, "the border on Grace")

    # Grace shares her screen: the view presents it large above a strip of cameras.
    screen = await clients[1].publish(
        video=ColorVideoTrack((240, 240, 240), 640, 480), video_source="screen-cast"
    )
    await screen.wait_ready()

    def presenting() -> bool:
        where = rects(viewer)
        assert screen.id in where, "the share is not in the layout"
        x, y, w, h = where[screen.id]
        assert (x, y, w) == (0, 0, W) and h > H * 0.7, where[screen.id]
        assert all(r[1] >= h and r[3] < H / 4 for s, r in where.items() if s != screen.id)
        return True

    await eventually(presenting, 20, "the presentation layout")
    view = tessera.server.rooms[viewer.room_id].views["common"]  # type: ignore[index]
    assert view.layout.templates.base == "presentation"

    await screen.unpublish()

    def gallery_again() -> bool:
        where = rects(viewer)
        assert len(where) == 3 and max(r[3] for r in where.values()) < H * 0.6
        return True

    await eventually(gallery_again, 20, "the gallery after the share ends")
    assert view.layout.templates.base == "gallery"
    assert view.layout.templates.aspect == Fraction(W, H)
    for client in (*clients, viewer):
        await client.leave()


async def test_an_overlay_from_the_room_options_draws_on_the_view(tessera: RunningServer) -> None:
    clock = {"overlay": EXAMPLE_OVERLAY, "options": {"position": "top-right"}}
    views = [{"label": "common", "video": {"overlays": [clock], "labels": {"enabled": False}}}]
    room = await room_with(tessera, "clock-room", views=views)
    publisher = await joined(tessera, "Ada", room=room)
    pub = await publisher.publish(video=ColorVideoTrack(GREY, 320, 240))
    await pub.wait_ready()
    viewer = await joined(tessera, "viewer", room=room)
    sub = await viewer.subscribe(mixed_id(viewer), audio=False)
    await sub.wait_ready()
    assert sub.video_track is not None
    track = sub.video_track

    async def clock_in_the_corner() -> bool:
        rgb = (await next_video_frame(track)).to_ndarray(format="rgb24").astype(int)
        corner = rgb[: H // 10, W - W // 6 :]
        digits = (corner.min(axis=2) > 200).sum()
        assert digits > 100, f"{digits} bright pixels top-right"
        # Elsewhere the grey camera, nothing drawn on it (labels are off in this view).
        assert (rgb[H // 10 :].min(axis=2) > 200).sum() == 0
        return True

    await eventually(clock_in_the_corner, 30, "the clock overlay top-right")

    # Labels switched on while the room runs: the view is re-laid, its encoder goes on.
    live = [{"label": "common", "video": {"overlays": [clock]}}]
    status, body = await api(tessera, "PATCH", f"/v1/rooms/{room}", {"views": live})
    assert status == 200, body

    async def labelled() -> bool:
        rgb = (await next_video_frame(track)).to_ndarray(format="rgb24").astype(int)
        bottom_left = rgb[H - H // 8 :, : W // 4]
        assert (bottom_left.min(axis=2) > 200).sum() > 100, "no label bottom-left"
        return True

    await eventually(labelled, 30, "Ada's label once labels are on")

    # A class the server does not allow is refused by name, and no room is made.
    bad = [{"label": "common", "video": {"overlays": [{"overlay": "subprocess:Popen"}]}}]
    status, body = await api(
        tessera, "POST", "/v1/rooms", {"name": "bad-overlay", "options": {"views": bad}}
    )
    assert status == 400 and "subprocess:Popen is not allowed" in body["error"]["message"]
    status, rooms = await api(tessera, "GET", "/v1/rooms")
    assert status == 200 and all(r["name"] != "bad-overlay" for r in rooms)
    for client in (publisher, viewer):
        await client.leave()


async def test_the_share_keeps_the_large_region_from_the_active_speaker(
    tessera: RunningServer,
) -> None:
    views = [{"label": "common", "video": {"keepActiveInputPrimary": True}}]
    room = await room_with(tessera, "keep-primary", views=views)
    presenter = await joined(tessera, "Grace", room=room)
    screen = await presenter.publish(
        video=ColorVideoTrack((240, 240, 240), 640, 480), video_source="screen-cast"
    )
    await screen.wait_ready()
    talker = await joined(tessera, "Ada", room=room)
    voice = await talker.publish(audio=ToneTrack(440, 0.4), video=ColorVideoTrack(GREY, 320, 240))
    await voice.wait_ready()
    viewer = await joined(tessera, "viewer", room=room)
    sub = await viewer.subscribe(mixed_id(viewer))  # audio too: the view's VAD runs
    await sub.wait_ready()
    # Ada is heard: she becomes the active input, and the share stays where it is.
    await viewer.next_event(
        "stream",
        lambda d: (
            d["status"] == "update" and d["data"] == {"field": "activeInput", "value": voice.id}
        ),
        timeout=20,
    )
    view = tessera.server.rooms[room].views["common"]  # type: ignore[index]
    assert view.layout.get_region(screen.id) == "1"
    assert view.layout.templates.base == "presentation"
    # The share ends: the gallery again, with the active speaker in the primary region.
    await screen.unpublish()

    def speaker_primary() -> bool:
        assert view.layout.templates.base == "gallery"
        assert view.layout.get_region(voice.id) == "1"
        return True

    await eventually(speaker_primary, 20, "the speaker in region 1 of the gallery")
    for client in (presenter, talker, viewer):
        await client.leave()


async def test_a_video_only_viewer_sees_the_speaker_border_and_lecture_switching(
    tessera: RunningServer,
) -> None:
    # Nobody receives the view's audio: its voice activity must run all the same.
    layout = {"templates": {"base": "lecture"}}
    views = [{"label": "common", "video": {"layout": layout, "keepActiveInputPrimary": True}}]
    room = await room_with(tessera, "video-only-speaker", views=views)
    ada_client = await joined(tessera, "Ada", room=room)
    grace_client = await joined(tessera, "Grace", room=room)
    tones = [ToneTrack(440, amplitude=0.0), ToneTrack(1000, amplitude=0.4)]
    ada = await ada_client.publish(audio=tones[0], video=ColorVideoTrack(GREY, 320, 240))
    grace = await grace_client.publish(audio=tones[1], video=ColorVideoTrack(GREY, 320, 240))
    await ada.wait_ready()
    await grace.wait_ready()
    viewer = await joined(tessera, "viewer", room=room)
    sub = await viewer.subscribe(mixed_id(viewer), audio=False)
    await sub.wait_ready()
    assert sub.video_track is not None
    track = sub.video_track
    view = tessera.server.rooms[room].views["common"]  # type: ignore[index]

    async def border_on(speaker: str, silent: str) -> bool:
        rgb = (await next_video_frame(track)).to_ndarray(format="rgb24")
        where = rects(viewer)
        assert speaker in where and silent in where, where
        assert ring_share(rgb, where[speaker]) > 0.7, "no border on the speaker"
        assert ring_share(rgb, where[silent]) < 0.2, "a border on the silent one"
        # The lecture layout gives the speaker the large region.
        assert view.layout.get_region(speaker) == "1"
        assert viewer.streams[mixed_id(viewer)]["info"]["activeInput"] == speaker
        return True

    async def grace_speaks() -> bool:
        return await border_on(grace.id, ada.id)

    await eventually(grace_speaks, 30, "the border and the large region on Grace")
    # Levels only: no audio output was made, so nothing encodes the mix.
    assert view.audio_outputs == {}

    tones[0].amplitude, tones[1].amplitude = 0.4, 0.0

    async def ada_speaks() -> bool:
        return await border_on(ada.id, grace.id)

    await eventually(ada_speaks, 30, "the border and the large region move to Ada")
    assert view.audio_outputs == {}

    # Nobody watches: the view's threads stop, the audio one too.
    await sub.unsubscribe()
    await eventually(lambda: not view.running, 20, "the view stopped")
    for client in (ada_client, grace_client, viewer):
        await client.leave()
