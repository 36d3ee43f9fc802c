"""What the OWT JavaScript SDK 5.1 relies on, exercised in Chromium through web/js/tessera.js.

tessera.js builds its subscriptions as the SDK does: several subscriptions on
one RTCPeerConnection, each subscription's MediaStream taken from `ontrack`'s
`event.streams[0]` (the answer's msid), and a `progress` error with the
subscription's sessionId ("Source stream loss") ending the subscription.
"""

from __future__ import annotations

from typing import Any

from tessera_client import ConferenceClient
from tests.browser.harness import Browser, Page
from tests.support import RunningServer, joined
from tests.synthetic import ColorVideoTrack, ToneTrack

RED = (220, 30, 30)
BLUE = (30, 40, 220)

# Join, subscribe to each stream in turn on the one peer connection, show each in a <video>.
SUBSCRIBE_ALL = """async ({token, streams}) => {
  const { ConferenceClient } = await import("/static/js/tessera.js");
  const client = new ConferenceClient();
  window.client = client;
  window.events = [];
  client.addEventListener("streamremoved",
    (e) => window.events.push(["streamremoved", e.detail.stream.id]));
  await client.join(token);
  window.subscriptions = [];
  window.videos = [];
  for (const [i, id] of streams.entries()) {
    const subscription = await client.subscribe(id);
    for (const name of ["error", "ended"]) {
      subscription.addEventListener(name, (e) => window.events.push(
        [name, subscription.id, name === "error" ? e.detail.error.message : e.detail.reason]));
    }
    const video = document.createElement("video");
    video.muted = true;
    video.autoplay = true;
    video.srcObject = subscription.stream;
    video.style.cssText =
      `position: fixed; top: 0; left: ${i * 330}px; width: 320px; height: 240px`;
    document.body.append(video);
    window.subscriptions.push(subscription);
    window.videos.push(video);
  }
  return window.subscriptions.map((s) => s.id);
}"""

# Each subscription's MediaStream: its id, and whether it holds exactly its own receivers' tracks.
DESCRIBE = """() => ({
  peerConnections: new Set(window.subscriptions.map((s) => s.client.pc)).size,
  streams: window.subscriptions.map((s) => {
    const own = s.transceivers.map((t) => t.receiver.track.id).sort();
    const held = s.stream.getTracks().map((t) => t.id).sort();
    return {id: s.id, stream: s.stream.id, own, held,
            kinds: s.stream.getTracks().map((t) => t.kind).sort()};
  }),
})"""


async def _page(browser: Browser, tessera: RunningServer) -> Page:
    return await browser.new_page(tessera.url + "/")


async def _publisher(tessera: RunningServer, user: str, colour: tuple[int, int, int]) -> Any:
    client = await joined(tessera, user)
    publication = await client.publish(audio=ToneTrack(440), video=ColorVideoTrack(colour))
    await publication.wait_ready()
    return client, publication


async def test_each_subscription_is_its_own_media_stream_on_one_peer_connection(
    browser: Browser, tessera: RunningServer
) -> None:
    red_client, red = await _publisher(tessera, "red", RED)
    blue_client, blue = await _publisher(tessera, "blue", BLUE)
    clients: list[ConferenceClient] = [red_client, blue_client]
    try:
        page = await _page(browser, tessera)
        mixed = f"{red_client.room_id}-common"
        ids = await page.evaluate(
            SUBSCRIBE_ALL,
            {"token": tessera.token(user="watcher"), "streams": [red.id, blue.id, mixed]},
        )
        described = await page.evaluate(DESCRIBE)
        assert described["peerConnections"] == 1
        for subscription_id, stream in zip(ids, described["streams"], strict=True):
            assert stream["stream"] == subscription_id  # the msid is the subscription's id
            assert stream["held"] == stream["own"]  # exactly its own tracks, no others
            assert stream["kinds"] == ["audio", "video"]
        # Each <video> shows its own publisher.
        await page.wait_for_colour("window.videos[0]", RED)
        await page.wait_for_colour("window.videos[1]", BLUE)
    finally:
        for client in clients:
            await client.leave()


async def test_source_stream_loss_ends_the_subscription(
    browser: Browser, tessera: RunningServer
) -> None:
    red_client, red = await _publisher(tessera, "red", RED)
    blue_client, blue = await _publisher(tessera, "blue", BLUE)
    try:
        page = await _page(browser, tessera)
        red_sub, blue_sub = await page.evaluate(
            SUBSCRIBE_ALL, {"token": tessera.token(user="watcher"), "streams": [red.id, blue.id]}
        )
        await page.wait_for_colour("window.videos[1]", BLUE)
        await red.unpublish()
        await page.wait_for(
            "(id) => window.events.some(([name, sub]) => name === 'ended' && sub === id)", red_sub
        )
        events = await page.evaluate("() => window.events")
        assert events == [
            ["streamremoved", red.id],
            ["error", red_sub, "Source stream loss"],
            ["ended", red_sub, "Source stream loss"],
        ]
        assert await page.evaluate(
            "(id) => !window.client.subscriptions.has(id)"
            " && window.client.subscriptions.size === 1",
            red_sub,
        )
        # The other subscription on the same peer connection goes on.
        assert await page.evaluate("() => window.subscriptions[1].ended") is False
        await page.wait_for_colour("window.videos[1]", BLUE)
        participant = next(
            p
            for p in tessera.server.conference.participants.values()
            if blue_sub in p.subscriptions
        )
        assert red_sub not in participant.subscriptions
    finally:
        await red_client.leave()
        await blue_client.leave()
