"""Part 4: the server CPU of adding subscribers to one view, end to end over loopback.

The Tessera server runs in its own process (`bench._server`), so its CPU is
read from /proc apart from the clients. One publisher sends a moving 640x360
camera-like track into the default room; its `common` view then gets 1, 10,
50 ... video-only subscribers of one format, which all share the view's one
720p encoder. The subscriber clients do not decode. By default they do not
decrypt either: each counts the view's frames from the RTP headers of the
SRTP packets it receives (SRTP encrypts the payload, not the header), which
proves the media arrives at its rate. With `full_receivers` every client
runs aiortc's whole receive path (SRTP, RTP parsing, jitter buffer, NACK,
REMB) and an encoded-frame tap counts the reassembled frames: 100 of those
in one Python process need more than the core the server leaves them, the
kernel then drops their datagrams (54,551 `RcvbufErrors` in 10 s at 100)
and the figures measure the clients instead of the server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from prometheus_client.parser import text_string_to_metric_families

from tessera.conference.tokens import issue_token
from tessera.media.aiortcext import (
    ice_datagram_endpoint,
    install_encoded_tap,
    intercept_srtp_packets,
    receiver_started,
)
from tessera_client import ConferenceClient

from .batchreceiver import BatchReceiver, CountedSocket
from .content import MovingVideoTrack
from .framecount import RtpFrameCounter, rtp_header_length
from .machine import SystemCpu, process_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
#: "At most 1% of a core per subscriber."
PER_SUBSCRIBER_TARGET_PERCENT = 1.0

logger = logging.getLogger(__name__)

#: A server's /metrics: sample name -> {sorted (label, value) pairs: value}.
Metrics: TypeAlias = dict[str, dict[tuple[tuple[str, str], ...], float]]


@dataclass(frozen=True)
class SubscriberBenchConfig:
    """What part 4 measures; the defaults are the full run."""

    steps: tuple[int, ...] = (0, 1, 10, 50)
    window: float = 6.0  # seconds of server CPU per step
    settle: float = 2.0  # seconds after the last subscriber of a step receives media
    batch: int = 10  # subscribers connecting at once
    width: int = 640
    height: int = 360
    framerate: int = 30
    connect_timeout: float = 30.0
    server_cpus: frozenset[int] | None = None  # pin the server process to these CPUs
    full_receivers: bool = False  # decrypt and reassemble (aiortc's receive path) in the clients
    aiortc_senders: bool = False  # the server sends with aiortc's sender, not the shared fan-out
    batch_receivers: bool = False  # header counting on one recvmmsg thread (bench/batchreceiver.py)


QUICK_SUBSCRIBERS = SubscriberBenchConfig(steps=(0, 1, 2), window=2.0, settle=1.0)


@dataclass(frozen=True)
class SubscriberStep:
    """One measurement window with `subscribers` subscribers (CPU in % of one core)."""

    subscribers: int
    window_s: float
    server_cpu_percent: float
    bench_cpu_percent: float  # this process: the publisher and every subscriber client
    machine_busy_percent: float  # every process on the machine, sum over its cores
    fps_mean: float  # encoded frames received per subscriber per second
    fps_min: float
    kbps_mean: float  # encoded video received per subscriber
    connect_seconds: float  # to bring this step's new subscribers to their first frame
    view_fps: float = 0.0  # frames the server's view composited per second (its /metrics)
    packets_per_s: float = 0.0  # RTP packets the server's senders sent per second (all subscribers)
    loop_lag_p99_ms: float = 0.0  # the server's event-loop lag, 99th percentile (its /metrics)


@dataclass(frozen=True)
class SubscriberCost:
    """Server CPU per added subscriber between two steps, in % of one core."""

    label: str
    start: int
    end: int
    percent_per_subscriber: float


@dataclass(frozen=True)
class SubscriberFigures:
    """Part 4's windows, the cost per added subscriber and what the server logged."""

    config: SubscriberBenchConfig
    steps: list[SubscriberStep]
    costs: list[SubscriberCost]
    late_taps: int  # receivers that had started before their tap was installed (must be 0)
    server_log: list[str] = field(default_factory=list)
    target_percent: float = PER_SUBSCRIBER_TARGET_PERCENT

    @property
    def headline(self) -> SubscriberCost | None:
        """The widest span that excludes starting the view (e.g. 1 -> 50)."""
        spans = [c for c in self.costs if c.start > 0]
        return max(spans, key=lambda c: c.end - c.start) if spans else None

    @property
    def meets_target(self) -> bool:
        """Every span after the first subscriber costs at most the target per subscriber."""
        spans = [c for c in self.costs if c.start > 0]
        return bool(spans) and all(c.percent_per_subscriber <= self.target_percent for c in spans)


