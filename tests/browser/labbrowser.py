"""Chromium behind the network lab (tests/netlab.py): its media crosses the lab's shaped,
lossy link; its signaling reaches the server directly (needs root)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.browser.harness import Browser, Page, missing_requirements
from tests.netlab import NetLab, netlab_or_skip, open_netlab
from tests.support import RunningServer


@contextlib.asynccontextmanager
async def behind_the_lab(tessera: RunningServer) -> AsyncIterator[tuple[NetLab, Browser]]:
    """A network lab whose Chromium reaches `tessera` only through the lab's link."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"browser tests skipped: {reason}")
    netlab_or_skip()
    async with open_netlab() as lab:
        await lab.forward_tcp(tessera.port)
        browser = await Browser.launch(prefix=lab.command())
        try:
            yield lab, browser
        finally:
            await browser.close()


async def joined_page(
    browser: Browser,
    tessera: RunningServer,
    name: str,
    room: str = "default",
    role: str = "presenter",
) -> Page:
    """A conference page of `browser` that joined `room` as `name` in `role`, receiving the
    mixed view (and publishing its camera when the role may)."""
    page = await browser.new_page(tessera.url + "/")
    await page.fill("#name", name)
    await page.fill("#room", room)
    # The role is a <select> among "More options": set as a person's choice would.
    await page.evaluate(
        """(role) => {
          const select = document.getElementById("role");
          if (![...select.options].some((option) => option.value === role)) {
            throw new Error(`the page offers no role ${role}`);
          }
          select.value = role;
          select.dispatchEvent(new Event("change", {bubbles: true}));
        }""",
        role,
    )
    await page.click("#join-button")
    ready = "window.tessera.mixedSubscription"
    if role == "presenter":
        ready = f"window.tessera.camera && {ready}"
    await page.wait_for(f"() => {ready}", timeout=60)
    return page
