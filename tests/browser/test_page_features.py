"""The conference page as a product: preview, speaking ring, invite link, hands and reactions,
the self view beside the mix, and the phone layout (Chromium with fake devices)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import av
import pytest

from tessera_client import (
    REACTIONS,
    ConferenceClient,
    HandSignal,
    ReactionSignal,
    SignalError,
    encode_hand,
    encode_reaction,
    parse_signal,
)
from tests.browser.harness import Browser, Page, missing_requirements
from tests.support import RunningServer, joined
from tests.synthetic import ToneTrack

JOINED = "() => window.tessera.client && window.tessera.camera && window.tessera.mixedSubscription"


async def open_and_join(
    browser: Browser,
    tessera: RunningServer,
    user: str,
    room: str = "default",
    *,
    width: int = 1280,
    height: int = 800,
    muted: bool = False,
) -> Page:
    """Open the page, fill in the form (microphone muted when asked) and join."""
    page = await browser.new_page(tessera.url + "/", width=width, height=height)
    await page.fill("#name", user)
    await page.fill("#room", room)
    if muted:
        await page.click(".options summary")
        await page.click("#start-muted")
    await page.click("#join-button")
    await page.wait_for(JOINED, timeout=30)
    if muted:
        await page.wait_for("() => window.tessera.camera.muted.audio")
    return page


async def participant_id(page: Page) -> str:
    pid: str = await page.evaluate("() => window.tessera.client.id")
    return pid


def entry(pid: str) -> str:
    """The JS expression of a participant's entry in People."""
    return f"document.querySelector(`#participant-list li[data-participant='{pid}']`)"


async def speaking(page: Page) -> list[str]:
    """The participant ids whose People entry shows the speaking ring."""
    ids: list[str] = await page.evaluate(
        "() => [...document.querySelectorAll('#participant-list li.speaking')]"
        ".map((li) => li.dataset.participant)"
    )
    return ids


OVERLAP = """([a, b]) => {
  const r = document.getElementById(a).getBoundingClientRect();
  const s = document.getElementById(b).getBoundingClientRect();
  return r.left < s.right && s.left < r.right && r.top < s.bottom && s.top < r.bottom;
}"""


async def test_preview_shows_camera_and_level_then_is_what_joins(
    browser: Browser, tessera: RunningServer
) -> None:
    page = await browser.new_page(tessera.url + "/")
    # Before joining: the camera's picture, the devices to choose from, the microphone's level.
    await page.wait_for("() => document.getElementById('preview-video').videoWidth > 0")
    await page.wait_for(
        "() => document.querySelectorAll('#camera-select option').length > 0"
        " && document.querySelectorAll('#mic-select option').length > 0"
    )
    await page.click("#name")  # a first gesture: browsers start page audio only after one
    # Chromium's fake microphone beeps twice a second; the meter shows the beeps.
    await page.wait_for("() => window.tessera.levels['preview-level'] > 0.3")
    await page.wait_for(
        "() => Number(document.getElementById('preview-level').getAttribute('aria-valuenow')) > 0"
    )
    # Choosing another microphone previews that one.
    mics: list[str] = await page.evaluate(
        "() => [...document.querySelectorAll('#mic-select option')].map((o) => o.value)"
    )
    if len(mics) > 1:
        await page.evaluate(
            """(id) => { const s = document.getElementById('mic-select'); s.value = id;
                 s.dispatchEvent(new Event('change')); }""",
            mics[-1],
        )
        await page.wait_for(
            "(id) => window.tessera.preview &&"
            " window.tessera.preview.getAudioTracks()[0].getSettings().deviceId === id",
            mics[-1],
        )
    previewed: list[str] = await page.evaluate(
        "() => window.tessera.preview.getTracks().map((t) => t.id).sort()"
    )

    # Joining publishes the very tracks previewed; the meter moves to the microphone button.
    await page.fill("#name", "Ada")
    await page.click("#join-button")
    await page.wait_for(JOINED, timeout=30)
    sent = await page.evaluate(
        "() => window.tessera.camera.stream.getTracks().map((t) => t.id).sort()"
    )
    assert sent == previewed
    await page.wait_for("() => window.tessera.levels['mic-level'] > 0.3")
    assert await page.evaluate("() => document.getElementById('preview-video').srcObject === null")

    # The self view is beside the mix, never on it; it can be hidden and shown again.
    await page.wait_for("() => document.getElementById('self-view').videoWidth > 0")
    assert not await page.evaluate(OVERLAP, ["self-view", "mixed-video"])
    await page.click("#hide-self-view")
    assert await page.evaluate("() => document.getElementById('self-view').hidden")
    await page.click("#hide-self-view")
    assert not await page.evaluate("() => document.getElementById('self-view').hidden")


