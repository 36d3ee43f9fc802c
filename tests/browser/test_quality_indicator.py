"""The conference page shows the quality of its own connection, from its getStats figures:
good on a clean link, poor when a fifth of what it receives is lost (needs root: netlab)."""

from __future__ import annotations

import pytest

from tests.browser.harness import Browser, missing_requirements
from tests.netlab import netlab_or_skip, open_netlab
from tests.support import RunningServer

OWN_QUALITY = """() => {
  const id = window.tessera.client.id;
  const mine = document.querySelector(`#participant-list li[data-participant="${id}"] .quality`);
  return mine ? {level: mine.dataset.quality, title: mine.title} : null;
}"""


async def test_own_connection_quality_follows_the_link(tessera: RunningServer) -> None:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"browser tests skipped: {reason}")
    netlab_or_skip()
    async with open_netlab() as lab:
        await lab.forward_tcp(tessera.port)
        browser = await Browser.launch(prefix=lab.command())
        try:
            page = await browser.new_page(tessera.url + "/")
            await page.fill("#name", "Ada")
            await page.fill("#room", "default")
            await page.click("#join-button")
            await page.wait_for(
                "() => window.tessera.camera && window.tessera.mixedSubscription", timeout=60
            )
            shows = f"(level) => {{ const q = ({OWN_QUALITY})(); return q && q.level === level; }}"
            await page.wait_for(shows, "good", timeout=60)

            lab.set_loss(0.2, "down")  # a fifth of the mixed view's packets never arrive
            await page.wait_for(shows, "poor", timeout=60)
            shown = await page.evaluate(OWN_QUALITY)
            assert "% lost" in shown["title"], shown

            lab.set_loss(0.0, "down")
            await page.wait_for(shows, "good", timeout=60)
            # Others' links are not reported to the page: no indicator is made up for them.
            others = await page.evaluate(
                "() => document.querySelectorAll('#participant-list .quality').length"
            )
            assert others == 1
        finally:
            await browser.close()
