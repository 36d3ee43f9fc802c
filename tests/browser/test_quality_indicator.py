"""The conference page shows the quality of its own connection, from its getStats figures:
good on a clean link, poor when a fifth of what it receives is lost; and, on another
participant's page, that participant's quality from the figures the server measures of its
subscriptions (the connection-quality request), poor too (needs root: netlab)."""

from __future__ import annotations

from tests.browser.harness import Browser
from tests.browser.labbrowser import behind_the_lab, joined_page
from tests.support import RunningServer

# The indicator a page shows for participant `id`, or null.
QUALITY_OF = """(id) => {
  const shown = document.querySelector(`#participant-list li[data-participant="${id}"] .quality`);
  return shown ? {level: shown.dataset.quality, title: shown.title} : null;
}"""


async def test_connection_quality_of_oneself_and_of_others_follows_their_links(
    tessera: RunningServer,
) -> None:
    # Ada's page is behind the lab's link; Grace's reaches the server directly.
    async with behind_the_lab(tessera) as (lab, inside):
        outside = await Browser.launch()
        try:
            ada = await joined_page(inside, tessera, "Ada")
            grace = await joined_page(outside, tessera, "Grace")
            ada_id = await ada.evaluate("() => window.tessera.client.id")
            grace_id = await grace.evaluate("() => window.tessera.client.id")
            is_level = f"([id, level]) => ({QUALITY_OF})(id)?.level === level"
            # Measured (an indicator shows) and not poor: good, or fair while the video
            # climbs the view's ladder after joining.
            fine = f"(id) => {{ const q = ({QUALITY_OF})(id); return q && q.level !== 'poor'; }}"
            await ada.wait_for(is_level, [ada_id, "good"], timeout=60)  # its own getStats
            await grace.wait_for(fine, ada_id, timeout=60)  # the server's figures of Ada

            lab.set_loss(0.2, "down")  # a fifth of what Ada receives never arrives
            await ada.wait_for(is_level, [ada_id, "poor"], timeout=60)
            await grace.wait_for(is_level, [ada_id, "poor"], timeout=60)
            for page in (ada, grace):
                shown = await page.evaluate(QUALITY_OF, ada_id)
                assert "% lost" in shown["title"], shown
            # Grace's own link is clean: Ada's page does not make her poor too.
            await ada.wait_for(fine, grace_id, timeout=60)

            lab.set_loss(0.0, "down")
            await ada.wait_for(is_level, [ada_id, "good"], timeout=60)
        finally:
            await outside.close()
