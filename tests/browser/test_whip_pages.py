"""WHIP and WHEP in Chromium: a page publishes by ``fetch`` WHIP; /whep/ plays a view."""

from __future__ import annotations

import pytest

from tests.browser.harness import Browser
from tests.eventually import eventually
from tests.support import RunningServer, joined
from tests.synthetic import ColorVideoTrack, next_video_frame

pytestmark = pytest.mark.timeout(120)
GREEN = (30, 200, 30)

# A page publishing its (fake) camera and microphone with WHIP, in plain fetch.
WHIP_PUBLISH = """async (token) => {
  const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const pc = new RTCPeerConnection();
  for (const track of media.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  await pc.setLocalDescription(await pc.createOffer());
  while (pc.iceGatheringState !== "complete")
    await new Promise((r) => { pc.onicegatheringstatechange = r; });
  const response = await fetch("/whip/default", { method: "POST", body: pc.localDescription.sdp,
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` } });
  if (response.status !== 201) throw new Error(`${response.status} ${await response.text()}`);
  window.whip = { pc, location: response.headers.get("Location"), token };
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return window.whip.location;
}"""

WHIP_END = """async () => {
  const response = await fetch(window.whip.location, { method: "DELETE",
    headers: { Authorization: `Bearer ${window.whip.token}` } });
  window.whip.pc.close();
  return response.status;
}"""


async def test_a_page_publishes_with_fetch_whip(browser: Browser, tessera: RunningServer) -> None:
    viewer = await joined(tessera, "viewer")
    try:
        page = await browser.new_page(f"{tessera.url}/healthz")  # a page of the server's origin
        location = await page.evaluate(WHIP_PUBLISH, tessera.token(user="browser"))
        assert location.startswith("/whip/sessions/")
        await eventually(
            lambda: any(s["type"] == "forward" for s in viewer.streams.values()),
            30,
            "the browser's WHIP stream",
        )
        stream = next(s for s in viewer.streams.values() if s["type"] == "forward")
        assert sorted(t["type"] for t in stream["media"]["tracks"]) == ["audio", "video"]
        sub = await viewer.subscribe(stream["id"])
        await sub.wait_ready()
        assert sub.video_track is not None
        frame = await next_video_frame(sub.video_track, timeout=30)
        assert frame.width > 0
        assert await page.evaluate(WHIP_END) == 200
        await eventually(
            lambda: (
                not tessera.server.whip.sessions
                and not any(s["type"] == "forward" for s in viewer.streams.values())
            ),
            30,
            "the WHIP session and its stream to end",
        )
    finally:
        await viewer.leave()


async def test_the_whep_player_page_plays_the_mixed_view(
    browser: Browser, tessera: RunningServer
) -> None:
    publisher = await joined(tessera, "camera")
    try:
        pub = await publisher.publish(video=ColorVideoTrack(GREEN))
        await pub.wait_ready()
        token = tessera.token(user="player")
        page = await browser.new_page(f"{tessera.url}/whep/#room=default&view=common&token={token}")
        await page.wait_for_colour("document.getElementById('video')", GREEN, timeout=40)
        (session,) = tessera.server.whip.sessions.values()
        assert session.kind == "whep"
        await page.close()  # pagehide: the player ends its session with DELETE
        await eventually(lambda: not tessera.server.whip.sessions, 30, "the WHEP session to end")
    finally:
        await publisher.leave()
