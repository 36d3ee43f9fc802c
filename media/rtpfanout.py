"""Shared fan-out: each output packetised once, protected and sent to its subscribers off the loop.

An `RtpOutput` is one encoded output (a `PacketSource`: one format of a view
or a forward stream). It packetises each encoded frame once and keeps one
retransmission history for every subscriber. A `SharedRtpTrack` is one
subscriber's sender: per packet only its header (SSRC, sequence number,
timestamp offset, payload type, extensions), SRTP protection with its own key
and the send. The `FanoutWorker` thread does that work for every subscriber
of a frame in one go and sends each subscriber's packets of a frame with one
`sendmmsg` (media/udpbatch.py).

aiortc keeps the peer connection, ICE, DTLS and RTCP: the sender still answers
SDP, sends its RTCP sender reports (with the counts reported here) and hears
NACK, PLI/FIR and REMB; a NACK is answered from the output's history, a
PLI/FIR goes to the source (rate-limited there: `KeyframeRequester`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender, clock
from aiortc.codecs import get_encoder, is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from pylibsrtp import Policy, Session

from . import aiortcext
from .mediasource import Packet, PacketSource
from .rtpheader import (
    RtpHeaderTemplate,
    SentRuns,
    abs_send_time,
    shift_picture_id,
    vp8_picture_id,
    with_picture_id,
)
from .threadstart import LaunchedThread
from .transportcc import TRANSPORT_CC_URI
from .transportwide import TransportWideCc
from .udpbatch import UdpBatchSender

logger = logging.getLogger(__name__)

# Packets of shared history per output: ~5 s of a 1.5 Mbit/s view, 20 s of Opus.
HISTORY_SIZE = 1024
# Frames waiting for the sending thread beyond which outputs skip frames (and every subscriber
# of a skipped output restarts at a keyframe) instead of queueing without bound.
MAX_BACKLOG = 120
# RTP timestamp step from the last packet of an old output to the first of a new one.
VIDEO_STEP = 3000
AUDIO_STEP = 960


class OutputFrame:
    """One encoded frame of an output, packetised: the payloads every subscriber shares."""

    __slots__ = ("first_index", "keyframe", "octets", "output", "payloads", "timestamp")

    def __init__(
        self,
        output: RtpOutput,
        first_index: int,
        payloads: list[bytes],
        timestamp: int,
        keyframe: bool,
    ) -> None:
        self.output = output
        self.first_index = first_index
        self.payloads = payloads
        self.timestamp = timestamp
        self.keyframe = keyframe
        self.octets = sum(map(len, payloads))


class FanoutWorker:
    """The thread that rewrites, protects and sends the shared packets of every output.

    Everything a subscriber's sending state holds (sequence numbers, SRTP
    session, socket) is touched only here, in queue order: a NACK, a frame
    and a close of one subscriber never race. The thread runs while any
    subscriber track exists (a server without subscribers keeps no thread).
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: LaunchedThread | None = None
        self._tracks = 0
        self.frames = 0

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def track_opened(self) -> None:
        """A subscriber track exists (event loop thread): the thread must run."""
        self._tracks += 1
        if self._thread is None:
            self._queue = queue.SimpleQueue()
            self._thread = LaunchedThread(self._run, "rtp fan-out", (self._queue,))
            self._thread.launch()

    def track_closed(self) -> None:
        """A subscriber track is gone (its last item is queued); the last one ends the thread."""
        self._tracks -= 1
        if self._tracks == 0 and self._thread is not None:
            # The thread ends after what is queued; a new track gets a new thread and queue.
            self._queue.put(("stop",))
            self._thread = None

    def put(self, item: tuple[Any, ...]) -> None:
        self._queue.put(item)

    def sync(self, timeout: float) -> bool:
        """Wait (any thread but the worker) until everything queued so far is done."""
        done = threading.Event()
        self._queue.put(("sync", done))
        return done.wait(timeout)

    def _run(self, items: queue.SimpleQueue[tuple[Any, ...]]) -> None:
        while True:
            item = items.get()
            try:
                if item[0] == "frame":
                    self._send_frame(item[1], item[2])
                elif item[0] == "nack":
                    item[1].retransmit_now(item[2])
                elif item[0] == "close":
                    item[1].close_route()
                elif item[0] == "sync":
                    item[1].set()
                elif item[0] == "stop":
                    return
            except Exception:
                logger.exception("fan-out worker: %s failed", item[0])

    def _send_frame(self, frame: OutputFrame, tracks: tuple[SharedRtpTrack, ...]) -> None:
        self.frames += 1
        ntp = clock.current_ntp_time()
        abs_time = abs_send_time(ntp)
        for track in tracks:
            try:
                track.send_frame(frame, ntp, abs_time)
            except Exception:
                # One subscriber's failure must not cost the others their frame.
                logger.exception("fan-out to one subscriber failed")