class TappedClient(ConferenceClient):
    """A ConferenceClient that counts the encoded video it receives instead of decoding it.

    aiortc 1.16 emits `track` inside setRemoteDescription, before it schedules
    the receiver's start (which hands the decoder queue to the decoder thread),
    so a tap installed from the `track` event takes every frame. The client
    creates its peer connection lazily; hooking its creation is the one place
    that sees the connection before any answer is applied.
    """

    #: The kinds whose encoded frames are counted (and never decoded).
    tap_kinds: tuple[str, ...] = ("video",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frames = 0
        self.bytes = 0
        self.audio_frames = 0
        self.late_taps = 0
        self.first_frame = asyncio.Event()
        self.first_frame_at: float | None = None  # time.monotonic() of the first video frame
        self.first_audio = asyncio.Event()

    def _ensure_pc(self) -> RTCPeerConnection:
        created = self.pc is None
        pc = super()._ensure_pc()
        if created:
            pc.on("track", self._tap)
        return pc

    def _tap(self, track: MediaStreamTrack) -> None:
        if self.pc is None or track.kind not in self.tap_kinds:
            return
        for transceiver in self.pc.getTransceivers():
            receiver: RTCRtpReceiver = transceiver.receiver
            if receiver.track is track:
                if receiver_started(receiver):
                    self.late_taps += 1
                install_encoded_tap(receiver, self._on_frame)

    def _on_frame(self, codec: RTCRtpCodecParameters, data: bytes, timestamp: int) -> None:
        if codec.mimeType.lower().startswith("audio/"):
            self.audio_frames += 1
            self.first_audio.set()
            return
        self.frames += 1
        self.bytes += len(data)
        self._first_video()

    def _first_video(self) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
            self.first_frame.set()


class HeaderCountingClient(TappedClient):
    """A TappedClient that counts its video from the RTP headers, without decrypting.

    The packets still take the real path to the client (ICE, DTLS-SRTP keys,
    one UDP socket per peer connection); the client reads the clear RTP
    header of each SRTP packet (RFC 3711: the payload is encrypted, the
    header is not) and counts a frame at each marker bit whose frame lost no
    packet (`RtpFrameCounter`: sequence numbers; frames with a gap count as
    `incomplete_frames`), bytes as the RTP payload plus the authentication
    tag. DTLS and SRTCP go on to aiortc as usual. Only for video-only
    subscriptions: every RTP packet is counted.
    """

    _counter: RtpFrameCounter | None = None

    @property
    def incomplete_frames(self) -> int:
        """Frames whose last packet arrived but some packet before it did not."""
        return self._counter.incomplete if self._counter is not None else 0

    def _count_packet(self, ssrc: int, sequence: int, marker: bool, payload: int) -> None:
        counter = self._counter
        if counter is None:
            counter = self._counter = RtpFrameCounter()
        # Plain counters: on the event loop before `read_in_batches`, on its thread after.
        counter.packet(ssrc, sequence, marker, payload)
        self.frames, self.bytes = counter.frames, counter.bytes

    def _tap(self, track: MediaStreamTrack) -> None:
        if self.pc is None or track.kind not in self.tap_kinds:
            return
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                intercept_srtp_packets(transceiver.receiver, self._count)

    _reader: BatchReceiver | None = None
    _read_transport: Any = None

    def read_in_batches(self, reader: BatchReceiver) -> None:
        """From now on its socket is read by `reader` (once its ICE pair is up)."""
        assert self.pc is not None
        dtls = self.pc.getTransceivers()[0].receiver.transport
        endpoint = ice_datagram_endpoint(dtls)
        if endpoint is None:
            raise RuntimeError("no nominated UDP pair to read from")
        transport, protocol = endpoint
        reader.add(
            transport,
            protocol,
            CountedSocket(self._count_packet, protocol, asyncio.get_running_loop()),
        )
        self._reader, self._read_transport = reader, transport

    async def leave(self) -> None:
        if self._reader is not None:
            self._reader.remove(self._read_transport)
            self._reader = None
        await super().leave()

    def _count(self, data: bytes) -> None:
        self._count_packet(
            int.from_bytes(data[8:12], "big"),
            int.from_bytes(data[2:4], "big"),
            bool(data[1] & 0x80),
            max(0, len(data) - rtp_header_length(data, len(data))),
        )
        if self.frames:
            self._first_video()


def parse_metrics(text: str) -> Metrics:
    """Prometheus text: sample name -> {sorted (label, value) pairs: value}."""
    samples: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


class BenchServer(Protocol):
    """What a benchmark runs its clients against: one process, or a whole cluster."""

    @property
    def url(self) -> str:
        """Where clients connect (the one process, or the cluster's portal)."""
        ...

    def token(self, user: str, role: str, room: str | None = None) -> str:
        """A join token for `room` (by name)."""
        ...

    async def metrics(self) -> Metrics:
        """Where the rooms run: sample name -> {sorted labels: value}."""
        ...

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of every process of the server so far."""
        ...


class ServerProcess:
    """`python -m bench._server` in a child process; tokens are signed with its service key."""

    def __init__(self, process: asyncio.subprocess.Process, info: dict[str, Any], log: Path):
        self.process = process
        self.info = info
        self.log = log

    @classmethod
    async def start(
        cls,
        data_dir: Path,
        timeout: float = 60.0,
        cpus: set[int] | None = None,
        aiortc_senders: bool = False,
    ) -> ServerProcess:
        """Start the server and wait for its ready line; `cpus` pins it (and all its threads).

        `aiortc_senders`: its subscribers are sent by aiortc's sender, not the shared fan-out.
        """
        log = data_dir / "server.log"

        def pin() -> None:
            # In the child before exec: every thread the server starts inherits the CPU set.
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench._server",
                "--data-dir",
                str(data_dir),
                "--log-level",
                "WARNING",
                *(["--aiortc-senders"] if aiortc_senders else []),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                preexec_fn=pin if cpus is not None else None,
            )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
            info = json.loads(line)
        except (TimeoutError, ValueError) as exc:
            process.kill()
            await process.wait()
            raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}") from exc
        return cls(process, info, log)

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"http://127.0.0.1:{self.info['port']}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    async def metrics(self) -> Metrics:
        """The server's /metrics: sample name -> {sorted labels: value}."""
        url = f"{self.url}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            response.raise_for_status()
            return parse_metrics(await response.text())

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server so far."""
        return process_cpu_seconds(self.pid)

    async def reset_loop_lag(self) -> None:
        """Start the server's loop-lag samples afresh (bench._server)."""
        url = f"{self.url}/bench/loop-lag-reset"
        async with aiohttp.ClientSession() as session, session.post(url) as response:
            response.raise_for_status()

    async def rtp_sent(self) -> int:
        """RTP packets the server's senders have sent so far (bench._server's count)."""
        url = f"{self.url}/bench/rtp-sent"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            response.raise_for_status()
            return int((await response.json())["packets"])

    def token(self, user: str, role: str, room: str | None = None) -> str:
        """A join token for `room` (by name; a new name makes an ad-hoc room), default room."""
        return issue_token(
            service_id=self.info["service"],
            key=self.info["key"],
            room=room or self.info["room"],
            user=user,
            role=role,
            host=self.info["host"],
            secure=False,
            lifetime=600.0,
        )

    async def stop(self) -> list[str]:
        """Close its stdin (it shuts down cleanly), kill it if it lingers; return its log."""
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        try:
            return [line for line in self.log.read_text().splitlines() if line.strip()]
        except OSError:
            return []


async def wait_layout(client: ConferenceClient, stream_id: str, count: int, timeout: float) -> None:
    """Until the view `stream_id` shows `count` streams."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stream = client.streams.get(stream_id) or {}
        if len(stream.get("info", {}).get("layout", [])) >= count:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise RuntimeError(f"{stream_id} never showed {count} stream(s)")
        try:
            await client.next_event("stream", lambda d: d.get("status") == "update", remaining)
        except TimeoutError:
            pass


async def _connect(
    server: ServerProcess,
    stream_id: str,
    number: int,
    timeout: float,
    full: bool,
    reader: BatchReceiver | None = None,
) -> TappedClient:
    """One subscriber: join, subscribe to the view's video, wait for its first frame.

    With a `reader` (header counting only), its socket is then read by that thread.
    """
    kind = TappedClient if full else HeaderCountingClient
    client = kind(request_timeout=timeout)
    try:
        await client.join(server.token(f"viewer-{number}", "viewer"))
        subscription = await client.subscribe(stream_id, audio=False)
        await subscription.wait_ready(timeout)
        await asyncio.wait_for(client.first_frame.wait(), timeout)
        if reader is not None and isinstance(client, HeaderCountingClient):
            client.read_in_batches(reader)
    except BaseException:
        await leave(client)
        raise
    return client


async def leave(client: ConferenceClient, timeout: float = 10.0) -> None:
    """Leave, ignoring a failure (the benchmark is ending or already failed)."""
    try:
        await asyncio.wait_for(client.leave(), timeout)
    except Exception as exc:
        logger.debug("leave failed: %s", exc)


async def _measure(
    server: ServerProcess, clients: list[TappedClient], window: float, connect_seconds: float
) -> SubscriberStep:
    frames0 = [c.frames for c in clients]
    bytes0 = [c.bytes for c in clients]
    frames_before = view_frames(await server.metrics())
    sent0 = await server.rtp_sent()
    # The lag of this window only (not of connecting this step's subscribers).
    await server.reset_loop_lag()
    server0, own0, machine0 = server.cpu_seconds(), time.process_time(), SystemCpu.read()
    start = time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - start
    server1, own1, machine1 = server.cpu_seconds(), time.process_time(), SystemCpu.read()
    after = await server.metrics()
    sent1 = await server.rtp_sent()
    view_fps = (view_frames(after) - frames_before) / elapsed
    fps = [(c.frames - f) / elapsed for c, f in zip(clients, frames0, strict=True)]
    kbps = [(c.bytes - b) * 8 / elapsed / 1000 for c, b in zip(clients, bytes0, strict=True)]
    return SubscriberStep(
        subscribers=len(clients),
        window_s=elapsed,
        server_cpu_percent=(server1 - server0) / elapsed * 100,
        bench_cpu_percent=(own1 - own0) / elapsed * 100,
        machine_busy_percent=machine1.busy_cores_since(machine0, elapsed) * 100,
        fps_mean=sum(fps) / len(fps) if fps else 0.0,
        fps_min=min(fps) if fps else 0.0,
        kbps_mean=sum(kbps) / len(kbps) if kbps else 0.0,
        connect_seconds=connect_seconds,
        view_fps=view_fps,
        loop_lag_p99_ms=loop_lag_p99_ms(after),
        packets_per_s=(sent1 - sent0) / elapsed,
    )


def view_frames(metrics: Metrics) -> float:
    """Frames composited so far by every view of the server (its /metrics)."""
    return sum(metrics.get("tessera_view_frames_total", {}).values())


def loop_lag_p99_ms(metrics: Metrics) -> float:
    """The server's recent event-loop lag, 99th percentile, in ms (its /metrics; 0 if absent)."""
    lag = metrics.get("tessera_event_loop_lag_seconds", {}).get((("quantile", "0.99"),), 0.0)
    return lag * 1000


def subscriber_costs(steps: list[SubscriberStep]) -> list[SubscriberCost]:
    """Server CPU per added subscriber between consecutive steps, and over the whole span.

    The step from 0 subscribers also starts the view (decode, composite and the
    shared encode); the later spans are the cost of one more receiver of it.
    """
    costs: list[SubscriberCost] = []
    ordered = sorted(steps, key=lambda s: s.subscribers)
    for before, after in itertools.pairwise(ordered):
        added = after.subscribers - before.subscribers
        if added <= 0:
            continue
        label = "first (starts the view)" if before.subscribers == 0 else "marginal"
        costs.append(
            SubscriberCost(
                label=label,
                start=before.subscribers,
                end=after.subscribers,
                percent_per_subscriber=(after.server_cpu_percent - before.server_cpu_percent)
                / added,
            )
        )
    watched = [s for s in ordered if s.subscribers > 0]
    if len(watched) > 2:
        first, last = watched[0], watched[-1]
        costs.append(
            SubscriberCost(
                label="overall",
                start=first.subscribers,
                end=last.subscribers,
                percent_per_subscriber=(last.server_cpu_percent - first.server_cpu_percent)
                / (last.subscribers - first.subscribers),
            )
        )
    return costs


async def run_subscriber_bench(config: SubscriberBenchConfig) -> SubscriberFigures:
    """Part 4: start the server, publish, add subscribers step by step, measure, clean up."""
    steps: list[SubscriberStep] = []
    clients: list[TappedClient] = []
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        cpus = set(config.server_cpus) if config.server_cpus is not None else None
        server = await ServerProcess.start(
            Path(tmp), cpus=cpus, aiortc_senders=config.aiortc_senders
        )
        reader = BatchReceiver() if config.batch_receivers and not config.full_receivers else None
        publisher = ConferenceClient(request_timeout=config.connect_timeout)
        log: list[str] = []
        try:
            await publisher.join(server.token("publisher", "presenter"))
            track = MovingVideoTrack(config.width, config.height, config.framerate, seed=7)
            publication = await publisher.publish(video=track)
            await publication.wait_ready(config.connect_timeout)
            view = f"{publisher.room_id}-common"
            await wait_layout(publisher, view, 1, config.connect_timeout)
            await asyncio.sleep(config.settle)
            for target in sorted(set(config.steps)):
                started = time.monotonic()
                while len(clients) < target:
                    count = min(config.batch, target - len(clients))
                    numbers = range(len(clients), len(clients) + count)
                    results = await asyncio.gather(
                        *(
                            _connect(
                                server,
                                view,
                                n,
                                config.connect_timeout,
                                config.full_receivers,
                                reader,
                            )
                            for n in numbers
                        ),
                        return_exceptions=True,
                    )
                    clients.extend(r for r in results if isinstance(r, TappedClient))
                    errors = [r for r in results if isinstance(r, BaseException)]
                    if errors:
                        raise RuntimeError(f"a subscriber failed to connect: {errors[0]!r}")
                connect_seconds = time.monotonic() - started
                await asyncio.sleep(config.settle)
                steps.append(await _measure(server, clients, config.window, connect_seconds))
        finally:
            await asyncio.gather(*(leave(c) for c in clients))
            await leave(publisher)
            log = await server.stop()
    return SubscriberFigures(
        config=config,
        steps=steps,
        costs=subscriber_costs(steps),
        late_taps=sum(c.late_taps for c in clients),
        server_log=log[-20:],
    )
