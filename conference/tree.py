"""The ownership tree of the room service: services, their rooms, and how they are found.

The base of :class:`~tessera.conference.roomservice.RoomService` (which adds the
participant calls) through :class:`~tessera.conference.management.ManagementCalls`
(the management calls): what they share, nothing a front end calls by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.media.mediasource import ParameterError
from tessera.mixer.layout import LayoutError
from tessera.recorder.muxer import MuxerError
from tessera.recorder.perstream import PerStreamRecording
from tessera.recorder.recording import Recording, StoredRecording
from tessera.recorder.recovery import closed_after_interruption
from tessera.recorder.streamingout import StreamingOut
from tessera.webrtc_agent.agent import WebrtcAgent
from tessera.webrtc_agent.forwardstream import ForwardStream
from tessera.webrtc_agent.transport import SignalingError

from .background import spawn
from .context import ConferenceContext
from .errors import ConferenceError, ErrorCode, conflict, not_found
from .events import ClientRouter, LocalRouter
from .participant import Participant
from .records import ConferenceStore, RoomRecord
from .requests import ParticipantRef
from .room import Room
from .roomhost import LocalHost, RoomHost
from .roomoptions import OptionsError
from .service import Service
from .settings import ConferenceSettings
from .stats import AudioCounters, ConferenceStats, RungCounters, ViewCounters

logger = logging.getLogger(__name__)

# A room name shared by more rooms than this is reported with this many ids.
AMBIGUOUS_IDS_SHOWN = 5


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """The media layers' refusals, as the one error of the room service (same message)."""
    try:
        yield
    except (ParameterError, SignalingError, LayoutError, MuxerError, OptionsError) as exc:
        raise ConferenceError(str(exc)) from None


@dataclass(frozen=True)
class ResolvedRoom:
    """A room of a service named in a management call: stored, loaded, or both."""

    id: str
    record: RoomRecord | None
    loaded: Room | None

    @property
    def name(self) -> str:
        if self.record is not None:
            return self.record.name
        assert self.loaded is not None
        return self.loaded.name


