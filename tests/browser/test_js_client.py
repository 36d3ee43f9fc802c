"""The JavaScript client (web/js/tessera.js) in Chromium: regions, interop, reconnection."""

from __future__ import annotations

from typing import Any

from tessera_client import ConferenceClient
from tests.browser.harness import Browser, Page, middle_of
from tests.eventually import eventually
from tests.support import RunningServer, joined, region_box
from tests.synthetic import ColorVideoTrack, close_to, mean_rgb, next_video_frame

# Join with the library and publish a canvas painted one colour (kept repainting so
# that captureStream keeps producing frames).
PUBLISH_CANVAS = """async ({token, colour}) => {
  const { ConferenceClient } = await import("/static/js/tessera.js");
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 180;
  const context = canvas.getContext("2d");
  const paint = () => { context.fillStyle = colour; context.fillRect(0, 0, 320, 180); };
  paint();
  setInterval(paint, 40);
  const client = new ConferenceClient();
  window.client = client;
  await client.join(token);
  const stream = canvas.captureStream(25);
  const publication = await client.publish(stream, {attributes: {name: "canvas"}});
  window.publication = publication;
  await publication.ready;
  return {participant: client.id, stream: publication.id};
}"""

# Join with the library, subscribe to a stream and show it in a <video>.
SUBSCRIBE = """async ({token, stream, parameters}) => {
  const { ConferenceClient } = await import("/static/js/tessera.js");
  const client = window.client || new ConferenceClient();
  window.client = client;
  if (!client.joined) await client.join(token);
  const id = stream || [...client.streams.values()].find((s) => s.type === "mixed").id;
  const video = parameters ? {parameters} : true;
  const subscription = await client.subscribe(id, {audio: false, video});
  const element = document.createElement("video");
  element.muted = true;
  element.autoplay = true;
  element.srcObject = subscription.stream;
  // On screen: Chromium does not paint a video nobody can see, and drawImage reads the paint.
  element.style.cssText = "position: fixed; inset: 0; width: 640px; height: 360px; z-index: 10";
  document.body.append(element);
  window.video = element;
  window.subscription = subscription;
  return id;
}"""


async def blank_page(browser: Browser, tessera: RunningServer) -> Page:
    # The conference page's import map resolves "socket.io-client" for the library.
    return await browser.new_page(tessera.url + "/")


async def test_canvas_colours_appear_in_their_layout_regions(
    browser: Browser, tessera: RunningServer
) -> None:
    colours = {"red": (220, 30, 30), "blue": (30, 40, 220)}
    published: dict[str, str] = {}
    for name, rgb in colours.items():
        page = await blank_page(browser, tessera)
        reply = await page.evaluate(
            PUBLISH_CANVAS,
            {"token": tessera.token(user=name), "colour": "rgb({}, {}, {})".format(*rgb)},
        )
        published[name] = reply["stream"]
    # The watcher asks for a smaller picture than the view's own (an `optional` resolution).
    room = next(iter(tessera.server.rooms.values()))
    view = room.views["common"]
    smaller = view.info()["media"]["tracks"][1]["optional"]["parameters"]["resolution"][0]
    watcher = await blank_page(browser, tessera)
    await watcher.evaluate(
        SUBSCRIBE,
        {"token": tessera.token(user="watcher"), "parameters": {"resolution": smaller}},
    )
    await watcher.wait_for("(w) => window.video.videoWidth === w", smaller["width"])
    layout = {entry["stream"]: entry["region"] for entry in view.layout.to_json()}
    assert set(layout) == set(published.values())
    for name, stream_id in published.items():
        box = middle_of(region_box(layout[stream_id]))
        await watcher.wait_for_colour("window.video", colours[name], box)


async def test_python_publisher_to_browser_and_browser_publisher_to_python(
    browser: Browser, tessera: RunningServer
) -> None:
    python = await joined(tessera, "python")
    try:
        publication = await python.publish(video=ColorVideoTrack((200, 40, 40), 320, 240))
        # Python -> browser: the browser receives the forward stream.
        page = await blank_page(browser, tessera)
        await page.evaluate(
            SUBSCRIBE, {"token": tessera.token(user="browser"), "stream": publication.id}
        )
        await page.wait_for_colour("window.video", (200, 40, 40))
        assert await page.evaluate("() => window.video.videoWidth") == 320

        # Browser -> Python: the Python client receives the browser's canvas.
        canvas_page = await blank_page(browser, tessera)
        reply = await canvas_page.evaluate(
            PUBLISH_CANVAS, {"token": tessera.token(user="canvas"), "colour": "rgb(30, 40, 220)"}
        )
        subscription = await python.subscribe(reply["stream"], audio=False)
        assert subscription.video_track is not None
        track = subscription.video_track

        async def shows_the_canvas() -> bool:
            rgb = mean_rgb(await next_video_frame(track))
            assert close_to(rgb, (30, 40, 220)), rgb
            return True

        await eventually(shows_the_canvas, what="the browser's canvas in Python")
    finally:
        await python.leave()


async def test_reconnects_with_the_ticket_after_a_network_drop(
    browser: Browser, tessera: RunningServer
) -> None:
    page = await blank_page(browser, tessera)
    reply = await page.evaluate(
        PUBLISH_CANVAS, {"token": tessera.token(user="roaming"), "colour": "rgb(0, 160, 0)"}
    )
    participant_id, stream_id = reply["participant"], reply["stream"]
    await page.evaluate(
        """() => {
          window.events = [];
          for (const name of ["reconnecting", "reconnected", "left", "text"]) {
            window.client.addEventListener(name, (e) => window.events.push([name, e.detail]));
          }
        }"""
    )
    # Drop the network under Socket.IO: the engine's transport closes, as on a Wi-Fi change.
    await page.evaluate("() => { window.client.socket.io.engine.close(); }")
    await page.wait_for("() => window.events.some(([name]) => name === 'reconnected')", timeout=20)
    events: list[Any] = await page.evaluate("() => window.events.map(([name]) => name)")
    assert "reconnecting" in events and "left" not in events
    assert await page.evaluate("() => window.client.id") == participant_id
    room = next(r for r in tessera.server.rooms.values() if participant_id in r.participants)
    assert stream_id in room.streams
    # The same participant still gets messages and can still publish.
    sender: ConferenceClient = await joined(tessera, "sender")
    try:
        await sender.send_text("still there?")
        await page.wait_for(
            "() => window.events.some(([name, d]) =>"
            " name === 'text' && d.message === 'still there?')"
        )
        assert await page.evaluate(
            "async () => (await window.client.subscribe(window.client.streams.keys().next().value"
            ", {audio: false})).id.length > 0"
        )
    finally:
        await sender.leave()
