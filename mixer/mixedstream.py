"""MixedStream: a view of a room, composited and mixed, encoded once per output format."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import av
import numpy as np

from tessera.media.mediasource import (
    FrameSource,
    PacketSource,
    ParameterError,
    Stream,
    VideoFormat,
)
from tessera.media.streaminfo import optional_video
from tessera.media.videoencoder import EncoderSettings, default_bitrate
from tessera.webrtc_agent.forwardstream import ForwardStream

from .audiomix import AudioMix, TalkerSelection, VoiceActivity
from .audiosink import AUDIO_CHANNELS, AUDIO_SAMPLES, AudioSink
from .captionoverlay import CaptionOverlay
from .compositor import InputPicture, VideoCompositor
from .decorations import Decorations, LabelStyle
from .ladder import Rung, view_ladder
from .layout import Layout, LayoutTemplates, Region
from .outputs import MixedAudioOutput, MixedVideoOutput, OpusEncoder
from .overlay import Overlay, OverlayError, OverlayRunner, load_overlay
from .tickthread import TickThread, ticks
from .viewoptions import ViewAudio, ViewOptions, ViewVideo

logger = logging.getLogger(__name__)

# Ticks of the full mix a participant's new own encoder encodes first (see
# MixedAudioOutput.encode_minus): switching encoders is then seamless.
PRIMING_TICKS = 3


class MixedStreamListener(Protocol):
    """What a mixed stream tells its room (on the event loop thread)."""

    def layout_changed(self, mixed: MixedStream) -> None: ...

    def active_input_changed(self, mixed: MixedStream, stream_id: str) -> None: ...


@dataclass
class ViewStats:
    """Counters of a view, for metrics and benchmarks (seconds are thread CPU time)."""

    frames: int = 0
    dropped: int = 0
    composite_seconds: float = 0.0
    audio_ticks: int = 0
    started: float = field(default_factory=time.monotonic)
    # Decoded video frames that reached the view, all inputs together: a view composites
    # 30 fps from whatever its inputs last delivered, so this shows inputs falling behind.
    input_frames: int = 0


class _VideoSink:
    """Keeps the newest decoded frame of one input for the compositor."""

    def __init__(self, picture: InputPicture, stats: ViewStats | None = None) -> None:
        self.picture = picture
        self.stats = stats

    def on_frame(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        if isinstance(frame, av.VideoFrame):
            self.picture.frame_time = time.monotonic()
            self.picture.frame = frame
            if self.stats is not None:
                self.stats.input_frames += 1


@dataclass
class MixInput:
    """One forward stream mixed into a view."""

    stream: ForwardStream
    owner: str
    picture: InputPicture
    video_sink: _VideoSink
    audio_sink: AudioSink


class MixedStream(Stream):
    """One view of a room: layout, compositor, audio mixer and shared encoders.

    Listed in the room's streams as `<room id>-<label>` with type "mixed".
    The view's threads run only while some output has a receiver: a view
    nobody watches decodes, composites and encodes nothing. A view watched
    without its audio still runs its audio thread, for voice activity only
    (see _hearing_wanted). Video ticks at the
    view's frame rate on its own clock and always takes each input's newest
    frame, so a slow or silent input never stalls it.
    """

    type = "mixed"

    def __init__(
        self,
        room_id: str,
        view: ViewOptions,
        *,
        media_out: Mapping[str, Any],
        transcoding: Mapping[str, Any],
        listener: MixedStreamListener,
        keyframe_min_interval: float = 1.0,
        frame_timeout: float = 2.0,
        max_mixed_talkers: int = 3,
    ) -> None:
        self.label = view.label
        self.id = f"{room_id}-{self.label}"
        self.room_id = room_id
        self.view = view
        self.listener = listener
        # The room's mediaOut and transcoding (OWT's JSON form): what subscribers may ask for.
        self.media_out = media_out
        self.transcoding = transcoding
        self.keyframe_min_interval = keyframe_min_interval
        self.frame_timeout = frame_timeout
        # The loudest this many inputs are mixed (0: every input); see TalkerSelection.
        self.max_mixed_talkers = max_mixed_talkers
        self._loop = asyncio.get_running_loop()
        video = view.video
        self.video_options: ViewVideo | None = video
        self.audio_options: ViewAudio | None = view.audio
        if video is not None:
            params = video.parameters
            self.width = params.resolution.width
            self.height = params.resolution.height
            self.framerate = params.framerate
            self.keyframe_interval = params.key_frame_interval
            self.bitrate = params.bitrate
            self.video_codec: str = video.format.codec
            self.fit_policy: str = video.layout.fit_policy
            bg = video.bg_color
            self.background = (bg.r, bg.g, bg.b)
            self.keep_active_primary = video.keep_active_input_primary
            self.motion_factor = video.motion_factor
            self.aspect = Fraction(self.width, self.height)
            self.layout = Layout(
                LayoutTemplates.from_options(video.layout, self.aspect), video.max_input
            )
        else:
            self.layout = Layout(LayoutTemplates.from_options(None), 16)
            self.keep_active_primary = False
            self.motion_factor = 0.8
            self.aspect = Fraction(16, 9)
        self.vad = view.audio.vad
        self.inputs: dict[str, MixInput] = {}
        self.active_input: str | None = None
        self.video_outputs: dict[EncoderSettings, MixedVideoOutput] = {}
        self.audio_outputs: dict[str | None, MixedAudioOutput] = {}
        self.stats = ViewStats()
        # Snapshots the view threads read; replaced (never mutated) on the loop thread.
        self._assignments: tuple[tuple[tuple[Region, str | None], ...], int] = ((), -1)
        self._pictures: dict[str, InputPicture] = {}
        self._audio_inputs: tuple[tuple[str, str, AudioSink], ...] = ()
        self._video_outs: tuple[MixedVideoOutput, ...] = ()
        self._audio_outs: tuple[MixedAudioOutput, ...] = ()
        # "video" / "audio" -> the view thread of that kind, while one runs.
        self._threads: dict[str, TickThread] = {}
        # "video" / "audio" -> the last view thread of that kind asked to stop.
        self._stopped: dict[str, TickThread] = {}
        # The input the audio mixer hears speaking (None: nobody); set by the audio thread.
        self._speaking: str | None = None
        # Set by the room while the view burns its live captions in (the captions option):
        # one of the view's overlays (see the caption_overlay property).
        self._captions: CaptionOverlay | None = None
        # What the compositor draws with (replaced, never mutated): see _look_of.
        self._look = self._look_of(view)
        # Screen shares in the view, first shared first: the view presents the first.
        self._screens: list[str] = []
        self.closed = False
        self._publish_layout(notify=False)

    # -- Stream ---------------------------------------------------------

    def has_track(self, kind: str) -> bool:
        return (self.video_options if kind == "video" else self.audio_options) is not None

    def codec(self, kind: str) -> str | None:
        if not self.has_track(kind):
            return None
        return self.video_codec if kind == "video" else "opus"

    def info(self) -> dict[str, Any]:
        tracks: list[dict[str, Any]] = []
        if self.audio_options is not None:
            tracks.append(
                {
                    "type": "audio",
                    "format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2},
                    "status": "active",
                }
            )
        if self.video_options is not None:
            video: dict[str, Any] = {
                "type": "video",
                "format": {
                    "codec": self.video_codec,
                    **({"profile": "CB"} if self.video_codec == "h264" else {}),
                },
                "status": "active",
                "parameters": {
                    "resolution": {"width": self.width, "height": self.height},
                    "framerate": self.framerate,
                    "keyFrameInterval": self.keyframe_interval,
                },
            }
            if self.bitrate:
                video["parameters"]["bitrate"] = self.bitrate
            optional = optional_video(
                self.video_codec,
                (self.width, self.height),
                self.framerate,
                self.media_out,
                self.transcoding,
            )
            if optional:
                video["optional"] = optional
            tracks.append(video)
        return {
            "id": self.id,
            "type": "mixed",
            "data": None,
            "media": {"tracks": tracks},
            "info": {
                "label": self.label,
                "activeInput": self.active_input or "unknown",
                "layout": self.layout.to_json(),
            },
        }

    def packet_source(
        self, kind: str, fmt: VideoFormat | str, subscriber: str | None = None
    ) -> PacketSource:
        if self.closed:
            raise ParameterError("Stream does NOT exist")
        if kind == "audio":
            if self.audio_options is None:
                raise ParameterError("Stream has no audio track")
            if fmt != "opus":
                raise ParameterError(f"Audio codec {fmt} is not acceptable")
            output = self.audio_outputs.get(subscriber)
            if output is None:
                output = MixedAudioOutput(subscriber, self._loop, self._audio_output_active)
                self.audio_outputs[subscriber] = output
            return output
        if self.video_options is None or not isinstance(fmt, VideoFormat):
            raise ParameterError("Stream has no video track")
        settings = self.encoder_settings(fmt)
        video_output = self.video_outputs.get(settings)
        if video_output is None:
            video_output = MixedVideoOutput(
                settings, self._loop, self.keyframe_min_interval, self._video_output_active
            )
            self.video_outputs[settings] = video_output
        return video_output

    def encoder_settings(self, fmt: VideoFormat) -> EncoderSettings:
        """The distinct output format a request resolves to (one encoder per value)."""
        width = fmt.width or self.width
        height = fmt.height or self.height
        framerate = min(fmt.framerate or self.framerate, self.framerate)
        base = int(self.bitrate * 1000) if isinstance(self.bitrate, int | float) else None
        bitrate = base or default_bitrate(width, height, framerate, fmt.codec, self.motion_factor)
        if fmt.bitrate:
            bitrate = int(bitrate * fmt.bitrate)
        return EncoderSettings(
            codec=fmt.codec,
            width=width,
            height=height,
            framerate=framerate,
            bitrate=bitrate,
            keyframe_interval=fmt.keyframe_interval or self.keyframe_interval,
        )

    def frame_source(self, kind: str) -> FrameSource | None:
        return None

    # -- the adaptive ladder (tessera.mixer.ladder) ---------------------

    def ladder(self, fmt: VideoFormat) -> tuple[Rung, ...]:
        """The rungs a subscriber of `fmt` is switched between, highest first.

        Only a subscriber of the view's own format (no size, frame rate, bitrate or
        keyframe interval asked for) adapts: one rung otherwise, or with ``ladder: []``.
        """
        if self.video_options is None:
            return ()
        top = self.encoder_settings(fmt)
        if not fmt.is_original or fmt.height is not None:
            return (Rung(top.width, top.height, top.bitrate),)
        return view_ladder(top.width, top.height, top.bitrate, self.video_options.ladder)

    def rung_source(self, fmt: VideoFormat, rung: int) -> PacketSource:
        """The shared output of rung `rung` of `fmt`'s ladder (made on first use, closed
        when its last subscriber leaves). Raises ParameterError for a rung not there."""
        rungs = self.ladder(fmt)
        if not 0 <= rung < len(rungs):
            raise ParameterError(f"The view has no rung {rung}")
        if rung == 0:
            return self.packet_source("video", fmt)
        top = self.encoder_settings(fmt)
        step = rungs[rung]
        settings = dataclasses.replace(
            top, width=step.width, height=step.height, bitrate=step.bitrate
        )
        if self.closed:
            raise ParameterError("Stream does NOT exist")
        output = self.video_outputs.get(settings)
        if output is None:
            output = MixedVideoOutput(
                settings, self._loop, self.keyframe_min_interval, self._video_output_active
            )
            self.video_outputs[settings] = output
        return output

    # -- inputs ---------------------------------------------------------

    def has_input(self, stream_id: str) -> bool:
        return stream_id in self.inputs

    def add_input(self, stream: ForwardStream, owner: str, user: str) -> None:
        """Mix `stream` into this view (idempotent); it takes the next free region."""
        if stream.id in self.inputs or self.closed:
            return
        video = stream.tracks.get("video")
        audio = stream.tracks.get("audio")
        picture = InputPicture(
            stream_id=stream.id,
            user=user,
            has_video=video is not None,
            video_active=video.active if video is not None else False,
            muted=audio is not None and not audio.active,
            screen=video is not None and video.spec.source == "screen-cast",
        )
        mix_input = MixInput(stream, owner, picture, _VideoSink(picture, self.stats), AudioSink())
        mix_input.audio_sink.active = audio.active if audio is not None else False
        self.inputs[stream.id] = mix_input
        if self.video_options is not None:
            self.layout.add(stream.id)
            if picture.screen:
                self._screens.append(stream.id)
                self._present()
        self._publish_inputs()
        for kind in self._threads:
            self._attach(mix_input, kind)
        self._publish_layout()
        self._update_threads()  # the first audio input starts hearing who speaks

    def remove_input(self, stream_id: str) -> None:
        mix_input = self.inputs.pop(stream_id, None)
        if mix_input is None:
            return
        self._detach(mix_input, "video")
        self._detach(mix_input, "audio")
        if self.video_options is not None:
            self.layout.remove(stream_id)
            if stream_id in self._screens:
                self._screens.remove(stream_id)
                self._present()
        if self.active_input == stream_id:
            self.active_input = None
        self._publish_inputs()
        self._publish_layout()
        self._update_threads()

    def set_input_status(self, stream_id: str, kind: str, active: bool) -> None:
        """The publisher paused or resumed a track: paused video shows the avatar."""
        mix_input = self.inputs.get(stream_id)
        if mix_input is None:
            return
        if kind == "video":
            mix_input.picture.video_active = active
        else:
            mix_input.audio_sink.active = active
            mix_input.picture.muted = not active

    def set_region(self, stream_id: str, region_id: str) -> None:
        self.layout.set_region(stream_id, region_id)
        self._publish_layout()

    def apply_layout(self, layout: list[dict[str, Any]]) -> None:
        self.layout.apply(layout)
        self._publish_layout()

    def relayout(self, view: ViewOptions) -> None:
        """Take a changed view's regions (``video.layout``, ``maxInput``), fit policy,
        background, ``keepActiveInputPrimary`` and ``audio.vad`` while it runs.

        Its format and encoding parameters must be the same (the room refuses a change of
        those while it runs): the outputs and their encoders go on as they are.
        """
        self.view = view
        self.vad = view.audio.vad
        self._update_threads()  # voice activity turned on or off
        video = view.video
        if video is None or self.video_options is None:
            return
        self.video_options = video
        self.keep_active_primary = video.keep_active_input_primary
        self.fit_policy = video.layout.fit_policy
        bg = video.bg_color
        self.background = (bg.r, bg.g, bg.b)
        # The video thread builds a new compositor when it sees other settings.
        self._look = self._look_of(view)
        self.layout.max_input = video.max_input
        configured = LayoutTemplates.from_options(video.layout, self.aspect)
        screen = self._presenting()
        self.layout.set_templates(
            configured if screen is None else configured.with_base("presentation")
        )
        if screen is not None:
            self.layout.set_primary(screen)
        elif self.keep_active_primary and self.active_input is not None:
            self.layout.set_primary(self.active_input)
        self._publish_layout()

    def set_template_base(self, base: str) -> None:
        """Switch the view to OWT's ``fluid``, ``lecture`` or ``void`` region sets while it runs.

        Custom templates and the fit policy stay. With the lecture layout the active
        speaker, when known, takes the large region. Raises LayoutError for another base.
        """
        current = self.layout.templates
        if base == current.base:
            return
        self.layout.set_templates(current.with_base(base))
        if self.active_input is not None:
            self.layout.set_primary(self.active_input)
        self._publish_layout()

    def _presenting(self) -> str | None:
        """The screen share the view presents now (None: it shows its own layout)."""
        video = self.video_options
        if video is None or not video.presentation or not self._screens:
            return None
        return self._screens[0]

    def _present(self) -> None:
        """Switch to the presentation layout while a screen is shared, back when none is.

        The share takes the large region; the others keep their order in the strip.
        """
        assert self.video_options is not None
        screen = self._presenting()
        if screen is not None:
            if self.layout.templates.base != "presentation":
                self.layout.set_templates(self.layout.templates.with_base("presentation"))
            self.layout.set_primary(screen)
        elif self.layout.templates.base == "presentation":
            configured = LayoutTemplates.from_options(self.video_options.layout, self.aspect)
            self.layout.set_templates(configured)
            if self.keep_active_primary and self.active_input is not None:
                self.layout.set_primary(self.active_input)

    def _look_of(self, view: ViewOptions) -> tuple[Any, ...]:
        """What the compositor is built from: a change rebuilds it on the video thread."""
        video = view.video
        if video is None:
            return ()
        labels, marks = video.labels, video.marks
        style = LabelStyle(
            labels=labels.enabled,
            position=labels.position,
            muted=marks.muted,
            speaker=marks.speaker,
            speaker_hold=marks.speaker_hold,
        )
        overlays = tuple((o.overlay, tuple(sorted(o.options.items()))) for o in video.overlays)
        bg = video.bg_color
        return (
            video.layout.fit_policy,
            (bg.r, bg.g, bg.b),
            style,
            overlays,
            video.overlay_budget_ms / 1000,
            self._captions,
        )

    def _attach(self, mix_input: MixInput, kind: str) -> None:
        encoded = self._encoded_audio(mix_input) if kind == "audio" else None
        if encoded is not None:
            encoded.add_sink(mix_input.audio_sink)
            return
        source = mix_input.stream.frame_source(kind)
        if source is not None:
            source.add_sink(mix_input.video_sink if kind == "video" else mix_input.audio_sink)

    def _detach(self, mix_input: MixInput, kind: str) -> None:
        encoded = self._encoded_audio(mix_input) if kind == "audio" else None
        if encoded is not None:
            encoded.remove_sink(mix_input.audio_sink)
            return
        source = mix_input.stream.frame_source(kind)
        if source is not None:
            source.remove_sink(mix_input.video_sink if kind == "video" else mix_input.audio_sink)

    @staticmethod
    def _encoded_audio(mix_input: MixInput) -> PacketSource | None:
        """An Opus input's encoded track: the audio thread decodes it (see AudioSink)."""
        track = mix_input.stream.tracks.get("audio")
        return track if track is not None and track.codec == "opus" else None

    def _publish_inputs(self) -> None:
        self._pictures = {sid: i.picture for sid, i in self.inputs.items()}
        self._audio_inputs = tuple(
            (sid, i.owner, i.audio_sink)
            for sid, i in self.inputs.items()
            if "audio" in i.stream.tracks
        )

    def _publish_layout(self, notify: bool = True) -> None:
        version = self.layout.version
        if version == self._assignments[1]:
            return
        self._assignments = (tuple(self.layout.assignments()), version)
        if notify:
            self.listener.layout_changed(self)

    def _set_active_input(self, stream_id: str) -> None:
        if self.closed or stream_id not in self.inputs or stream_id == self.active_input:
            return
        self.active_input = stream_id
        self.listener.active_input_changed(self, stream_id)
        # While a screen is presented, the share keeps the large region.
        presenting = self._presenting() is not None
        if self.keep_active_primary and not presenting and self.layout.set_primary(stream_id):
            self._publish_layout()

    # -- running --------------------------------------------------------

    def _video_output_active(self, output: MixedVideoOutput, active: bool) -> None:
        self._output_changed(self.video_outputs, output.settings, output, active)

    def _audio_output_active(self, output: MixedAudioOutput, active: bool) -> None:
        self._output_changed(self.audio_outputs, output.key, output, active)

    def _output_changed(
        self, outputs: dict[Any, Any], key: Any, output: PacketSource, active: bool
    ) -> None:
        if not active and not output.sink_count:
            # An encoder with no receivers stops and is forgotten.
            outputs.pop(key, None)
            output.close()
        self._video_outs = tuple(o for o in self.video_outputs.values() if o.sink_count)
        self._audio_outs = tuple(o for o in self.audio_outputs.values() if o.sink_count)
        self._update_threads()

    def _update_threads(self) -> None:
        wanted = {
            "video": (bool(self._video_outs), self._video_loop),
            "audio": (bool(self._audio_outs) or self._hearing_wanted(), self._audio_loop),
        }
        for kind, (want, loop) in wanted.items():
            want = want and not self.closed
            thread = self._threads.get(kind)
            if want and thread is None:
                for mix_input in self.inputs.values():
                    self._attach(mix_input, kind)
                self._threads[kind] = TickThread(
                    f"view-{self.label}-{kind}", loop, self.log_ids, self._stopped.get(kind)
                )
            elif not want and thread is not None:
                thread.stop()
                self._stopped[kind] = thread
                del self._threads[kind]
                for mix_input in self.inputs.values():
                    self._detach(mix_input, kind)

    @property
    def caption_overlay(self) -> CaptionOverlay | None:
        """The view's burnt-in captions, while the room has them on for this view."""
        return self._captions

    @caption_overlay.setter
    def caption_overlay(self, overlay: CaptionOverlay | None) -> None:
        if overlay is self._captions:
            return
        self._captions = overlay
        # The video thread builds a compositor with (or without) the captions' overlay.
        self._look = self._look_of(self.view)

    def _hearing_wanted(self) -> bool:
        """Whether the audio thread runs for voice activity alone, with nobody listening.

        The picture's speaker border, the lecture layout's large region and the room's
        active-speaker changes follow who speaks, so a view watched without its audio
        (a video-only subscriber or recording) still mixes its inputs for their levels.
        It encodes nothing then: the audio loop encodes only for outputs with receivers.
        """
        return self.vad and bool(self._video_outs) and bool(self._audio_inputs)

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this view carries."""
        return {"room": self.room_id, "view": self.id}

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def _compositor(self, look: tuple[Any, ...]) -> VideoCompositor:
        """Built on the video thread: labels, marks and overlays are made here, not on the loop."""
        fit_policy, background, style, overlay_specs, budget, captions = look
        overlays: list[tuple[str, Overlay]] = []
        for spec, options in overlay_specs:
            try:
                overlays.append((spec, load_overlay(spec, dict(options))))
            except OverlayError as exc:
                # The options were checked when the room took them; this is the overlay's
                # own constructor failing: the view goes on without it.
                logger.warning("overlay not drawn: %s", exc, extra=self.log_ids)
        if captions is not None:
            # Last: the captions are drawn over the other overlays, within the same budget.
            overlays.append(("captions", captions))
        return VideoCompositor(
            self.width,
            self.height,
            background=background,
            fit_policy=fit_policy,
            frame_timeout=self.frame_timeout,
            decorations=Decorations(style, self.height),
            overlays=OverlayRunner(overlays, budget, self.log_ids) if overlays else None,
        )

    def _video_loop(self, stop: threading.Event) -> None:
        look = self._look
        compositor = self._compositor(look)
        # Fallen behind by more than a frame: the missed frames are skipped.
        for tick, missed in ticks(stop, 1.0 / self.framerate, max_lag=1):
            self.stats.dropped += missed
            assignments, version = self._assignments
            if self._look is not look:
                look = self._look  # re-laid with another fit policy or background
                compositor = self._compositor(look)
            started = time.thread_time()
            canvas = compositor.compose(
                assignments, self._pictures, version, time.monotonic(), self._speaking
            )
            # No copy: every output encodes on this thread before the next compose,
            # and the encoders copy what they keep.
            frame = av.VideoFrame.from_numpy_buffer(canvas, format="yuv420p")
            self.stats.composite_seconds += time.thread_time() - started
            pts = round(tick * 90000 / self.framerate)
            for output in self._video_outs:
                try:
                    output.encode(frame, pts)
                except Exception:
                    logger.exception("encoding failed", extra=self.log_ids)
            self.stats.frames += 1

    def _audio_loop(self, stop: threading.Event) -> None:
        mix = AudioMix(
            channels=AUDIO_CHANNELS,
            samples=AUDIO_SAMPLES,
            selection=TalkerSelection(self.max_mixed_talkers),
        )
        vad = VoiceActivity()
        full_encoder = OpusEncoder(AUDIO_CHANNELS)
        # The last full mixes, oldest first: they prime an output's new own encoder.
        history: deque[np.ndarray] = deque(maxlen=PRIMING_TICKS)
        previous: tuple[tuple[str, str, AudioSink], ...] = ()
        for tick, _ in ticks(stop, AUDIO_SAMPLES / 48000, max_lag=5):
            inputs = self._audio_inputs
            if inputs is not previous:
                # Inputs gone from the snapshot are forgotten here, on this thread: only
                # the snapshot's inputs are read below, so none of them comes back.
                current = {stream_id for stream_id, _, _ in inputs}
                for stream_id, _, _ in previous:
                    if stream_id not in current:
                        vad.remove(stream_id)
                        mix.remove(stream_id)
                previous = inputs
            chunks: dict[str, np.ndarray] = {}
            for stream_id, _, sink in inputs:
                chunk = sink.read()
                if chunk is not None:
                    chunks[stream_id] = chunk
            result = mix.mix(chunks)
            if self.vad:
                changed = vad.update(result.levels)
                self._speaking = vad.active  # the video thread's speaker border reads it
                if changed is not None:
                    self._loop.call_soon_threadsafe(self._set_active_input, changed)
            pts = tick * AUDIO_SAMPLES
            full_packets: list[Any] | None = None
            # A participant is heard in the full mix through (at most) one of its
            # streams: that one's mix-minus is what it gets.
            owners: dict[str, str] = {}
            for stream_id, owner, _ in inputs:
                if stream_id in result.minus or owner not in owners:
                    owners[owner] = stream_id
            batch: list[tuple[MixedAudioOutput, list[Any]]] = []
            for output in self._audio_outs:
                own = owners.get(output.key) if output.key is not None else None
                try:
                    if own is not None and own in result.minus:
                        packets = output.encode_minus(result.minus[own], pts, history)
                    else:
                        output.release_own_encoder()
                        if full_packets is None:
                            full_packets = full_encoder.encode(result.full, pts)
                        packets = full_packets
                except Exception:
                    logger.exception("audio encoding failed", extra=self.log_ids)
                    continue
                if packets:
                    batch.append((output, packets))
            MixedAudioOutput.deliver_all(self._loop, batch)
            history.append(result.full)
            self.stats.audio_ticks += 1
        # Nobody is heard while the audio thread is stopped: no speaker's border either.
        self._speaking = None

    def close(self) -> None:
        """Idempotent: stops the threads, detaches from the inputs, ends every output."""
        if self.closed:
            return
        self.closed = True
        self._video_outs = ()
        self._audio_outs = ()
        self._update_threads()
        for mix_input in list(self.inputs.values()):
            self._detach(mix_input, "video")
            self._detach(mix_input, "audio")
        self.inputs.clear()
        for video_output in self.video_outputs.values():
            video_output.close()
        for audio_output in self.audio_outputs.values():
            audio_output.close()
        self.video_outputs.clear()
        self.audio_outputs.clear()
