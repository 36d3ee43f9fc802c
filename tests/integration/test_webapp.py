"""The served pages and the demo app server (/demo/): tokens, layout, recordings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tessera.conference.tokens import issue_ticket
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, start_server
from tests.synthetic import ColorVideoTrack, ToneTrack


async def demo(
    tessera: RunningServer,
    method: str,
    path: str,
    body: Any = None,
    ticket: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    all_headers = dict(headers or {})
    if ticket is not None:
        all_headers["Authorization"] = f"Ticket {ticket}"
    async with aiohttp.ClientSession() as session:
        async with session.request(
            method, tessera.url + path, json=body, headers=all_headers
        ) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.read()


async def join_with_demo_token(tessera: RunningServer, user: str, **body: Any) -> ConferenceClient:
    status, reply = await demo(tessera, "POST", "/demo/token", {"user": user, **body})
    assert status == 200, reply
    client = ConferenceClient()
    await client.join(reply["token"])
    return client


async def test_pages_and_vendor_packages_are_served(tessera: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        for path, marker in (
            ("/", b"join-form"),
            ("/admin", b"key-form"),
            ("/static/js/tessera.js", b"class ConferenceClient"),
            ("/static/css/app.css", b"--accent"),
        ):
            async with session.get(tessera.url + path) as resp:
                assert resp.status == 200, path
                assert marker in await resp.read(), path
        node_modules = tessera.server.config.node_modules_dir()
        if not (node_modules / "socket.io-client").is_dir():
            pytest.skip("node_modules is missing (npm ci): vendor routes are not mounted")
        async with session.get(tessera.url + "/vendor/socket.io-client/socket.io.esm.min.js") as r:
            assert r.status == 200
            assert b"export" in await r.read()
        async with session.get(tessera.url + "/static/../portal/config.py") as resp:
            assert resp.status in (403, 404)


async def test_demo_token_joins_the_named_room(tessera: RunningServer) -> None:
    status, reply = await demo(tessera, "POST", "/demo/token", {"user": "Ada", "room": "demo-room"})
    assert status == 200, reply
    assert reply["role"] == "presenter" and reply["moderator"] is True
    client = ConferenceClient()
    info = await client.join(reply["token"])
    try:
        assert info["user"] == "Ada"
        room = tessera.server.conference.loaded_room(tessera.server.default_service.id, "demo-room")
        assert room is not None and room.id == info["room"]["id"]
    finally:
        await client.leave()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"room": "r"}, 400, "user must be a non-empty string"),
        ({"user": "", "room": "r"}, 400, "user must be a non-empty string"),
        ({"user": "a\u0000b", "room": "r"}, 400, "printable"),
        ({"user": "a", "room": "r", "role": "emperor"}, 400, "not a role of this room"),
        ({"user": "a", "room": "r", "role": 5}, 400, "role must be"),
        ({"user": "a", "colour": "red"}, 400, "colour: unknown field"),
        (["not", "an", "object"], 400, "JSON object"),
    ],
)
async def test_demo_token_refuses_bad_requests(
    tessera: RunningServer, body: Any, status: int, message: str | None
) -> None:
    got, reply = await demo(tessera, "POST", "/demo/token", body)
    assert got == status, reply
    if message:
        assert message in reply["error"]["message"]


async def test_demo_token_checks_roles_of_a_stored_room(tessera: RunningServer) -> None:
    status, reply = await demo(
        tessera, "POST", "/demo/token", {"user": "a", "room": "default", "role": "emperor"}
    )
    assert status == 400
    assert "not a role of this room" in reply["error"]["message"]


async def test_demo_is_off_when_configured(tmp_path: Path) -> None:
    running = await start_server(tmp_path, **{"web.demo": "off"})
    try:
        status, _ = await demo(running, "POST", "/demo/token", {"user": "a"})
        assert status == 404
    finally:
        await running.stop()


async def test_demo_answers_only_on_loopback_by_default(tmp_path: Path) -> None:
    # Listening on every interface: the demo door stays shut, even to local clients.
    running = await start_server(tmp_path, **{"server.host": "0.0.0.0"})
    try:
        status, reply = await demo(running, "POST", "/demo/token", {"user": "a"})
        assert status == 403
        assert "loopback" in reply["error"]["message"]
    finally:
        await running.stop()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"x-forwarded-proto": "https"},
        {"X-Forwarded-Host": "conference.example"},
        {"Forwarded": "for=203.0.113.9;proto=https"},
        {"X-Real-IP": "203.0.113.9"},
        {"Via": "1.1 proxy"},
        {"Host": "conference.example"},
        {"Host": "203.0.113.9:8080"},
    ],
)
async def test_demo_never_trusts_a_proxied_request(
    tessera: RunningServer, headers: dict[str, str]
) -> None:
    # The issue's request: a same-host TLS proxy makes every internet client look local.
    body = {"room": "proxied-room", "user": "x", "role": "presenter"}
    status, reply = await demo(tessera, "POST", "/demo/token", body, headers=headers)
    assert status == 403, reply
    name = next(iter(headers))
    expected = name if name != "Host" else "is not a loopback name"
    assert expected.lower() in reply["error"]["message"].lower()
    service = tessera.server.default_service.id
    assert tessera.server.conference.loaded_room(service, "proxied-room") is None


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
async def test_demo_answers_a_loopback_host(tessera: RunningServer, host: str) -> None:
    status, reply = await demo(
        tessera, "POST", "/demo/token", {"user": "a"}, headers={"Host": f"{host}:{tessera.port}"}
    )
    assert status == 200, reply


@pytest.mark.parametrize(
    "settings", [{"server.public_host": "meet.example:443"}, {"server.secure": True}]
)
async def test_demo_is_off_with_a_public_host_unless_enabled(
    tmp_path: Path, settings: dict[str, Any]
) -> None:
    running = await start_server(tmp_path / "off", **settings)
    try:
        status, reply = await demo(running, "POST", "/demo/token", {"user": "a"})
        assert status == 403
        assert "demo_with_public_host" in reply["error"]["message"]
    finally:
        await running.stop()
    running = await start_server(
        tmp_path / "enabled", **settings, **{"web.demo_with_public_host": True}
    )
    try:
        status, reply = await demo(running, "POST", "/demo/token", {"user": "a"})
        assert status == 200, reply
    finally:
        await running.stop()


async def test_layout_and_recordings_need_a_moderator_ticket(tessera: RunningServer) -> None:
    presenter = await join_with_demo_token(tessera, "Ada", room="default")
    viewer = await join_with_demo_token(tessera, "Bob", room="default", role="viewer")
    try:
        # No ticket, a forged one, a stale one, and a viewer's: all refused, nothing changes.
        status, reply = await demo(tessera, "PUT", "/demo/layout", {"base": "lecture"})
        assert status == 401 and "Ticket" in reply["error"]["message"]
        forged = issue_ticket(
            presenter.participant_id or "",
            b"x" * 32,
            60,
            service_id=tessera.server.default_service.id,
            room_id=presenter.room_id or "",
        )
        status, reply = await demo(tessera, "PUT", "/demo/layout", {"base": "lecture"}, forged)
        assert status == 401 and "signature" in reply["error"]["message"]
        stale = presenter.reconnection_ticket
        await presenter.request("refreshReconnectionTicket")
        presenter_ticket = await presenter.request("refreshReconnectionTicket")
        status, reply = await demo(tessera, "PUT", "/demo/layout", {"base": "lecture"}, stale)
        assert status == 401 and "no longer valid" in reply["error"]["message"]
        status, reply = await demo(
            tessera, "PUT", "/demo/layout", {"base": "lecture"}, viewer.reconnection_ticket
        )
        assert status == 403 and "viewer" in reply["error"]["message"]
        status, reply = await demo(
            tessera, "POST", "/demo/recordings", {}, viewer.reconnection_ticket
        )
        assert status == 403
        room = tessera.server.rooms[presenter.info["room"]["id"]]
        assert room.views["common"].layout.templates.base == "gallery"
        status, reply = await demo(
            tessera, "PUT", "/demo/layout", {"base": "sideways"}, presenter_ticket
        )
        assert status == 400 and "fluid, lecture" in reply["error"]["message"]
        status, reply = await demo(
            tessera, "PUT", "/demo/layout", {"base": "lecture"}, presenter_ticket
        )
        assert status == 200, reply
        assert room.views["common"].layout.templates.base == "lecture"
    finally:
        await presenter.leave()
        await viewer.leave()


async def test_layout_switch_reaches_subscribers(tessera: RunningServer) -> None:
    moderator = await join_with_demo_token(tessera, "Ada", room="default")
    watchers = []
    try:
        for name, colour in (("b", (200, 30, 30)), ("c", (30, 200, 30)), ("d", (30, 30, 200))):
            watcher = await join_with_demo_token(tessera, name, room="default")
            await watcher.publish(video=ColorVideoTrack(colour, 320, 180))
            watchers.append(watcher)
        view_id = next(s for s in moderator.streams.values() if s["type"] == "mixed")["id"]
        view = tessera.server.rooms[moderator.room_id].views["common"]  # type: ignore[index]
        await eventually(lambda: len(view.layout.to_json()) == 3, what="three in the mix")
        status, reply = await demo(
            tessera, "PUT", "/demo/layout", {"base": "lecture"}, moderator.reconnection_ticket
        )
        assert status == 200, reply
        layout = reply["layout"]
        assert len(layout) == 3
        # Lecture: one region is larger than the others.
        widths = sorted(entry["region"]["area"]["width"] for entry in layout)
        assert len(set(widths)) > 1

        def layout_update(data: Any) -> bool:
            return (
                data.get("id") == view_id
                and data.get("data", {}).get("field") == "video.layout"
                and data["data"]["value"] == layout
            )

        await moderator.next_event("stream", layout_update, timeout=20)
    finally:
        for client in [moderator, *watchers]:
            await client.leave()


async def test_recording_from_the_page_and_its_download_link(tessera: RunningServer) -> None:
    moderator = await join_with_demo_token(tessera, "Ada", room="default")
    try:
        await moderator.publish(
            audio=ToneTrack(440), video=ColorVideoTrack((200, 40, 40), 320, 180)
        )
        ticket = moderator.reconnection_ticket
        status, started = await demo(tessera, "POST", "/demo/recordings", {}, ticket)
        assert status == 200, started
        assert started["state"] == "recording" and "download" not in started
        # A container the page's browser plays (the view is VP8 + Opus), not REST's "auto".
        assert started["container"] == "webm"
        assert "storage" not in started  # the server's paths stay on the server
        status, listed = await demo(tessera, "GET", "/demo/recordings", None, ticket)
        assert [r["id"] for r in listed] == [started["id"]]
        room = tessera.server.rooms[moderator.room_id]  # type: ignore[index]
        recording = room.recordings[started["id"]]  # running: in its room, until it ends
        await eventually(lambda: recording.duration >= 2.0, what="two seconds recorded")
        status, stopped = await demo(
            tessera, "DELETE", f"/demo/recordings/{started['id']}", None, ticket
        )
        assert status == 200 and stopped["state"] == "stopped"
        link = stopped["download"]
        status, body = await demo(tessera, "GET", link)
        assert status == 200 and len(body) > 10_000
        # The signature covers the recording, the room and the expiry.
        for tampered in (
            link.replace("signature=", "signature=0"),
            link.replace("expires=", "expires=9"),
            link.replace(started["id"], "f" * 32),
            link.replace("signature=", "signature=%C3%A9"),  # not ASCII: 403, not a 500
        ):
            status, _ = await demo(tessera, "GET", tampered)
            assert status == 403, tampered
    finally:
        await moderator.leave()


async def test_the_page_reads_the_layout_a_view_shows(tessera: RunningServer) -> None:
    moderator = await join_with_demo_token(tessera, "Ada", room="default")
    viewer = await join_with_demo_token(tessera, "Bob", room="default", role="viewer")
    try:
        status, reply = await demo(tessera, "GET", "/demo/layout")
        assert status == 401, reply
        status, reply = await demo(
            tessera, "GET", "/demo/layout", ticket=viewer.reconnection_ticket
        )
        assert status == 403 and "viewer" in reply["error"]["message"]
        ticket = moderator.reconnection_ticket
        status, reply = await demo(tessera, "GET", "/demo/layout", ticket=ticket)
        assert status == 200, reply
        # What the menu offers is what PUT takes; a new room shows the gallery.
        assert reply["base"] == "gallery" and reply["view"] == "common"
        assert reply["bases"] == ["fluid", "lecture", "gallery"]
        status, reply = await demo(tessera, "PUT", "/demo/layout", {"base": "lecture"}, ticket)
        assert status == 200, reply
        status, reply = await demo(tessera, "GET", "/demo/layout", ticket=ticket)
        assert status == 200 and reply["base"] == "lecture", reply
        status, reply = await demo(tessera, "GET", "/demo/layout?view=nope", ticket=ticket)
        assert status == 404 and "nope does not exist" in reply["error"]["message"]
    finally:
        await moderator.leave()
        await viewer.leave()
