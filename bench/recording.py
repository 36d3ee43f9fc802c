"""What recording a view costs: `python -m bench.recording [--seconds S] [--json FILE]`.

A view's 720p30 VP8 packets and its Opus audio are encoded for subscribers
anyway; recording them only adds muxing. This encodes S seconds of a moving
720p scene and 20 ms Opus frames once (not timed), then feeds the packets in
real time to Tessera's PacketMuxer exactly as a room does, and measures the
CPU time of the whole process during that window (the loop-side `write()`
plus the muxer thread), against the same window with nothing recorded.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.content import MovingPattern
from bench.machine import MachineInfo
from tessera.media.videoencoder import EncoderSettings, VideoEncoder, default_bitrate
from tessera.mixer.outputs import OpusEncoder
from tessera.recorder.muxer import PacketMuxer

TARGET_PERCENT = 1.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encode_view(seconds: float) -> tuple[list[Any], list[Any]]:
    """S seconds of 1280x720 30 fps VP8 (a view's default format) and stereo Opus."""
    settings = EncoderSettings("vp8", 1280, 720, 30, default_bitrate(1280, 720, 30), 100)
    encoder = VideoEncoder(settings)
    pattern = MovingPattern(1280, 720, seed=7)
    video = []
    for i in range(int(seconds * 30)):
        frame = av.VideoFrame.from_numpy_buffer(pattern.frame(i), format="yuv420p")
        for packet in encoder.encode(frame, i * 3000, i == 0):
            video.append((i / 30, packet, bool(packet.is_keyframe)))
    opus = OpusEncoder(2)
    t = np.arange(960) / 48000
    audio = []
    for i in range(int(seconds * 50)):
        tone = (0.2 * 32767 * np.sin(2 * np.pi * 440 * (t + i * 0.02))).astype(np.int16)
        samples = np.repeat(tone, 2)
        for packet in opus.encode(samples, i * 960):
            audio.append((i / 50, packet, True))
    return video, audio


def feed(muxer: PacketMuxer | None, video: list[Any], audio: list[Any]) -> float:
    """Play the packets in real time; return the process CPU seconds it took."""
    events = sorted(
        [(t, "video", p, k) for t, p, k in video] + [(t, "audio", p, k) for t, p, k in audio],
        key=lambda e: e[0],
    )
    start_wall = time.monotonic()
    start_cpu = _cpu()
    for t, kind, packet, keyframe in events:
        delay = start_wall + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if muxer is not None:
            muxer.write(kind, packet, keyframe, time.monotonic())
    if muxer is not None:
        muxer.close()
    return _cpu() - start_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="media seconds (default 10)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    machine = MachineInfo.collect()
    print(f"Tessera recording benchmark, {machine.date}")
    print(
        f"machine: {machine.cpu_model}, {machine.cores} cores; "
        f"PyAV {machine.pyav}, FFmpeg {machine.ffmpeg}"
    )
    video, audio = encode_view(args.seconds)
    baseline = feed(None, video, audio)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "view.webm"
        errors: list[str] = []
        muxer = PacketMuxer(
            path, "webm", video_codec="vp8", audio_codec="opus", on_error=errors.append
        )
        recording = feed(muxer, video, audio)
        size = path.stat().st_size
        written = muxer.duration
    extra = max(0.0, recording - baseline)
    percent = extra / args.seconds * 100
    figures = {
        "media_seconds": args.seconds,
        "video_packets": len(video),
        "audio_packets": len(audio),
        "file_bytes": size,
        "file_seconds": round(written, 3),
        "cpu_seconds_without": round(baseline, 4),
        "cpu_seconds_with": round(recording, 4),
        "extra_percent_of_one_core": round(percent, 3),
        "target_percent": TARGET_PERCENT,
        "errors": errors,
    }
    print()
    print(f"{'720p30 VP8 + Opus view, real time':<44}{args.seconds:>8.1f} s of media")
    print(f"{'file written (webm)':<44}{size / 1e6:>8.2f} MB, {written:.2f} s")
    print(f"{'process CPU, nothing recorded':<44}{baseline * 1000:>8.1f} ms")
    print(f"{'process CPU, recording':<44}{recording * 1000:>8.1f} ms")
    verdict = "meets" if percent < TARGET_PERCENT else "MISSES"
    print(
        f"{'recording costs':<44}{percent:>8.3f} % of one core "
        f"({verdict} the < {TARGET_PERCENT:.0f} % target)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine.__dict__, **figures}, indent=1))
    return 0 if not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