async def test_speaking_ring_follows_the_participant_with_a_tone(
    browser: Browser, tessera: RunningServer
) -> None:
    # The pages join muted: only the Python participants' tones are speech in the room.
    pages = [await open_and_join(browser, tessera, name, muted=True) for name in ("Ada", "Grace")]
    tones = [ToneTrack(440.0, 0.3), ToneTrack(660.0, 0.0)]
    speakers: list[ConferenceClient] = []
    try:
        for name, tone in zip(("Tone One", "Tone Two"), tones, strict=True):
            client = await joined(tessera, name)
            speakers.append(client)
            publication = await client.publish(audio=tone)
            await publication.wait_ready()
        one, two = (str(c.participant_id) for c in speakers)
        for page in pages:
            await page.wait_for(
                "() => document.querySelectorAll('#participant-list li').length === 4"
            )
            await page.wait_for(f"() => {entry(one)}.classList.contains('speaking')", timeout=30)
            assert await speaking(page) == [one]

        # The first stops and the second speaks: the ring moves.
        tones[0].amplitude = 0.0
        tones[1].amplitude = 0.3
        for page in pages:
            await page.wait_for(f"() => {entry(two)}.classList.contains('speaking')", timeout=30)
            assert await speaking(page) == [two]
            assert "speaking" in await page.evaluate(f"() => {entry(two)}.textContent")
    finally:
        for client in speakers:
            await client.leave()


async def test_invite_link_is_copied_and_lets_another_page_join(
    browser: Browser, tessera: RunningServer
) -> None:
    host = await open_and_join(browser, tessera, "Host", room="weekly-sync")
    await host.click("#invite-button")
    link: str = await host.evaluate("() => navigator.clipboard.readText()")
    # The room's page, not a token: a token works once, the link for everyone.
    assert link == f"{tessera.url}/?room=weekly-sync", link
    await host.wait_for("() => document.getElementById('notice').textContent.includes('copied')")

    guest = await browser.new_page(link)
    assert await guest.evaluate("() => document.getElementById('room').value") == "weekly-sync"
    await guest.fill("#name", "Guest")
    await guest.click("#join-button")
    await guest.wait_for(JOINED, timeout=30)
    room_of = "() => window.tessera.client.info.room.id"
    assert await guest.evaluate(room_of) == await host.evaluate(room_of)
    await host.wait_for("() => document.querySelectorAll('#participant-list li').length === 2")
    # A second guest with the same link: it still works.
    other = await browser.new_page(link)
    await other.fill("#name", "Second guest")
    await other.click("#join-button")
    await other.wait_for(JOINED, timeout=30)
    assert await other.evaluate(room_of) == await host.evaluate(room_of)


