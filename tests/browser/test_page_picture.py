"""The picture on the conference page: live captions from the room's `caption` pushes, and
the layout menu showing and choosing what the room's view shows (Chromium, fake devices)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.portal.webapp import LAYOUT_BASES
from tests.browser.harness import Browser, Page
from tests.browser.test_page_features import open_and_join
from tests.eventually import eventually
from tests.speech import SpeechTrack, espeak_available, synthesise
from tests.support import RunningServer, api, joined, room_with
from tests.synthetic import ColorVideoTrack

SENTENCE = "we will meet at the office tomorrow morning to talk about the new project"

# The caption lines the page shows: [speaker, text, fading] of each.
CAPTION_LINES = """() => [...document.querySelectorAll('#captions li')].map((li) => [
  li.querySelector('.speaker').textContent, li.querySelector('.text').textContent,
  li.classList.contains('fading')])"""
SHOWN = "(id) => !document.getElementById(id).hidden"


async def layout_menu(page: Page) -> tuple[str, list[str], list[str]]:
    """The menu's value, its choosable options and its disabled ones."""
    value, enabled, disabled = await page.evaluate(
        """() => {
          const s = document.getElementById('layout-select');
          const options = [...s.options];
          return [s.value, options.filter((o) => !o.disabled).map((o) => o.value),
                  options.filter((o) => o.disabled).map((o) => o.value)];
        }"""
    )
    return value, enabled, disabled


async def test_the_layout_menu_offers_what_the_server_takes_and_shows_the_room_s_layout(
    browser: Browser, tessera: RunningServer
) -> None:
    room_id = await room_with(tessera, "menu-room")
    page = await open_and_join(browser, tessera, "Ada", room="menu-room")
    view = tessera.server.rooms[room_id].views["common"]  # type: ignore[index]
    await page.wait_for(SHOWN, "layout-control")
    # On join: the room's current layout, a new room's gallery.
    await page.wait_for("() => window.tessera.layoutBase === 'gallery'")
    value, enabled, disabled = await layout_menu(page)
    assert value == "gallery"
    # What one may choose is exactly what the server's PUT /demo/layout takes; presentation
    # is what the view does by itself while a screen is shared.
    assert sorted(enabled) == sorted(LAYOUT_BASES) and disabled == ["presentation"]

    # Choosing in the menu changes the room's view.
    await page.evaluate(
        """() => { const s = document.getElementById('layout-select');
                   s.value = 'lecture'; s.dispatchEvent(new Event('change')); }"""
    )
    await eventually(
        lambda: view.layout.templates.base == "lecture", 20, "the view in the lecture layout"
    )

    # A screen share: the view presents it, and the menu says so.
    sharer = await joined(tessera, "Grace", room=room_id)
    screen = await sharer.publish(
        video=ColorVideoTrack((240, 240, 240), 640, 480), video_source="screen-cast"
    )
    await screen.wait_ready()
    await eventually(lambda: view.layout.templates.base == "presentation", 20, "presenting")
    await page.wait_for("() => document.getElementById('layout-select').value === 'presentation'")
    await screen.unpublish()
    await eventually(lambda: view.layout.templates.base != "presentation", 20, "not presenting")
    await page.wait_for(
        "(base) => document.getElementById('layout-select').value === base",
        view.layout.templates.base,
    )
    # No captions in this room: no caption control.
    assert not await page.evaluate("() => window.tessera.captionsSeen")
    assert await page.evaluate("() => document.getElementById('captions-button').hidden")
    await sharer.leave()
    await page.click("#leave-button")


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is missing (scripts/test.sh)")
async def test_the_page_shows_live_captions_with_the_speaker_s_name(
    browser: Browser, tessera: RunningServer, tmp_path: Path
) -> None:
    status, room = await api(
        tessera,
        "POST",
        "/v1/rooms",
        {"name": "caption-page", "options": {"captions": {"enabled": True}}},
    )
    assert status == 200, room
    room_id = room["_id"]
    page = await open_and_join(browser, tessera, "Bob", room="caption-page", muted=True)
    assert await page.evaluate("() => document.getElementById('captions-button').hidden")

    track = SpeechTrack(synthesise(SENTENCE, tmp_path / "sentence.wav"))
    speaker = await joined(tessera, "Ada Lovelace", room=room_id)
    publication = await speaker.publish(audio=track)
    await publication.wait_ready()
    track.speak()

    # The room's captions arrive: the control shows, and the words under Ada's name.
    await page.wait_for(SHOWN, "captions-button", timeout=60)
    half = len(SENTENCE.split()) / 2
    await page.wait_for(
        f"""([sentence, half]) => {{
          const words = new Set(sentence.split(' '));
          return ({CAPTION_LINES})().some(([who, text]) => who === 'Ada Lovelace' &&
            text.split(/\\s+/).filter((w) => words.has(w)).length >= half);
        }}""",
        [SENTENCE, half],
        timeout=60,
    )
    assert await page.evaluate("() => !document.getElementById('captions').hidden")

    # Off: the captions are hidden (and stay so); on again: shown.
    await page.click("#captions-button")
    await page.wait_for("() => document.getElementById('captions').hidden")
    assert await page.evaluate(
        "() => document.getElementById('captions-button').getAttribute('aria-pressed')"
    ) == ("false")
    await page.click("#captions-button")
    await page.wait_for(SHOWN, "captions")

    # Once Ada is quiet, her lines fade and go.
    await page.wait_for(f"() => ({CAPTION_LINES})().length === 0", timeout=60)
    await speaker.leave()
    await page.click("#leave-button")
