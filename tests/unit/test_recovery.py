"""A recording cut off by a killed server: what its file still plays, read back from it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tessera.mixer.outputs import OpusEncoder
from tessera.recorder.muxer import PacketMuxer
from tessera.recorder.recovery import (
    CUT,
    NOTHING_PLAYABLE,
    closed_after_interruption,
    read_media,
)
from tests.unit.test_muxer import (
    BURST,
    SECONDS,
    TONE,
    Errors,
    encode_video,
    feed,
    last_frame_time,
    wait_drained,
)


@pytest.fixture(scope="module")
def h264() -> list[Any]:
    return encode_video("h264", keyframe_interval=60)  # one keyframe: fragments cut by time


@pytest.fixture(scope="module")
def opus() -> list[Any]:
    encoder = OpusEncoder(2)
    packets: list[Any] = []
    for i in range(SECONDS * 50):
        t = (np.arange(960) + i * 960) / 48000
        mono = (8000 * np.sin(2 * np.pi * TONE * t)).astype(np.int16)
        packets += encoder.encode(np.repeat(mono, 2), i * 960)
    return packets


async def test_mp4_plays_up_to_the_cut(tmp_path: Path, h264: list[Any], opus: list[Any]) -> None:
    path = tmp_path / "crash.mp4"
    muxer = PacketMuxer(
        path,
        "mp4",
        video_codec="h264",
        audio_codec="opus",
        on_error=Errors(),
        max_queue_seconds=BURST,
    )
    # As if the server were killed 3 s in: the file holds every fragment but the open one.
    await wait_drained(muxer, feed(muxer, h264, opus, until=3.0))
    snapshot = tmp_path / "snapshot.mp4"
    shutil.copyfile(path, snapshot)
    last = last_frame_time(snapshot)
    assert last is not None and last > 3.0 - 1.1
    assert 3.0 - 1.1 < read_media(snapshot).duration <= 3.0
    # As the next start stores it: stopped, with what the file plays.
    closed = closed_after_interruption({"state": "recording", "storage": {"file": str(snapshot)}})
    assert closed["state"] == "stopped" and closed["reason"] == CUT
    assert closed["duration"] == read_media(snapshot).duration
    feed(muxer, h264, opus, start=3.0)
    muxer.close()
    assert abs(read_media(path).duration - SECONDS) < 0.1
    data = path.read_bytes()
    for fraction in (0.3, 0.6, 0.9):
        truncated = tmp_path / f"cut{fraction}.mp4"
        truncated.write_bytes(data[: int(len(data) * fraction)])
        last = last_frame_time(truncated)
        assert last is not None and last >= SECONDS * fraction - 1.5, (fraction, last)
        media = read_media(truncated)
        assert abs(media.duration - last) < 1.1, (fraction, media, last)


def test_an_interrupted_recording_is_closed_with_what_its_file_plays(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    running = {"state": "recording", "duration": 0.0, "storage": {"file": str(empty)}}
    assert closed_after_interruption(running) == {
        "state": "failed",
        "duration": 0.0,
        "reason": NOTHING_PLAYABLE,
        "storage": {"file": str(empty)},
    }
    gone = {"state": "recording", "storage": {"file": str(tmp_path / "gone.webm")}}
    assert closed_after_interruption(gone)["state"] == "failed"
    assert closed_after_interruption({"state": "recording"})["state"] == "failed"
    assert running["state"] == "recording"  # not changed in place
