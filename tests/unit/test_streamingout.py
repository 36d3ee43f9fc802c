"""StreamingOut: real H.264/Opus packets pushed to a real RTMP receiver and written as HLS."""

from __future__ import annotations

import asyncio
import io
import itertools
import select
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tessera.media.mediasource import PacketSource, ParameterError, Stream, VideoFormat
from tessera.media.videoencoder import EncoderSettings, VideoEncoder
from tessera.mixer.outputs import OpusEncoder
from tessera.recorder import rtmp, streamingout
from tessera.recorder.aac import AudioToAac
from tessera.recorder.amf import amf0_decode, amf0_encode
from tessera.recorder.muxer import MuxerError
from tessera.recorder.outputpatch import OutputPatch
from tessera.recorder.recording import MediaChoice
from tessera.recorder.rtmp import RtmpError, RtmpPublisher, check_rtmp_url
from tessera.recorder.streamingout import StreamingOut
from tests.eventually import eventually
from tests.receivers import Receiver, ffmpeg_or_skip, free_port, running_receiver
from tests.synthetic import tone_energy

WIDTH, HEIGHT, FPS = 320, 240, 30
SECONDS = 4
TONE = 440.0


# -- media -----------------------------------------------------------------------------


class Media:
    """SECONDS of encoded media: H.264 (a keyframe every second, as x264 makes it) and Opus."""

    def __init__(self) -> None:
        encoder = VideoEncoder(EncoderSettings("h264", WIDTH, HEIGHT, FPS, 300_000, 1))
        self.video: list[Any] = []
        for i in range(SECONDS * FPS):
            rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            rgb[:, :, 2] = 120
            rgb[:, (i * 5) % WIDTH :, 1] = 200
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            self.video += encoder.encode(frame, i * 90000 // FPS, keyframe=i == 0)
        opus = OpusEncoder(2)
        self.audio: list[Any] = []
        for i in range(SECONDS * 50):
            t = (np.arange(960) + i * 960) / 48000
            mono = (8000 * np.sin(2 * np.pi * TONE * t)).astype(np.int16)
            self.audio += opus.encode(np.repeat(mono, 2), i * 960)


@pytest.fixture(scope="module")
def media() -> Media:
    return Media()


class Source(PacketSource):
    """A shared encoded track that the test feeds (what a mixed output or transcoder is)."""

    def __init__(self, kind: str, codec: str) -> None:
        super().__init__(kind, codec, 90000 if kind == "video" else 48000)
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


class VP8Stream(Stream):
    """A forward stream published in VP8 whose H.264 comes from a (shared) transcoder."""

    type = "forward"

    def __init__(self, stream_id: str) -> None:
        self.id = stream_id
        self.h264 = Source("video", "h264")
        self.opus = Source("audio", "opus")
        self.asked: list[tuple[str, VideoFormat | str]] = []

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "forward",
            "media": {
                "tracks": [
                    {
                        "type": "video",
                        "format": {"codec": "vp8"},
                        "parameters": {"resolution": {"width": WIDTH, "height": HEIGHT}},
                    },
                    {"type": "audio", "format": {"codec": "opus", "sampleRate": 48000}},
                ]
            },
        }

    def has_track(self, kind: str) -> bool:
        return kind in ("audio", "video")

    def codec(self, kind: str) -> str | None:
        return "vp8" if kind == "video" else "opus"

    def packet_source(
        self, kind: str, fmt: VideoFormat | str, subscriber: str | None = None
    ) -> PacketSource:
        self.asked.append((kind, fmt))
        if kind == "audio":
            if fmt != "opus":
                raise ParameterError(f"Audio codec {fmt} is not acceptable")
            return self.opus
        if not isinstance(fmt, VideoFormat) or fmt.codec != "h264":
            raise AssertionError(f"a streaming-out must ask for H.264, not {fmt}")
        return self.h264

    def frame_source(self, kind: str) -> None:
        return None


async def play(
    stream: VP8Stream,
    media: Media,
    seconds: float,
    *,
    start: float = 0.0,
    until: Any = None,
    keyframes: bool = True,
) -> float:
    """Emit the media from `start` for `seconds` in real time, as a live source would.

    Without `keyframes`, only the first picture is flagged as one. Stops early once
    `until()` holds; returns the media time reached.
    """
    began = time.monotonic() - start
    items = [
        (i / FPS, stream.h264, p, bool(p.is_keyframe) and (keyframes or i == 0))
        for i, p in enumerate(media.video)
    ]
    items += [(i * 0.02, stream.opus, p, True) for i, p in enumerate(media.audio)]
    items.sort(key=lambda item: item[0])
    reached = start
    for at, source, packet, keyframe in items:
        if at < start:
            continue
        if at >= start + seconds or (until is not None and until()):
            break
        # The stimulus: a live source's pace.
        await asyncio.sleep(max(0.0, began + at - time.monotonic()))
        source.emit(packet, keyframe)
        reached = at
    return reached


