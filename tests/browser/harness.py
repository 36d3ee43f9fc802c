"""Real Chromium for tests: a Node bridge (bridge.mjs, playwright-core; a `NodeDriver`).

The tests stay in Python (same fixtures, same server, same Python client for interop)
while the browser is driven by playwright-core from npm, as the project requires.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.nodedriver import ROOT, NodeDriver

BRIDGE = Path(__file__).with_name("bridge.mjs")
CHROMIUM = os.environ.get("TESSERA_CHROMIUM", "/usr/bin/chromium")


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if shutil.which("node") is None:
        return "Node.js is not installed (apt-get install nodejs npm)"
    if not Path(CHROMIUM).exists():
        return f"Chromium is not at {CHROMIUM} (apt-get install chromium, or set TESSERA_CHROMIUM)"
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        return "node_modules is missing (run `npm ci` in the repository)"
    return None


# Mean RGB of a box (fractions of the picture) of the <video> that `expression` names in the
# page; null while it has no picture. Chromium paints only videos on screen: keep it visible.
MEAN_RGB = """([expression, left, top, width, height]) => {
  const video = (0, eval)(expression);
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0);
  const x = Math.round(left * canvas.width), y = Math.round(top * canvas.height);
  const w = Math.max(1, Math.round(width * canvas.width));
  const h = Math.max(1, Math.round(height * canvas.height));
  const data = context.getImageData(x, y, w, h).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) {
    sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2];
  }
  return sum.map((v) => v / (data.length / 4));
}"""

# Whether a box of a video shows a colour, every channel within a tolerance.
SHOWS_COLOUR = f"""([expression, box, expected, tolerance]) => {{
  const rgb = ({MEAN_RGB})([expression, ...box]);
  return rgb !== null && rgb.every((value, i) => Math.abs(value - expected[i]) <= tolerance);
}}"""

# The middle of a picture or region, as (left, top, width, height) fractions.
MIDDLE = (0.3, 0.3, 0.4, 0.4)


def middle_of(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The middle 40 % of a (left, top, width, height) box: clear of edges and scaling."""
    left, top, width, height = box
    return (left + width * 0.3, top + height * 0.3, width * 0.4, height * 0.4)


class BrowserError(Exception):
    """The browser or the page reported an error for a request."""


class Browser(NodeDriver):
    """One headless Chromium; each page gets its own browser context."""

    script = BRIDGE
    title = "the browser bridge"
    error = BrowserError
    call_timeout = 60.0
    line_limit = 64 * 1024 * 1024

    def __init__(self, process: asyncio.subprocess.Process, version: str) -> None:
        super().__init__(process)
        self.version = version
        self.pages: list[Page] = []

    @classmethod
    async def launch(cls, prefix: Sequence[str] = ()) -> Browser:
        """Chromium; `prefix` runs it through another program (`lab.command()`: a namespace)."""
        process, version = await cls.spawn(ready_timeout=60, prefix=prefix)
        return cls(process, str(version))

    async def new_page(self, url: str | None = None, width: int = 1280, height: int = 800) -> Page:
        """A fresh page (own cookies and storage) with camera and microphone allowed."""
        page = Page(self, await self.call("newPage", width=width, height=height))
        self.pages.append(page)
        if url is not None:
            await page.goto(url)
        return page


class Page:
    """A browser tab; JavaScript is given as the source of a function of one argument."""

    def __init__(self, browser: Browser, page_id: int) -> None:
        self.browser = browser
        self.id = page_id

    async def goto(self, url: str) -> int | None:
        status: int | None = await self.browser.call("goto", page=self.id, url=url)
        return status

    async def evaluate(self, function: str, arg: Any = None, timeout: float = 60.0) -> Any:
        """Run ``function`` (e.g. ``"(x) => x + 1"``; async allowed) in the page with ``arg``."""
        try:
            return await self.browser.call(
                "evaluate", timeout=timeout, page=self.id, source=function, arg=arg
            )
        except BrowserError as exc:
            raise BrowserError(f"{exc}\n--- page log ---\n{await self.log_text()}") from None

    async def wait_for(self, function: str, arg: Any = None, timeout: float = 30.0) -> None:
        """Wait until ``function(arg)`` returns something truthy in the page."""
        try:
            await self.browser.call(
                "waitFor",
                timeout=timeout + 5,
                page=self.id,
                source=function,
                arg=arg,
                timeoutMs=timeout * 1000,
            )
        except (BrowserError, TimeoutError) as exc:
            raise BrowserError(
                f"waiting for {function} failed: {exc}\n--- page log ---\n{await self.log_text()}"
            ) from None

    async def mean_rgb(
        self, video: str, box: tuple[float, float, float, float] = MIDDLE
    ) -> list[float] | None:
        """Mean RGB of ``box`` in the video that the JS expression ``video`` names."""
        rgb: list[float] | None = await self.evaluate(MEAN_RGB, [video, *box])
        return rgb

    async def wait_for_colour(
        self,
        video: str,
        expected: tuple[int, int, int],
        box: tuple[float, float, float, float] = MIDDLE,
        timeout: float = 30.0,
        tolerance: float = 40.0,
    ) -> list[float]:
        """Wait until ``box`` of ``video`` shows ``expected`` in every channel (decoders take
        a few frames), polled in the page; returns the colour then seen."""
        try:
            await self.wait_for(
                SHOWS_COLOUR, [video, list(box), list(expected), tolerance], timeout
            )
        except BrowserError as exc:
            rgb = await self.mean_rgb(video, box)
            raise AssertionError(f"{video} shows {rgb} in {box}, not {expected}: {exc}") from None
        rgb = await self.mean_rgb(video, box)
        assert rgb is not None
        return rgb

    async def add_init_script(self, source: str) -> None:
        """Run the JavaScript ``source`` before the page's own scripts on every later load."""
        await self.browser.call("addInitScript", page=self.id, source=source)

    async def add_script(self, url: str) -> None:
        await self.browser.call("addScript", page=self.id, url=url)

    async def click(self, selector: str, timeout: float = 10.0) -> None:
        await self.browser.call("click", page=self.id, selector=selector, timeoutMs=timeout * 1000)

    async def fill(self, selector: str, value: str, timeout: float = 10.0) -> None:
        await self.browser.call(
            "fill", page=self.id, selector=selector, value=value, timeoutMs=timeout * 1000
        )

    async def screenshot(self, path: Path, full_page: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.browser.call("screenshot", page=self.id, path=str(path), fullPage=full_page)
        return path

    async def log(self) -> list[str]:
        """Console messages and page errors so far."""
        lines: list[str] = await self.browser.call("log", page=self.id)
        return lines

    async def log_text(self) -> str:
        try:
            return "\n".join((await self.log())[-40:])
        except BrowserError as exc:
            return f"(no log: {exc})"

    async def close(self) -> None:
        await self.browser.call("closePage", page=self.id)
