"""A WHIP client in a process of its own: FFmpeg's ``whip`` muxer (PyAV's bundled FFmpeg 8).

``python tests/whip_pusher.py URL TOKEN [--cert-file CERT --key-file KEY] [--rgb R G B]``
pushes a picture of one colour (H.264 Baseline, 320x240, 30 fps) and a 440 Hz tone (Opus)
in real time until its stdin closes; then it closes the muxer, which ends the session with
``DELETE``. It prints ``pushing`` once the muxer has its answer and ``closed`` at the end.

CERT/KEY: the muxer's DTLS certificate, ECDSA P-256 for Tessera. Without them FFmpeg makes
its own, which (FFmpeg with GnuTLS, as PyAV's) has a P-224 key: aiortc's OpenSSL 4 has no
such TLS group and refuses it (alert illegal_parameter, "wrong curve"; README, WHIP), and
the pusher exits with an error.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from fractions import Fraction

import av
import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 30
AUDIO_RATE, AUDIO_FRAME = 48000, 960


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Push one colour and a tone with FFmpeg's whip muxer."
    )
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--cert-file", help="the DTLS certificate (PEM); FFmpeg's own without")
    parser.add_argument("--key-file", help="its private key (PEM)")
    parser.add_argument("--rgb", type=int, nargs=3, default=(200, 30, 30), metavar=("R", "G", "B"))
    args = parser.parse_args()
    if (args.cert_file is None) != (args.key_file is None):
        parser.error("--cert-file and --key-file go together")
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    options = {"authorization": args.token}
    if args.cert_file is not None:
        options |= {"cert_file": args.cert_file, "key_file": args.key_file}
    output = av.open(args.url, "w", format="whip", options=options)
    video = output.add_stream(
        "libx264",
        rate=FPS,
        options={"profile": "baseline", "tune": "zerolatency", "preset": "ultrafast", "g": "30"},
    )
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    audio = output.add_stream("libopus", rate=AUDIO_RATE)
    audio.layout = "stereo"
    picture = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    picture[:] = args.rgb
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
        time.sleep(max(0.0, started + count / FPS - time.monotonic()))  # stimulus: real-time pace
    output.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