class ConferenceTree:
    """Services (tenants) and their loaded rooms; participants found by reference."""

    def __init__(
        self,
        settings: ConferenceSettings,
        store: ConferenceStore,
        router: ClientRouter | None = None,
        host: RoomHost | None = None,
    ) -> None:
        self.router: ClientRouter = router if router is not None else LocalRouter()
        # Where rooms may be hosted: every room here, or (an agent) the cluster's placement.
        self.host: RoomHost = host if host is not None else LocalHost()
        self.agent = WebrtcAgent(
            stun_servers=list(settings.stun_servers),
            keyframe_min_interval=settings.keyframe_min_interval,
            max_transcodes=settings.max_transcodes,
        )
        self.context = ConferenceContext(
            settings=settings,
            store=store,
            agent=self.agent,
            router=self.router,
        )
        self.settings = settings
        self.store = store
        self.services: dict[str, Service] = {}
        # participant id -> room id: a reconnection ticket names only the participant.
        self._participant_rooms: dict[str, str] = {}
        # Called (without arguments) whenever a room closed: memory may be given back.
        self.room_closed_listeners: list[Callable[[], None]] = []
        self.closing = False
        self._drained: asyncio.Future[None] | None = None

    async def start(self, *, only_process: bool = True) -> None:
        """Read the ticket secret; if this is the ``only_process`` using the store (the
        embedded default), close what an earlier run left open: its recordings and
        streaming-outs are cut off, its ad-hoc rooms are gone."""
        self.context.ticket_secret = await self.store.ticket_secret()
        if only_process:
            await self._close_interrupted_recordings()
            await self.store.clear_adhoc_rooms()

    # -- the tree ---------------------------------------------------------

    def service(self, service_id: str) -> Service:
        """The running side of a service (created on first use)."""
        service = self.services.get(service_id)
        if service is None:
            service = self.services[service_id] = Service(self.context, self, service_id)
        return service

    @property
    def rooms(self) -> dict[str, Room]:
        """Every loaded room, by id."""
        return {room.id: room for s in self.services.values() for room in s.rooms.values()}

    @property
    def participants(self) -> dict[str, Participant]:
        """Every participant of every loaded room, by id (for operators and tests)."""
        return {p.id: p for room in self.rooms.values() for p in room.participants.values()}

    def room(self, room_id: str) -> Room | None:
        """The loaded room with that id."""
        for service in self.services.values():
            room = service.rooms.get(room_id)
            if room is not None and not room.closed:
                return room
        return None

    def participant(self, ref: ParticipantRef) -> Participant | None:
        """The participant a reference names, while it is in its room."""
        room = self.room(ref.room_id)
        participant = room.participants.get(ref.participant_id) if room else None
        return participant if participant is not None and not participant.closed else None

    def _participant(self, ref: ParticipantRef) -> tuple[Room, Participant]:
        room = self.room(ref.room_id)
        participant = room.participants.get(ref.participant_id) if room else None
        if room is None or participant is None or participant.closed:
            raise ConferenceError("Not logged in", ErrorCode.PARTICIPANT_NOT_FOUND, 404)
        return room, participant

    async def room_loading(
        self, service_id: str, room_id: str, name: str, *, persistent: bool
    ) -> None:
        """ServiceParent: a room is about to load here; its host may refuse it."""
        await self.host.claim(service_id, room_id, name, persistent)

    def room_unloaded(self, room: Room) -> None:
        """ServiceParent: a room closed; its participants are gone from the index."""
        spawn(
            self.host.release(room.service_id, room.id, room.name, room.persistent),
            "releasing a room",
        )
        for participant_id, room_id in list(self._participant_rooms.items()):
            if room_id == room.id:
                del self._participant_rooms[participant_id]
        for listener in list(self.room_closed_listeners):
            try:
                listener()
            except Exception:
                logger.exception("a room-closed listener failed", extra={"room": room.id})

    def _loaded(self, service_id: str, room_id: str) -> Room | None:
        service = self.services.get(service_id)
        room = service.rooms.get(room_id) if service is not None else None
        return room if room is not None and not room.closed else None

    async def _resolve(self, service_id: str, ref: str) -> ResolvedRoom:
        """The room a management call names: a room id, or a name only one room has.

        ConferenceError 404 if none has it, 409 if several rooms share the name.
        """
        record = await self.store.get_room(service_id, ref)
        loaded = self._loaded(service_id, ref)
        if record is not None or loaded is not None:
            return ResolvedRoom(ref, record, loaded)
        records = await self.store.find_rooms_by_name(
            service_id, ref, limit=AMBIGUOUS_IDS_SHOWN + 1
        )
        ids = [r.id for r in records]
        service = self.services.get(service_id)
        adhoc = [
            room
            for room in (service.rooms.values() if service is not None else ())
            if room.name == ref and not room.persistent and not room.closed and room.id not in ids
        ]
        ids += [room.id for room in adhoc]
        if not ids:
            raise not_found(
                "Room not found: no room of this service has that id or name",
                ErrorCode.ROOM_NOT_FOUND,
            )
        if len(ids) > 1:
            shown = ", ".join(ids[:AMBIGUOUS_IDS_SHOWN])
            more = " and more" if len(ids) > AMBIGUOUS_IDS_SHOWN else ""
            raise conflict(
                f"Room name {ref[:64]!r} is ambiguous: rooms {shown}{more} have it;"
                " name the room by its id"
            )
        room_id = ids[0]
        return ResolvedRoom(
            room_id, records[0] if records else None, self._loaded(service_id, room_id)
        )

    async def _remove(self, room: Room, participant: Participant, reason: str) -> None:
        self._participant_rooms.pop(participant.id, None)
        await room.remove_participant(participant, reason)

    async def drop(self, ref: ParticipantRef, reason: str) -> None:
        """Remove a participant (REST DELETE, a moderator): its front end ends its session
        (``drop`` on Socket.IO), then it leaves."""
        room, participant = self._participant(ref)
        await self._drop(room, participant, reason)

    async def _drop(self, room: Room, participant: Participant, reason: str) -> None:
        address, participant.address = participant.address, None
        if address is not None:
            self.router.disconnect(address, reason)
        await self._remove(room, participant, reason)

    # -- rooms (loading, closing) -------------------------------------------

    async def find_room(self, service_id: str, ref: str, *, create: bool) -> Room | None:
        """The room ``ref`` (id or name) of a service, loading it (or creating it ad hoc)."""
        return await self.service(service_id).room(ref, create=create)

    def loaded_room(self, service_id: str, ref: str) -> Room | None:
        service = self.services.get(service_id)
        return service.loaded_room(ref) if service is not None else None

    async def close_room(self, room: Room, reason: str) -> None:
        """Drop every participant (their front ends end their sessions), then close it."""
        if room.closing is None:
            room.closing = reason
        for participant in list(room.participants.values()):
            await self._drop(room, participant, reason)
        await self.service(room.service_id).close_room(room, reason)

    # -- recordings and streaming-outs --------------------------------------

    async def _close_interrupted_recordings(self) -> None:
        # A recording still "recording" in the store was cut off by a stop or a crash: its
        # file plays up to the cut. Its duration is read from the file once, here, off the
        # loop (a demux of the whole file), and stored.
        loop = asyncio.get_running_loop()
        for recording_id, info in await self.store.interrupted_recordings():
            closed = await loop.run_in_executor(None, closed_after_interruption, info)
            await self.store.update_recording(recording_id, closed)
        await self.store.close_interrupted_streaming_outs(
            "the server stopped while it was streaming"
        )

    async def recordings_of(
        self, service_id: str, room_id: str
    ) -> list[Recording | PerStreamRecording | StoredRecording]:
        """A room's running recordings, then those that finished (this run's and earlier)."""
        room = self.room(room_id)
        live: list[Recording | PerStreamRecording | StoredRecording] = []
        if room is not None and room.service_id == service_id:
            live.extend(room.recordings.values())
        known = {r.id for r in live}
        for recording_id, info, file in await self.store.list_recordings(service_id, room_id):
            if recording_id not in known:
                live.append(StoredRecording(recording_id, info, file))
        return live

    async def find_recording(
        self, service_id: str, room_id: str, recording_id: str
    ) -> Recording | PerStreamRecording | StoredRecording | None:
        recordings = await self.recordings_of(service_id, room_id)
        return next((r for r in recordings if r.id == recording_id), None)

    async def streaming_outs_of(self, service_id: str, room_id: str) -> list[dict[str, Any]]:
        """A room's streaming-outs (OWT's objects): running ones, then those that ended."""
        room = self.room(room_id)
        running = room.streaming_outs.values() if room and room.service_id == service_id else ()
        listed = [out.describe() for out in running]
        known = {info["id"] for info in listed}
        for streaming_id, info, _ in await self.store.list_streaming_outs(service_id, room_id):
            if streaming_id not in known:
                listed.append(info)
        return listed

    def running_streaming_out(
        self, service_id: str, room_id: str, streaming_id: str
    ) -> StreamingOut | None:
        room = self.room(room_id)
        if room is None or room.service_id != service_id:
            return None
        return room.streaming_outs.get(streaming_id)

    async def hls_directory(self, streaming_id: str) -> Path | None:
        """Where an HLS streaming-out served by Tessera writes (running or ended), or None."""
        for room in self.rooms.values():
            out = room.streaming_outs.get(streaming_id)
            if out is not None:
                return out.hls_directory
        directory = await self.store.streaming_out_directory(streaming_id)
        return Path(directory) if directory else None

    # -- lifecycle ------------------------------------------------------------

    def counters(self) -> ConferenceStats:
        """What runs now (plain data, for metrics)."""
        rooms = list(self.rooms.values())
        participants = [p for r in rooms for p in r.participants.values()]
        views = [v for r in rooms for v in r.views.values()]
        transcoders = sum(
            len(s.transcoders)
            for r in rooms
            for s in r.streams.values()
            if isinstance(s, ForwardStream)
        )
        finished = self.context.finished
        recordings = Counter(
            r.state
            for room in rooms
            for r in room.recordings.values()
            if isinstance(r, Recording)  # files, not the per-stream recordings they are part of
        )
        outs = Counter(o.state for room in rooms for o in room.streaming_outs.values())
        for (kind, state), count in finished.items():
            (recordings if kind == "recording" else outs)[state] += count
        return ConferenceStats(
            rooms=len(rooms),
            participants=len(participants),
            publications=sum(len(p.publications) for p in participants),
            subscriptions=sum(len(p.subscriptions) for p in participants),
            views=len(views),
            views_running=sum(v.running for v in views),
            encoders=sum(len(v.video_outputs) for v in views) + transcoders,
            transports=dict(Counter(t.pc.connectionState for t in self.agent.transports.values())),
            recordings=dict(recordings),
            streaming_outs=dict(outs),
            view_counters=[
                ViewCounters(
                    id=v.id,
                    running=v.running,
                    frames=v.stats.frames,
                    dropped=v.stats.dropped,
                    composite_seconds=v.stats.composite_seconds,
                    encode_seconds=sum(o.encode_seconds for o in v.video_outputs.values()),
                    started=v.stats.started,
                    input_frames=v.stats.input_frames,
                    fec_encode_seconds=v.stats.fec_encode_seconds,
                )
                for v in views
            ],
            rung_counters=_rung_counters(participants),
            audio_counters=_audio_counters(participants),
        )

    def stats(self) -> dict[str, Any]:
        rooms = list(self.rooms.values())
        return {
            "rooms": len(rooms),
            "participants": sum(len(r.participants) for r in rooms),
            **self.agent.stats(),
        }

    async def drain(self) -> None:
        """The start of a shutdown: joins are refused, every recording and streaming-out
        is finalised (idempotent). Front ends tell their clients themselves."""
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._drain())
        await asyncio.shield(self._drained)

    async def _drain(self) -> None:
        self.closing = True
        rooms = list(self.rooms.values())
        # Recordings first: a streaming-out to a stalled server must not cost a file.
        recordings = [r for room in rooms for r in room.recordings.values()]
        # Finalised as they would be on request (no reason: unlike a recording a crash cut
        # off, marked at the next start).
        await asyncio.gather(*(r.stop() for r in recordings), return_exceptions=True)
        logger.info("shutting down: %d recordings finalised", len(recordings))
        outs = [o for room in rooms for o in room.streaming_outs.values()]
        await asyncio.gather(*(o.stop() for o in outs), return_exceptions=True)
        await self.context.saves.flush()

    async def close(self, reason: str = "the server is shutting down") -> None:
        """Close every service's rooms and every transport (idempotent)."""
        self.closing = True
        for service in list(self.services.values()):
            await service.close(reason)
        await self.agent.close()
        await self.context.saves.flush()


