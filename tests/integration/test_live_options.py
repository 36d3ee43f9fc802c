"""Room options changed over REST apply to the running room, or are refused with a 409."""

from __future__ import annotations

from typing import Any

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, api
from tests.synthetic import ColorVideoTrack

RED = (220, 30, 30)


def stream_ids(client: ConferenceClient) -> set[str]:
    return set(client.streams)


async def test_views_are_added_relaid_and_removed_while_the_room_runs(
    tessera: RunningServer,
) -> None:
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": "live"})
    assert status == 200, room
    room_id = room["_id"]
    path = f"/v1/rooms/{room_id}"
    alice, bob = ConferenceClient(), ConferenceClient()
    await alice.join(tessera.token(room=room_id, user="alice"))
    await bob.join(tessera.token(room=room_id, user="bob", role="viewer"))
    publication = await alice.publish(video=ColorVideoTrack(RED))
    await publication.wait_ready()
    common = f"{room_id}-common"
    watching = await bob.subscribe(common, audio=False)
    await watching.wait_ready()

    # A view added: every client hears of it, and the publication is mixed into it.
    views: list[dict[str, Any]] = [{"label": "common"}, {"label": "small"}]
    status, body = await api(tessera, "PATCH", path, {"views": views})
    assert status == 200, body
    small = f"{room_id}-small"
    await eventually(lambda: small in stream_ids(bob), what="the new view announced")
    running = tessera.server.rooms[room_id]
    assert list(running.views) == ["common", "small"]
    await eventually(
        lambda: [e["stream"] for e in bob.streams[small]["info"]["layout"]] == [publication.id],
        what="the publication mixed into the new view",
    )
    on_small = await bob.subscribe(small, audio=False)
    await on_small.wait_ready()

    # A view re-laid: its regions change while it runs, its subscribers stay.
    views[1] = {"label": "small", "video": {"layout": {"templates": {"base": "lecture"}}}}
    status, body = await api(tessera, "PATCH", path, {"views": views})
    assert status == 200, body
    view = running.views["small"]
    assert view.layout.templates.base == "lecture" and view.id == small
    assert not on_small.ended.is_set() and small in stream_ids(bob)

    # A view removed: its stream goes, and its subscription ends with OWT's reason.
    status, body = await api(tessera, "PATCH", path, {"views": [views[1]]})
    assert status == 200, body
    await eventually(lambda: watching.ended.is_set(), what="the removed view's subscription ended")
    # The stream's removal comes first (OWT's order), then the subscription's reason.
    await eventually(lambda: watching.error == "Source stream loss", what="the reason")
    assert common not in stream_ids(bob) and common not in running.streams
    assert list(running.views) == ["small"] and not on_small.ended.is_set()
    status, info = await api(tessera, "GET", f"/v1/rooms/{room_id}/streams")
    assert {s["id"] for s in info} == {publication.id, small}
    for client in (alice, bob):
        await client.leave()


async def test_a_change_the_running_view_cannot_take_is_refused_naming_the_field(
    tessera: RunningServer,
) -> None:
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": "fixed"})
    assert status == 200, room
    path = f"/v1/rooms/{room['_id']}"
    alice = ConferenceClient()
    await alice.join(tessera.token(room=room["_id"], user="alice"))
    change = {"views": [{"label": "common", "video": {"parameters": {"framerate": 15}}}]}
    status, body = await api(tessera, "PATCH", path, change)
    assert status == 409, body
    assert body["error"]["code"] == 1201
    message = body["error"]["message"]
    assert message.startswith("views.0.video.parameters.framerate cannot change while the room")
    # Nothing changed: not the stored options, not the running view.
    status, stored = await api(tessera, "GET", path)
    assert stored["views"][0]["video"]["parameters"]["framerate"] == 30
    assert tessera.server.rooms[room["_id"]].views["common"].framerate == 30
    # With nobody in the room, the same change is stored, and the next run uses it.
    await alice.leave()
    await eventually(lambda: room["_id"] not in tessera.server.rooms, what="the room unloaded")
    status, body = await api(tessera, "PATCH", path, change)
    assert status == 200, body
    again = ConferenceClient()
    await again.join(tessera.token(room=room["_id"], user="alice"))
    assert tessera.server.rooms[room["_id"]].views["common"].framerate == 15
    await again.leave()
