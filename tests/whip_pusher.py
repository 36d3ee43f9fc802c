"""A WHIP client in a process of its own: FFmpeg's ``whip`` muxer (PyAV's bundled FFmpeg 8).

``python tests/whip_pusher.py URL TOKEN CERT KEY [R G B]`` pushes a picture of one colour
(H.264 Baseline, 320x240, 30 fps) and a 440 Hz tone (Opus) in real time until its stdin
closes; then it closes the muxer, which ends the session with ``DELETE``. It prints
``pushing`` once the muxer has its answer and ``closed`` at the end.

CERT/KEY: an ECDSA P-256 certificate for DTLS. FFmpeg's own (GnuTLS, a P-224 key) is
refused by aiortc's OpenSSL with alert illegal_parameter (README, WHIP).
"""

from __future__ import annotations

import sys
import threading
import time
from fractions import Fraction

import av
import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 30
AUDIO_RATE, AUDIO_FRAME = 48000, 960


def main() -> None:
    url, token, cert, key = sys.argv[1:5]
    rgb = tuple(int(v) for v in sys.argv[5:8]) if len(sys.argv) >= 8 else (200, 30, 30)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    options = {"authorization": token, "cert_file": cert, "key_file": key}
    output = av.open(url, "w", format="whip", options=options)
    video = output.add_stream(
        "libx264",
        rate=FPS,
        options={"profile": "baseline", "tune": "zerolatency", "preset": "ultrafast", "g": "30"},
    )
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    audio = output.add_stream("libopus", rate=AUDIO_RATE)
    audio.layout = "stereo"
    picture = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    picture[:] = rgb
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
    t = np.arange(AUDIO_FRAME) / AUDIO_RATE
    count, samples, started = 0, 0, time.monotonic()
    while not stop.is_set():
        frame.pts, frame.time_base = count, Fraction(1, FPS)
        for packet in video.encode(frame):
            output.mux(packet)
        if count == 0:
            print("pushing", flush=True)
        while samples < (count + 1) * AUDIO_RATE // FPS:
            tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * (t + samples / AUDIO_RATE))).astype(
                np.int16
            )
            chunk = av.AudioFrame.from_ndarray(
                np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo"
            )
            chunk.sample_rate, chunk.pts = AUDIO_RATE, samples
            chunk.time_base = Fraction(1, AUDIO_RATE)
            for packet in audio.encode(chunk):
                output.mux(packet)
            samples += AUDIO_FRAME
        count += 1
        # A live source's pace (this process is the stimulus, not the test's wait).
        time.sleep(max(0.0, started + count / FPS - time.monotonic()))
    output.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
