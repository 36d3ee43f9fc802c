"""What a change of room options does to a running room, or why it cannot (pure).

Everything room-wide applies at once (limits, roles, mediaIn for new publications,
mediaOut and transcoding, notifying, autoMix, autoRecord, selectActiveAudio). Views
are added, removed, or re-laid while they run: a view's regions (``video.layout``,
``video.maxInput``), its background, ``keepActiveInputPrimary`` and ``audio.vad``
change live. What its running encoders were built for (the video's format and
parameters, ``motionFactor``, its ``ladder``, the audio format, having video at all) cannot change
while the room runs: such a change is refused with a 409 naming the field, and
nothing changes. Removing the view and adding one under another label works live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tessera.mixer.viewoptions import ViewOptions

from .errors import conflict
from .roomoptions import RoomOptions

# A view's fields (JSON paths) its encoders were built with.
_FIXED_VIDEO = ("format", "parameters", "motionFactor", "ladder")
_FIXED_AUDIO = ("format",)


@dataclass
class OptionChange:
    """The views a change of options adds, removes (by label) and re-lays, in order."""

    added: list[ViewOptions] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    relaid: list[ViewOptions] = field(default_factory=list)
    media_changed: bool = False  # mediaOut or transcoding: the streams' ``optional`` changes


def plan_option_change(current: RoomOptions, new: RoomOptions) -> OptionChange:
    """How ``new`` applies to a room running on ``current``; ConferenceError 409 naming the
    first field that cannot change while the room runs."""
    change = OptionChange()
    old_views = {view.label: view for view in current.views}
    new_labels = {view.label for view in new.views}
    for index, view in enumerate(new.views):
        old = old_views.get(view.label)
        if old is None:
            change.added.append(view)
            continue
        if old == view:
            continue
        fixed = _fixed_field(old, view)
        if fixed is not None:
            raise conflict(
                f"views.{index}.{fixed} cannot change while the room runs (the view's "
                f"encoders are built for it); add the view under a new label and remove "
                f"{view.label!r}, or change it while nobody is in the room"
            )
        change.relaid.append(view)
    change.removed = [label for label in old_views if label not in new_labels]
    change.media_changed = (
        current.media_out != new.media_out or current.transcoding != new.transcoding
    )
    return change


def _fixed_field(old: ViewOptions, new: ViewOptions) -> str | None:
    """The first field of a view that differs and cannot change live, as a JSON path."""
    if (old.video is None) != (new.video is None):
        return "video"
    if old.video is not None and new.video is not None:
        before = old.video.model_dump(mode="json", by_alias=True)
        after = new.video.model_dump(mode="json", by_alias=True)
        found = _first_difference(before, after, _FIXED_VIDEO)
        if found is not None:
            return f"video.{found}"
    before = old.audio.model_dump(mode="json", by_alias=True)
    after = new.audio.model_dump(mode="json", by_alias=True)
    found = _first_difference(before, after, _FIXED_AUDIO)
    return f"audio.{found}" if found is not None else None


def _first_difference(before: Any, after: Any, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        path = _differs(before.get(key), after.get(key))
        if path is not None:
            return key + path
    return None


def _differs(before: Any, after: Any) -> str | None:
    """ "" if the values differ as a whole, ".<key>..." for the first differing key, or None."""
    if before == after:
        return None
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            inner = _differs(before.get(key), after.get(key))
            if inner is not None:
                return f".{key}{inner}"
    return ""
