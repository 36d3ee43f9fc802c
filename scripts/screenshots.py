"""Take the README's screenshots of the conference page again.

    .venv/bin/python scripts/screenshots.py [--out docs]

Starts a server of its own on 127.0.0.1 (a temporary data directory) and Debian's
Chromium with fake devices (as the browser tests do), in a room with live captions: Ada
on a desktop page, Grace on a phone-sized page with her hand raised, both with their
microphones muted (Chromium's fake microphones beep), and Alan, a Python participant
who says a sentence (espeak-ng) and is the one speaking: the speaker's border in the
mix, the ring in People and his words in the captions. Writes `conference-page.png`
(1280x800) and `conference-page-phone.png` (390x844).
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
from tests.browser.harness import Browser, BrowserError, Page, missing_requirements  # noqa: E402
from tests.eventually import eventually  # noqa: E402
from tests.speech import SpeechTrack, espeak_available, synthesise  # noqa: E402
from tests.support import api, start_server  # noqa: E402
from tests.synthetic import ColorVideoTrack  # noqa: E402

JOINED = "() => window.tessera.client && window.tessera.camera && window.tessera.mixedSubscription"
FRAMES = """async () => {
  const s = window.tessera.mixedSubscription;
  const video = s && (await s.getStats()).find((r) => r.kind === "video");
  return video ? video.framesDecoded : 0;
}"""
SENTENCE = "we will meet at the office tomorrow morning to talk about the new project"
# A caption line of Alan's with at least this many words.
CAPTIONED = """(words) => [...document.querySelectorAll('#captions li')].some((li) =>
  li.querySelector('.speaker').textContent === 'Alan Turing' &&
  li.querySelector('.text').textContent.split(' ').length >= words)"""


async def join(browser: Browser, url: str, user: str, width: int, height: int) -> Page:
    """Join from the page's form with the microphone muted (only Alan is heard)."""
    page = await browser.new_page(url + "/", width=width, height=height)
    await page.fill("#name", user)
    await page.fill("#room", "team-sync")
    await page.click(".options summary")
    await page.click("#start-muted")
    await page.click(".options summary")
    await page.click("#join-button")
    await page.wait_for(JOINED, timeout=60)
    await page.wait_for("() => window.tessera.camera.muted.audio", timeout=30)
    return page


async def take(out: Path) -> None:
    reason = missing_requirements()
    if reason is not None:
        raise SystemExit(f"Cannot take screenshots: {reason}")
    if not espeak_available():
        raise SystemExit(
            "Cannot take screenshots: espeak-ng is missing (apt-get install espeak-ng)"
        )
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before anything starts)
    with tempfile.TemporaryDirectory() as data:
        server = await start_server(Path(data))
        room = {"name": "team-sync", "options": {"captions": {"enabled": True}}}
        status, created = await api(server, "POST", "/v1/rooms", room)
        if status != 200:
            raise SystemExit(f"Cannot create the room: {created}")
        speech = SpeechTrack(synthesise(SENTENCE, Path(data) / "sentence.wav"))
        browser = await Browser.launch()
        alan = ConferenceClient()
        try:
            ada = await join(browser, server.url, "Ada Lovelace", 1280, 800)
            grace = await join(browser, server.url, "Grace Hopper", 390, 844)
            token = server.token(room=created["_id"], user="Alan Turing")
            await alan.join(token)
            publication = await alan.publish(
                audio=speech,
                video=ColorVideoTrack((170, 110, 60), 640, 360),
                attributes={"name": "Alan Turing"},
            )
            await publication.wait_ready()
            view = server.server.rooms[created["_id"]].views["common"]
            for page in (ada, grace):
                await page.wait_for(
                    "() => document.querySelectorAll('#participant-list li').length === 3", 60
                )
                await page.wait_for(f"async () => ({FRAMES})() > 60", 60)
            await grace.click("#hand-button")
            await ada.wait_for("() => document.querySelector('#participant-list .hand')", 30)
            alan_id = alan.participant_id
            speaking = f"() => document.querySelector(`li[data-participant='{alan_id}']`)"
            # Alan speaks: once his words are captioned and the view hears him (its border),
            # the pictures are taken; he says it again if the moment passed.
            for attempt in range(3):
                speech.speak()
                try:
                    await ada.wait_for(CAPTIONED, 6, timeout=30)
                    await eventually(
                        lambda: view._speaking == publication.id, 10, "the border on Alan"
                    )
                    for page in (ada, grace):
                        await page.wait_for(f"() => {speaking}?.classList.contains('speaking')", 10)
                    break
                except (AssertionError, BrowserError):
                    if attempt == 2:
                        raise
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
