"""A participant's webrtc subscription as the REST API shows it, and its link's figures.

OWT's REST API has no route for a participant's webrtc subscriptions (its recordings and
streaming-outs are its only sinks with one). Tessera lists them in the participant's
detail, shaped as OWT shapes a recording's media (``{from, status, format, parameters}``
per kind), with the adaptive estimate of a video moved along a view's ladder, the object
``querybwe`` answers under ``adaptive``.
"""

from __future__ import annotations

from typing import Any

from tessera.media.mediasource import VideoFormat
from tessera.webrtc_agent.subscription import SubscribedTrack, Subscription

from .linkquality import LinkFigures, subscription_figures


def subscription_view(subscription: Subscription) -> dict[str, Any]:
    """``{id, media: {audio, video}, adaptive?}``: plain data (kinds not taken are false)."""
    media: dict[str, Any] = {"audio": False, "video": False}
    for kind, track in subscription.tracks.items():
        media[kind] = _track_view(track)
    view: dict[str, Any] = {"id": subscription.id, "media": media}
    adaptive = subscription.adaptive
    if adaptive is not None:
        view["adaptive"] = adaptive.describe()
    return view


def subscription_link(subscription: Subscription) -> LinkFigures | None:
    """The figures of the subscriber's link this subscription measures, or None if it does
    not adapt (only an adapted video has an estimate of its own)."""
    adaptive = subscription.adaptive
    return None if adaptive is None else subscription_figures(adaptive.describe())


def _track_view(track: SubscribedTrack) -> dict[str, Any]:
    view: dict[str, Any] = {
        "from": track.stream.id,
        "status": "inactive" if track.paused else "active",
    }
    fmt = track.format
    if isinstance(fmt, VideoFormat):
        view["format"] = {"codec": fmt.codec}
        parameters: dict[str, Any] = {}
        if fmt.width is not None and fmt.height is not None:
            parameters["resolution"] = {"width": fmt.width, "height": fmt.height}
        if fmt.framerate is not None:
            parameters["framerate"] = fmt.framerate
        if fmt.bitrate is not None:
            parameters["bitrate"] = f"x{fmt.bitrate:g}"
        if fmt.keyframe_interval is not None:
            parameters["keyFrameInterval"] = fmt.keyframe_interval
        if parameters:
            view["parameters"] = parameters
    else:
        view["format"] = {"codec": fmt}
    return view
