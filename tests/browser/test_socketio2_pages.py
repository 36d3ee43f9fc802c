"""Pages that load socket.io-client 2.x (as OWT 5.x deployments do), in Chromium.

An OWT deployment serves its pages from the application server, another origin
than the portal's, and they load socket.io-client 2.x (Engine.IO 3). Here a small
app server (another port, so another origin) serves such a page: plain
RTCPeerConnection and the 2.x client with the OWT SDK's options, so long-polling
first (cross-origin, with credentials) and then the upgrade to a WebSocket. And
the portal's own `web/js/tessera.js` is pointed at the 2.x `io`. Media is checked
both ways with a Python (Engine.IO 4) participant in the same room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tessera.portal.eio3gateway import EIO3_GATEWAY
from tests.browser.harness import Browser, Page
from tests.eventually import eventually
from tests.support import RunningServer, joined
from tests.synthetic import ColorVideoTrack, close_to, mean_rgb, next_video_frame

ROOT = Path(__file__).resolve().parents[2]
SOCKET_IO_2 = ROOT / "node_modules" / "socket.io-client-2" / "dist" / "socket.io.js"
# As the other browser tests: colours that come through VP8 and colour conversions close.
RED = (200, 40, 40)
BLUE = (30, 40, 220)
UNICODE = "héllo ✓ 😀 𝄞"

# The OWT SDK's connection (src/sdk/conference/signaling.js): io(host, its options), the
# pushes it listens to, requests as emit(name, data, (status, data) => ...), then login.
OWT_JOIN = """async ({portal, token}) => {
  const socket = io(portal, {reconnection: true, reconnectionAttempts: 10,
                             "force new connection": true});
  window.socket = socket;
  // The engine starts on long-polling; record its upgrade.
  socket.io.engine.on("upgrade", (transport) => { window.upgradedTo = transport.name; });
  window.events = [];
  for (const name of ["participant", "text", "stream", "progress", "drop"]) {
    socket.on(name, (data) => window.events.push([name, data]));
  }
  window.request = (name, data) => new Promise((resolve, reject) => {
    const ack = (status, reply) => status === "ok" ? resolve(reply) : reject(new Error(reply));
    if (data === undefined) socket.emit(name, ack); else socket.emit(name, data, ack);
  });
  // The n-th pushed event (from 0) that `match` accepts.
  window.pushed = (match, n = 0) => new Promise((resolve) => {
    const look = () => {
      const found = window.events.filter(([name, data]) => match(name, data));
      if (found.length > n) resolve(found[n][1]); else setTimeout(look, 50);
    };
    look();
  });
  const info = await window.request("login", {
    token, userAgent: {sdk: {type: "JavaScript", version: "5.1"}}, protocol: "1.2"});
  return info.id;
}"""

# Publish a canvas of one colour on a plain RTCPeerConnection: the client offers, the
# server answers with `progress` soac, then `progress` ready names the session.
PUBLISH = """async ({colour}) => {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const context = canvas.getContext("2d");
  const paint = () => { context.fillStyle = colour; context.fillRect(0, 0, 320, 240); };
  paint();
  setInterval(paint, 40);
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const transceiver = pc.addTransceiver(canvas.captureStream(25).getVideoTracks()[0],
                                        {direction: "sendonly"});
  await pc.setLocalDescription(await pc.createOffer());
  const reply = await window.request("publish", {
    media: {tracks: [{type: "video", mid: transceiver.mid, source: "camera"}]},
    attributes: {name: "owt page"}, transport: {type: "webrtc"}});
  window.transportId = reply.transportId;
  await window.request("soac", {id: reply.transportId,
                                signaling: {type: "offer", sdp: pc.localDescription.sdp}});
  const answer = await window.pushed((n, d) => n === "progress" && d.status === "soac");
  await pc.setRemoteDescription(answer.data);
  await window.pushed((n, d) => n === "progress" && d.sessionId === reply.id &&
                                d.status === "ready");
  return reply.id;
}"""

# Subscribe to a stream on the same peer connection (a new offer) and show it.
SUBSCRIBE = """async ({stream}) => {
  const pc = window.pc;
  const transceiver = pc.addTransceiver("video", {direction: "recvonly"});
  await pc.setLocalDescription(await pc.createOffer());
  const reply = await window.request("subscribe", {
    media: {tracks: [{type: "video", mid: transceiver.mid, from: stream}]},
    transport: {type: "webrtc", id: window.transportId}});
  await window.request("soac", {id: window.transportId,
                                signaling: {type: "offer", sdp: pc.localDescription.sdp}});
  const answer = await window.pushed((n, d) => n === "progress" && d.status === "soac", 1);
  await pc.setRemoteDescription(answer.data);
  await window.pushed((n, d) => n === "progress" && d.sessionId === reply.id &&
                                d.status === "ready");
  const video = document.createElement("video");
  video.muted = true;
  video.autoplay = true;
  video.srcObject = new MediaStream([transceiver.receiver.track]);
  video.style.cssText = "position: fixed; inset: 0; width: 640px; height: 480px; z-index: 10";
  document.body.append(video);
  window.video = video;
  return reply.id;
}"""

# web/js/tessera.js with socket.io-client 2.x's `io` (loaded by a classic script).
TESSERA_JS_WITH_2X = """async ({token, colour, stream}) => {
  const { ConferenceClient } = await import("/static/js/tessera.js");
  const client = new ConferenceClient({io: window.io});
  window.client = client;
  window.texts = [];
  client.addEventListener("text", (e) => window.texts.push(e.detail));
  await client.join(token);
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const context = canvas.getContext("2d");
  const paint = () => { context.fillStyle = colour; context.fillRect(0, 0, 320, 240); };
  paint();
  setInterval(paint, 40);
  const publication = await client.publish(canvas.captureStream(25), {attributes: {name: "2x"}});
  await publication.ready;
  const subscription = await client.subscribe(stream, {audio: false, video: true});
  const video = document.createElement("video");
  video.muted = true;
  video.autoplay = true;
  video.srcObject = subscription.stream;
  video.style.cssText = "position: fixed; inset: 0; width: 640px; height: 480px; z-index: 10";
  document.body.append(video);
  window.video = video;
  return {participant: client.id, stream: publication.id, protocol: window.io.protocol,
          transport: client.socket.io.engine.transport.name};
}"""


@pytest.fixture
async def app_server() -> AsyncIterator[str]:
    """An application server of another origin serving an OWT-style page and socket.io 2.x."""
    if not SOCKET_IO_2.exists():
        pytest.skip("node_modules/socket.io-client-2 is missing: run `npm ci`")

    async def page(request: web.Request) -> web.StreamResponse:
        html = '<!doctype html><title>OWT page</title><script src="/socket.io.js"></script>'
        return web.Response(text=html, content_type="text/html")

    async def script(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(SOCKET_IO_2)

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/socket.io.js", script)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def wait_for_frames(track: object, colour: tuple[int, int, int]) -> None:
    async def shows() -> bool:
        frame = await next_video_frame(track)  # type: ignore[arg-type]
        rgb = mean_rgb(frame)
        assert close_to(rgb, colour), f"{frame.width}x{frame.height} {rgb}"
        return True

    await eventually(shows, what=f"frames of colour {colour}")


async def test_an_owt_page_of_another_origin_polls_upgrades_and_meets_a_python_client(
    browser: Browser, tessera: RunningServer, app_server: str
) -> None:
    python = await joined(tessera, "python")
    try:
        red = await python.publish(video=ColorVideoTrack(RED))
        await red.wait_ready()
        page: Page = await browser.new_page(app_server + "/")
        participant = await page.evaluate(
            OWT_JOIN, {"portal": tessera.url, "token": tessera.token(user="owt")}
        )
        # Long-polling first (cross-origin), then the upgrade, as socket.io-client 2.x does.
        await page.wait_for("() => window.upgradedTo === 'websocket'")
        assert await page.evaluate("() => window.socket.io.engine.transport.name") == "websocket"
        engine_id = await page.evaluate("() => window.socket.io.engine.id")
        assert tessera.app[EIO3_GATEWAY].sessions[engine_id].transport == "websocket"

        # The page publishes a blue canvas; the Python client receives it.
        stream = await page.evaluate(PUBLISH, {"colour": "rgb({}, {}, {})".format(*BLUE)})
        subscription = await python.subscribe(stream, audio=False)
        assert subscription.video_track is not None
        await wait_for_frames(subscription.video_track, BLUE)
        # The page subscribes to the Python client's red stream on its one peer connection.
        await page.evaluate(SUBSCRIBE, {"stream": red.id})
        await page.wait_for_colour("window.video", RED)

        # Text both ways, beyond ASCII.
        await page.evaluate("(m) => window.request('text', {to: 'all', message: m})", UNICODE)
        heard = await python.next_event("text")
        assert heard == {"from": participant, "to": "all", "message": UNICODE}
        await python.send_text(UNICODE[::-1], to=participant)
        text = await page.evaluate("() => window.pushed((n) => n === 'text')")
        assert text == {"from": python.participant_id, "to": "me", "message": UNICODE[::-1]}

        await page.evaluate("() => window.request('logout')")
        await page.evaluate("() => { window.socket.close(); }")
        await eventually(lambda: not tessera.app[EIO3_GATEWAY].sessions, what="session closed")
    finally:
        await python.leave()


async def test_tessera_js_works_with_the_2x_client(
    browser: Browser, tessera: RunningServer, app_server: str
) -> None:
    python = await joined(tessera, "python")
    try:
        red = await python.publish(video=ColorVideoTrack(RED))
        await red.wait_ready()
        # The portal's page (its import map resolves tessera.js's own socket.io-client 4),
        # with the 2.x client loaded beside it from the app server.
        page = await browser.new_page(tessera.url + "/")
        await page.add_script(app_server + "/socket.io.js")
        reply = await page.evaluate(
            TESSERA_JS_WITH_2X,
            {
                "token": tessera.token(user="legacy"),
                "colour": "rgb({}, {}, {})".format(*BLUE),
                "stream": red.id,
            },
        )
        # socket.io-client 2.x (Socket.IO protocol 4) on tessera.js's WebSocket-only transport.
        assert reply["protocol"] == 4 and reply["transport"] == "websocket"
        assert len(tessera.app[EIO3_GATEWAY].sessions) == 1
        await page.wait_for_colour("window.video", RED)
        subscription = await python.subscribe(reply["stream"], audio=False)
        assert subscription.video_track is not None
        await wait_for_frames(subscription.video_track, BLUE)
        await python.send_text(UNICODE, to=reply["participant"])
        await page.wait_for("(m) => window.texts.some((t) => t.message === m)", UNICODE)
        await page.evaluate("() => window.client.leave()")
        await eventually(lambda: not tessera.app[EIO3_GATEWAY].sessions, what="session closed")
    finally:
        await python.leave()
