"""The unmodified peerjs library (npm, 1.5.5) in Chromium against Tessera's /peerjs endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.harness import MIDDLE, Browser, Page
from tests.integration.test_mixing import wait_layout
from tests.support import RunningServer, joined, region_box, start_server
from tests.synthetic import ColorVideoTrack

pytestmark = pytest.mark.timeout(120)

RED = (220, 30, 30)
GREEN = (30, 200, 30)
BLUE = (30, 40, 220)

# A Peer of the peerjs library with a canvas of one colour as its camera. Calls are
# answered with that canvas; every remote stream is shown in a <video> (on screen:
# Chromium does not paint what nobody can see) kept in window.videos by peer id.
OPEN_PEER = """async ({key, id, colour, port, pingInterval}) => {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 180;
  const context = canvas.getContext("2d");
  const paint = () => { context.fillStyle = colour; context.fillRect(0, 0, 320, 180); };
  paint();
  setInterval(paint, 40);
  window.local = canvas.captureStream(25);
  window.videos = {};
  window.received = [];
  window.errors = [];
  window.hungUp = [];
  window.show = (name, stream) => {
    const video = window.videos[name] || document.createElement("video");
    video.muted = true;
    video.autoplay = true;
    video.srcObject = stream;
    video.style.cssText = "position: fixed; width: 320px; height: 180px; z-index: 10; top: "
      + (Object.keys(window.videos).length * 190) + "px; left: 0";
    document.body.append(video);
    window.videos[name] = video;
  };
  window.watch = (call) => {
    call.on("stream", (stream) => window.show(call.peer, stream));
    call.on("close", () => window.hungUp.push(call.peer));
  };
  const options = {host: "127.0.0.1", port, path: "/peerjs", key, config: {iceServers: []}};
  if (pingInterval) options.pingInterval = pingInterval;
  const peer = id ? new peerjs.Peer(id, options) : new peerjs.Peer(options);
  window.peer = peer;
  peer.on("error", (e) => window.errors.push(e.type));
  peer.on("call", (call) => { call.answer(window.local); window.watch(call); });
  peer.on("connection", (conn) => {
    window.conn = conn;
    conn.on("data", (data) => { window.received.push(data); conn.send({echo: data}); });
  });
  return await new Promise((resolve) => {
    peer.on("open", (peerId) => resolve(peerId));
    peer.on("error", (e) => resolve("error:" + e.type));
  });
}"""


async def peer_page(
    browser: Browser,
    tessera: RunningServer,
    colour: tuple[int, int, int],
    peer_id: str | None = None,
    *,
    key: str | None = None,
    ping_interval: int | None = None,
) -> tuple[Page, str]:
    """A page with an open peerjs Peer; returns the page and the peer's id (or "error:...")."""
    page = await browser.new_page(tessera.url + "/")
    await page.add_script("/vendor/peerjs/peerjs.min.js")
    opened = await page.evaluate(
        OPEN_PEER,
        {
            "key": key or tessera.server.default_service.id,
            "id": peer_id,
            "colour": "rgb({}, {}, {})".format(*colour),
            "port": tessera.port,
            "pingInterval": ping_interval,
        },
    )
    return page, str(opened)


async def sees(
    page: Page,
    name: str,
    expected: tuple[int, int, int],
    box: tuple[float, float, float, float] = MIDDLE,
) -> None:
    """Wait until the video of `name` shows `expected` in `box`."""
    await page.wait_for_colour(f"window.videos[{name!r}]", expected, box)