_worker = FanoutWorker()


def fanout_worker() -> FanoutWorker:
    """The process's one fan-out thread (started on first use)."""
    return _worker


_outputs: weakref.WeakKeyDictionary[PacketSource, RtpOutput] = weakref.WeakKeyDictionary()


class RtpOutput:
    """One output (a shared PacketSource) packetised once, with one retransmission history."""

    def __init__(self, source: PacketSource, worker: FanoutWorker) -> None:
        self.source = source
        self.kind = source.kind
        self.worker = worker
        self.vp8 = source.codec == "vp8"
        channels = 2 if source.codec == "opus" else None
        self._packer = get_encoder(
            RTCRtpCodecParameters(
                mimeType=f"{source.kind}/{source.codec}",
                clockRate=source.clock_rate,
                channels=channels,
            )
        )
        self._tracks: list[SharedRtpTrack] = []
        self._snapshot: tuple[SharedRtpTrack, ...] = ()
        self.next_index = 0
        self._payloads: list[bytes | None] = [None] * HISTORY_SIZE
        self._indexes: list[int] = [-1] * HISTORY_SIZE
        self._timestamps: list[int] = [0] * HISTORY_SIZE
        self._markers = bytearray(HISTORY_SIZE)
        self.frames = 0
        self.skipped_frames = 0
        # The latest receiver report of each subscriber: track id -> (fraction lost /256, jitter).
        self._reports: dict[int, tuple[int, int]] = {}

    @classmethod
    def of(cls, source: PacketSource) -> RtpOutput:
        """The source's output (one per source, made on first use)."""
        output = _outputs.get(source)
        if output is None:
            output = cls(source, fanout_worker())
            _outputs[source] = output
        return output

    @property
    def subscriber_count(self) -> int:
        return len(self._tracks)

    def add(self, track: SharedRtpTrack) -> None:
        if track in self._tracks:
            return
        self._tracks.append(track)
        self._snapshot = tuple(self._tracks)
        if len(self._tracks) == 1:
            self.source.add_sink(self)

    def remove(self, track: SharedRtpTrack) -> None:
        if track not in self._tracks:
            return
        self._tracks.remove(track)
        self._snapshot = tuple(self._tracks)
        self._reports.pop(id(track), None)
        if not self._tracks:
            self.source.remove_sink(self)

    def on_packet(self, packet: Packet, keyframe: bool) -> None:
        """A frame of the source (event loop thread): packetise once, hand to the worker."""
        payloads, timestamp = self._packer.pack(packet)
        if not payloads:
            return
        first = self.next_index
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            slot = (first + i) % HISTORY_SIZE
            self._payloads[slot] = payload
            self._indexes[slot] = first + i
            self._timestamps[slot] = timestamp
            self._markers[slot] = i == last
        self.next_index = first + len(payloads)
        self.frames += 1
        if not self._snapshot:
            return
        if self.worker.backlog > MAX_BACKLOG:
            # The sending thread is behind: skip this frame for everyone; a picture chain is
            # then broken, so every subscriber restarts at the next keyframe.
            self.skipped_frames += 1
            for track in self._snapshot:
                track.resync()
            return
        frame = OutputFrame(self, first, payloads, timestamp, keyframe)
        self.worker.put(("frame", frame, self._snapshot))

    def history(self, index: int) -> tuple[bytes, int, int] | None:
        """Payload, timestamp and marker of packet `index`, if still kept (any thread)."""
        slot = index % HISTORY_SIZE
        payload = self._payloads[slot]
        if payload is None or self._indexes[slot] != index:
            return None
        return payload, self._timestamps[slot], self._markers[slot]

    def receiver_report(self, track: SharedRtpTrack, fraction_lost: int, jitter: int) -> None:
        self._reports[id(track)] = (fraction_lost, jitter)

    def receiver_summary(self) -> dict[str, float]:
        """The subscribers' receiver reports, aggregated: how many, mean and worst loss."""
        reports = list(self._reports.values())
        if not reports:
            return {"reports": 0, "fraction_lost_mean": 0.0, "fraction_lost_max": 0.0}
        losses = [r[0] / 256 for r in reports]
        return {
            "reports": len(reports),
            "fraction_lost_mean": sum(losses) / len(losses),
            "fraction_lost_max": max(losses),
        }


