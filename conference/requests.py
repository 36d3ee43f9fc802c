"""Typed requests and results of the room service (pure: no I/O, no asyncio).

Everything here is plain data that serializes to JSON, so that a call can cross
processes (a bus between a portal and the agent hosting the room). Every call that
concerns a participant carries a :class:`ParticipantRef` (room id and participant id),
which is enough for a router to find the room's host. Front ends parse their own wire
format (OWT's Client-Portal messages, REST bodies, PeerJS offers) into these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from tessera.config.validation import describe_validation_error

from .errors import ConferenceError
from .events import ClientAddress

__all__ = [
    "BackResult",
    "ClientAddress",
    "Grant",
    "JoinRequest",
    "JoinResult",
    "OutputMedia",
    "ParticipantInfo",
    "ParticipantRef",
    "PublishRequest",
    "PublishTrack",
    "RecordingRequest",
    "SessionResult",
    "SignalingRequest",
    "StreamControlRequest",
    "StreamingOutRequest",
    "SubscribeRequest",
    "SubscribeTrack",
    "SubscriptionControlRequest",
    "SubscriptionUpdate",
    "TextRequest",
    "TokenResult",
    "TrackUpdate",
    "check_tracks",
    "media_kinds",
    "parse_subscription_update",
    "view_label",
]

Kind = Literal["audio", "video"]
Id = Annotated[str, Field(min_length=1, max_length=128)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ParticipantRef(_Model):
    """A participant of a room: what every participant call names it by."""

    room_id: Id
    participant_id: Id


class Grant(_Model):
    """What a verified join token grants: a seat in a room of a service."""

    service_id: str
    room: str  # the room's id or name, as the token names it
    user: str
    role: str


class JoinRequest(_Model):
    """A client joins a room (its id or name) of a service as ``user`` with ``role``."""

    service_id: str
    room: str
    user: str
    role: str
    client: ClientAddress
    # With reconnection: a ticket is issued, and the participant is kept while its
    # connection is away, keep_time seconds if the client asks for less than the server's
    # setting (0: the server's). Without: it leaves when its connection is lost.
    reconnection: bool = False
    keep_time: float = Field(default=0.0, ge=0)
    # The client's protocol version, given back on relogin (the portal writes pushes in it).
    protocol: str = "1.2"


class JoinResult(_Model):
    """What a front end needs to answer a login: the participant and the room as it is."""

    participant: ParticipantRef
    user: str
    role: str
    permission: dict[str, Any]
    room: dict[str, Any]  # {id, views, participants, streams}
    ticket: str | None = None


class BackResult(_Model):
    """A participant taken back with its reconnection ticket (relogin)."""

    participant: ParticipantRef
    ticket: str
    messages: list[dict[str, Any]]  # the notifications missed, {event, data, seq}
    protocol: str


class ParticipantInfo(_Model):
    """Who holds a reconnection ticket (the web app's callers prove themselves with it)."""

    participant: ParticipantRef
    service_id: str
    user: str
    role: str


class PublishTrack(_Model):
    """A track to publish: its kind, the m-line it comes on, what it is."""

    kind: Kind
    mid: str = ""  # "": an older client's; the offer's first m-line of this kind
    source: str = "mic"
    parameters: dict[str, Any] = Field(default_factory=dict)


class PublishRequest(_Model):
    """Publish tracks on a transport (``transport_id`` None: a new one)."""

    tracks: list[PublishTrack]
    attributes: dict[str, Any] | None = None
    transport_id: str | None = None


class SubscribeTrack(_Model):
    """A track to receive: its kind, the m-line, the stream it comes from, in which format."""

    kind: Kind
    stream_id: Id
    mid: str = ""
    parameters: dict[str, Any] | None = None
    format: dict[str, Any] | None = None


class SubscribeRequest(_Model):
    """Subscribe to tracks of streams on a transport (``transport_id`` None: a new one)."""

    tracks: list[SubscribeTrack]
    transport_id: str | None = None


class SessionResult(_Model):
    """A new publication or subscription and the transport that carries it."""

    id: str
    transport_id: str


class SignalingRequest(_Model):
    """An offer or a candidate for a transport (OWT's soac)."""

    transport_id: Id
    type: Literal["offer", "candidate", "removed-candidates"]
    sdp: str | None = None
    candidate: dict[str, Any] | None = None  # {candidate, sdpMid, sdpMLineIndex}


class StreamControlRequest(_Model):
    """pause/play a publication's tracks, mix/unmix it, set or get its region in a view."""

    stream_id: Id
    operation: Literal["pause", "play", "mix", "unmix", "set-region", "get-region"]
    data: Any = None


class SubscriptionControlRequest(_Model):
    """update a subscription's source or format, pause/play it, query its bandwidth."""

    subscription_id: Id
    operation: Literal["update", "pause", "play", "querybwe"]
    data: Any = None


class TextRequest(_Model):
    """A text message to one participant or to ``"all"``."""

    to: Id
    message: str


class OutputMedia(_Model):
    """Which stream each track of a recording or streaming-out comes from (None: no such
    track), and the video's parameters and format."""

    audio_from: str | None = None
    video_from: str | None = None
    video_parameters: dict[str, Any] | None = None
    video_format: dict[str, Any] | None = None  # {"codec": "h264"} for another format


class RecordingRequest(_Model):
    """Start a recording of a room's streams in a container ("auto": OWT's choice)."""

    container: str = "auto"
    media: OutputMedia


class PerStreamRecordingRequest(_Model):
    """Record each forward stream in its own file (Tessera's ``perStream``): every one of
    the room (neither set), those of ``participant``, or ``stream``; present and future."""

    container: str = "auto"
    participant: str | None = None
    stream: str | None = None


class StreamingOutRequest(_Model):
    """Push a room's streams out (RTMP, RTSP, HLS, DASH) to ``url``, or serve HLS
    (``url`` None)."""

    protocol: str
    url: str | None = None
    parameters: Any = None  # OWT's HlsParameters/DashParameters
    media: OutputMedia


class TokenResult(_Model):
    """A join token, and the room it is for (its id if the room exists already)."""

    token: str
    room_id: str | None
    room_name: str


class TrackUpdate(BaseModel):
    """One kind of a subscription-control ``update``: another stream, other parameters."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    from_: Id | None = Field(default=None, alias="from")
    parameters: dict[str, Any] | None = None


class SubscriptionUpdate(BaseModel):
    """The data of a subscription-control ``update``, as OWT's clients send it."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    audio: TrackUpdate | None = None
    video: TrackUpdate | None = None


def parse_subscription_update(data: Any) -> SubscriptionUpdate:
    """The update's data, or ConferenceError naming the bad field."""
    if not isinstance(data, dict):
        raise ConferenceError("Invalid update request: expected an object")
    try:
        return SubscriptionUpdate.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConferenceError(f"Invalid update request: {describe_validation_error(exc)}") from None


def media_kinds(data: Any) -> list[str]:
    """The kinds named by a pause/play ``data`` ("audio", "video" or "av")."""
    if data == "av":
        return ["audio", "video"]
    if data in ("audio", "video"):
        return [data]
    raise ConferenceError("Invalid track kind: expected 'audio', 'video' or 'av'")


def view_label(data: Any) -> str | None:
    """mix/unmix/get-region name the view directly; set-region as data.view."""
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("view"), str):
        return str(data["view"])
    return None


def check_tracks(what: str, kinds: Sequence[str], mids: Sequence[str]) -> None:
    """One track of each kind at most, and no two on the same m-line."""
    if len(set(kinds)) != len(kinds):
        raise ConferenceError(f"Invalid {what} request: one track of each kind at most")
    named = [mid for mid in mids if mid]
    if len(set(named)) != len(named):
        raise ConferenceError("Invalid request: two tracks with the same mid")
