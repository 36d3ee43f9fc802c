"""The media self-check at start-up: it passes here, names what fails, and stops a broken start."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tessera.conference import selfcheck
from tessera.media.aiortcext import check_dtls_srtp, check_msid_stream
from tessera.mixer.selfcheck import SelfCheckReport, check_media
from tessera.portal import server as portal_server
from tessera.portal.config import load_config
from tests.integration.test_operations import ServeProcess
from tests.support import api, start_server


def test_every_codec_passes() -> None:
    report = check_media()
    assert report.ok, report.failures
    assert 0 < report.seconds < 10


def test_a_codec_that_does_not_work_is_named() -> None:
    report = check_media(("vp8", "av2"))
    assert not report.ok
    assert len(report.failures) == 1
    assert report.failures[0].startswith("av2 video: ")


def test_dtls_srtp_handshake_in_memory() -> None:
    check_dtls_srtp()  # raises if the handshake, the key export or SRTP fails


def test_msid_stream_id_reaches_the_answer() -> None:
    check_msid_stream()  # raises if aiortc no longer writes a=msid from the sender's stream id


async def test_serve_logs_the_check_and_serves(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path, shutdown_timeout=10.0)
    try:
        await serve.start()
        status = await serve.terminate()
    finally:
        serve.kill()
    assert status == 0
    passed = [e for e in serve.lines if str(e.get("msg", "")).startswith("media self-check passed")]
    assert len(passed) == 1 and passed[0]["level"] == "info"
    messages = [str(e.get("msg", "")) for e in serve.lines]
    listening = next(i for i, m in enumerate(messages) if m.startswith("Tessera listening"))
    assert serve.lines.index(passed[0]) < listening


async def test_a_failed_check_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = SelfCheckReport(("vp8 video: ValueError: no libvpx in this build",), 0.01)
    monkeypatch.setattr(selfcheck, "check_media", lambda: broken)
    monkeypatch.setattr(selfcheck, "_media_checked", False)
    config = load_config(
        None, env={}, overrides={"server.port": 0, "storage.data_dir": str(tmp_path)}
    )

    assert await portal_server._serve(config) == 1

    err = capsys.readouterr().err
    assert "media self-check failed: vp8 video: ValueError: no libvpx in this build" in err
    assert "media_check = false" in err


async def test_the_check_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = SelfCheckReport(("vp8 video: ValueError: no libvpx in this build",), 0.01)
    monkeypatch.setattr(selfcheck, "check_media", lambda: broken)
    monkeypatch.setattr(selfcheck, "_media_checked", False)
    tessera = await start_server(tmp_path, **{"server.media_check": False})
    try:
        status, _ = await api(tessera, "GET", "/v1/rooms")
        assert status == 200
    finally:
        await tessera.stop()


async def test_serve_exits_naming_a_missing_aiortc_name(tmp_path: Path) -> None:
    # `tessera serve` in a real process whose aiortc lacks one name Tessera reaches into.
    config = tmp_path / "tessera.toml"
    config.write_text(f'[server]\nport = 0\n[storage]\ndata_dir = "{tmp_path}"\n')
    program = (
        "import sys, aiortc\n"
        "del aiortc.RTCRtpSender._send_keyframe\n"
        "from tessera.portal.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        program,
        "serve",
        "--config",
        str(config),
        env={k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode(errors="replace")
    assert proc.returncode == 1, text
    assert "tessera: aiortc " in text and "RTCRtpSender._send_keyframe" in text
    assert "Tessera listening" not in text
