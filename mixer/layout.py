"""Layout: which input stream is drawn in which region of a view.

Pure geometry and bookkeeping (no asyncio, no frames), after OWT:

- The region sets ("templates") are OWT's, generated as in
  ``source/data_access/model/layoutTemplate.js``: ``fluid`` k x k grids,
  ``lecture`` one large primary region with small ones along the right and
  bottom edges, ``void`` nothing but the room's custom templates.
- Choosing a region set for n inputs and placing inputs follows
  ``source/agent/video/layout.js`` (LayoutProcessor): the smallest template
  with at least n regions; inputs fill regions in arrival order; the regions
  of a template that hold no input are simply not drawn.
- Inputs beyond ``maxInput`` wait, as in OWT's video agent (``index.js``,
  InputManager pending inputs), and one takes the place an input leaves.

Where OWT is awkward Tessera keeps the wire format and does better:

- OWT removes an input by splicing its list, so everyone after it shifts one
  region on; here the others stay where they are (the freed region is taken by
  the first waiting input, or left empty; a freed *primary* region takes the
  next stream instead, so a lecture never shows an empty main picture).
- OWT's set-region only swaps with a region that holds an input; here a stream
  may also move into an empty region.
- OWT's setLayout (REST ``/info/layout``) rejects "holes" (a stream after an
  entry without one) and removes and re-adds every input to apply a request;
  here the request is validated in full, then only what it names moves.
- A custom template replaces the base one with the same number of regions
  (OWT's merge can keep the base one when lecture templates are out of order).
- Pixel rectangles are even-aligned from shared edges, so neighbouring
  regions tile without the gaps or odd offsets of plain truncation.

Tessera's own region sets (not OWT's; OWT clients get OWT's when they ask):

- ``gallery`` (the default of rooms created since it exists): one template per
  count of inputs, rows of equal tiles that share the whole view with thin
  gutters; the number of rows is the one whose tiles are closest to a camera's
  16:9 (3 inputs: two on top, one below, no empty quarter). Needs the view's
  aspect ratio. See :func:`gallery_templates`.
- ``presentation``: a screen share large on top and the other inputs in a strip
  below it, used by a view while someone shares a screen. See
  :func:`presentation_templates`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pydantic

from tessera.config.validation import describe_validation_error

from .viewoptions import LayoutOptions, parse_fraction

__all__ = [
    "FIT_POLICIES",
    "Area",
    "Layout",
    "LayoutError",
    "LayoutTemplates",
    "Placement",
    "Region",
    "Template",
    "fluid_templates",
    "gallery_rows",
    "gallery_templates",
    "lecture_templates",
    "place",
    "presentation_templates",
    "region_rect",
]

_ZERO = Fraction(0)
_ONE = Fraction(1)
_AREA_KEYS = ("left", "top", "width", "height")
FIT_POLICIES = ("letterbox", "crop")
BASES = ("fluid", "lecture", "void", "gallery", "presentation")
# A camera's picture: what gallery tiles are shaped for.
CAMERA_ASPECT = Fraction(16, 9)
# Gutters between gallery tiles, as a fraction of the view's width (4 px at 1280).
GUTTER = Fraction(1, 320)
# The presentation layout's strip of speakers: this fraction of the view's height, with
# room for this many 16:9 tiles before they narrow.
STRIP_HEIGHT = Fraction(1, 5)
STRIP_SLOTS = 5


class LayoutError(ValueError):
    """A layout request that cannot be honoured; the message is for the client."""


def _fraction_text(value: Fraction) -> str:
    # Fraction is always reduced; OWT clients parse "n/d" (0 is "0/1", 1 is "1/1").
    return f"{value.numerator}/{value.denominator}"


@dataclass(frozen=True)
class Area:
    """A rectangle as exact fractions of the view's width and height."""

    left: Fraction
    top: Fraction
    width: Fraction
    height: Fraction

    def __post_init__(self) -> None:
        for name in _AREA_KEYS:
            value = getattr(self, name)
            if not isinstance(value, Fraction):
                # Accept ints (0, 1) but keep the field a Fraction.
                object.__setattr__(self, name, Fraction(value))
        if not all(_ZERO <= getattr(self, name) <= _ONE for name in _AREA_KEYS):
            raise ValueError(f"area {self.to_json()} is not inside [0, 1]")
        if self.left + self.width > 1 or self.top + self.height > 1:
            raise ValueError(f"area {self.to_json()} reaches outside the view")

    @classmethod
    def square(cls, left: Fraction, top: Fraction, size: Fraction) -> Area:
        """OWT's Rectangle(relativesize): as wide as it is high, in fractions of the view."""
        return cls(left, top, size, size)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Area:
        """Parse ``{"left": "0/1", "top": ..., "width": ..., "height": ...}``."""
        try:
            values = [parse_fraction(data[name]) for name in _AREA_KEYS]
        except KeyError as exc:
            raise ValueError(f"area has no {exc.args[0]!r}") from None
        except TypeError:
            raise ValueError("area values must be fraction strings 'n/d'") from None
        return cls(*values)

    def to_json(self) -> dict[str, str]:
        """The wire form: reduced fraction strings."""
        return {name: _fraction_text(getattr(self, name)) for name in _AREA_KEYS}


