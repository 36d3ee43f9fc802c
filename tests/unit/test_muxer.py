"""PacketMuxer: real VP8/H.264/Opus packets from Tessera's encoders muxed into real files."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tessera.media.videoencoder import EncoderSettings, VideoEncoder
from tessera.mixer.outputs import OpusEncoder
from tessera.recorder.muxer import (
    MuxerError,
    PacketMuxer,
    TrackClock,
    choose_container,
    h264_parameter_sets,
    owt_auto_container,
)
from tests.eventually import eventually
from tests.synthetic import tone_energy

WIDTH, HEIGHT, FPS = 320, 240, 30
SECONDS = 5
TONE = 440.0
T0 = 1000.0  # arrival time (time.monotonic() style) of the first packet
# Tests write seconds of media in a burst: let the queue hold all of it.
BURST = 60.0


def encode_video(codec: str, keyframe_interval: int = 1) -> list[Any]:
    """SECONDS of a moving picture, a keyframe every `keyframe_interval` seconds."""
    encoder = VideoEncoder(EncoderSettings(codec, WIDTH, HEIGHT, FPS, 300_000, keyframe_interval))
    packets: list[Any] = []
    for i in range(SECONDS * FPS):
        rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        rgb[:, :, 2] = 120
        rgb[:, (i * 5) % WIDTH :, 1] = 200
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        packets += encoder.encode(frame, i * 90000 // FPS, keyframe=i == 0)
    assert len(packets) == SECONDS * FPS
    return packets


@pytest.fixture(scope="module")
def vp8() -> list[Any]:
    return encode_video("vp8")


@pytest.fixture(scope="module")
def vp8_one_keyframe() -> list[Any]:
    """No keyframe after the first: clusters must be cut by time, not at keyframes."""
    return encode_video("vp8", keyframe_interval=60)


@pytest.fixture(scope="module")
def h264() -> list[Any]:
    return encode_video("h264")


@pytest.fixture(scope="module")
def opus() -> list[Any]:
    encoder = OpusEncoder(2)
    packets: list[Any] = []
    for i in range(SECONDS * 50):
        t = (np.arange(960) + i * 960) / 48000
        mono = (8000 * np.sin(2 * np.pi * TONE * t)).astype(np.int16)
        packets += encoder.encode(np.repeat(mono, 2), i * 960)
    return packets


class Errors:
    """Collects on_error calls (from the muxer's thread)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.threads: list[str] = []
        self.called = threading.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.threads.append(threading.current_thread().name)
        self.called.set()


def feed(
    muxer: PacketMuxer,
    video: list[Any] | None,
    audio: list[Any] | None,
    *,
    start: float = 0.0,
    until: float = float("inf"),
    skip_video: int = 0,
    audio_delay: float = 0.0,
) -> int:
    """Write packets in arrival order; arrival = T0 + media time (+ delay). Returns the count."""
    items: list[tuple[float, str, Any, bool]] = []
    for i, p in enumerate(video or []):
        if i >= skip_video:
            items.append((i / FPS, "video", p, bool(p.is_keyframe)))
    for i, p in enumerate(audio or []):
        items.append((i * 0.02 + audio_delay, "audio", p, True))
    items.sort(key=lambda item: item[0])
    count = 0
    for at, kind, packet, keyframe in items:
        if start <= at < until:
            muxer.write(kind, packet, keyframe, T0 + at)
            count += 1
    return count


async def wait_drained(muxer: PacketMuxer, count: int) -> None:
    await eventually(
        lambda: muxer.packets_written + muxer.skipped >= count, what="the muxer drained its queue"
    )


def packet_times(path: Path) -> dict[str, list[tuple[float, bool]]]:
    """(time, keyframe) of every packet per stream type, in file order."""
    times: dict[str, list[tuple[float, bool]]] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is not None and packet.time_base is not None:
                times[packet.stream.type].append(
                    (float(packet.pts * packet.time_base), bool(packet.is_keyframe))
                )
    return times


def last_frame_time(path: Path) -> float | None:
    """Time of the last video frame a truncated or finished file decodes to."""
    last = None
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                last = frame.time
    except av.error.FFmpegError:
        pass  # the cut-off end of a file
    return last


# -- files -----------------------------------------------------------------------


def assert_whole_recording(path: Path) -> None:
    """Every picture fed, at its size, and the tone's audio, decoded from the file."""
    with av.open(str(path)) as f:
        frames = list(f.decode(video=0))
    assert len(frames) == SECONDS * FPS
    assert {(fr.width, fr.height) for fr in frames} == {(WIDTH, HEIGHT)}
    with av.open(str(path)) as f:
        samples = np.concatenate([fr.to_ndarray()[0] for fr in f.decode(audio=0)])
    assert len(samples) > (SECONDS - 0.2) * 48000
    assert tone_energy(samples[48000:96000], TONE) > 0.5


@pytest.mark.parametrize(
    ("container", "codec"), [("webm", "vp8"), ("mkv", "vp8"), ("mkv", "h264"), ("mp4", "h264")]
)
def test_records_a_playable_file(
    tmp_path: Path, request: pytest.FixtureRequest, opus: list[Any], container: str, codec: str
) -> None:
    video: list[Any] = request.getfixturevalue(codec)
    before = [(bytes(p), p.pts, p.time_base) for p in video[:3] + opus[:3]]
    path = tmp_path / f"rec.{container}"
    errors = Errors()
    muxer = PacketMuxer(
        path,
        container,
        video_codec=codec,
        audio_codec="opus",
        on_error=errors,
        max_queue_seconds=BURST,
    )
    feed(muxer, video, opus)
    muxer.close()
    muxer.close()  # idempotent

    assert errors.reasons == []
    assert muxer.started and muxer.video_size == (WIDTH, HEIGHT)
    assert muxer.dropped == 0 and muxer.skipped == 0
    assert muxer.bytes_written == path.stat().st_size > 10_000
    assert abs(muxer.duration - SECONDS) < 0.5
    # The shared packets are untouched.
    assert [(bytes(p), p.pts, p.time_base) for p in video[:3] + opus[:3]] == before

    with av.open(str(path)) as f:
        assert f.duration is not None and abs(f.duration / 1e6 - SECONDS) < 0.1 * SECONDS
        v, a = f.streams.video[0], f.streams.audio[0]
        assert (v.codec_context.name, a.codec_context.name) == (codec, "opus")
        assert (v.codec_context.width, v.codec_context.height) == (WIDTH, HEIGHT)
        assert a.codec_context.extradata is not None
        assert a.codec_context.extradata.startswith(b"OpusHead")
        if codec == "h264":
            avcc = v.codec_context.extradata
            assert avcc is not None and avcc[0] == 1  # avcC made from the Annex-B SPS/PPS
    assert_whole_recording(path)
    with av.open(str(path)) as f:  # cues / index: seekable
        f.seek(3 * av.time_base)
        assert abs(next(f.decode(video=0)).time - 3.0) < 0.05


def test_records_a_playable_mpeg_ts(tmp_path: Path, h264: list[Any], opus: list[Any]) -> None:
    # OWT records "ts" too: H.264 stays Annex B, Opus carries its OpusHead (channel layout).
    path = tmp_path / "rec.ts"
    errors = Errors()
    muxer = PacketMuxer(
        path, "ts", video_codec="h264", audio_codec="opus", on_error=errors, max_queue_seconds=BURST
    )
    feed(muxer, h264, opus)
    muxer.close()
    assert errors.reasons == []
    assert muxer.container == "ts" and muxer.started and muxer.dropped == 0
    with av.open(str(path)) as f:
        assert f.format.name == "mpegts"
        v, a = f.streams.video[0], f.streams.audio[0]
        assert (v.codec_context.name, a.codec_context.name) == ("h264", "opus")
        assert a.codec_context.channels == 2
    assert_whole_recording(path)


def test_audio_only_starts_at_the_first_packet(tmp_path: Path, opus: list[Any]) -> None:
    path = tmp_path / "audio.webm"
    muxer = PacketMuxer(
        path,
        "auto",
        video_codec=None,
        audio_codec="opus",
        on_error=Errors(),
        max_queue_seconds=BURST,
    )
    feed(muxer, None, opus[:100])
    muxer.close()
    assert muxer.started and muxer.video_size is None
    times = packet_times(path)
    assert times["video"] == [] and len(times["audio"]) == 100
    assert times["audio"][0][0] == 0.0


# -- container choice ---------------------------------------------------------------


def test_auto_picks_as_owt_does() -> None:
    # OWT: mp4 for AAC audio with no/H.264/H.265 video, else mkv (no audio counts as "none-aac").
    assert choose_container("auto", "vp8", "opus") == "mkv"
    assert choose_container("auto", "h264", "opus") == "mkv"
    assert choose_container("auto", "H264", None) == "mkv"
    assert choose_container("AUTO", None, "opus") == "mkv"
    assert owt_auto_container("h264", "aac") == "mp4"
    assert owt_auto_container(None, "aac") == "mp4"
    assert owt_auto_container("h265", "aac") == "mp4"
    assert owt_auto_container("vp8", "aac") == "mkv"
    assert owt_auto_container("h264", None) == "mkv"


def test_playable_picks_a_container_browsers_play() -> None:
    assert choose_container("playable", "vp8", "opus") == "webm"
    assert choose_container("playable", "vp9", None) == "webm"
    assert choose_container("playable", None, "opus") == "webm"
    assert choose_container("playable", "h264", "opus") == "mp4"
    assert choose_container("playable", "H264", None) == "mp4"


def test_named_containers() -> None:
    assert choose_container("matroska", "h264", "opus") == "mkv"
    assert choose_container("MP4", "vp9", "opus") == "mp4"  # FFmpeg's mp4 takes VP9 and Opus
    assert choose_container("ts", "h264", "opus") == "ts"
    assert choose_container("ts", None, "opus") == "ts"


@pytest.mark.parametrize(
    ("container", "video", "audio", "words"),
    [
        ("webm", "h264", "opus", ["WebM", "H.264", "mkv or mp4"]),
        ("mp4", "vp8", "opus", ["MP4", "VP8", "webm or mkv"]),
        ("avi", "vp8", "opus", ["unknown container", "ts"]),
        ("ts", "vp8", "opus", ["MPEG-TS", "VP8", "webm or mkv"]),
        ("ts", "vp9", None, ["MPEG-TS", "VP9"]),
        ("auto", "vp8", "aac", ["aac"]),
        ("auto", "theora", None, ["theora"]),
        ("auto", None, None, ["nothing to record"]),
    ],
)
def test_refused_combinations_create_no_file(
    tmp_path: Path, container: str, video: str | None, audio: str | None, words: list[str]
) -> None:
    with pytest.raises(MuxerError) as refused:
        choose_container(container, video, audio)
    for word in words:
        assert word in str(refused.value)
    path = tmp_path / "refused.out"
    with pytest.raises(MuxerError):
        PacketMuxer(
            path,
            container,
            video_codec=video,
            audio_codec=audio,
            on_error=Errors(),
            max_queue_seconds=BURST,
        )
    assert list(tmp_path.iterdir()) == []


def test_a_recording_without_media_leaves_no_file(tmp_path: Path) -> None:
    muxer = PacketMuxer(
        tmp_path / "x.webm", "webm", video_codec="vp8", audio_codec=None, on_error=Errors()
    )
    muxer.close()
    assert not muxer.started and list(tmp_path.iterdir()) == []


# -- timing ----------------------------------------------------------------------------


def test_starts_on_a_keyframe_with_audio(tmp_path: Path, vp8: list[Any], opus: list[Any]) -> None:
    path = tmp_path / "late.webm"
    muxer = PacketMuxer(
        path,
        "webm",
        video_codec="vp8",
        audio_codec="opus",
        on_error=Errors(),
        max_queue_seconds=BURST,
    )
    # Join mid-GOP: frames 10..29 are deltas, 30 is the next keyframe (t = 1 s).
    feed(muxer, vp8, opus, skip_video=10)
    muxer.close()
    assert muxer.skipped >= 20 + 50  # 20 deltas and ~1 s of audio before the keyframe
    times = packet_times(path)
    assert times["video"][0] == (0.0, True)
    assert abs(times["audio"][0][0]) <= 0.02  # audio starts with the picture
    assert len(times["video"]) == SECONDS * FPS - 30
    with av.open(str(path)) as f:
        assert len(list(f.decode(video=0))) == SECONDS * FPS - 30


@pytest.mark.parametrize("audio_delay", [-0.5, 0.0, 0.8])
def test_audio_and_video_are_placed_by_arrival(
    tmp_path: Path, vp8: list[Any], opus: list[Any], audio_delay: float
) -> None:
    """The tracks' pts have unrelated origins; their arrival times decide where they start."""
    video = [_retimed(p, 7_000_000) for p in vp8]
    audio = [_retimed(p, 123_456) for p in opus]
    path = tmp_path / "sync.mkv"
    muxer = PacketMuxer(
        path,
        "mkv",
        video_codec="vp8",
        audio_codec="opus",
        on_error=Errors(),
        max_queue_seconds=BURST,
    )
    feed(muxer, video, audio, audio_delay=audio_delay)
    muxer.close()
    times = packet_times(path)
    assert times["video"][0][0] == 0.0
    assert abs(times["audio"][0][0] - max(0.0, audio_delay)) < 0.1
    # Each track keeps its own pacing: the last packets are where their pts say.
    assert abs(times["video"][-1][0] - (SECONDS - 1 / FPS)) < 0.01
    assert abs(times["audio"][-1][0] - (audio_delay + SECONDS - 0.02)) < 0.03


def _retimed(packet: Any, offset: int) -> Any:
    copy = av.Packet(bytes(packet))
    copy.pts = packet.pts + offset
    copy.time_base = packet.time_base
    copy.duration = packet.duration
    copy.is_keyframe = packet.is_keyframe
    return copy


def test_a_source_switch_keeps_timestamps_monotonic(
    tmp_path: Path, vp8: list[Any], opus: list[Any]
) -> None:
    # The first 2 s come from one source; then a new source starts with pts from
    # zero again (video, backwards) or far ahead (audio, forwards).
    video = vp8[:60] + [_retimed(p, -vp8[60].pts) for p in vp8[60:]]
    audio = opus[:100] + [_retimed(p, 48000 * 3600) for p in opus[100:]]
    path = tmp_path / "switch.webm"
    muxer = PacketMuxer(
        path,
        "webm",
        video_codec="vp8",
        audio_codec="opus",
        on_error=Errors(),
        max_queue_seconds=BURST,
    )
    feed(muxer, video, audio)
    muxer.close()
    times = packet_times(path)
    for kind in ("video", "audio"):
        stamps = [t for t, _ in times[kind]]
        assert all(b > a for a, b in itertools.pairwise(stamps)), kind
        after = [t for t in stamps if t >= 1.99]
        assert abs(after[0] - 2.0) < 0.05, kind  # re-anchored on arrival
        assert abs(stamps[-1] - SECONDS) < 0.1, kind


def test_track_clock_follows_pts_and_reanchors_on_jumps() -> None:
    tb = Fraction(1, 90000)
    clock = TrackClock(Fraction(1, 1000))
    assert clock.place(500_000, tb, 0.25) == 250  # first packet: its arrival
    assert clock.place(503_000, tb, 0.40) == 283  # then its own pts (arrival jitter ignored)
    assert clock.place(503_000, tb, 0.41) == 284  # same pts: still strictly increasing
    assert clock.place(90_000_000, tb, 0.45) == 450  # far ahead of arrival: re-anchored
    assert clock.place(1_000, tb, 0.48) == 480  # backwards: re-anchored
    assert clock.place(4_000, tb, 0.60) == 513
    assert clock.reanchors == 2
    assert clock.place(None, None, 0.70) == 700  # no pts: arrival


def test_h264_parameter_sets_come_from_the_keyframe(h264: list[Any]) -> None:
    sps, pps = h264_parameter_sets(bytes(h264[0]))
    assert sps is not None and sps[0] & 0x1F == 7
    assert pps is not None and pps[0] & 0x1F == 8
    assert h264_parameter_sets(bytes(h264[1])) == (None, None)


# -- crash safety ------------------------------------------------------------------


async def test_webm_plays_up_to_the_cut(
    tmp_path: Path, vp8_one_keyframe: list[Any], opus: list[Any]
) -> None:
    path = tmp_path / "crash.webm"
    muxer = PacketMuxer(
        path,
        "webm",
        video_codec="vp8",
        audio_codec="opus",
        on_error=Errors(),
        max_queue_seconds=BURST,
    )
    # While recording (as if the server were killed now), the file holds up to the
    # last cluster: nothing is kept back in FFmpeg's buffers beyond ~1 s.
    await wait_drained(muxer, feed(muxer, vp8_one_keyframe, opus, until=3.0))
    snapshot = tmp_path / "snapshot.webm"
    shutil.copyfile(path, snapshot)
    last = last_frame_time(snapshot)
    assert last is not None and last > 3.0 - 1.1
    feed(muxer, vp8_one_keyframe, opus, start=3.0)
    muxer.close()

    assert sum(p.is_keyframe for p in vp8_one_keyframe) == 1
    data = path.read_bytes()
    with av.open(str(path)) as f:
        ends = [
            (p.pos + p.size, float(p.pts * p.time_base))
            for p in f.demux(video=0)
            if p.pos is not None and p.pts is not None and p.time_base is not None
        ]
    for fraction in (0.2, 0.45, 0.7, 0.95):
        cut = int(len(data) * fraction)
        truncated = tmp_path / f"cut{fraction}.webm"
        truncated.write_bytes(data[:cut])
        complete = max(t for end, t in ends if end <= cut)
        last = last_frame_time(truncated)
        assert last is not None and last >= complete - 1.1, (fraction, last, complete)


# -- errors and back-pressure ----------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "words"),
    [("afile/x.webm", "a part of the path is a file"), ("missing/x.webm", "does not exist")],
)
def test_unwritable_path_reports_once(
    tmp_path: Path, vp8: list[Any], opus: list[Any], where: str, words: str
) -> None:
    (tmp_path / "afile").write_text("not a directory")
    errors = Errors()
    muxer = PacketMuxer(
        tmp_path / where, "webm", video_codec="vp8", audio_codec="opus", on_error=errors
    )
    assert errors.called.wait(20)
    feed(muxer, vp8, opus)  # cheap no-ops now, never raising
    muxer.close()
    assert len(errors.reasons) == 1 and words in errors.reasons[0]
    assert errors.threads[0].startswith("muxer")
    assert muxer.failed and muxer.packets_written == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_reports_once(tmp_path: Path, vp8: list[Any]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    errors = Errors()
    muxer = PacketMuxer(
        locked / "x.webm", "webm", video_codec="vp8", audio_codec=None, on_error=errors
    )
    feed(muxer, vp8, None)
    muxer.close()
    assert errors.reasons == [f"cannot write recording {locked / 'x.webm'}: directory not writable"]


def test_disk_full_reports_once(vp8: list[Any], opus: list[Any]) -> None:
    errors = Errors()
    muxer = PacketMuxer(
        Path("/dev/full"), "webm", video_codec="vp8", audio_codec="opus", on_error=errors
    )
    feed(muxer, vp8, opus)
    muxer.close()
    assert errors.reasons == ["cannot write recording /dev/full: disk full"]
    assert muxer.failed


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_disk_filling_up_mid_recording(tiny_disk: Path, vp8: list[Any], opus: list[Any]) -> None:
    errors = Errors()
    path = tiny_disk / "full.webm"
    muxer = PacketMuxer(
        path,
        "webm",
        video_codec="vp8",
        audio_codec="opus",
        on_error=errors,
        max_queue_seconds=BURST,
    )
    feed(muxer, vp8, opus)  # ≈ 100 KB into 64 KiB
    muxer.close()
    assert len(errors.reasons) == 1 and errors.reasons[0].endswith("disk full")
    last = last_frame_time(path)  # what did fit still plays
    assert last is not None and last > 1.0


def test_a_stalled_writer_drops_and_resumes_on_a_keyframe(
    tmp_path: Path, vp8: list[Any], opus: list[Any]
) -> None:
    path = tmp_path / "burst.webm"
    muxer = PacketMuxer(
        path,
        "webm",
        video_codec="vp8",
        audio_codec="opus",
        on_error=Errors(),
        max_queue_seconds=0.5,
    )
    # 5 s of media arriving in a few ms: far more than 0.5 s can queue.
    feed(muxer, vp8, opus)
    muxer.close()
    assert muxer.dropped > 0
    times = packet_times(path)["video"]
    assert times and times[0][1]
    for (before, _), (after, key) in itertools.pairwise(times):
        if after - before > 1.5 / FPS:
            assert key, f"video resumed at {after:.3f} without a keyframe"
    with av.open(str(path)) as f:
        assert len(list(f.decode(video=0))) == len(times)


def test_held_audio_starts_the_file_before_the_keyframe(
    tmp_path: Path, vp8: list[Any], opus: list[Any]
) -> None:
    """A per-stream file (hold_audio): its time 0 is its first audio, not the keyframe."""
    path = tmp_path / "held.mkv"
    origins: list[float] = []
    muxer = PacketMuxer(
        path,
        "mkv",
        video_codec="vp8",
        audio_codec="opus",
        on_error=Errors(),
        max_queue_seconds=BURST,
        hold_audio=True,
        on_start=origins.append,
    )
    # Mid-GOP again: the keyframe comes at 1 s, audio from 0.
    count = feed(muxer, vp8, opus, skip_video=10)
    muxer.close()
    assert origins == [T0]  # told once, on its thread, the arrival that is time 0
    assert muxer.skipped == 20  # the deltas before the keyframe; no audio was lost
    assert muxer.packets_written == count - 20
    times = packet_times(path)
    assert times["audio"][0][0] == 0.0
    assert times["video"][0] == (1.0, True)  # placed by its arrival on the file's clock
    assert len(times["audio"]) == SECONDS * 50