class LoopThreadSpy:
    """Records the threads that run the pusher's heavy work (the real methods still run):
    the event loop thread must only queue packets, never encode, mux or touch the socket."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop_thread = threading.current_thread()
        self.calls: list[tuple[str, threading.Thread]] = []
        for cls, name in (
            (RtmpPublisher, "connect"),
            (RtmpPublisher, "send"),
            (AudioToAac, "push"),
        ):
            monkeypatch.setattr(cls, name, self._spy(f"{cls.__name__}.{name}", getattr(cls, name)))

    def _spy(self, label: str, method: Any) -> Any:
        def spied(*args: Any, **kw: Any) -> Any:
            self.calls.append((label, threading.current_thread()))
            return method(*args, **kw)

        return spied

    def on_the_loop(self) -> list[str]:
        return [label for label, thread in self.calls if thread is self.loop_thread]

    def seen(self) -> set[str]:
        return {label for label, _ in self.calls}


def decoded_video(paths: list[Path]) -> list[Any]:
    frames: list[Any] = []
    for path in paths:
        with av.open(str(path)) as f:
            frames += list(f.decode(video=0))
    return frames


def playlist_segments(playlist: Path) -> list[Path]:
    lines = playlist.read_text().splitlines()
    return [playlist.parent / line for line in lines if line and not line.startswith("#")]


# -- an RTMP receiver ------------------------------------------------------------------


@pytest.fixture
def ffmpeg() -> str:
    return ffmpeg_or_skip()


@pytest.fixture
async def receiver(ffmpeg: str, tmp_path: Path) -> AsyncIterator[Receiver]:
    async with running_receiver(ffmpeg, tmp_path / "received.flv", "rtmp") as running:
        yield running


def decoded_audio(path: Path) -> tuple[np.ndarray, Any]:
    with av.open(str(path)) as f:
        frames = list(f.decode(audio=0))
    return np.concatenate([fr.to_ndarray()[0] for fr in frames]), frames[0]


# -- RTMP --------------------------------------------------------------------------------


async def test_rtmp_push_to_a_real_receiver(
    receiver: Receiver, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = LoopThreadSpy(monkeypatch)
    stream = VP8Stream("s1")
    finished: list[StreamingOut] = []
    out = StreamingOut(
        "so1", "room1", "rtmp", receiver.url, MediaChoice("s1", "s1"), on_finished=finished.append
    )
    out.start({"s1": stream})
    assert out.state == "connecting"
    assert [kind for kind, _ in stream.asked] == ["audio", "video"]
    assert stream.asked[1][1] == VideoFormat(codec="h264")  # the shared H.264, never VP8
    assert stream.h264.sink_count == stream.opus.sink_count == 1
    assert stream.h264.keyframe_requests >= 1

    await play(stream, media, SECONDS)
    assert out.state == "streaming"
    pusher = out.pusher
    assert pusher is not None and pusher.connected
    await out.stop()
    await out.stop()  # idempotent
    assert out.state == "stopped" and finished == [out] and out.reason is None
    assert stream.h264.sink_count == stream.opus.sink_count == 0
    # The loop thread only queued: connecting, AAC and sending ran on the pusher's thread.
    assert spy.seen() == {"RtmpPublisher.connect", "RtmpPublisher.send", "AudioToAac.push"}
    assert spy.on_the_loop() == []
    assert pusher.dropped == 0 and pusher.audio is not None and pusher.audio.restarts == 0
    assert abs(out.duration - SECONDS) < 0.3

    await receiver.finished()
    with av.open(str(receiver.out)) as f:
        assert f.format.name == "flv"
        v, a = f.streams.video[0], f.streams.audio[0]
        assert v.codec_context.name == "h264"
        assert (v.codec_context.width, v.codec_context.height) == (WIDTH, HEIGHT)
        assert a.codec_context.name == "aac"
        assert (a.codec_context.sample_rate, a.codec_context.channels) == (48000, 2)
    with av.open(str(receiver.out)) as f:
        frames = list(f.decode(video=0))
    assert len(frames) >= SECONDS * FPS - 3
    assert abs(float(frames[-1].time or 0) - (SECONDS - 1 / FPS)) < 0.2
    samples, first = decoded_audio(receiver.out)
    assert abs(len(samples) / 48000 - SECONDS) < 0.2
    assert tone_energy(samples[48000:96000], TONE) > 0.5
    # Audio starts with the picture.
    assert abs(float(first.time or 0)) < 0.1

    info = out.describe()
    assert info["id"] == "so1" and info["protocol"] == "rtmp" and info["url"] == receiver.url
    assert info["state"] == "stopped" and "reason" not in info and info["startTime"]
    assert info["media"]["audio"] == {
        "from": "s1",
        "format": {"codec": "aac", "sampleRate": 48000, "channelNum": 2},
    }
    assert info["media"]["video"] == {"from": "s1", "format": {"codec": "h264"}}


async def test_a_closed_port_fails_once_and_names_the_url(media: Media) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/key"
    stream = VP8Stream("s1")
    finished: list[StreamingOut] = []
    out = StreamingOut(
        "so2", "room1", "rtmp", url, MediaChoice("s1", "s1"), on_finished=finished.append
    )
    out.start({"s1": stream})
    # Refused at once: it fails within the first second of media, without retrying.
    reached = await play(stream, media, 2.0, until=lambda: out.state == "failed")
    assert out.state == "failed" and reached < 1.0, reached
    assert out.reason == f"cannot push to {url}: connection refused"
    assert stream.h264.sink_count == stream.opus.sink_count == 0  # nothing keeps encoding for it
    assert finished == []  # it stays listed, with its reason, until it is deleted
    await asyncio.wait_for(out.stop(), 20)
    assert out.state == "failed" and finished == [out]
    assert out.describe()["reason"] == out.reason


async def test_a_receiver_that_goes_away_fails_the_push(receiver: Receiver, media: Media) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut("so3", "room1", "rtmp", receiver.url, MediaChoice("s1", "s1"))
    out.start({"s1": stream})

    async def kill_soon() -> None:
        # Once a second of media went through, the receiver goes away.
        await eventually(lambda: out.duration >= 1.0, what="a second pushed")
        receiver.close()

    killer = asyncio.ensure_future(kill_soon())
    await play(stream, media, SECONDS, until=lambda: out.state == "failed")
    await killer
    await eventually(lambda: out.state == "failed", what="the push failed")
    assert out.reason == f"cannot push to {receiver.url}: the server closed the connection"
    await asyncio.wait_for(out.stop(), 20)


class SilentServer:
    """Accepts TCP connections and never answers (a stalled or wrong server)."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.url = f"rtmp://127.0.0.1:{self.server.getsockname()[1]}/live/x"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            while True:
                self.accepted.append(self.server.accept()[0])
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


