"""A Chromium publisher behind a limited uplink settles under it: the server's receiver
tells it what arrives (REMB; needs root for the network lab, tests/netlab.py)."""

from __future__ import annotations

import time

from tests.browser.labbrowser import behind_the_lab, joined_page
from tests.eventually import eventually
from tests.support import RunningServer

# kbit/s of the publisher's uplink once it has climbed.
LIMIT = 120

# The camera publication's outbound video: Chromium's target and the bytes sent so far.
OUTBOUND = """async () => {
  const publication = window.tessera.camera;
  if (!publication) return null;
  for (const transceiver of publication.transceivers) {
    if (!transceiver.sender.track || transceiver.sender.track.kind !== "video") continue;
    const stats = await transceiver.sender.getStats();
    for (const report of stats.values()) {
      if (report.type === "outbound-rtp" && report.kind === "video") {
        return {target: report.targetBitrate || 0, bytes: report.bytesSent, t: report.timestamp};
      }
    }
  }
  return null;
}"""


async def test_chromium_publisher_settles_under_its_uplink(tessera: RunningServer) -> None:
    async with behind_the_lab(tessera) as (lab, browser):
        page = await joined_page(browser, tessera, "Ada")
        # aiortc's receiver estimates from abs-send-time and sends REMB (goog-remb).
        answer = await page.evaluate("() => window.tessera.client.pc.remoteDescription.sdp")
        assert "abs-send-time" in answer and "goog-remb" in answer
        samples: list[dict[str, float]] = []

        async def sample() -> dict[str, float]:
            value = await page.evaluate(OUTBOUND)
            assert value is not None, "no outbound video yet"
            samples.append(value)
            return value

        await eventually(lambda: sample(), 60, "the camera sends video")

        async def above_the_limit() -> bool:
            return (await sample())["target"] > 2 * LIMIT * 1000

        # Unlimited, the server's REMB lets Chromium climb over twice the limit to come
        # (its fake camera settles near 320 kbit/s here): else settling would show nothing.
        await eventually(above_the_limit, 60, "Chromium's target over twice the limit", 0.5)
        lab.set_rate(LIMIT, "up")
        limited = time.monotonic()

        def settled() -> bool:
            # Chromium's target under the link and what it sends over 2 s under it too.
            last = samples[-1]
            window = [s for s in samples if s["t"] >= last["t"] - 2000]
            if len(window) < 2 or last["t"] - window[0]["t"] < 1500:
                return False
            seconds = (last["t"] - window[0]["t"]) / 1000
            rate = (last["bytes"] - window[0]["bytes"]) * 8 / seconds
            return last["target"] <= LIMIT * 1000 and rate <= LIMIT * 1000

        async def sampled_and_settled() -> bool:
            await sample()
            return settled()

        await eventually(sampled_and_settled, 60, "the publisher under its uplink", 0.5)
        print(
            f"settled {time.monotonic() - limited:.1f} s after the limit: target "
            f"{samples[-1]['target']:.0f} bit/s; tbf dropped {lab.shaper_drops('up')}; "
            f"highest target before {max(s['target'] for s in samples):.0f}"
        )
