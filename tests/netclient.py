"""A subscriber that runs inside a `NetLab` namespace, and its driver for tests.

The program (`python -m tests.netclient --token T --stream S`) joins with the
token, subscribes to one stream (a forward stream or a view) with aiortc,
decodes its video and writes JSON lines to stdout:

- `{"event": "ready", "t": ...}` once the subscription is ready;
- `{"event": "frame", "t", "width", "height", "gap_ms"}` for every decoded
  frame whose gap since the previous one is over `--gap-ms` (a freeze) or
  whose size changed, and the first frame;
- `{"event": "stats", "t", "frames", "width", "height", "packets", "packets_lost"}`
  every `--every` seconds (packets received and lost from aiortc's inbound-rtp
  video stats; the bytes a link carried are the lab's counters);
- `{"event": "error", "message"}` before it exits on an error.

Its video jitter buffer gives up on a lost packet after 0.4 s and waits for the next
keyframe (asking for one), as browsers do; `--aiortc-buffer` keeps aiortc's own.

`t` is `time.monotonic()`, one clock for every process of the machine, so a
test compares it with its own `loop.time()`.

`SubscriberProcess` starts the program in a lab and keeps what it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import av

# -- the program (inside the namespace) -------------------------------------------

# Seconds a browser-like receiver waits for a lost video packet before it gives up on it.
GIVE_UP = 0.4


def browser_like_buffer(capacity: int, give_up: float = GIVE_UP) -> Any:
    """aiortc's video jitter buffer, giving up on a lost packet after `give_up` s as browsers do.

    aiortc waits for a missing packet until 512 more arrived (seconds to a minute on a
    low rung), so one unrecovered loss freezes its picture that long: no browser does
    that. This one drops an unfinished frame (a hole at or after its first packet) after
    `give_up`, then every frame up to the next keyframe, and asks for a keyframe (PLI);
    and a keyframe that arrives whole behind an unfinished frame is decoded at once, the
    frames before it dropped (libwebrtc's frame buffer decodes the newest whole keyframe:
    a rung switch starts on one). So the freezes the tests measure are the server's doing.
    """
    from aiortc.codecs.vpx import VpxPayloadDescriptor
    from aiortc.jitterbuffer import JitterBuffer, JitterFrame
    from aiortc.rtp import RtpPacket
    from aiortc.utils import uint16_add

    from tessera.media.mediasource import vp8_frame_size

    def whole_keyframe(data: bytes) -> bool:
        # The start code too: a frame cut at its head may have any first byte.
        return vp8_frame_size(data) is not None

    class BrowserLikeJitterBuffer(JitterBuffer):
        def __init__(self) -> None:
            super().__init__(capacity=capacity, is_video=True)
            self.hole_since: float | None = None
            self.need_keyframe = False
            self.gave_up = 0
            self.jumped = 0

        def _at(self, offset: int) -> RtpPacket | None:
            assert self._origin is not None
            return self._packets[(self._origin + offset) % self.capacity]

        def _first_hole(self, before: int) -> int | None:
            """The offset of the first missing packet before offset `before`, if any."""
            return next((i for i in range(before) if self._at(i) is None), None)

        def _jump_to_keyframe(self, packet: RtpPacket) -> bool:
            """`packet` ends a whole keyframe behind an unfinished frame: start from it."""
            if not packet.marker or self._origin is None:
                return False
            last = uint16_add(packet.sequence_number, -self._origin)
            if last >= self.capacity:
                return False
            first = last
            while first > 0:
                previous = self._at(first - 1)
                if previous is None or previous.timestamp != packet.timestamp:
                    break
                first -= 1
            if first == 0:
                return False  # nothing before it: it comes out as usual
            head = self._at(first)
            assert head is not None
            try:
                descriptor, _ = VpxPayloadDescriptor.parse(head.payload)
            except ValueError:
                return False
            if not descriptor.partition_start or descriptor.partition_id != 0:
                return False  # its first packet is missing
            data = b"".join(self._at(i)._data for i in range(first, last + 1))  # type: ignore[union-attr]
            if not whole_keyframe(data):
                return False
            self.remove(first)
            return True

        def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
            pli, frame = super().add(packet)
            if frame is not None:
                self.hole_since = None
                if self.need_keyframe:
                    if not whole_keyframe(frame.data):
                        return True, None
                    self.need_keyframe = False
                return pli, frame
            if self._jump_to_keyframe(packet):
                self.hole_since = None
                self.need_keyframe = False
                self.jumped += 1
                return pli, None
            assert self._origin is not None
            newest = uint16_add(packet.sequence_number, -self._origin)
            if newest >= self.capacity:
                return pli, None  # an old packet (a late retransmission): not taken
            hole = self._first_hole(newest)
            if hole is None:
                self.hole_since = None
                return pli, None
            now = time.monotonic()
            if self.hole_since is None:
                self.hole_since = now
            elif now - self.hole_since > give_up:
                # Drop the unfinished frame and the hole, up to the next packet that came.
                skip = hole + 1
                while skip < self.capacity and self._at(skip) is None:
                    skip += 1
                if skip < self.capacity:
                    self.remove(skip)
                self.hole_since = None
                self.need_keyframe = True
                self.gave_up += 1
                pli = True
            return pli, None

    return BrowserLikeJitterBuffer()


def _emit(event: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **data}) + "\n")
    sys.stdout.flush()


async def _inbound_video(pc: Any) -> tuple[int, int]:
    report = await pc.getStats()
    for stats in report.values():
        if getattr(stats, "type", "") == "inbound-rtp" and getattr(stats, "kind", "") == "video":
            return int(stats.packetsReceived or 0), int(stats.packetsLost or 0)
    return 0, 0


async def _subscribe_and_report(args: argparse.Namespace) -> None:
    from tessera_client import ConferenceClient

    # SIGTERM (SubscriberProcess.stop) leaves the room, as a closing browser tab does.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with ConferenceClient() as client:
        await client.join(args.token)
        parameters = None
        if args.width:
            parameters = {"resolution": {"width": args.width, "height": args.height}}
        subscription = await client.subscribe(
            args.stream, audio=args.audio, video_parameters=parameters
        )
        video = subscription.transceivers.get("video")
        if video is not None and not args.aiortc_buffer:
            receiver: Any = video.receiver
            current = receiver._RTCRtpReceiver__jitter_buffer
            receiver._RTCRtpReceiver__jitter_buffer = browser_like_buffer(current.capacity)
        await subscription.wait_ready()
        _emit("ready", id=subscription.id)
        track = subscription.video_track
        if track is None:
            raise RuntimeError(f"stream {args.stream} has no video")
        state = {"frames": 0, "width": 0, "height": 0}

        async def frames() -> None:
            last: float | None = None
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                now = time.monotonic()
                gap = (now - last) * 1000 if last is not None else 0.0
                last = now
                resized = (frame.width, frame.height) != (state["width"], state["height"])
                state.update(frames=state["frames"] + 1, width=frame.width, height=frame.height)
                if state["frames"] == 1 or resized or gap > args.gap_ms:
                    _emit("frame", width=frame.width, height=frame.height, gap_ms=round(gap, 1))

        async def stats() -> None:
            while True:
                await asyncio.sleep(args.every)  # stimulus: the program's report period
                received, lost = await _inbound_video(client.pc)
                _emit("stats", packets=received, packets_lost=lost, **state)

        await asyncio.gather(frames(), stats())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--stream", required=True, help="stream id (forward or mixed)")
    parser.add_argument("--width", type=int, default=0, help="ask for this resolution")
    parser.add_argument("--height", type=int, default=0)
    parser.add_argument("--audio", action="store_true", help="subscribe to audio too")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between stats")
    parser.add_argument("--gap-ms", type=float, default=150.0, help="report gaps over this")
    parser.add_argument(
        "--aiortc-buffer",
        action="store_true",
        help="keep aiortc's jitter buffer (waits for a lost packet until 512 more arrived)",
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(_subscribe_and_report(args))
    except asyncio.CancelledError:
        return 0  # stopped by SIGTERM, after leaving
    except Exception as exc:  # reported to the test, which decides
        _emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


# -- the driver (in the test process) -------------------------------------------------


@dataclass
class SubscriberReport:
    """What a `SubscriberProcess` reported so far."""

    ready_at: float | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)  # "frame" events
    stats: list[dict[str, Any]] = field(default_factory=list)  # "stats" events
    errors: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # stderr lines

    def latest(self) -> dict[str, Any]:
        return self.stats[-1] if self.stats else {}

    def fps_since(self, t: float) -> float:
        """Decoded frames per second from the stats at or after `t` to the latest."""
        window = [s for s in self.stats if s["t"] >= t]
        if len(window) < 2 or window[-1]["t"] <= window[0]["t"]:
            return 0.0
        frames = float(window[-1]["frames"] - window[0]["frames"])
        return frames / float(window[-1]["t"] - window[0]["t"])

    def longest_gap_since(self, t: float) -> float:
        """The longest gap between decoded frames (ms) that ended at or after `t`."""
        return max((float(f["gap_ms"]) for f in self.frames if f["t"] >= t), default=0.0)


class SubscriberProcess:
    """`tests.netclient` running in a lab's namespace; `report` fills as it runs."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.report = SubscriberReport()
        self._readers = [
            asyncio.ensure_future(self._read_stdout()),
            asyncio.ensure_future(self._read_stderr()),
        ]

    @classmethod
    async def start(
        cls, lab: Any, token: str, stream: str, *extra: str, cwd: str | None = None
    ) -> SubscriberProcess:
        """Start the subscriber inside `lab` (a `tests.netlab.NetLab`)."""
        from pathlib import Path

        root = cwd or str(Path(__file__).resolve().parents[1])
        argv = [sys.executable, "-m", "tests.netclient", "--token", token, "--stream", stream]
        process = await lab.spawn(
            [*argv, *extra],
            cwd=root,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self.report.log.append(line.decode(errors="replace").rstrip())
                continue
            event = message.get("event")
            if event == "ready":
                self.report.ready_at = message["t"]
            elif event == "frame":
                self.report.frames.append(message)
            elif event == "stats":
                self.report.stats.append(message)
            elif event == "error":
                self.report.errors.append(message["message"])

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.report.log.append(line.decode(errors="replace").rstrip())

    def check_alive(self) -> bool:
        """True while running; raises with what the program said once it stopped or failed.

        An AssertionError: inside `eventually` the last one is reported on timeout.
        """
        if self.report.errors or self.process.returncode is not None:
            tail = "\n".join(self.report.log[-20:])
            raise AssertionError(f"subscriber ended: {self.report.errors}\n{tail}")
        return True

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            reader.cancel()


if __name__ == "__main__":
    sys.exit(main())
