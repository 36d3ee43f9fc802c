"""StreamingInRequest: OWT's StreamingInRequest (REST POST body), checked field by field.

Pure: no asyncio, no I/O. ``parse_streaming_in`` reads the JSON body of
``POST /rooms/{room}/streaming-ins`` (RESTAPI.md)::

    {"connection": {"url": "rtsp://...", "transportProtocol": "tcp" | "udp",
                    "bufferSize": 8192},
     "media": {"audio": "auto" | true | false, "video": "auto" | true | false},
     "attributes": {...}}

and raises :class:`StreamingInRequestError` naming the field that is wrong.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

# What a source may be: OWT's avstream agent opens these with FFmpeg.
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "file")
# OWT's default and the UDP receive buffer bounds (bytes) Tessera accepts.
DEFAULT_BUFFER_SIZE = 8192
MAX_BUFFER_SIZE = 64 * 1024 * 1024
MAX_URL_LENGTH = 4096

MediaWish = Literal["auto", "yes", "no"]


class StreamingInRequestError(ValueError):
    """A StreamingInRequest that cannot be taken: the message names the field."""


class StreamingInRequest(BaseModel):
    """A checked streaming-in request (plain data: it may cross processes)."""

    model_config = ConfigDict(frozen=True)

    url: str
    transport_protocol: Literal["tcp", "udp"] = "tcp"
    buffer_size: int = DEFAULT_BUFFER_SIZE
    audio: MediaWish = "auto"
    video: MediaWish = "auto"
    attributes: dict[str, Any] = {}

    @property
    def scheme(self) -> str:
        return url_scheme(self.url)


def url_scheme(url: str) -> str:
    """The source's scheme; a plain path is a ``file``."""
    scheme = urlsplit(url).scheme.lower()
    return scheme if scheme else "file"


def _media_wish(value: Any, field: str) -> MediaWish:
    if value == "auto":
        return "auto"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    raise StreamingInRequestError(f'{field}: expected "auto", true or false')


def parse_streaming_in(body: Any) -> StreamingInRequest:
    """A StreamingInRequest from a REST body; StreamingInRequestError names what is wrong."""
    if not isinstance(body, dict):
        raise StreamingInRequestError("The body must be a JSON object")
    unknown = sorted(set(body) - {"connection", "media", "attributes", "type"})
    if unknown:
        raise StreamingInRequestError(
            f"{unknown[0]}: unknown field (expected connection, media, attributes)"
        )
    # OWT's management API sets type "streaming" itself; a client may send it too.
    if body.get("type", "streaming") != "streaming":
        raise StreamingInRequestError('type: expected "streaming"')
    connection = body.get("connection")
    if not isinstance(connection, dict):
        raise StreamingInRequestError("connection: an object with url is required")
    unknown = sorted(set(connection) - {"url", "transportProtocol", "bufferSize", "origin"})
    if unknown:
        raise StreamingInRequestError(
            f"connection.{unknown[0]}: unknown field (expected url, transportProtocol, bufferSize)"
        )
    url = connection.get("url")
    if not isinstance(url, str) or not url.strip():
        raise StreamingInRequestError("connection.url: a non-empty string is required")
    if len(url) > MAX_URL_LENGTH or any(ord(c) < 0x20 for c in url):
        raise StreamingInRequestError(
            f"connection.url: at most {MAX_URL_LENGTH} characters, no control characters"
        )
    scheme = url_scheme(url)
    if scheme not in URL_SCHEMES:
        raise StreamingInRequestError(
            f"connection.url: scheme {scheme!r} is not one of {', '.join(URL_SCHEMES)}"
        )
    protocol = connection.get("transportProtocol", "tcp")
    if protocol not in ("tcp", "udp"):
        raise StreamingInRequestError('connection.transportProtocol: expected "tcp" or "udp"')
    if protocol == "udp" and scheme not in ("rtsp", "rtsps"):
        raise StreamingInRequestError(
            f'connection.transportProtocol: "udp" is for RTSP sources only ({scheme} is TCP)'
        )
    buffer_size = connection.get("bufferSize", DEFAULT_BUFFER_SIZE)
    if (
        not isinstance(buffer_size, int)
        or isinstance(buffer_size, bool)
        or not 0 < buffer_size <= MAX_BUFFER_SIZE
    ):
        raise StreamingInRequestError(
            f"connection.bufferSize: a whole number of bytes, 1 to {MAX_BUFFER_SIZE}"
        )
    media = body.get("media", {"audio": "auto", "video": "auto"})
    if not isinstance(media, dict):
        raise StreamingInRequestError("media: an object {audio, video} is required")
    unknown = sorted(set(media) - {"audio", "video"})
    if unknown:
        raise StreamingInRequestError(f"media.{unknown[0]}: unknown field (expected audio, video)")
    audio = _media_wish(media.get("audio", "auto"), "media.audio")
    video = _media_wish(media.get("video", "auto"), "media.video")
    if audio == "no" and video == "no":
        raise StreamingInRequestError("media: audio and video are both false: nothing to take")
    attributes = body.get("attributes", {})
    if not isinstance(attributes, dict):
        raise StreamingInRequestError("attributes: an object is required")
    return StreamingInRequest(
        url=url,
        transport_protocol=protocol,
        buffer_size=buffer_size,
        audio=audio,
        video=video,
        attributes=attributes,
    )