@dataclass(frozen=True)
class Region:
    """One rectangle of a layout, which shows one input stream."""

    id: str
    area: Area
    shape: str = "rectangle"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Region:
        """Parse OWT's region object ``{"id", "shape", "area": {...}}``."""
        shape = data.get("shape", "rectangle")
        if shape != "rectangle":
            raise ValueError(f"region shape {shape!r} is not supported")
        return cls(id=str(data["id"]), area=Area.from_json(data["area"]), shape=shape)

    def to_json(self) -> dict[str, Any]:
        """The wire form, as in a mixed stream's ``info.layout``."""
        return {"id": self.id, "shape": self.shape, "area": self.area.to_json()}


@dataclass(frozen=True)
class Template:
    """A region set for up to ``len(regions)`` inputs; ``primary`` names the main region."""

    regions: tuple[Region, ...]
    primary: str

    def __post_init__(self) -> None:
        if not self.regions:
            raise ValueError("a template needs at least one region")
        ids = [region.id for region in self.regions]
        if len(set(ids)) != len(ids):
            raise ValueError("region ids of a template must be unique")
        if self.primary not in ids:
            raise ValueError(f"primary region {self.primary!r} is not one of the regions")

    @classmethod
    def of(cls, regions: Iterable[Region], primary: str | None = None) -> Template:
        """A template whose primary is ``primary`` or, as in OWT, the first region."""
        region_tuple = tuple(regions)
        if primary is None:
            primary = region_tuple[0].id if region_tuple else ""
        return cls(region_tuple, primary)

    def index_of(self, region_id: str) -> int | None:
        """Position (z-order) of the region called ``region_id``, or None."""
        return next((i for i, r in enumerate(self.regions) if r.id == region_id), None)


# --- OWT's base templates ------------------------------------------------------


def fluid_templates(max_input: int) -> list[Template]:
    """OWT's fluid family: 1x1 .. kxk grids (k = ceil(sqrt(maxInput))), ids row-major."""
    templates = []
    # isqrt(n - 1) + 1 == ceil(sqrt(n)) for n >= 1, exactly.
    for div in range(1, math.isqrt(max_input - 1) + 2):
        size = Fraction(1, div)
        templates.append(
            Template.of(
                Region(str(y * div + x + 1), Area.square(Fraction(x, div), Fraction(y, div), size))
                for y in range(div)
                for x in range(div)
            )
        )
    return templates


def _lecture_edge(div: int, main: Fraction) -> list[Region]:
    # Primary square top-left; a column of 1/div squares to its right (top to
    # bottom), then a row under it (right to left): OWT's id order.
    small = Fraction(1, div)
    regions = [Region("1", Area.square(_ZERO, _ZERO, main))]
    cells = [(main, Fraction(y, div)) for y in range(div)]
    cells += [(Fraction(x, div), main) for x in range(div - 2, -1, -1)]
    regions += [Region(str(i + 2), Area.square(x, y, small)) for i, (x, y) in enumerate(cells)]
    return regions