async def test_hands_and_reactions_between_pages_and_the_python_client(
    browser: Browser, tessera: RunningServer
) -> None:
    ada = await open_and_join(browser, tessera, "Ada")
    grace = await open_and_join(browser, tessera, "Grace")
    ada_id, grace_id = await participant_id(ada), await participant_id(grace)
    python = await joined(tessera, "Py")
    late: ConferenceClient | None = None
    try:
        py_id = str(python.participant_id)
        await ada.wait_for("() => document.querySelectorAll('#participant-list li').length === 3")

        # Ada raises her hand: Grace's page and the Python client see it.
        await ada.click("#hand-button")
        await ada.wait_for(
            "() => document.getElementById('hand-button').getAttribute('aria-pressed') === 'true'"
        )
        hand_of = f"() => {entry(ada_id)}.querySelector('.hand') !== null"
        await grace.wait_for(hand_of)
        event = await python.next_event("hand", lambda d: d["from"] == ada_id, timeout=20)
        assert event == {"from": ada_id, "raised": True}
        assert ada_id in python.raised_hands
        # Someone who joins while it is up is told too.
        late = await joined(tessera, "Late")
        await late.next_event("hand", lambda d: d["from"] == ada_id and d["raised"], timeout=20)
        assert late.raised_hands == {ada_id}

        # The Python client raises its hand: both pages show it.
        await python.raise_hand()
        for page in (ada, grace):
            await page.wait_for(f"() => {entry(py_id)}.querySelector('.hand') !== null")
            assert await page.evaluate(
                f"() => {entry(py_id)}.querySelector('.hand').getAttribute('aria-label')"
            ) == ("Hand raised")

        # Hands down.
        await ada.click("#hand-button")
        await grace.wait_for(f"() => {entry(ada_id)}.querySelector('.hand') === null")
        await python.next_event("hand", lambda d: d == {"from": ada_id, "raised": False})
        assert ada_id not in python.raised_hands
        await python.lower_hand()
        await ada.wait_for(f"() => {entry(py_id)}.querySelector('.hand') === null")

        # Reactions, from a page and from Python.
        await grace.click("#react-button")
        await grace.click("[data-reaction='👍']")
        feed = (
            "([emoji, name]) => [...document.querySelectorAll('#reaction-feed li')]"
            ".some((li) => li.textContent.includes(emoji) && li.textContent.includes(name))"
        )
        await ada.wait_for(feed, ["👍", "Grace"])
        event = await python.next_event("reaction", lambda d: d["from"] == grace_id)
        assert event == {"from": grace_id, "emoji": "👍"}
        await python.send_reaction("🎉")
        await ada.wait_for(feed, ["🎉", "Py"])
        await grace.wait_for(feed, ["🎉", "Py"])

        # None of it is chat; the text events are there for OWT clients (as plain text).
        for page in (ada, grace):
            assert (
                await page.evaluate("() => document.querySelectorAll('#chat-log li').length") == 0
            )
        text: dict[str, Any] = await python.next_event("text", lambda d: d["from"] == grace_id)
        assert isinstance(text["message"], str) and "👍" in text["message"]
    finally:
        await python.leave()
        if late is not None:
            await late.leave()


ACCESSIBLE_NAME = """(element) => {
  const text = (el) => (el ? el.textContent.trim() : "");
  if (element.getAttribute("aria-label")) return element.getAttribute("aria-label").trim();
  const by = element.getAttribute("aria-labelledby");
  if (by) return by.split(/\\s+/).map((id) => text(document.getElementById(id))).join(" ").trim();
  if (element.labels && element.labels.length) return [...element.labels].map(text).join(" ");
  return text(element) || (element.getAttribute("title") || "").trim();
}"""

UNNAMED_CONTROLS = f"""() => {{
  const visible = (el) => el.getClientRects().length > 0 && !el.closest('[hidden]');
  return [...document.querySelectorAll('button, select, input, [role=meter], a')]
    .filter(visible)
    .filter((el) => !({ACCESSIBLE_NAME})(el))
    .map((el) => el.outerHTML.slice(0, 120));
}}"""

UNTITLED_TOOLS = """() => [...document.querySelectorAll('.toolbar .tool')]
  .filter((el) => el.getClientRects().length > 0)
  .filter((el) => {
    const label = el.querySelector('.label, select');
    return !el.title || !label || label.getBoundingClientRect().width === 0;
  })
  .map((el) => el.id)"""


