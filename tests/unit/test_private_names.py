"""The aiortc reach-ins: every private name is listed in one place and looked up at start-up."""

from __future__ import annotations

import ast
import concurrent.futures
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer

from tessera.media import aiortcext
from tessera.media.aiortcext import (
    PRIVATE_NAMES,
    PrivateNameMissing,
    check_private_names,
    missing_private_names,
)

SOURCE = Path(aiortcext.__file__).resolve()


def test_the_installed_aiortc_has_every_name() -> None:
    assert missing_private_names() == []
    check_private_names()


def test_the_check_needs_no_event_loop_of_its_caller() -> None:
    # aiortc's senders take the current loop when built: a thread without one must work.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(missing_private_names).result() == []


async def test_the_check_runs_on_a_running_loop() -> None:
    # As create_app runs it, inside `tessera serve`'s loop.
    assert missing_private_names() == []


def test_a_missing_method_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    with pytest.raises(PrivateNameMissing) as caught:
        check_private_names()
    message = str(caught.value)
    assert "RTCRtpSender._send_keyframe" in message
    assert "aiortc 1.16.x" in message


def test_a_missing_instance_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a release that renamed a private attribute set in __init__ looks like.
    original = RTCRtpReceiver.__init__

    def without_rtx_ssrc(self: RTCRtpReceiver, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        del self._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]

    monkeypatch.setattr(RTCRtpReceiver, "__init__", without_rtx_ssrc)
    monkeypatch.delattr(JitterBuffer, "_remove_frame")
    assert missing_private_names() == [
        "RTCRtpReceiver._RTCRtpReceiver__rtx_ssrc",
        "JitterBuffer._remove_frame",
    ]


def test_a_name_a_method_sets_elsewhere_is_looked_up_in_its_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def handle_without_data(self: RTCRtpReceiver, packet: Any, arrival: int) -> None:
        packet.payload_bytes = b""

    monkeypatch.setattr(RTCRtpReceiver, "_handle_rtp_packet", handle_without_data)
    assert missing_private_names() == ["RTCRtpReceiver._handle_rtp_packet._data"]


def _names_used(tree: ast.Module) -> set[str]:
    """Underscored names the module reads or writes on objects that are not its own."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            own.add(node.attr)
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            used.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith("_") and node.value.isidentifier():
                used.add(node.value)
        elif isinstance(node, ast.keyword) and node.arg and node.arg.startswith("_"):
            used.add(node.arg)  # a stand-in's attribute: SimpleNamespace(_ssrc=1)
    # Python's own dunders and Tessera's own mark on an aiortc object are no reach-ins.
    return {n for n in used - own if not n.startswith("_tessera") and not n.endswith("__")}


def test_every_private_name_the_module_uses_is_listed() -> None:
    used = _names_used(ast.parse(SOURCE.read_text(encoding="utf-8")))
    listed = {name for _, name in PRIVATE_NAMES}
    assert used - listed == set(), "add these to PRIVATE_NAMES"
    assert "_RTCRtpReceiver__decoder_queue" in used  # the scan sees string and attribute uses
    # And nothing listed that the module no longer uses: a start-up check must not refuse an
    # aiortc for a name Tessera does not need.
    # (A method the module overrides, such as JitterBuffer._remove_frame, is defined here.)
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    unused = {n for n in listed if n.startswith("_") and not n.endswith("__")} - used - defined
    assert unused == set(), "remove these from PRIVATE_NAMES"


def test_the_scan_finds_an_unlisted_reach_in() -> None:
    tree = ast.parse(
        "class Tap:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def _helper(self, sender):\n"
        "        return sender._RTCRtpSender__track, self._mine, getattr(sender, '_ssrc')\n"
        "    def _stand_in(self):\n"
        "        return SimpleNamespace(_track_id='t')\n"
    )
    assert _names_used(tree) == {"_RTCRtpSender__track", "_ssrc", "_track_id"}
