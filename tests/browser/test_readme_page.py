"""The README's HTML block (the JavaScript client) runs as written in Chromium.

The HTML block is served as a page of its own from a copy of web/ (`[web] directory`),
opened with `#token=`; a Python participant in the room sees it publish and gets its
"hello". The PeerJS block calls a page whose peer "bob" answers with a blue canvas.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.harness import Browser
from tests.browser.test_peerjs import BLUE, peer_page
from tests.eventually import eventually
from tests.readme_blocks import readme_blocks
from tests.support import RunningServer, api, joined, start_server

pytestmark = pytest.mark.timeout(120)
WEB = Path(__file__).resolve().parents[2] / "web"


@pytest.fixture
async def with_readme_page(tmp_path: Path) -> AsyncIterator[RunningServer]:
    (html,) = [b for b in readme_blocks() if b.language == "html" and b.skip is None]
    web = tmp_path / "web"
    shutil.copytree(WEB, web)
    (web / "readme.html").write_text(
        f"<!doctype html>\n<html><body>\n{html.text}</body></html>\n", encoding="utf-8"
    )
    running = await start_server(tmp_path / "data", **{"web.directory": str(web)})
    try:
        yield running
    finally:
        await running.stop()


async def test_readme_html_block_runs_as_written(
    browser: Browser, with_readme_page: RunningServer
) -> None:
    tessera = with_readme_page
    watcher = await joined(tessera, "watcher")
    try:
        page = await browser.new_page(f"{tessera.url}/static/readme.html#token={tessera.token()}")
        # Its last line: `await client.send("hello")`, after publish, subscribe and mute.
        text = await watcher.next_event("text", timeout=60)
        assert text["message"] == "hello", await page.log_text()
        room = watcher.room_id

        async def published_and_muted() -> bool:
            status, streams = await api(tessera, "GET", f"/v1/rooms/{room}/streams")
            forward = [s for s in streams if status == 200 and s["type"] == "forward"]
            return len(forward) == 1 and forward[0]["media"]["audio"]["status"] == "inactive"

        await eventually(published_and_muted, 30, "the page's publication, its audio muted")
        # The mixed view, subscribed at 640x360, plays in the block's <video>.
        await page.wait_for("() => document.getElementById('view').videoWidth === 640", timeout=30)
    finally:
        await watcher.leave()


# Stimulus: the server answers the peer's id request late, as on a loaded machine. peerjs
# drops what a peer sends before its socket opens: a block that called before "open" lost
# its OFFER then, and its video never played (the flake of issue 15).
SLOW_ID = """() => {
  const fetch = window.fetch;
  window.fetch = (url, ...rest) => String(url).includes("/id")
    ? new Promise((resolve) => setTimeout(() => resolve(fetch(url, ...rest)), 1500))
    : fetch(url, ...rest);
}"""


async def run_peerjs_block(browser: Browser, tessera: RunningServer, before: str = "") -> None:
    """Run the README's PeerJS block in a page and see it show the blue of bob's answer."""
    (js,) = [b for b in readme_blocks() if b.language == "js" and b.skip is None]
    bob, bob_id = await peer_page(browser, tessera, BLUE, "bob")  # answers with blue
    assert bob_id == "bob"
    page = await browser.new_page(f"{tessera.url}/healthz")  # a page of the server's origin
    await page.add_script("/vendor/peerjs/peerjs.min.js")  # as its first line says
    await page.evaluate(
        "() => { const v = document.createElement('video'); v.autoplay = v.muted = true;"
        " v.style.cssText = 'width: 320px; height: 180px'; document.body.prepend(v); }"
    )
    if before:
        await page.evaluate(before)
    await page.evaluate(f"async () => {{\n{js.text}\n}}")
    await page.wait_for_colour("document.querySelector('video')", BLUE)
    await bob.wait_for("() => Object.keys(window.videos).length === 1")


async def test_readme_peerjs_block_runs_as_written(
    browser: Browser, tessera: RunningServer
) -> None:
    await run_peerjs_block(browser, tessera)


async def test_readme_peerjs_block_calls_once_its_peer_is_open(
    browser: Browser, tessera: RunningServer
) -> None:
    await run_peerjs_block(browser, tessera, before=SLOW_ID)