async def test_phone_has_the_stage_at_full_width_and_labelled_controls(
    browser: Browser, tessera: RunningServer, artifacts: Path
) -> None:
    # The join screen on a phone: every control named.
    phone = await browser.new_page(tessera.url + "/", width=390, height=844)
    await phone.wait_for("() => document.getElementById('preview-video').videoWidth > 0")
    assert await phone.evaluate(UNNAMED_CONTROLS) == []
    await phone.fill("#name", "Phone")
    await phone.click("#join-button")
    await phone.wait_for(JOINED, timeout=30)
    await phone.wait_for("() => document.getElementById('mixed-video').videoWidth > 0")

    # The room video spans the screen's width, at its own shape (nothing letterboxed beside).
    box = await phone.evaluate(
        """() => { const v = document.getElementById('mixed-video').getBoundingClientRect();
                   const video = document.getElementById('mixed-video');
                   return {left: v.left, width: v.width, height: v.height,
                           ratio: video.videoWidth / video.videoHeight,
                           page: document.documentElement.scrollWidth}; }"""
    )
    assert box["left"] == 0 and box["width"] == 390 and box["page"] == 390, box
    assert abs(box["width"] / box["height"] - box["ratio"]) < 0.02, box
    # Every control says what it does: a visible label and a title on each tool, a name on all.
    assert await phone.evaluate(UNTITLED_TOOLS) == []
    assert await phone.evaluate(UNNAMED_CONTROLS) == []
    await phone.click("#react-button")
    assert await phone.evaluate(UNNAMED_CONTROLS) == []  # the reaction buttons too
    assert not await phone.evaluate(OVERLAP, ["self-view", "mixed-video"])
    await phone.screenshot(artifacts / "conference-phone.png")


SIGNAL_CASES = [
    encode_hand(True),
    encode_hand(False),
    *(encode_reaction(emoji) for emoji in REACTIONS),
    "hello",
    "",
    "{not json",
    '{"a": 1}',
    "[1, 2]",
    '  {"text": "x"}',
    '{"tessera": "hand"}',
    '{"tessera": "hand", "raised": "yes"}',
    '{"tessera": "reaction", "emoji": "💩"}',
    '{"tessera": "wave"}',
    '{"tessera": null}',
    '{"tessera": "reaction"}',
    '{"tessera": "hand", "raised": true, "since": 12}',
]

PARSE_ALL = """async (messages) => {
  const tessera = await import("/static/js/tessera.js");
  const { parseSignal, encodeHand, encodeReaction, REACTIONS } = tessera;
  const parsed = messages.map((message) => {
    try {
      return { signal: parseSignal(message) };
    } catch (error) {
      return { error: error.message };
    }
  });
  const encoded = [encodeHand(true), encodeHand(false), ...REACTIONS.map(encodeReaction)];
  return { parsed, encoded };
}"""


def python_view(message: str) -> dict[str, Any]:
    """What the Python client makes of a message, in the JS client's terms."""
    try:
        signal = parse_signal(message)
    except SignalError as exc:
        return {"error": str(exc)}
    if isinstance(signal, HandSignal):
        return {"signal": {"kind": "hand", "raised": signal.raised}}
    if isinstance(signal, ReactionSignal):
        return {"signal": {"kind": "reaction", "emoji": signal.emoji}}
    return {"signal": None}


async def test_js_and_python_clients_read_signals_alike(
    browser: Browser, tessera: RunningServer
) -> None:
    page = await browser.new_page(tessera.url + "/")  # its import map resolves socket.io-client
    result = await page.evaluate(PARSE_ALL, SIGNAL_CASES)
    assert result["parsed"] == [python_view(m) for m in SIGNAL_CASES]
    # Each client sends what the other reads, the same words for the same signal.
    assert [python_view(m) for m in result["encoded"]] == [
        python_view(m) for m in SIGNAL_CASES[: 2 + len(REACTIONS)]
    ]


async def test_screenshot_script_takes_the_readme_screenshots(tmp_path: Path) -> None:
    # The README's pictures can be taken again: the script runs as it is (its own server
    # and Chromium) and writes both, at the desktop and phone sizes.
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"browser tests skipped: {reason}")
    script = Path(__file__).resolve().parents[2] / "scripts" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("screenshots", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    await module.take(tmp_path)
    for name, size in (
        ("conference-page.png", (1280, 800)),
        ("conference-page-phone.png", (390, 844)),
    ):
        with av.open(str(tmp_path / name)) as image:
            frame = next(image.decode(video=0))
            assert (frame.width, frame.height) == size, name