def _rung_counters(participants: list[Any]) -> list[RungCounters]:
    """Adaptive subscribers per view and rung (tessera.webrtc_agent.adaptive)."""
    found: dict[tuple[str, int], list[Any]] = {}
    for participant in participants:
        for subscription in participant.subscriptions.values():
            adaptive = subscription.adaptive
            if adaptive is not None:
                stream_id = getattr(adaptive.stream, "id", "")
                found.setdefault((stream_id, adaptive.rung), []).append(adaptive)
    counters = []
    for (view, rung), subscribers in sorted(found.items()):
        step = subscribers[0].rungs[rung]
        counters.append(
            RungCounters(
                view=view,
                rung=rung,
                resolution=f"{step.width}x{step.height}",
                subscribers=len(subscribers),
                switches=sum(a.chooser.switches for a in subscribers),
            )
        )
    return counters


def _audio_counters(participants: list[Any]) -> list[AudioCounters]:
    """Subscribers of views' audio per encoding (tessera.webrtc_agent.adaptiveaudio)."""
    found: dict[tuple[str, str], list[Any]] = {}
    for participant in participants:
        for subscription in participant.subscriptions.values():
            audio = getattr(subscription, "adaptive_audio", None)
            if audio is not None:
                stream_id = getattr(audio.stream, "id", "")
                found.setdefault((stream_id, audio.encoding), []).append(audio)
    return [
        AudioCounters(
            view=view,
            encoding=encoding,
            subscribers=len(subscribers),
            switches=sum(a.switch.switches for a in subscribers),
        )
        for (view, encoding), subscribers in sorted(found.items())
    ]