async def test_a_server_that_never_answers_fails_in_time(
    silent_server: SilentServer, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rtmp, "CONNECT_TIMEOUT", 0.5)
    spy = LoopThreadSpy(monkeypatch)
    stream = VP8Stream("s1")
    out = StreamingOut("so4", "room1", "rtmp", silent_server.url, MediaChoice("s1", "s1"))
    out.start({"s1": stream})
    # Its 0.5 s connect timeout ends it long before the media runs out.
    await play(stream, media, SECONDS, until=lambda: out.state == "failed")
    assert out.state == "failed"
    # The event loop never waited for the server: connecting ran on the pusher's thread.
    assert "RtmpPublisher.connect" in spy.seen() and spy.on_the_loop() == []
    assert (
        out.reason
        == f"cannot push to {silent_server.url}: the server did not answer in time (timed out)"
    )
    await asyncio.wait_for(out.stop(), 20)


async def test_stop_does_not_wait_for_a_stalled_server(
    silent_server: SilentServer, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write() stays cheap, the queue drops instead of growing, stop() gives up in time."""
    monkeypatch.setattr(streamingout, "STOP_TIMEOUT", 0.5)
    # The handshake would wait an hour: only giving up can end the stop.
    monkeypatch.setattr(rtmp, "CONNECT_TIMEOUT", 3600.0)
    spy = LoopThreadSpy(monkeypatch)
    stream = VP8Stream("s1")
    out = StreamingOut(
        "so5",
        "room1",
        "rtmp",
        silent_server.url,
        MediaChoice("s1", "s1"),
        max_queue_seconds=0.5,
    )
    out.start({"s1": stream})
    await play(stream, media, 1.5)
    assert out.state == "connecting"  # the handshake is still waiting
    assert spy.on_the_loop() == []
    pusher = out.pusher
    assert pusher is not None and pusher.dropped > 0
    await asyncio.wait_for(out.stop(), 20)
    assert out.state == "stopped"
    await eventually(
        lambda: not any(t.name == "push rtmp" and t.is_alive() for t in threading.enumerate()),
        what="the pusher thread ended",
    )


def rtmp_chunks(csid: int, kind: int, payload: bytes, size: int, stream_id: int = 0) -> bytes:
    """One RTMP message as a server sends it: a full header, then continuations."""
    out = bytearray((csid,)) + bytes(3) + len(payload).to_bytes(3, "big") + bytes((kind,))
    out += stream_id.to_bytes(4, "little") + payload[:size]
    for offset in range(size, len(payload), size):
        out.append(0xC0 | csid)
        out += payload[offset : offset + size]
    return bytes(out)


class ScriptedServer:
    """Answers one publish from a script: small chunks, a ping, then an error status."""

    PING = b"\x00\x00\x12\x34"

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.url = f"rtmp://127.0.0.1:{self.server.getsockname()[1]}/live/x"
        self.received = bytearray()
        self.c2_echoes_s1 = False
        self.send_error = threading.Event()
        self.error_sent = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.settimeout(5)
            c0c1 = self._read(conn, 1 + 1536)
            s1 = bytes(8) + bytes(range(256)) * 6
            conn.sendall(b"\x03" + s1[:1536] + c0c1[1:])  # S0, S1, S2 (echoes C1)
            self.c2_echoes_s1 = self._read(conn, 1536) == s1[:1536]
            small = 64
            status = {"level": "status", "code": "NetConnection.Connect.Success"}
            conn.sendall(
                rtmp_chunks(2, 1, struct.pack(">I", small), 128)  # set chunk size
                + rtmp_chunks(2, 4, b"\x00\x06" + self.PING, small)  # ping request
                + rtmp_chunks(
                    3,
                    20,
                    amf0_encode("_result", 1, {"fmsVer": "x"}, status | {"d": "y" * 99}),
                    small,
                )
                + rtmp_chunks(3, 20, amf0_encode("_result", 4, None, 1), small)
                + rtmp_chunks(
                    5,
                    20,
                    amf0_encode("onStatus", 0, None, {"code": "NetStream.Publish.Start"}),
                    small,
                    1,
                )
            )
            while not self.send_error.is_set():
                self._collect(conn, 0.05)
            rejected = {"level": "error", "code": "NetStream.Publish.Rejected"}
            conn.sendall(rtmp_chunks(5, 20, amf0_encode("onStatus", 0, None, rejected), small, 1))
            self.error_sent.set()
            while self._collect(conn, 2):
                pass

    def _read(self, conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            data += conn.recv(size - len(data))
        self.received += data
        return data

    def _collect(self, conn: socket.socket, timeout: float) -> bool:
        conn.settimeout(timeout)
        try:
            data = conn.recv(65536)
        except TimeoutError:
            return True
        self.received += data
        return bool(data)


def test_rtmp_client_against_a_scripted_server() -> None:
    server = ScriptedServer()
    publisher = RtmpPublisher(check_rtmp_url(server.url), timeout=2)
    publisher.connect()
    assert publisher.published and publisher.stream_id == 1
    publisher.send(18, 0, amf0_encode("onMetaData", {"width": 320}))
    publisher.send(9, 40, b"\x17\x01" + bytes(5000))  # more than one 4096-byte chunk
    server.send_error.set()
    assert server.error_sent.wait(20)
    # The status has reached the client's socket (the publisher reads it on its next send).
    assert publisher._sock is not None
    assert select.select([publisher._sock], [], [], 20)[0]
    with pytest.raises(RtmpError, match=r"NetStream\.Publish\.Rejected"):
        publisher.send(8, 60, b"\xaf\x01" + bytes(10))
    publisher.close()
    server.thread.join(20)

    sent = bytes(server.received)
    assert server.c2_echoes_s1
    pong = b"\x02" + bytes(3) + b"\x00\x00\x06\x04" + bytes(4) + b"\x00\x07" + server.PING
    assert pong in sent
    assert check_rtmp_url(server.url).tc_url.encode() in sent  # in connect
    assert amf0_encode("publish", 5, None, "x", "live") in sent
    assert amf0_encode("@setDataFrame", "onMetaData") in sent
    assert amf0_encode("FCUnpublish", 6, None, "x") in sent
    values = ["a", 1.5, True, None, {"k": "v", "n": 2.0}]
    assert amf0_decode(amf0_encode(*values)) == values


# -- HLS --------------------------------------------------------------------------------


async def test_hls_writes_segments_and_a_playlist(tmp_path: Path, media: Media) -> None:
    directory = tmp_path / "hls"
    stream = VP8Stream("s1")
    out = StreamingOut(
        "live1",
        "room1",
        "hls",
        None,
        MediaChoice("s1", "s1"),
        hls_directory=directory,
        parameters={"hlsTime": 1},
    )
    out.start({"s1": stream})
    playlist = directory / "live1.m3u8"
    await play(stream, media, 3.0)
    assert out.state == "streaming"
    live = playlist.read_text()  # written while streaming, without an end
    assert "#EXTM3U" in live and "#EXT-X-ENDLIST" not in live
    await out.stop()

    text = playlist.read_text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    names = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(names) >= 2 and all(name.startswith("live1-") for name in names)
    assert not list(directory.glob("*.tmp"))
    total = 0.0
    for name in names:
        segment = directory / name
        with av.open(str(segment)) as f:
            assert f.format.name == "mpegts"
            v, a = f.streams.video[0], f.streams.audio[0]
            assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
            frames = list(f.decode(video=0))
        assert frames and frames[0].key_frame  # independent segments
        assert {(fr.width, fr.height) for fr in frames} == {(WIDTH, HEIGHT)}
        total += len(frames) / FPS
        samples, _ = decoded_audio(segment)
        assert tone_energy(samples, TONE) > 0.5
    assert abs(total - 3.0) < 0.3

    info = out.describe()
    assert info["protocol"] == "hls" and info["url"] == str(playlist)
    assert info["parameters"] == {"hlsTime": 1, "hlsListSize": 5}


async def test_update_takes_the_new_source_from_its_keyframe(tmp_path: Path, media: Media) -> None:
    first, second = VP8Stream("a"), VP8Stream("b")
    streams: dict[str, Stream] = {"a": first, "b": second}
    out = StreamingOut(
        "sw",
        "room1",
        "hls",
        None,
        MediaChoice("a", "a"),
        hls_directory=tmp_path,
        parameters={"hlsTime": 1},
    )
    out.start(streams)
    await play(first, media, 1.0)  # pictures 0..29
    out.update(streams, OutputPatch(sources={"audio": "b", "video": "b"}))
    assert first.h264.sink_count == first.opus.sink_count == 0
    assert second.h264.sink_count == second.opus.sink_count == 1
    assert second.h264.keyframe_requests == 1
    # The new source is mid-GOP: pictures 39..59 refer to a keyframe never sent.
    await play(second, media, 1.5, start=1.3)
    assert out.source_gone("a") is False
    await out.stop()

    assert out.describe()["media"]["video"]["from"] == "b"
    frames = decoded_video(playlist_segments(out.playlist or tmp_path))
    assert len(frames) == 30 + 24  # a's first second, then b from its keyframe at 2 s
    times = [float(fr.time or 0) for fr in frames]
    assert all(later > earlier for earlier, later in itertools.pairwise(times))
    assert out.source_gone("b") is True


async def test_keyframes_are_asked_for_every_interval(tmp_path: Path, media: Media) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut(
        "kf",
        "room1",
        "hls",
        None,
        MediaChoice(None, "s1"),
        hls_directory=tmp_path,
        keyframe_interval=0.25,
    )
    out.start({"s1": stream})
    assert stream.opus.sink_count == 0 and stream.h264.keyframe_requests == 1  # on attach
    await play(stream, media, 1.4, keyframes=False)
    await out.stop()
    assert 1 + 4 <= stream.h264.keyframe_requests <= 1 + 6


async def test_audio_only_hls(tmp_path: Path, media: Media) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut(
        "ao",
        "room1",
        "hls",
        None,
        MediaChoice("s1", None),
        hls_directory=tmp_path,
        parameters={"hlsTime": 1},
    )
    out.start({"s1": stream})
    assert stream.h264.sink_count == 0
    await play(stream, media, 2.0)
    await out.stop()
    assert abs(out.duration - 2.0) < 0.1
    # MPEG-TS segments join into one stream, as a player plays them.
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in playlist_segments(tmp_path / "ao.m3u8")))
    samples, _ = decoded_audio(joined)
    assert abs(len(samples) / 48000 - 2.0) < 0.1
    assert tone_energy(samples, TONE) > 0.5


def test_audio_gaps_are_filled_and_jumps_start_again(media: Media) -> None:
    output: Any = av.open(io.BytesIO(), "w", format="adts")
    stream = output.add_stream("aac", rate=48000)
    stream.codec_context.layout = "stereo"
    stream.codec_context.time_base = Fraction(1, 48000)
    aac = AudioToAac("opus", stream)
    packets: list[Any] = []
    for i, packet in enumerate(media.audio[:100]):
        if 40 <= i < 43:
            continue  # 60 ms lost
        jump = 10 * 48000 if i >= 70 else 0  # then the source is switched
        packets += aac.push(bytes(packet), i * 960 + jump)
    packets += aac.flush()
    output.close()
    assert (aac.filled, aac.restarts, aac.corrupt) == (1, 1, 0)
    assert aac.end == 100 * 960 + 10 * 48000
    stamps = [p.pts for p in packets]
    steps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    before = steps[: steps.index(max(steps))]
    assert set(before) == {1024}  # contiguous across the loss
    # The jump, plus the frame before it and what was left of one (dropped).
    assert 10 * 48000 + 1024 <= max(steps) < 10 * 48000 + 2048


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/live/x", "rtmp:// or rtmps:// only"),
        ("http://127.0.0.1:1935/live/x", "rtmp:// or rtmps:// only"),
        ("file:///etc/passwd", "rtmp:// or rtmps:// only"),
        ("/tmp/out.flv", "rtmp:// or rtmps:// only"),
        ("rtmp:///live/x", "names no host"),
        ("rtmp://example.com:99999/live/x", "Invalid port"),
        ("rtmp://example.com", "must name an application and a stream"),
        ("rtmp://example.com/live", "must name an application and a stream"),
        ("rtmp://user:secret@example.com/live/x", "Credentials"),
        ("rtmp://example.com/live/x y", "spaces"),
        (None, "needs a url"),
    ],
)
async def test_refused_urls_bind_nothing(url: str | None, words: str) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut("so5", "room1", "rtmp", url, MediaChoice("s1", "s1"))
    with pytest.raises(ParameterError) as refused:
        out.start({"s1": stream})
    assert words in str(refused.value)
    assert stream.asked == [] and out.pusher is None


def test_rtmp_urls_are_split_as_ffmpeg_does() -> None:
    cases = {
        "rtmp://live.example.com/app/key": ("live.example.com", 1935, "app", "key", False),
        "rtmps://live.example.com/app/key?token=1": (
            "live.example.com",
            443,
            "app",
            "key?token=1",
            True,
        ),
        "RTMP://10.0.0.2:1936/live/stream": ("10.0.0.2", 1936, "live", "stream", False),
        "rtmp://[::1]:1935/app/instance/stream": ("::1", 1935, "app/instance", "stream", False),
    }
    for url, (host, port, app, stream, tls) in cases.items():
        target = check_rtmp_url(url)
        assert (target.host, target.port, target.app, target.stream, target.tls) == (
            host,
            port,
            app,
            stream,
            tls,
        )
    assert check_rtmp_url("rtmp://[::1]/a/b").tc_url == "rtmp://[::1]:1935/a"


async def test_other_refusals(tmp_path: Path) -> None:
    stream = VP8Stream("s1")
    streams: dict[str, Stream] = {"s1": stream}
    with pytest.raises(ParameterError, match="is not one of rtmp, rtsp, hls, dash"):
        StreamingOut("a", "r", "srt", "srt://x/y", MediaChoice("s1", "s1")).start(streams)
    with pytest.raises(MuxerError, match="without a url are not enabled"):
        StreamingOut("b", "r", "hls", None, MediaChoice("s1", "s1")).start(streams)
    with pytest.raises(ParameterError, match="does NOT exist"):
        StreamingOut(
            "c", "r", "hls", None, MediaChoice("s9", None), hls_directory=tmp_path / "c"
        ).start(streams)
    vp8 = MediaChoice("s1", "s1", video_format={"codec": "vp8"})
    with pytest.raises(ParameterError, match=r"H\.264"):
        StreamingOut("d", "r", "hls", None, vp8, hls_directory=tmp_path / "d").start(streams)
    with pytest.raises(ParameterError, match="Resolution is not acceptable"):
        StreamingOut(
            "e",
            "r",
            "hls",
            None,
            MediaChoice("s1", "s1", {"resolution": {"width": 1, "height": 1}}),
            hls_directory=tmp_path / "e",
        ).start(streams)
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    assert stream.h264.sink_count == stream.opus.sink_count == 0
