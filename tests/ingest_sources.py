"""Real sources for streaming-in tests, on 127.0.0.1: files, an HLS folder, RTMP, RTSP.

Files and HLS segments are encoded here with PyAV's bundled FFmpeg (a picture of
one colour, a 440 Hz tone); FFmpeg's command line serves RTMP (``-listen 1``);
GStreamer's RTSP server (``tests/rtsp_server.py``, run by the system Python that
has ``python3-gi``) serves RTSP.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import web

from tests.eventually import eventually
from tests.receivers import free_port
from tests.support import listening

RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
# What tests/rtsp_server.py's pipeline is made of (plugins-base and plugins-good).
GST_ELEMENTS = ("videotestsrc", "vp8enc", "rtpvp8pay", "audiotestsrc", "opusenc", "rtpopuspay")
TONE = 440


def write_source(
    path: Path,
    *,
    container: str | None = None,
    video: str | None = "libx264",
    audio: str | None = "aac",
    colour: tuple[int, int, int] = (230, 30, 30),
    seconds: float = 3.0,
    size: tuple[int, int] = (320, 240),
    rate: int = 15,
    video_options: dict[str, str] | None = None,
) -> Path:
    """A file of one colour and a tone, in these codecs (None: no such track)."""
    with av.open(str(path), "w", format=container) as out:
        vstream = astream = None
        if video is not None:
            vstream = out.add_stream(video, rate=rate)
            vstream.width, vstream.height = size
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"g": str(rate), **(video_options or {})}
        if audio is not None:
            astream = out.add_stream(audio, rate=48000 if audio == "libopus" else 44100)
            astream.layout = "stereo"
        picture = np.zeros((size[1], size[0], 3), np.uint8)
        picture[:, :] = colour
        frames = int(seconds * rate)
        for i in range(frames):
            if vstream is not None:
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, rate)
                for packet in vstream.encode(frame):
                    out.mux(packet)
        if vstream is not None:
            for packet in vstream.encode(None):
                out.mux(packet)
        if astream is not None:
            sample_rate = astream.codec_context.sample_rate
            chunk = 1024
            total = int(seconds * sample_rate)
            for start in range(0, total, chunk):
                t = (np.arange(start, start + chunk) / sample_rate).astype(np.float64)
                tone = (np.sin(2 * math.pi * TONE * t) * 12000).astype(np.int16)
                stereo = np.repeat(tone, 2).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode(None):
                out.mux(packet)
    return path


def ffmpeg_or_skip() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("RTMP and HLS sources need FFmpeg's command line: apt-get install ffmpeg")
    return path


def write_hls(ffmpeg: str, source: Path, folder: Path) -> Path:
    """An HLS playlist (1 s segments) of `source`, written by FFmpeg into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "index.m3u8"
    subprocess.run(
        [
            *(ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(source)),
            *("-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0"),
            *("-hls_playlist_type", "vod", str(playlist)),
        ],
        check=True,
        timeout=60,
    )
    return playlist


@asynccontextmanager
async def serving_folder(folder: Path) -> AsyncIterator[str]:
    """An HTTP server of `folder` on 127.0.0.1: its base url."""
    app = web.Application()
    app.router.add_static("/", folder)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class RtmpSource:
    """FFmpeg serving a file in a loop as an RTMP server (one client, then it exits)."""

    def __init__(self, ffmpeg: str, source: Path, port: int | None = None) -> None:
        self.ffmpeg = ffmpeg
        self.source = source
        self.port = port or free_port()
        self.url = f"rtmp://127.0.0.1:{self.port}/live/x"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.ffmpeg, "-hide_banner", "-loglevel", "error", "-re"),
                *("-stream_loop", "-1", "-i", str(self.source), "-c", "copy"),
                *("-f", "flv", "-listen", "1", self.url),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        process = self.process

        def ready() -> bool:
            assert process.poll() is None, process.communicate()[1].decode()
            return listening(self.port)

        await eventually(ready, what="ffmpeg listening for an RTMP client")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self.process = None


def system_gstreamer_or_skip() -> None:
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('Gst', '1.0');"
            "gi.require_version('GstRtspServer', '1.0');"
            "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
            f"assert all(Gst.ElementFactory.find(n) for n in {GST_ELEMENTS!r})",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(
            "the RTSP source needs GStreamer's RTSP server: apt-get install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
        )


class RtspSource:
    """GStreamer's RTSP server serving a live VP8 + Opus test pattern at ``/live``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON,
            str(RTSP_SERVER),
            str(self.port),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        assert line.strip() == b"ready", line

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