# The fewest bytes of retransmissions a budget lets through at once: two full packets.
RETRANSMIT_BURST = 2_400


class SharedRtpTrack(MediaStreamTrack):
    """One subscriber's sender of a shared output: header rewrite, SRTP and send only.

    Replaces `PacketTrack` for subscriptions (same interface: attach, pause,
    keyframe requests). aiortc's sender gets it as its track but never a
    packet from it: once aiortc starts the sender (DTLS is up), the track
    takes the SRTP key and the ICE socket and the worker thread sends.
    """

    def __init__(self, kind: str, source: PacketSource) -> None:
        super().__init__()
        self.kind = kind
        self.source: PacketSource | None = None
        self.output: RtpOutput | None = None
        self._ended = asyncio.Event()
        self._event_loop = asyncio.get_running_loop()
        self._sender: RTCRtpSender | None = None
        self._paused = False
        self._waiting_keyframe = kind == "video"
        self._rebase = False
        self._ready = False
        self._closed = False
        # A rung of the same view being switched to: taken at its first keyframe (worker).
        self._pending: RtpOutput | None = None
        self.rung_switches = 0
        # Called on the event loop thread after a switch of rung, with the sequence number
        # of the new rung's first packet (feedback about earlier ones is the old rung's).
        self.on_rung_switch: Callable[[int], None] | None = None
        # Bytes per second of retransmissions answered (None: every NACK): on a link that
        # drops much, answering every NACK fills it with repeats and starves the new rung.
        self.retransmit_budget: float | None = None
        self._rtx_tokens = 0.0
        self._rtx_time = 0.0
        self.retransmits_refused = 0
        self.retransmits_over_budget = 0  # of those refused: the rest were of a rung left
        # Worker-thread state (set up in _on_start, before _ready).
        self._template: RtpHeaderTemplate | None = None
        self._rtx_template: RtpHeaderTemplate | None = None
        self._srtp: Session | None = None
        # The transport's sequence numbers and sent log, when the subscriber negotiated
        # transport-cc (set in _on_start, before _ready).
        self.transport_cc: TransportWideCc | None = None
        self._route: UdpBatchSender | None = None
        self._runs = SentRuns(0)
        self._rtx_sequence = 0
        self._count = 0
        self._expect: tuple[RtpOutput | None, int] = (None, -1)
        self._timestamp_offset = 0
        self._last_timestamp: int | None = None
        # VP8 PictureIDs go on across outputs (_continue_picture_ids).
        self._picture_id_output: RtpOutput | None = None
        self._picture_id_offset = 0
        self._last_picture_id: int | None = None
        # Figures (written by the worker, read anywhere).
        self.delivered = 0  # frames
        self.packets_sent = 0
        self.octets_sent = 0
        self.retransmitted = 0
        self.nacks_unanswered = 0
        self.attach(source)
        fanout_worker().track_opened()

    # -- event loop thread -------------------------------------------------

    def attach(self, source: PacketSource) -> None:
        """Start taking packets from `source` (detaching from the previous one)."""
        if self.source is source:
            return
        self._drop_pending()
        if self.output is not None:
            self.output.remove(self)
            self._rebase = self._last_timestamp is not None
        self.source = source
        self._waiting_keyframe = self.kind == "video"
        self.output = RtpOutput.of(source)
        self.output.add(self)
        if self._ready:
            # Not before: a keyframe it cannot send yet would only make the one it asks for
            # once started (_on_start) wait out the source's interval.
            self._request_first_keyframe()

    def use_sender(self, sender: RTCRtpSender) -> None:
        """Send for `sender` once aiortc starts it; answer its NACKs; hear its reports."""
        self._sender = sender
        aiortcext.on_sender_start(sender, self._on_start)
        aiortcext.on_retransmit_request(sender, self._on_nack)
        aiortcext.watch_receiver_reports(sender, self._on_report)

    def request_keyframe(self) -> None:
        if self.source is not None and self.kind == "video":
            self.source.request_keyframe()

    def _request_first_keyframe(self) -> None:
        if self.source is not None and self.kind == "video":
            self.source.request_first_keyframe()

    def resync(self) -> None:
        """Its picture chain broke (frames skipped): restart at the next keyframe."""
        if self.kind == "video" and not self._waiting_keyframe:
            self._waiting_keyframe = True
            self.request_keyframe()

    def set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        if not paused:
            self._waiting_keyframe = self.kind == "video"
        self._paused = paused
        if not paused:
            self._request_first_keyframe()

    def _on_start(self, parameters: RTCRtpSendParameters) -> None:
        if self._ready or self._closed or self._sender is None:
            return
        sender = self._sender
        dtls = sender.transport
        codec = parameters.codecs[0]
        if codec.payloadType is None:
            raise ValueError(f"{codec.mimeType} has no payload type")
        rtx_type = next(
            (
                c.payloadType
                for c in parameters.codecs
                if is_rtx(c) and c.parameters.get("apt") == codec.payloadType
            ),
            None,
        )
        extension_ids = {e.uri: e.id for e in parameters.headerExtensions}
        mid = parameters.muxId or None
        ssrc, rtx_ssrc = aiortcext.sender_ssrcs(sender)
        self._template = RtpHeaderTemplate(ssrc, codec.payloadType, extension_ids, mid)
        if rtx_type is not None:
            self._rtx_template = RtpHeaderTemplate(rtx_ssrc, rtx_type, extension_ids, mid)
        if TRANSPORT_CC_URI in extension_ids:
            self.transport_cc = TransportWideCc.of(dtls)
        key, profile = aiortcext.sender_srtp_key(dtls)
        policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        # A retransmission without RTX repeats a sequence number.
        policy.allow_repeat_tx = True
        policy.window_size = 1024
        self._srtp = Session(policy)
        route = aiortcext.sender_route(dtls)
        if route is not None:
            self._route = UdpBatchSender(*route)
        else:
            logger.info("subscriber's ICE pair is not a UDP socket: sending through aiortc")
        origin = int.from_bytes(os.urandom(4), "big")
        self._runs = SentRuns(origin & 0x7FFF)  # lower half: no early wrap (as aiortc)
        self._rtx_sequence = (origin >> 16) & 0x7FFF
        self._timestamp_offset = int.from_bytes(os.urandom(4), "big")
        self._ready = True
        self._request_first_keyframe()

    def _on_nack(self, sequence_number: int) -> None:
        if self._ready and not self._closed:
            fanout_worker().put(("nack", self, sequence_number))

    def _on_report(self, fraction_lost: int, jitter: int) -> None:
        if self.output is not None:
            self.output.receiver_report(self, fraction_lost, jitter)

    async def recv(self) -> Packet:  # type: ignore[override]  # never: the worker sends
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._drop_pending()
        if self.output is not None:
            self.output.remove(self)
            self.output = None
        self.source = None
        if not self._closed:
            self._closed = True
            worker = fanout_worker()
            worker.put(("close", self))
            worker.track_closed()
        super().stop()
        self._ended.set()

    # -- worker thread ---------------------------------------------------------

    def send_frame(self, frame: OutputFrame, ntp: int, abs_time: int) -> None:
        """The subscriber's packets of `frame`: rewrite, protect, send (worker thread)."""
        if not self._ready or self._closed or self._paused:
            return
        if frame.output is not self.output:
            if frame.output is not self._pending or not frame.keyframe:
                return
            if self.kind == "audio" and self._tick_sent(frame.timestamp):
                # The old encoding already sent this tick: the new one, stamped from
                # the same clock, goes on from its next packet (no repeat, no gap).
                self._take_pending(frame.output, frame.timestamp, rebase=False)
                return
            self._take_pending(frame.output, frame.timestamp)
        if self._waiting_keyframe:
            if not frame.keyframe:
                return
            self._waiting_keyframe = False
        template = self._template
        srtp = self._srtp
        assert template is not None and srtp is not None
        if self._rebase:
            self._rebase = False
            if self._last_timestamp is not None:
                step = VIDEO_STEP if self.kind == "video" else AUDIO_STEP
                self._timestamp_offset = self._last_timestamp + step - frame.timestamp
        count = self._count
        payloads = frame.payloads
        if frame.output.vp8:
            payloads = self._continue_picture_ids(frame.output, payloads)
        if self._expect[0] is not frame.output or self._expect[1] != frame.first_index:
            self._runs.start(
                count,
                frame.first_index,
                frame.output,
                self._timestamp_offset,
                self._picture_id_offset,
            )
        timestamp = (frame.timestamp + self._timestamp_offset) & 0xFFFFFFFF
        template.set_abs_send_time(abs_time)
        sequence = self._runs.origin + count
        protect = srtp.protect
        packet = template.packet
        last = len(payloads) - 1
        transport_cc = self.transport_cc
        now = time.monotonic()
        datagrams = []
        for i, payload in enumerate(payloads):
            if transport_cc is not None:
                size = template.length + len(payload)
                template.set_transport_sequence(transport_cc.sent(now, size))
            datagrams.append(protect(packet(sequence + i, timestamp, i == last, payload)))
        self._send(datagrams)
        sent = len(payloads)
        self._count = count + sent
        self._expect = (frame.output, frame.first_index + sent)
        self._last_timestamp = timestamp
        self.delivered += 1
        self.packets_sent += sent
        self.octets_sent += frame.octets
        if self._sender is not None:
            aiortcext.report_sent(self._sender, self.packets_sent, self.octets_sent, ntp, timestamp)

    def _continue_picture_ids(self, output: RtpOutput, payloads: list[bytes]) -> list[bytes]:
        """The frame's payloads with VP8 PictureIDs that go on from the last this subscriber
        got (worker thread): each output numbers its own frames, and a browser drops a
        frame, even a keyframe, whose PictureID is not newer than the last it decoded."""
        found = vp8_picture_id(payloads[0])
        if found is None:
            return payloads
        if output is not self._picture_id_output:
            self._picture_id_output = output
            if self._last_picture_id is not None:
                self._picture_id_offset = (self._last_picture_id + 1 - found[0]) & 0x7FFF
        picture_id = (found[0] + self._picture_id_offset) & 0x7FFF
        self._last_picture_id = picture_id
        if not self._picture_id_offset:
            return payloads
        return [with_picture_id(payload, picture_id) for payload in payloads]

    def retransmit_now(self, sequence_number: int) -> None:
        """Answer one NACKed sequence number from the output's history (worker thread)."""
        if not self._ready or self._closed:
            return
        found = self._runs.lookup(sequence_number, self._count)
        stored = found[0].output.history(found[1]) if found is not None else None
        if found is None or stored is None:
            self.nacks_unanswered += 1
            return
        run = found[0]
        payload, timestamp, marker = stored
        # A packet of a rung the subscriber has left is of no use after the new rung's
        # keyframe; repeating it only takes the link from the new rung.
        if self._pending is None and run.output is not self.output:
            self.retransmits_refused += 1
            return
        if not self._within_budget(len(payload)):
            self.retransmits_refused += 1
            self.retransmits_over_budget += 1
            return
        timestamp = (timestamp + run.timestamp_offset) & 0xFFFFFFFF
        if run.picture_id_offset:
            payload = shift_picture_id(payload, run.picture_id_offset)
        assert self._template is not None and self._srtp is not None
        if self._rtx_template is not None:
            # RFC 4588: the original sequence number, then the payload, on the RTX stream.
            template = self._rtx_template
            payload = sequence_number.to_bytes(2, "big") + payload
            sequence_number = self._rtx_sequence
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        else:
            template = self._template
        if self.transport_cc is not None:
            # A repeat is a packet of its own on the transport: it gets its own number.
            size = template.length + len(payload)
            template.set_transport_sequence(self.transport_cc.sent(time.monotonic(), size))
        data = template.packet(sequence_number, timestamp, marker, payload)
        self._send([self._srtp.protect(data)])
        self.retransmitted += 1

    def _within_budget(self, size: int) -> bool:
        """Take `size` bytes of the retransmission budget (worker thread); False: over it."""
        budget = self.retransmit_budget
        if budget is None:
            return True
        now = time.monotonic()
        # At most half a second's worth saved up, and never too little for a whole packet.
        cap = max(budget / 2, RETRANSMIT_BURST)
        self._rtx_tokens = min(cap, self._rtx_tokens + (now - self._rtx_time) * budget)
        self._rtx_time = now
        if self._rtx_tokens < size:
            return False
        self._rtx_tokens -= size
        return True

    def _send(self, datagrams: list[bytes]) -> None:
        if self._route is not None:
            self._route.send(datagrams)
        elif self._sender is not None:
            self._event_loop.call_soon_threadsafe(self._send_through_ice, datagrams)

    def _send_through_ice(self, datagrams: list[bytes]) -> None:
        if self._sender is None or self._closed:
            return
        task = asyncio.ensure_future(aiortcext.send_through_ice(self._sender.transport, datagrams))
        task.add_done_callback(_ignore_result)

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending is not self.output:
            pending.remove(self)

    def _tick_sent(self, timestamp: int) -> bool:
        """Whether a packet of the output's `timestamp` is at or before the last sent."""
        if self._last_timestamp is None:
            return False
        behind = (self._last_timestamp - (timestamp + self._timestamp_offset)) & 0xFFFFFFFF
        return behind < 0x80000000

    def _take_pending(self, output: RtpOutput, timestamp: int, rebase: bool = True) -> None:
        """The new rung's keyframe is here (worker thread): it is the track's output now.

        Rungs of a view share the clock: the keyframe may be of the very tick whose
        frame of the old rung was just sent. The same timestamp would make the receiver
        join both into one frame, so from here on the timestamps are one step later
        (unless `rebase` is False: that frame is not sent, the next one follows on).
        """
        if rebase and self._last_timestamp is not None:
            behind = (self._last_timestamp - (timestamp + self._timestamp_offset)) & 0xFFFFFFFF
            if behind < 0x80000000:  # at or before the last sent
                self._timestamp_offset += behind + 1
        previous = self.output
        self.output = output
        self.source = output.source
        self._pending = None
        self.rung_switches += 1
        first = (self._runs.origin + self._count) & 0xFFFF
        if previous is not None:
            self._event_loop.call_soon_threadsafe(self._settle_switch, previous, first)

    def _settle_switch(self, previous: RtpOutput, first_sequence: int) -> None:
        """Loop thread, after a switch: leave the old rung's output, stay in the new one's
        (a `_drop_pending` racing the switch may have left it)."""
        if self._closed:
            return
        if self.on_rung_switch is not None:
            self.on_rung_switch(first_sequence)
        if self.output is not None:
            self.output.add(self)
        if previous is not self.output and previous is not self._pending:
            previous.remove(self)

    def close_route(self) -> None:
        """Release the socket (worker thread: after every packet queued before the close)."""
        self._ready = False
        if self._route is not None:
            self._route.sock.close()
            self._route = None

    @property
    def dropped(self) -> int:
        """Packets the socket refused (its send buffer was full)."""
        return self._route.dropped if self._route is not None else 0


def switch_rung(track: SharedRtpTrack, source: PacketSource) -> None:
    """Move `track` to `source`, another rung of the same view, without a freeze.

    Audio (every packet starts anew) switches at the new encoding's first packet of a
    tick the old one has not sent: both carry the view's clock, so the subscriber's
    sequence numbers and timestamps go on without a repeat or a gap.

    The track joins the new rung's output at once but goes on sending the
    current one until the new rung's next keyframe (requested here); that
    frame is the first it sends of the new rung. Sequence numbers go on from
    the last sent; timestamps keep their offset, as every rung of a view is
    stamped from the same clock. Event loop thread.
    """
    if track.output is None or track._closed:
        return
    if source is track.source:
        track._drop_pending()  # back to the rung it still sends
        return
    output = RtpOutput.of(source)
    if output is track._pending:
        return
    track._drop_pending()
    track._pending = output
    output.add(track)
    if track.kind == "video":
        source.request_first_keyframe()


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("send through ICE failed: %s", task.exception())
