"""What a streaming-in costs: `python -m bench.ingest [--seconds S] [--json FILE]`.

One run, three ways of pulling a 1280x720 30 fps source with Tessera's
streaming-in (``StreamingIn``: PyAV demux on its own thread, paced to real
time): **pass-through** (H.264 constrained baseline + Opus in Matroska: packets
forwarded as they are, what subscribers get), **pass-through + decode** (the
same, with its video also decoded for a mixer), and **transcode** (H.264 High
with B-frames + AAC, what cameras and OBS send: decoded, encoded once to VP8
720p and Opus). The sources are files written here first (not timed); each is
pulled for S seconds with a packet sink on every track, as a subscriber is,
and the process CPU of that window is reported, less the same window idle.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.content import MovingPattern
from bench.machine import MachineInfo
from bench.report import LoadMeter, add_common_arguments, finish, header
from tessera.conference.roomoptions import RoomOptions
from tessera.ingest.puller import SourceOptions
from tessera.ingest.streamingin import StreamingIn
from tessera.media.mediasource import Packet

WIDTH, HEIGHT, RATE = 1280, 720, 30


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_source(path: Path, seconds: float, video: dict[str, str], audio: str) -> Path:
    """S seconds of a moving 720p30 scene and a tone, H.264 with `video` options,
    interleaved as a live source sends them (audio up to each picture's time)."""
    with av.open(str(path), "w") as out:
        vstream = out.add_stream("libx264", rate=RATE)
        vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vstream.options = {"g": str(RATE * 2), **video}
        astream: Any = out.add_stream(audio, rate=48000)
        astream.layout = "stereo"
        pattern = MovingPattern(WIDTH, HEIGHT, seed=3)
        chunk, written = 960, 0
        for i in range(int(seconds * RATE)):
            frame = av.VideoFrame.from_numpy_buffer(pattern.frame(i), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            for packet in vstream.encode(frame):
                out.mux(packet)
            while written < (i + 1) * 48000 // RATE:
                t = np.arange(written, written + chunk) / 48000
                tone = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)
                samples = av.AudioFrame.from_ndarray(
                    np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo"
                )
                samples.sample_rate, samples.pts = 48000, written
                samples.time_base = Fraction(1, 48000)
                for packet in astream.encode(samples):
                    out.mux(packet)
                written += chunk
        for stream in (vstream, astream):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


class Counter:
    """A subscriber's stand-in: counts the packets (and frames) it is given."""

    def __init__(self) -> None:
        self.packets = 0
        self.frames = 0

    def on_packet(self, packet: Packet, keyframe: bool) -> None:
        self.packets += 1

    def on_frame(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        self.frames += 1


async def pull(path: Path, seconds: float, *, decode: bool) -> dict[str, Any]:
    options = RoomOptions(name="bench")
    stream = StreamingIn(
        "bench",
        SourceOptions(url=str(path), scheme="file"),
        {"audio": "auto", "video": "auto"},
        None,
        media_in=options.media_in.model_dump(mode="json", by_alias=True),
        media_out={},
        transcoding={},
    )
    await stream.connect()
    counters = {kind: Counter() for kind in stream.tracks}
    for kind, track in stream.tracks.items():
        track.add_sink(counters[kind])
    frames = Counter()
    if decode:
        stream.tracks["video"].decoded.add_sink(frames)
    # A decode (a transcode's, a mixer's) starts at the source's next keyframe (up to one
    # 2 s GOP later): measured from there.
    for _ in range(50):
        if counters["video"].packets and (frames.frames or not decode):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    before = {kind: c.packets for kind, c in counters.items()}
    meter = LoadMeter()
    start_cpu, start = _cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = _cpu() - start_cpu, time.monotonic() - start
    load = meter.stop(cpu)
    stream.close()
    return {
        "plans": {
            k: f"{p.source_codec} -> {p.codec}" + (" (transcoded)" if p.transcode else " (as is)")
            for k, p in stream.plans.items()
        },
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "video_packets_per_second": (counters["video"].packets - before["video"]) / wall,
        "audio_packets_per_second": (counters["audio"].packets - before["audio"]) / wall,
        "decoded_frames": frames.frames,
        "other_processes_cores": round(load.others_cores, 2),
    }


async def idle(seconds: float) -> float:
    start = _cpu()
    await asyncio.sleep(seconds)
    return _cpu() - start


async def run(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Longer than the window: the files do not loop while measured.
        length = seconds + 2
        passthrough = write_source(
            folder / "baseline.mkv",
            length,
            {"profile": "baseline", "bf": "0", "preset": "veryfast"},
            "libopus",
        )
        transcode = write_source(
            folder / "high.mp4", length, {"profile": "high", "bf": "2", "preset": "veryfast"}, "aac"
        )
        baseline = await idle(seconds)
        results = {
            "pass-through": await pull(passthrough, seconds, decode=False),
            "pass-through + decode": await pull(passthrough, seconds, decode=True),
            "transcode": await pull(transcode, seconds, decode=False),
        }
    for figures in results.values():
        extra = max(0.0, figures["cpu_seconds"] - baseline * figures["wall_seconds"] / seconds)
        figures["percent_of_one_core"] = round(extra / figures["wall_seconds"] * 100, 2)
        # On a busy machine a transcode may get less CPU than it needs and fall behind real
        # time: its cost per second of media is the figure that does not depend on that.
        media_seconds = figures["video_packets_per_second"] * figures["wall_seconds"] / RATE
        figures["media_seconds"] = round(media_seconds, 2)
        figures["percent_of_one_core_per_realtime_source"] = round(
            extra / max(media_seconds, 1e-9) * 100, 2
        )
    return {"idle_cpu_seconds": baseline, "seconds": seconds, "sources": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds pulled (default 10)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera streaming-in benchmark", machine):
        print(line)
    figures = asyncio.run(run(1.0 if args.quick else args.seconds))
    lines = [
        "",
        "1280x720 30 fps source: CPU in % of one core per second of media (per wall second)",
    ]
    for name, result in figures["sources"].items():
        plans = ", ".join(f"{k} {v}" for k, v in result["plans"].items())
        cost = result["percent_of_one_core_per_realtime_source"]
        lines.append(f"{name:<24}{cost:>7.2f} ({result['percent_of_one_core']:.2f})  {plans}")
        video, audio = result["video_packets_per_second"], result["audio_packets_per_second"]
        others = result["other_processes_cores"]
        lines.append(
            f"{'':<40}{video:.1f} video, {audio:.1f} audio packets/s; "
            f"other processes used {others:.2f} cores meanwhile"
        )
    return finish("ingest", args.json, machine, figures, lines, started)


if __name__ == "__main__":
    raise SystemExit(main())