def _lecture_ring(div: int) -> list[Region]:
    # Primary (div-2)/div; an inner column and row around it, then an outer
    # column and row along the right and bottom edges, in OWT's id order.
    small = Fraction(1, div)
    main = Fraction(div - 2, div)
    last = Fraction(div - 1, div)
    cells = [(main, Fraction(y, div)) for y in range(div - 1)]
    cells += [(Fraction(x, div), main) for x in range(div - 3, -1, -1)]
    cells += [(last, Fraction(y, div)) for y in range(div)]
    cells += [(Fraction(x, div), last) for x in range(div - 2, -1, -1)]
    regions = [Region("1", Area.square(_ZERO, _ZERO, main))]
    regions += [Region(str(i + 2), Area.square(x, y, small)) for i, (x, y) in enumerate(cells)]
    return regions


def lecture_templates(max_input: int) -> list[Template]:
    """OWT's lecture family, region "1" the primary, for a view of ``max_input`` inputs.

    1 region (full view); 6 (primary 2/3, five 1/3 around it); for maxInput > 6
    2d regions with primary (d-1)/d for d = 4..min(7, ceil(maxInput/2)) (8..14
    regions); for maxInput > 14 also 4d-3 regions with primary (d-2)/d for
    d = 4..min(7, ceil((maxInput+3)/4)) (13, 17, 21, 25 regions). So lecture
    never shows more than 25 inputs, like OWT. (OWT's 13-region template has a
    1/2 primary between the 12- and 14-region ones with 5/6 and 6/7: kept, it
    is what OWT rooms show for 13 inputs.)
    """
    templates = [
        Template.of([Region("1", Area.square(_ZERO, _ZERO, _ONE))]),
        Template.of(_lecture_edge(3, Fraction(2, 3))),
    ]
    if max_input > 6:
        for div in range(4, min(7, -(-max_input // 2)) + 1):
            templates.append(Template.of(_lecture_edge(div, Fraction(div - 1, div))))
        if max_input > 14:
            for div in range(4, min(7, -(-(max_input + 3) // 4)) + 1):
                templates.append(Template.of(_lecture_ring(div)))
    return templates


# --- Tessera's templates ------------------------------------------------------------


def _visible(tile_aspect: Fraction) -> Fraction:
    # The share of a 16:9 camera picture left when it is cropped to a tile of this aspect.
    return min(tile_aspect / CAMERA_ASPECT, CAMERA_ASPECT / tile_aspect)


def gallery_rows(count: int, aspect: Fraction) -> list[int]:
    """How many tiles each row of a gallery of ``count`` holds, top row first.

    Rows of equal height; a row's tiles share its width. Of every number of
    rows, the one that keeps the most of each camera picture once cropped to
    its tile (averaged over the tiles; fewer rows on a tie). Longer rows come
    first: 3 is [2, 1], 5 is [3, 2], 7 is [3, 2, 2].
    """
    if count < 1:
        raise ValueError(f"a gallery needs at least one tile, not {count}")
    best: tuple[Fraction, list[int]] | None = None
    for rows in range(1, count + 1):
        base, extra = divmod(count, rows)
        counts = [base + 1] * extra + [base] * (rows - extra)
        # A tile is (aspect / in_row) wide for (1 / rows) high, in units of the view height.
        score = sum((_visible(aspect * rows / n) * n for n in counts), Fraction(0)) / count
        if best is None or score > best[0]:
            best = (score, counts)
    assert best is not None
    return best[1]


def _row_areas(
    count: int, left: Fraction, top: Fraction, width: Fraction, height: Fraction, gutter: Fraction
) -> list[Area]:
    tile = (width - gutter * (count - 1)) / count
    return [Area(left + i * (tile + gutter), top, tile, height) for i in range(count)]


def gallery_template(count: int, aspect: Fraction) -> Template:
    """The gallery for ``count`` inputs in a view ``aspect`` = width / height wide."""
    rows = gallery_rows(count, aspect)
    gutter_y = GUTTER * aspect  # as many pixels as the vertical gutters are wide
    height = (1 - gutter_y * (len(rows) - 1)) / len(rows)
    areas: list[Area] = []
    for r, in_row in enumerate(rows):
        areas += _row_areas(in_row, _ZERO, r * (height + gutter_y), _ONE, height, GUTTER)
    return Template.of(Region(str(i + 1), area) for i, area in enumerate(areas))


def gallery_templates(max_input: int, aspect: Fraction = CAMERA_ASPECT) -> list[Template]:
    """A gallery template for every count from 1 to ``max_input``."""
    return [gallery_template(n, aspect) for n in range(1, max_input + 1)]


def presentation_template(count: int, aspect: Fraction) -> Template:
    """Region "1" (the primary: the shared screen) above a strip of ``count - 1`` tiles.

    Alone, the share takes the whole view. The strip is ``STRIP_HEIGHT`` of the
    view; up to ``STRIP_SLOTS`` tiles are 16:9 (in a 16:9 view) and centred,
    more share the strip's width.
    """
    if count == 1:
        return Template.of([Region("1", Area(_ZERO, _ZERO, _ONE, _ONE))])
    gutter_y = GUTTER * aspect
    others = count - 1
    share = Region("1", Area(_ZERO, _ZERO, _ONE, 1 - STRIP_HEIGHT - gutter_y))
    slots = max(others, STRIP_SLOTS)
    tile = (1 - GUTTER * (slots - 1)) / slots
    used = tile * others + GUTTER * (others - 1)
    strip = _row_areas(others, (1 - used) / 2, 1 - STRIP_HEIGHT, used, STRIP_HEIGHT, GUTTER)
    return Template.of(
        [share, *(Region(str(i + 2), area) for i, area in enumerate(strip))], primary="1"
    )


def presentation_templates(max_input: int, aspect: Fraction = CAMERA_ASPECT) -> list[Template]:
    """A presentation template for every count from 1 to ``max_input``."""
    return [presentation_template(n, aspect) for n in range(1, max_input + 1)]


# --- templates of a view -------------------------------------------------------


class LayoutTemplates:
    """The region sets a view can use, by number of inputs (OWT's base template + custom ones).

    Built from a view's ``video.layout`` options. Base templates depend on the
    view's maxInput (as OWT generates them), so they are made per maxInput.
    """

    def __init__(
        self,
        base: str = "fluid",
        custom: Sequence[Template] = (),
        fit_policy: str = "letterbox",
        aspect: Fraction = CAMERA_ASPECT,
    ) -> None:
        if base not in BASES:
            raise LayoutError(f"unknown layout template base {base!r}")
        if fit_policy not in FIT_POLICIES:
            raise LayoutError(f"unknown fit policy {fit_policy!r}")
        if aspect <= 0:
            raise LayoutError(f"aspect ratio {aspect} is not positive")
        self.base = base
        self.custom = tuple(custom)
        self.fit_policy = fit_policy
        # The view's width / height: gallery and presentation tiles are shaped for it.
        self.aspect = Fraction(aspect)
        self._by_max_input: dict[int, list[Template]] = {}

    @classmethod
    def from_options(
        cls,
        layout_options: Mapping[str, Any] | LayoutOptions | None = None,
        aspect: Fraction = CAMERA_ASPECT,
    ) -> LayoutTemplates:
        """From the JSON form of a view's ``video.layout`` (or its validated model).

        ``{"fitPolicy": "letterbox", "templates": {"base": "fluid", "custom":
        [{"region": [{"id", "shape", "area": {...}}], "primary": "1"}]}}``;
        missing parts take the defaults (gallery and crop; a base other than gallery
        letterboxes unless told otherwise, as OWT does). ``aspect`` is the view's
        width / height.
        """
        if layout_options is None:
            options = LayoutOptions()
        elif isinstance(layout_options, LayoutOptions):
            options = layout_options
        else:
            try:
                options = LayoutOptions.model_validate(dict(layout_options))
            except pydantic.ValidationError as exc:
                raise LayoutError(describe_validation_error(exc)) from None
        custom = [
            Template.of(
                (Region(r.id, Area.from_json(r.area.model_dump()), r.shape) for r in layout.region),
                layout.primary,
            )
            for layout in options.templates.custom
        ]
        return cls(options.templates.base, custom, options.fit_policy, aspect)

    def with_base(self, base: str) -> LayoutTemplates:
        """The same custom templates, fit policy and aspect with another base."""
        return LayoutTemplates(base, self.custom, self.fit_policy, self.aspect)

    def templates(self, max_input: int) -> list[Template]:
        """Every region set of a view with ``max_input`` inputs, by region count."""
        if max_input < 1:
            raise ValueError(f"maxInput must be at least 1, not {max_input}")
        cached = self._by_max_input.get(max_input)
        if cached is None:
            if self.base == "fluid":
                base = fluid_templates(max_input)
            elif self.base == "lecture":
                base = lecture_templates(max_input)
            elif self.base == "gallery":
                base = gallery_templates(max_input, self.aspect)
            elif self.base == "presentation":
                base = presentation_templates(max_input, self.aspect)
            else:
                base = []
            # One template per region count; custom ones replace the base one.
            by_count = {len(t.regions): t for t in base}
            by_count.update({len(t.regions): t for t in self.custom})
            cached = [by_count[n] for n in sorted(by_count)]
            self._by_max_input[max_input] = cached
        return list(cached)

    def template_for(self, count: int, max_input: int) -> Template | None:
        """The region set for ``count`` inputs: the smallest with room for them all.

        ``count`` is clamped to ``max_input``; with more inputs than the largest
        template holds, the largest (the rest wait). None: no template at all.
        """
        templates = self.templates(max_input)
        if not templates:
            return None
        wanted = max(0, min(count, max_input))
        return next((t for t in templates if len(t.regions) >= wanted), templates[-1])

    def regions_for(self, count: int, max_input: int) -> list[Region]:
        """The regions (z-order = list order) to show ``count`` inputs."""
        template = self.template_for(count, max_input)
        return list(template.regions) if template else []

    def capacity(self, max_input: int) -> int:
        """How many inputs can be shown at once: maxInput, or fewer if no template is larger."""
        templates = self.templates(max_input)
        return min(max_input, len(templates[-1].regions)) if templates else 0


# --- the layout of a view ---------------------------------------------------------


class Layout:
    """Which stream is in which region of one view.

    Inputs are placed in arrival order; inputs beyond maxInput wait in a queue
    and move in when a region frees up.

    ``version`` increases whenever what is drawn changes (the region set, or
    which stream is where): that is when a ``stream update`` with field
    ``video.layout`` is due. A change only to the waiting queue does not count.
    """

    def __init__(self, templates: LayoutTemplates, max_input: int = 16) -> None:
        if max_input < 1:
            raise ValueError(f"maxInput must be at least 1, not {max_input}")
        self.max_input = max_input
        self.version = 0
        self._use(templates)

    def _use(self, templates: LayoutTemplates) -> None:
        """Take `templates` with nothing placed yet."""
        self.templates = templates
        self.capacity = templates.capacity(self.max_input)
        self._template = templates.template_for(0, self.max_input)
        # One entry per region of the current template, None = empty region.
        self._slots: list[str | None] = [None] * self._size(self._template)
        self._queue: list[str] = []

    # --- queries

    @property
    def regions(self) -> list[Region]:
        """The current region set, in z-order (later regions are drawn on top)."""
        return list(self._template.regions) if self._template else []

    @property
    def primary_region(self) -> Region | None:
        """The region a primary (active) input goes to: "1", or a custom template's primary."""
        if self._template is None:
            return None
        index = self._template.index_of(self._template.primary)
        return None if index is None else self._template.regions[index]

    def assignments(self) -> list[tuple[Region, str | None]]:
        """Every region with its stream (None = empty), in drawing order."""
        return list(zip(self.regions, self._slots, strict=True))

    def queued(self) -> list[str]:
        """Streams waiting for a region, first to move in first."""
        return list(self._queue)

    def streams(self) -> list[str]:
        """Every stream of the view: the shown ones in z-order, then the waiting ones."""
        return [s for s in self._slots if s is not None] + self._queue

    def __contains__(self, stream_id: object) -> bool:
        # Strings only: None marks an empty region in the slots.
        return isinstance(stream_id, str) and (stream_id in self._slots or stream_id in self._queue)

    def get_region(self, stream_id: str) -> str | None:
        """Id of the region showing ``stream_id``; None if it waits or is not in the view."""
        index = self._slot_of(stream_id)
        return None if index is None else self.regions[index].id

    def to_json(self) -> list[dict[str, Any]]:
        """The ``video.layout`` value: the regions that hold a stream, in z-order."""
        return [
            {"stream": stream, "region": region.to_json()}
            for region, stream in self.assignments()
            if stream is not None
        ]

    # --- changes

    def add(self, stream_id: str) -> None:
        """A stream arrives: it takes the first free region, or waits when the view is full."""
        if stream_id in self:
            return
        shown = self._shown()
        if shown >= self.capacity:
            self._queue.append(stream_id)
            return
        self._retemplate(shown + 1)
        self._slots[self._slots.index(None)] = stream_id
        self.version += 1

    def remove(self, stream_id: str) -> None:
        """A stream leaves; the first waiting stream takes its place. Unknown ids are ignored.

        Nobody else moves (OWT shifts every later input one region on), except
        that with no stream waiting a freed primary region takes the next stream.
        """
        if stream_id in self._queue:
            self._queue.remove(stream_id)
            return
        index = self._slot_of(stream_id)
        if index is None:
            return
        self._slots[index] = None
        if self._queue:
            # Same number shown, so the region set stays: the newcomer takes the freed place.
            self._slots[index] = self._queue.pop(0)
        else:
            if self.regions[index] == self.primary_region:
                # A view without its main picture looks broken: the next stream moves up.
                following = [i for i, s in enumerate(self._slots) if s is not None]
                if following:
                    self._slots[index] = self._slots[following[0]]
                    self._slots[following[0]] = None
            self._retemplate(self._shown())
        self.version += 1

    def set_region(self, stream_id: str, region_id: str) -> None:
        """Move a stream (shown or waiting) into a region; the stream there takes its place.

        A waiting stream swaps places with the stream in the region, which then
        waits. Moving into an empty region leaves the old one empty.
        """
        region_index = self._template.index_of(region_id) if self._template else None
        if stream_id not in self:
            raise LayoutError(f"Stream {stream_id} is NOT in this view")
        if region_index is None:
            raise LayoutError(f"Region {region_id} does NOT exist")
        index = self._slot_of(stream_id)
        if index == region_index:
            return
        occupant = self._slots[region_index]
        if index is not None:
            self._slots[index], self._slots[region_index] = occupant, stream_id
        elif occupant is None:
            # Only possible when the region set is larger than maxInput (lecture: 17 regions
            # for 16 inputs): taking the region would show more than maxInput streams.
            raise LayoutError(
                f"Region {region_id} is empty and this view already shows {self.capacity} streams"
            )
        else:
            self._queue[self._queue.index(stream_id)] = occupant
            self._slots[region_index] = stream_id
        self.version += 1

    def set_primary(self, stream_id: str) -> bool:
        """keepActiveInputPrimary: swap the stream into the primary region; True if it moved."""
        primary = self.primary_region
        if primary is None or stream_id not in self or self.get_region(stream_id) == primary.id:
            return False
        try:
            self.set_region(stream_id, primary.id)
        except LayoutError:
            return False
        return True

    def set_templates(self, templates: LayoutTemplates) -> None:
        """Switch to other region sets (fluid to lecture, say), keeping the streams' order.

        The streams shown stay first in z-order, then those waiting, as if they had
        arrived again in that order; what no longer fits waits.
        """
        streams = self.streams()
        self._use(templates)
        for stream in streams:
            self.add(stream)
        self.version += 1

    def apply(self, layout: Any) -> None:
        """REST ``/info/layout``: put the listed streams in the listed regions.

        ``[{"stream": "<id>", "region": {"id": "2", ...}}, ...]``. Streams not
        listed keep their regions where they are free, else take the first free
        ones or wait (ahead of those already waiting). Entries without a stream
        reserve nothing (OWT fills them with unlisted streams). The whole request
        is checked before anything changes.
        """
        wanted = self._validate(layout)
        size = len(self._slots)
        slots: list[str | None] = [None] * size
        for region_index, stream in wanted.items():
            slots[region_index] = stream
        listed = set(wanted.values())
        # As many shown as before (so the region set stays): never more than maxInput.
        target = self._shown()
        placed = len(wanted)
        displaced: list[str] = []
        for i, current in enumerate(self._slots):
            if current is None or current in listed:
                continue
            if slots[i] is None and placed < target:
                slots[i] = current
                placed += 1
            else:
                displaced.append(current)
        waiting = displaced + [s for s in self._queue if s not in listed]
        for i in range(size):
            if placed >= target:
                break
            if slots[i] is None:
                slots[i] = waiting.pop(0)
                placed += 1
        changed = slots != self._slots
        self._slots, self._queue = slots, waiting
        if changed:
            self.version += 1

    # --- internals

    @staticmethod
    def _size(template: Template | None) -> int:
        return len(template.regions) if template else 0

    def _shown(self) -> int:
        return sum(s is not None for s in self._slots)

    def _slot_of(self, stream_id: str) -> int | None:
        try:
            return self._slots.index(stream_id)
        except ValueError:
            return None

    def _retemplate(self, count: int) -> None:
        """Switch to the region set for ``count`` shown streams, moving as few as possible.

        Streams keep their relative (z-)order; each stays at its position if the
        ones after it still fit behind it, else it goes as far back as they allow.
        """
        template = self.templates.template_for(count, self.max_input)
        if template is self._template:
            return
        size = self._size(template)
        placed = [(i, s) for i, s in enumerate(self._slots) if s is not None]
        slots: list[str | None] = [None] * size
        for t, (i, stream) in enumerate(placed):
            slots[min(i, size - len(placed) + t)] = stream
        self._template, self._slots = template, slots

    def _validate(self, layout: Any) -> dict[int, str]:
        if not isinstance(layout, list):
            raise LayoutError("layout must be a list of {stream, region} objects")
        template = self._template
        wanted: dict[int, str] = {}
        seen_regions: set[str] = set()
        for entry in layout:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("region"), Mapping):
                raise LayoutError("each layout entry must be an object with a region object")
            region_json = entry["region"]
            region_id = region_json.get("id")
            if not isinstance(region_id, str):
                raise LayoutError("each region must have a string id")
            region_index = template.index_of(region_id) if template else None
            if template is None or region_index is None:
                raise LayoutError(f"Region {region_id} does NOT exist")
            if region_id in seen_regions:
                raise LayoutError(f"Region {region_id} appears more than once")
            seen_regions.add(region_id)
            self._check_same_region(template.regions[region_index], region_json)
            stream = entry.get("stream")
            if stream is None:
                continue
            if not isinstance(stream, str):
                raise LayoutError(f"the stream of region {region_id} must be a stream id")
            if stream not in self:
                raise LayoutError(f"Stream {stream} is NOT in this view")
            if stream in wanted.values():
                raise LayoutError(f"Stream {stream} appears more than once")
            wanted[region_index] = stream
        if len(wanted) > self.capacity:
            raise LayoutError(f"At most {self.capacity} streams can be shown in this view")
        return wanted

    @staticmethod
    def _check_same_region(region: Region, region_json: Mapping[str, Any]) -> None:
        # Regions come from the view's templates; a request naming another shape or
        # area would silently not get what it asked for, so say so instead.
        shape = region_json.get("shape", region.shape)
        if shape != region.shape:
            raise LayoutError(f"Region {region.id} is a {region.shape}, not a {shape}")
        area = region_json.get("area")
        if area is None:
            return
        try:
            same = isinstance(area, Mapping) and Area.from_json(area) == region.area
        except ValueError as exc:
            raise LayoutError(f"Region {region.id}: {exc}") from None
        if not same:
            raise LayoutError(
                f"Region {region.id} has another area in this view; "
                "areas are set by the view's layout templates"
            )


# --- pixels ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """How one input frame is drawn into its region: crop, scale, put (all even for yuv420p)."""

    crop: tuple[int, int, int, int]  # x, y, w, h of the source frame to take
    size: tuple[int, int]  # scaled width, height
    dest: tuple[int, int]  # x, y in the canvas


def _even_round(value: Fraction) -> int:
    # Nearest even integer, halves up: the same fraction always lands on the same edge.
    return 2 * math.floor(value / 2 + Fraction(1, 2))


def _edge(fraction: Fraction, size: int) -> int:
    return min(_even_round(fraction * size), size - size % 2)


def region_rect(area: Area, canvas_w: int, canvas_h: int) -> tuple[int, int, int, int]:
    """The pixel rectangle ``x, y, w, h`` of an area: even-aligned for 4:2:0 chroma.

    Both edges are rounded, not the size, so regions that share an edge share
    it in pixels too: a grid tiles the canvas with no gaps and no overlaps.
    A tiny region may come out 0 pixels wide; draw nothing for it.
    """
    x0 = _edge(area.left, canvas_w)
    y0 = _edge(area.top, canvas_h)
    x1 = _edge(area.left + area.width, canvas_w)
    y1 = _edge(area.top + area.height, canvas_h)
    return x0, y0, x1 - x0, y1 - y0


def _even_fit(value: Fraction, limit: int) -> int:
    return max(2, min(limit, _even_round(value)))


def place(src_w: int, src_h: int, rect: tuple[int, int, int, int], fit_policy: str) -> Placement:
    """Fit a ``src_w`` x ``src_h`` frame into ``rect`` (from :func:`region_rect`).

    ``letterbox``: the whole frame, aspect kept, as large as fits, centred; the
    rest of the rect stays background. ``crop``: the rect is filled, aspect
    kept, and the overflow is cut off evenly on both sides.
    """
    x, y, w, h = rect
    if fit_policy not in FIT_POLICIES:
        raise ValueError(f"unknown fit policy {fit_policy!r}")
    if w < 2 or h < 2 or x % 2 or y % 2 or w % 2 or h % 2:
        raise ValueError(f"rect {rect} is not an even rectangle of at least 2x2")
    if src_w < 2 or src_h < 2:
        raise ValueError(f"source {src_w}x{src_h} is smaller than 2x2")
    # 4:2:0 chroma covers 2x2 luma: an odd last row or column cannot be taken alone.
    sw, sh = src_w - src_w % 2, src_h - src_h % 2
    if fit_policy == "letterbox":
        if sw * h <= sh * w:  # source is relatively taller: full height
            size = (_even_fit(Fraction(sw * h, sh), w), h)
        else:
            size = (w, _even_fit(Fraction(sh * w, sw), h))
        dest = (x + ((w - size[0]) // 2 & ~1), y + ((h - size[1]) // 2 & ~1))
        return Placement(crop=(0, 0, sw, sh), size=size, dest=dest)
    if sw * h >= sh * w:  # source is relatively wider: full height, cut the sides
        crop_w, crop_h = _even_fit(Fraction(sh * w, h), sw), sh
    else:
        crop_w, crop_h = sw, _even_fit(Fraction(sw * h, w), sh)
    crop = ((sw - crop_w) // 2 & ~1, (sh - crop_h) // 2 & ~1, crop_w, crop_h)
    return Placement(crop=crop, size=(w, h), dest=(x, y))
