"""Validation of Client-Portal requests (pure: no I/O, no asyncio).

Each request is parsed into a small pydantic model. Real clients send fields
Tessera does not use, so unknown fields are ignored; the fields Tessera uses
are strictly typed, and a failure becomes a message naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tessera.conference.errors import ConferenceError
from tessera.config.validation import describe_validation_error

Id = Annotated[str, Field(min_length=1, max_length=128)]
Mid = Annotated[str, Field(min_length=1, max_length=32)]


class RequestError(ConferenceError):
    """A request the portal refuses; str() is the message sent to the client."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class SdkInfo(_Message):
    type: Annotated[str, Field(min_length=1, max_length=64)]
    version: Annotated[str, Field(min_length=1, max_length=64)]


class UserAgent(_Message):
    sdk: SdkInfo


class ReconnectionOptions(_Message):
    keepTime: Annotated[float, Field(ge=-1)] = -1  # seconds; -1: the server's setting


class Login(_Message):
    token: Annotated[str, Field(min_length=1, max_length=8192)]
    userAgent: UserAgent
    protocol: Literal["1.0", "1.1", "1.2"]
    # Absent or an object: the client wants a reconnection ticket; false: it does not.
    reconnection: ReconnectionOptions | bool | None = None


class TransportRef(_Message):
    type: Literal["webrtc"] = "webrtc"
    id: Id | None = None  # None: a new transport, whose id is the session's

    @field_validator("id", mode="before")
    @classmethod
    def _empty_is_new(cls, value: Any) -> Any:
        # OWT's portal treats a missing, null or empty id alike (`!transport.id`):
        # the JS SDK sends none on its first request, pyowt sends "".
        return None if value == "" else value


class PublishTrack(_Message):
    type: Literal["audio", "video"]
    mid: Mid | None = None  # None: an older client; the offer's m-line of this kind
    # OWT's portal validates the source against this list (requestFormatV1-2.js).
    source: Literal["mic", "camera", "screen-cast", "raw-file", "encoded-file"] = "mic"
    parameters: dict[str, Any] | None = None


class PublishMedia(_Message):
    tracks: Annotated[list[PublishTrack], Field(min_length=1, max_length=2)]


class Publish(_Message):
    media: PublishMedia
    attributes: dict[str, Any] | None = None
    transport: TransportRef = TransportRef()


class SubscribeTrack(_Message):
    type: Literal["audio", "video"]
    mid: Mid | None = None
    from_: Id = Field(alias="from")
    parameters: dict[str, Any] | None = None
    format: dict[str, Any] | None = None


class SubscribeMedia(_Message):
    tracks: Annotated[list[SubscribeTrack], Field(min_length=1, max_length=2)]


class Subscribe(_Message):
    media: SubscribeMedia
    transport: TransportRef = TransportRef()


class Candidate(_Message):
    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=32)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=1024)] | None = None


class Signaling(_Message):
    type: Literal["offer", "candidate", "removed-candidates"]
    sdp: Annotated[str, Field(max_length=262144)] | None = None
    candidate: Candidate | None = None


class Soac(_Message):
    id: Id
    signaling: Signaling


class SessionRef(_Message):
    id: Id


class StreamControl(_Message):
    id: Id
    operation: Literal["pause", "play", "mix", "unmix", "set-region", "get-region"]
    data: Any = None


class SubscriptionControl(_Message):
    id: Id
    operation: Literal["update", "pause", "play", "querybwe"]
    data: Any = None


class Text(_Message):
    to: Id
    message: str


class TrackUpdate(_Message):
    from_: Id | None = Field(default=None, alias="from")
    parameters: dict[str, Any] | None = None


class SubscriptionUpdate(_Message):
    audio: TrackUpdate | None = None
    video: TrackUpdate | None = None


T = TypeVar("T", bound=BaseModel)


def parse(model: type[T], data: Any) -> T:
    """Validate `data` as `model`, or raise RequestError naming the bad field."""
    if not isinstance(data, dict):
        raise RequestError(f"Invalid {_name(model)} request: expected an object")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise RequestError(
            f"Invalid {_name(model)} request: {describe_validation_error(exc)}"
        ) from None


def normalize_session_request(data: Any) -> Any:
    """Bring the older forms of publish/subscribe to the 1.2 form.

    OWT's 4.x clients (protocol 1.0/1.1) send `media: {audio: {...} | false,
    video: {...} | false}` on a transport of their own, without mids; the 1.2
    document puts the transport id at the top level as `transportId`.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    media = data.get("media")
    if isinstance(media, dict) and "tracks" not in media:
        tracks = []
        for kind in ("audio", "video"):
            option = media.get(kind)
            if option is None or option is False:
                continue
            if not isinstance(option, dict):
                raise RequestError(f"Invalid request: media.{kind} must be an object or false")
            keys = ("source", "from", "parameters", "format")
            tracks.append({"type": kind, **{k: option[k] for k in keys if k in option}})
        data["media"] = {"tracks": tracks}
    if "transport" not in data and isinstance(data.get("transportId"), str):
        data["transport"] = {"type": "webrtc", "id": data["transportId"]}
    return data


def parse_av(data: Any) -> list[str]:
    """The kinds named by a pause/play `data` ("audio", "video" or "av")."""
    if data == "av":
        return ["audio", "video"]
    if data in ("audio", "video"):
        return [data]
    raise RequestError("Invalid track kind: expected 'audio', 'video' or 'av'")


def _name(model: type[BaseModel]) -> str:
    names = {
        "Login": "login",
        "Publish": "publish",
        "Subscribe": "subscribe",
        "Soac": "soac",
        "SessionRef": "session",
        "StreamControl": "stream-control",
        "SubscriptionControl": "subscription-control",
        "Text": "text",
        "SubscriptionUpdate": "update",
    }
    return names.get(model.__name__, model.__name__)