@pytest.fixture
async def quick(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server whose peers expire after 2 s of silence."""
    running = await start_server(
        tmp_path, **{"peer.alive_timeout": 2.0, "peer.expire_timeout": 1.0}
    )
    try:
        yield running
    finally:
        await running.stop()


async def test_two_pages_call_each_other_and_send_data_both_ways(
    browser: Browser, tessera: RunningServer
) -> None:
    alice, alice_id = await peer_page(browser, tessera, RED)  # id from GET /peerjs/<key>/id
    bob, bob_id = await peer_page(browser, tessera, BLUE, "bob")
    assert len(alice_id) == 16 and bob_id == "bob"
    await alice.evaluate(
        "(dst) => { const call = peer.call(dst, window.local); window.watch(call); }", "bob"
    )
    await sees(alice, "bob", BLUE)
    await sees(bob, alice_id, RED)
    # Media went browser to browser: the server made no peer connection.
    assert tessera.server.agent.transports == {}

    # A data connection (peerjs's default BinaryPack serialization) both ways.
    await alice.evaluate(
        """(dst) => new Promise((resolve) => {
             const conn = peer.connect(dst);
             window.conn = conn;
             conn.on("data", (data) => window.received.push(data));
             conn.on("open", () => { conn.send({text: "hi bob", n: 1}); resolve(); });
           })""",
        "bob",
    )
    await bob.wait_for("() => window.received.length > 0")
    assert await bob.evaluate("() => window.received") == [{"text": "hi bob", "n": 1}]
    await alice.wait_for("() => window.received.length > 0")
    assert await alice.evaluate("() => window.received") == [{"echo": {"text": "hi bob", "n": 1}}]


async def test_page_calls_the_room_peer_and_receives_the_mixed_view(
    browser: Browser, tessera: RunningServer
) -> None:
    member = await joined(tessera, "Ada", room="town")
    try:
        await (await member.publish(video=ColorVideoTrack(GREEN))).wait_ready()
        page, _ = await peer_page(browser, tessera, RED, "caller")
        await page.evaluate(
            "() => { const call = peer.call('room:town', window.local); window.watch(call); }"
        )
        layout = await wait_layout(member, 2)
        assert await page.evaluate("() => window.errors") == []
        for entry in layout:
            owner = "caller" if entry["stream"] != next(iter(member.publications)) else "Ada"
            left, top, width, height = region_box(entry["region"])
            box = (left + width * 0.3, top + height * 0.3, width * 0.4, height * 0.4)
            await sees(page, "room:town", RED if owner == "caller" else GREEN, box)
        size = await page.evaluate(
            "() => [window.videos['room:town'].videoWidth, window.videos['room:town'].videoHeight]"
        )
        assert size == [1280, 720]

        # The room's text chat over a data connection (json serialization).
        await page.evaluate(
            """() => new Promise((resolve) => {
                 const chat = peer.connect("room:town", {serialization: "json"});
                 chat.on("data", (data) => window.received.push(data));
                 chat.on("open", () => { window.chat = chat; resolve(); });
               })"""
        )
        await member.send_text("hello page")
        await page.wait_for("() => window.received.length > 0")
        (message,) = await page.evaluate("() => window.received")
        assert message["message"] == "hello page" and message["to"] == "all"
        await page.evaluate("() => window.chat.send('hello room')")
        assert (await member.next_event("text"))["message"] == "hello room"
    finally:
        await member.leave()


CHAT = """(room) => new Promise((resolve) => {
  const chat = peer.connect(room);
  chat.on("data", (data) => window.received.push(data));
  chat.on("open", () => { window.chat = chat; resolve(); });
  peer.on("error", (e) => resolve("error:" + e.type));
})"""


async def test_room_chat_between_peers_names_the_sender_by_its_peer_id(
    browser: Browser, tessera: RunningServer
) -> None:
    ada, _ = await peer_page(browser, tessera, RED, "ada")
    bob, _ = await peer_page(browser, tessera, BLUE, "bob")
    member = await joined(tessera, "Carol", room="town")
    try:
        for page in (ada, bob):
            await page.evaluate(CHAT, "room:town")
        for _ in range(2):  # both peers are in the room before ada speaks
            await member.next_event("participant", lambda d: d["action"] == "join")
        await ada.evaluate("() => window.chat.send('hello from ada')")
        await bob.wait_for("() => window.received.length === 1")
        assert await bob.evaluate("() => window.received") == [
            {"from": "ada", "to": "all", "message": "hello from ada", "name": "ada"}
        ]
        # A peer addresses another member by its peer id.
        await bob.evaluate("() => window.chat.send({message: 'just ada', to: 'ada'})")
        await ada.wait_for("() => window.received.some((m) => m.message === 'just ada')")
        (private,) = [m for m in await ada.evaluate("() => window.received") if m["to"] == "me"]
        assert private["from"] == "bob" and private["message"] == "just ada"
        assert await ada.evaluate("() => window.errors") == []
    finally:
        await member.leave()


async def test_malformed_frames_from_app_bugs_leave_the_peerjs_client_alive(
    browser: Browser, tessera: RunningServer
) -> None:
    alice, _ = await peer_page(browser, tessera, RED, "alice")
    await peer_page(browser, tessera, BLUE, "bob")
    # peer.connect(undefined) and peer.call(undefined) send frames without a destination;
    # a raw frame of an unknown type and one that is not JSON stand for the rest.
    await alice.evaluate(
        """() => {
             peer.connect(undefined);
             peer.call(undefined, window.local);
             peer.socket.send({type: "NO-SUCH-TYPE", payload: {}});
             peer.socket._socket.send("not json");
           }"""
    )
    # A round trip after them: bob answers alice's data connection, so every frame before
    # it has been handled (a reply to them would have come first).
    await alice.evaluate(
        """(dst) => new Promise((resolve) => {
             const conn = peer.connect(dst);
             conn.on("data", (data) => window.received.push(data));
             conn.on("open", () => { conn.send("still here"); resolve(); });
           })""",
        "bob",
    )
    await alice.wait_for("() => window.received.length > 0")
    assert await alice.evaluate("() => window.received") == [{"echo": "still here"}]
    state = await alice.evaluate(
        "() => [peer.destroyed, peer.disconnected, peer.open, window.errors]"
    )
    assert state == [False, False, True, []]


async def test_a_wrong_key_is_refused(browser: Browser, tessera: RunningServer) -> None:
    page, result = await peer_page(browser, tessera, RED, "someone", key="no-such-service")
    assert result == "error:invalid-key"
    assert not tessera.server.peers.registry.count()
    del page


async def test_a_vanished_peer_expires_and_its_caller_learns_it(
    browser: Browser, quick: RunningServer
) -> None:
    alice, _ = await peer_page(browser, quick, RED, "alice", ping_interval=400)
    bob, _ = await peer_page(browser, quick, BLUE, "bob", ping_interval=400)
    await alice.evaluate(
        "() => { const call = peer.call('bob', window.local); window.watch(call); }"
    )
    await sees(alice, "bob", BLUE)
    # Bob's page goes silent (as when its network is gone): no more heartbeats.
    await bob.evaluate(
        "() => { clearTimeout(peer.socket._wsPingTimer); peer.socket._sendHeartbeat = () => {}; }"
    )
    # The server expires bob after 2 s and tells alice, whose call to bob closes.
    await alice.wait_for("() => window.hungUp.includes('bob')", timeout=10)
    assert "bob" not in quick.server.peers.registry.peer_ids(quick.server.default_service.id)
    # Calling bob again: the server answers EXPIRE, peerjs reports peer-unavailable.
    await alice.evaluate("() => { peer.call('bob', window.local); }")
    await alice.wait_for("() => window.errors.includes('peer-unavailable')", timeout=10)


MESH_JOIN = """async (name) => {
  const { joinRoom } = await import("/static/js/peer-room.js");
  const room = await joinRoom(peer, name, {mode: "mesh", stream: window.local});
  window.room = room;
  room.addEventListener("stream", (e) => window.show(e.detail.peer, e.detail.stream));
  return [...room.members];
}"""


async def test_mesh_room_of_three_pages_without_server_media(
    browser: Browser, tessera: RunningServer
) -> None:
    colours = {"red": RED, "green": GREEN, "blue": BLUE}
    pages: dict[str, Page] = {}
    for name, colour in colours.items():
        pages[name], _ = await peer_page(browser, tessera, colour, name)
        members = await pages[name].evaluate(MESH_JOIN, "huddle")
        assert sorted(members) == sorted(list(pages)[:-1])
    for name, page in pages.items():
        for other, colour in colours.items():
            if other != name:
                await sees(page, other, colour)
    # The server relayed signaling only: no room, no publication, no peer connection.
    assert tessera.server.agent.transports == {}
    assert not tessera.server.rooms
    mesh = tessera.server.peers.registry.mesh_room(tessera.server.default_service.id, "huddle")
    assert mesh is not None and mesh.members == list(colours)
    await pages["blue"].evaluate("() => window.room.leave()")
    for name in ("red", "green"):
        await pages[name].wait_for("() => !window.room.streams.has('blue')")


async def test_default_peerjs_data_connection_chats_with_the_room(
    browser: Browser, tmp_path: Path
) -> None:
    # Room for a message longer than peerjs's 16300-byte chunk, so it travels in chunks.
    running = await start_server(tmp_path, **{"portal.text_max_length": 20000})
    member = await joined(running, "Ada", room="town")
    try:
        page, _ = await peer_page(browser, running, RED, "chatter")
        serialization = await page.evaluate(
            """() => new Promise((resolve) => {
                 const chat = peer.connect("room:town");  // peerjs's defaults: BinaryPack
                 chat.on("data", (data) => window.received.push(data));
                 chat.on("open", () => {
                   window.chat = chat;
                   // Count what arrives on the wire too: a chunked message is several.
                   window.wireMessages = 0;
                   chat.dataChannel.addEventListener("message", () => window.wireMessages++);
                   resolve(chat.serialization);
                 });
                 peer.on("error", (e) => resolve("error:" + e.type));
               })"""
        )
        assert serialization == "binary"
        joined_event = await member.next_event("participant", lambda d: d["action"] == "join")
        chatter = joined_event["data"]["id"]

        await member.send_text("hello page")
        await page.wait_for("() => window.received.length === 1")
        assert await page.evaluate("() => window.received") == [
            {"from": member.participant_id, "to": "all", "message": "hello page", "name": "Ada"}
        ]
        await page.evaluate("() => window.chat.send('hello room')")
        text = await member.next_event("text")
        assert text == {"from": chatter, "to": "all", "message": "hello room"}
        await page.evaluate(
            "(to) => window.chat.send({message: 'just Ada', to})", member.participant_id
        )
        assert (await member.next_event("text"))["message"] == "just Ada"

        # 18 000 bytes of UTF-8 each way: peerjs chunks it, and so does the room peer.
        long_text = "é😀" * 3000
        await page.evaluate("(text) => window.chat.send(text)", long_text)
        assert (await member.next_event("text"))["message"] == long_text
        await member.send_text(long_text)
        await page.wait_for("() => window.received.length === 2")
        assert (await page.evaluate("() => window.received[1].message")) == long_text
        assert await page.evaluate("() => window.wireMessages") == 1 + 2  # "hello page", 2 chunks
        assert await page.evaluate("() => window.errors") == []
    finally:
        await member.leave()
        await running.stop()
