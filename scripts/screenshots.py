"""Take the README's screenshots of the conference page again.

    .venv/bin/python scripts/screenshots.py [--out docs]

Starts a server of its own on 127.0.0.1 (a temporary data directory) and Debian's
Chromium with fake devices (as the browser tests do): Ada on a desktop page, Grace on a
phone-sized page with her hand raised, and Alan, a Python participant whose microphone
plays a tone (so he is the one speaking) and who reacts. Writes
`conference-page.png` (1280x800) and `conference-page-phone.png` (390x844).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers: server start-up and the Chromium bridge

from tessera_client import ConferenceClient  # noqa: E402
from tests.browser.harness import Browser, Page, missing_requirements  # noqa: E402
from tests.support import start_server  # noqa: E402
from tests.synthetic import ColorVideoTrack, ToneTrack  # noqa: E402

JOINED = "() => window.tessera.client && window.tessera.camera && window.tessera.mixedSubscription"
FRAMES = """async () => {
  const s = window.tessera.mixedSubscription;
  const video = s && (await s.getStats()).find((r) => r.kind === "video");
  return video ? video.framesDecoded : 0;
}"""


async def join(browser: Browser, url: str, user: str, width: int, height: int) -> Page:
    page = await browser.new_page(url + "/", width=width, height=height)
    await page.fill("#name", user)
    await page.fill("#room", "team-sync")
    await page.click("#join-button")
    await page.wait_for(JOINED, timeout=60)
    return page


async def take(out: Path) -> None:
    reason = missing_requirements()
    if reason is not None:
        raise SystemExit(f"Cannot take screenshots: {reason}")
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before anything starts)
    with tempfile.TemporaryDirectory() as data:
        server = await start_server(Path(data))
        browser = await Browser.launch()
        alan = ConferenceClient()
        try:
            ada = await join(browser, server.url, "Ada Lovelace", 1280, 800)
            grace = await join(browser, server.url, "Grace Hopper", 390, 844)
            token = server.token(room="team-sync", user="Alan Turing")
            await alan.join(token)
            publication = await alan.publish(
                audio=ToneTrack(440.0, 0.3),
                video=ColorVideoTrack((40, 90, 160), 640, 360),
                attributes={"name": "Alan Turing"},
            )
            await publication.wait_ready()
            alan_id = alan.participant_id
            speaking = f"() => document.querySelector(`li[data-participant='{alan_id}']`)"
            for page in (ada, grace):
                await page.wait_for(
                    "() => document.querySelectorAll('#participant-list li').length === 3", 60
                )
                await page.wait_for(f"() => {speaking}?.classList.contains('speaking')", 60)
                await page.wait_for(f"async () => ({FRAMES})() > 60", 60)
            await grace.click("#hand-button")
            await ada.wait_for("() => document.querySelector('#participant-list .hand')", 30)
            await alan.send_reaction("👏")
            await ada.wait_for("() => document.querySelector('#reaction-feed li')", 30)
            await ada.screenshot(out / "conference-page.png")
            await grace.screenshot(out / "conference-page-phone.png")
            print(f"wrote {out / 'conference-page.png'} and {out / 'conference-page-phone.png'}")
        finally:
            await alan.leave()
            await browser.close()
            await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder (default docs/)")
    asyncio.run(take(parser.parse_args().out))


if __name__ == "__main__":
    main()
