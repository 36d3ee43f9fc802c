"""Where a streaming-out goes and how it is cut, checked as OWT's REST API names it (pure).

OWT 5.x (`streamingOutsResource.js`, `LiveStreamOut.cpp`):

- `protocol` is `rtmp`, `rtsp`, `hls` or `dash`; when it is missing OWT
  guesses it from the url (`rtmp://`, `rtsp://`, `*.m3u8`, `*.mpd`).
- HLS and DASH are pushed to `url` over HTTP with `parameters.method`
  (`PUT` or `POST`); the playlist/manifest name is the url's last part.
- `parameters` default to `{method: PUT, hlsTime: 2, hlsListSize: 5}` for HLS
  and `{method: PUT, dashSegDuration: 2, dashWindowSize: 5}` for DASH.

Tessera also writes HLS itself when no `url` is given (served by the portal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tessera.media.mediasource import ParameterError

PROTOCOLS = ("rtmp", "rtsp", "hls", "dash")
METHODS = ("PUT", "POST")
HTTP_SCHEMES = ("http", "https")

# OWT's defaults (streamingOutsResource.js).
HLS_TIME = 2
HLS_LIST_SIZE = 5
DASH_SEG_DURATION = 2
DASH_WINDOW_SIZE = 5
# The longest segment and the longest list Tessera takes.
MAX_SEGMENT_SECONDS = 60
MAX_LIST_SIZE = 60

# What each segmented protocol calls its two numbers, and the playlist's suffix.
_NAMES = {
    "hls": ("hlsTime", "hlsListSize", ".m3u8"),
    "dash": ("dashSegDuration", "dashWindowSize", ".mpd"),
}


def guess_protocol(url: Any) -> str | None:
    """OWT's guess when `protocol` is missing: from the url's scheme or suffix."""
    if not isinstance(url, str):
        return None
    if url.startswith("rtmp://") or url.startswith("rtmps://"):
        return "rtmp"
    if url.startswith("rtsp://"):
        return "rtsp"
    if url.endswith(".m3u8"):
        return "hls"
    if url.endswith(".mpd"):
        return "dash"
    return None


@dataclass(frozen=True)
class Segmenting:
    """How HLS or DASH is cut: segment length (s), segments listed, and the HTTP method."""

    protocol: str
    method: str | None  # None: written locally, not pushed
    duration: int
    window: int

    def to_json(self) -> dict[str, Any]:
        """OWT's HlsParameters / DashParameters."""
        duration_name, window_name, _ = _NAMES[self.protocol]
        info: dict[str, Any] = {duration_name: self.duration, window_name: self.window}
        if self.method is not None:
            info = {"method": self.method, **info}
        return info


def check_segmenting(protocol: str, parameters: Any, *, pushed: bool) -> Segmenting:
    """OWT's `parameters` of an HLS or DASH streaming-out, defaults filled in.

    Raises ParameterError naming the field (`parameters.hlsTime: ...`).
    """
    duration_name, window_name, _ = _NAMES[protocol]
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise ParameterError("parameters: an object is required")
    unknown = sorted(set(parameters) - {"method", duration_name, window_name})
    if unknown:
        raise ParameterError(
            f"parameters.{unknown[0]}: unknown for {protocol} "
            f"(expected method, {duration_name}, {window_name})"
        )
    method: str | None = None
    raw_method = parameters.get("method")
    if pushed:
        method = "PUT" if raw_method is None else raw_method
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise ParameterError("parameters.method: expected PUT or POST")
        method = method.upper()
    elif raw_method is not None:
        raise ParameterError(
            "parameters.method: only for a url to push to (without a url Tessera serves the HLS)"
        )
    defaults = (
        (HLS_TIME, HLS_LIST_SIZE) if protocol == "hls" else (DASH_SEG_DURATION, DASH_WINDOW_SIZE)
    )
    duration = _whole(parameters, duration_name, defaults[0], MAX_SEGMENT_SECONDS)
    window = _whole(parameters, window_name, defaults[1], MAX_LIST_SIZE)
    return Segmenting(protocol, method, duration, window)


def _whole(parameters: dict[str, Any], name: str, default: int, most: int) -> int:
    value = parameters.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ParameterError(f"parameters.{name}: a whole number from 1 to {most}")
    return value


@dataclass(frozen=True)
class HttpTarget:
    """An HLS playlist or DASH manifest url, and the folder its segments go to."""

    url: str
    protocol: str
    host: str
    port: int
    tls: bool
    name: str  # the playlist's file name: out.m3u8

    @property
    def base(self) -> str:
        """The playlist's name without its suffix: OWT names the segments after it."""
        return self.name.rsplit(".", 1)[0]

    def url_of(self, name: str) -> str:
        """The url of a file next to the playlist."""
        return self.url.rsplit("/", 1)[0] + "/" + name


def check_http_url(url: Any, protocol: str) -> HttpTarget:
    """Where to push HLS or DASH, or ParameterError saying why `url` is not such a url."""
    _, _, suffix = _NAMES[protocol]
    example = f"http://host[:port]/path/name{suffix}"
    if not isinstance(url, str) or not url.strip():
        raise ParameterError(f"url: {protocol} needs a url to push to: {example}")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ParameterError("url: must not contain spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise ParameterError(
            f"url: {protocol} is pushed over HTTP: expected {example} "
            "(Tessera writes no files where a url says)"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ParameterError(f"url: invalid port in {url!r}") from exc
    if not parts.hostname or port == 0:
        raise ParameterError(f"url: {url!r} names no host to push to")
    if parts.username is not None or parts.password is not None:
        raise ParameterError("url: credentials in the url are not supported")
    if parts.query or parts.fragment:
        raise ParameterError("url: a query or fragment cannot be kept on the segments' urls")
    name = parts.path.rsplit("/", 1)[-1]
    if not name.endswith(suffix) or len(name) == len(suffix):
        raise ParameterError(f"url: a {protocol} url names its playlist: {example}")
    tls = scheme == "https"
    clean = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
    return HttpTarget(clean, protocol, parts.hostname, port or (443 if tls else 80), tls, name)
