"""Layout engine: OWT's templates, placing inputs, REST/stream-control changes, pixels."""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.mixer.layout import (
    Area,
    Layout,
    LayoutError,
    LayoutTemplates,
    Region,
    place,
    region_rect,
)

Rect = tuple[int, int, int, int]

# Region counts OWT shows for 1..17 inputs with maxInput 16 (17 is clamped to 16).
FLUID_COUNTS = [1, 4, 4, 4, 9, 9, 9, 9, 9, 16, 16, 16, 16, 16, 16, 16, 16]
# OWT's lecture family for maxInput 16: 1, 6, 8, 10, 12, 13, 14, 17 regions.
LECTURE_COUNTS = [1, 6, 6, 6, 6, 6, 8, 8, 10, 10, 12, 12, 13, 14, 17, 17, 17]


def area(left: str, top: str, width: str, height: str) -> dict[str, str]:
    return {"left": left, "top": top, "width": width, "height": height}


def custom(*areas: dict[str, str], primary: str | None = None) -> dict[str, Any]:
    regions = [{"id": str(i + 1), "shape": "rectangle", "area": a} for i, a in enumerate(areas)]
    return {"region": regions} | ({"primary": primary} if primary else {})


def options(base: str = "fluid", *customs: dict[str, Any]) -> dict[str, Any]:
    return {"fitPolicy": "letterbox", "templates": {"base": base, "custom": list(customs)}}


def layout_with(n: int, base: str = "fluid", max_input: int = 16) -> Layout:
    layout = Layout(LayoutTemplates.from_options(options(base)), max_input)
    for i in range(n):
        layout.add(f"s{i}")
    return layout


def snapshot(layout: Layout) -> tuple[Any, ...]:
    return (layout.to_json(), layout.queued(), layout.version, layout.assignments())


def overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def assert_tiles(regions: list[Region], width: int, height: int) -> None:
    """Disjoint rectangles inside the canvas whose areas add up to it cover it exactly."""
    rects = [region_rect(r.area, width, height) for r in regions]
    for x, y, w, h in rects:
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
        assert x % 2 == y % 2 == w % 2 == h % 2 == 0
    for a, b in itertools.combinations(rects, 2):
        assert not overlap(a, b), (a, b)
    assert sum(w * h for _, _, w, h in rects) == width * height


# --- templates -----------------------------------------------------------------


@pytest.mark.parametrize(("base", "counts"), [("fluid", FLUID_COUNTS), ("lecture", LECTURE_COUNTS)])
def test_region_counts_for_1_to_17_inputs(base: str, counts: list[int]) -> None:
    templates = LayoutTemplates.from_options(options(base))
    assert [len(templates.regions_for(n, 16)) for n in range(1, 18)] == counts


@pytest.mark.parametrize("base", ["fluid", "lecture"])
@pytest.mark.parametrize("max_input", [1, 4, 5, 9, 16, 17, 25, 64])
def test_regions_stay_inside_the_view(base: str, max_input: int) -> None:
    templates = LayoutTemplates.from_options(options(base))
    for n in range(1, max_input + 2):
        regions = templates.regions_for(n, max_input)
        assert [r.id for r in regions] == [str(i + 1) for i in range(len(regions))]
        for r in regions:
            a = r.area
            assert all(0 <= v <= 1 for v in (a.left, a.top, a.width, a.height))
            assert a.left + a.width <= 1 and a.top + a.height <= 1
            assert a.width > 0 and a.height > 0


def test_fluid_grids_are_row_major_k_by_k() -> None:
    templates = LayoutTemplates()
    for n, k in [(1, 1), (2, 2), (4, 2), (5, 3), (9, 3), (10, 4), (16, 4)]:
        regions = templates.regions_for(n, 16)
        assert len(regions) == k * k
        for i, r in enumerate(regions):
            assert r.area == Area(
                Fraction(i % k, k), Fraction(i // k, k), Fraction(1, k), Fraction(1, k)
            )
    # More inputs than maxInput: the largest grid maxInput needs.
    assert len(templates.regions_for(40, 16)) == 16
    assert len(templates.regions_for(40, 17)) == 25


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (640, 480), (1920, 1080), (352, 288)])
@pytest.mark.parametrize("base", ["fluid", "lecture"])
def test_templates_tile_the_canvas_in_pixels(base: str, width: int, height: int) -> None:
    templates = LayoutTemplates.from_options(options(base))
    for template in templates.templates(25):
        assert_tiles(list(template.regions), width, height)


def test_lecture_primary_is_region_1_and_largest() -> None:
    templates = LayoutTemplates.from_options(options("lecture"))
    primaries = []
    for n in range(1, 26):
        regions = templates.regions_for(n, 25)
        primary = regions[0]
        assert primary.id == "1" and primary.area.left == 0 and primary.area.top == 0
        others = [r.area.width * r.area.height for r in regions[1:]]
        assert all(primary.area.width * primary.area.height > size for size in others)
        primaries.append(primary.area.width)
    # OWT's sizes: 2/3 for 2..6 inputs, then 3/4, 4/5, 5/6, 1/2 (13), 6/7, 3/5, 2/3, 5/7.
    assert primaries[1] == Fraction(2, 3) and primaries[6] == Fraction(3, 4)
    assert primaries[12] == Fraction(1, 2) and primaries[14] == Fraction(3, 5)
    assert primaries[24] == Fraction(5, 7)
    # Lecture shows at most 25 inputs, whatever maxInput says (as in OWT).
    assert len(templates.regions_for(40, 64)) == 25


def test_lecture_six_region_template_is_owts() -> None:
    regions = LayoutTemplates.from_options(options("lecture")).regions_for(2, 16)
    third, two_thirds = "1/3", "2/3"
    assert [r.to_json()["area"] for r in regions] == [
        area("0/1", "0/1", two_thirds, two_thirds),
        area(two_thirds, "0/1", third, third),
        area(two_thirds, third, third, third),
        area(two_thirds, two_thirds, third, third),
        area(third, two_thirds, third, third),
        area("0/1", two_thirds, third, third),
    ]


def test_custom_template_replaces_the_base_one_with_as_many_regions() -> None:
    # Four regions: a big one and three small ones along the bottom.
    four = custom(
        area("0/1", "0/1", "1/1", "3/4"),
        area("0/1", "3/4", "1/3", "1/4"),
        area("1/3", "3/4", "1/3", "1/4"),
        area("2/3", "3/4", "1/3", "1/4"),
    )
    templates = LayoutTemplates.from_options(options("fluid", four))
    for n in (2, 3, 4):
        regions = templates.regions_for(n, 16)
        assert regions[0].area.height == Fraction(3, 4)
    assert len(templates.regions_for(5, 16)) == 9  # base grids for the other sizes
    assert len(templates.regions_for(1, 16)) == 1


def test_custom_template_adds_a_size() -> None:
    side_by_side = custom(area("0/1", "0/1", "1/2", "1/1"), area("1/2", "0/1", "1/2", "1/1"))
    templates = LayoutTemplates.from_options(options("fluid", side_by_side))
    assert [r.area.height for r in templates.regions_for(2, 16)] == [1, 1]
    assert len(templates.regions_for(3, 16)) == 4
    assert [len(t.regions) for t in templates.templates(16)] == [1, 2, 4, 9, 16]


def test_custom_replaces_lectures_13_region_template() -> None:
    # OWT's merge keeps its own 13-region lecture template here; Tessera takes the custom one.
    thirteen = custom(*(area(f"{i}/13", "0/1", "1/13", "1/1") for i in range(13)))
    templates = LayoutTemplates.from_options(options("lecture", thirteen))
    assert templates.regions_for(13, 16)[0].area.width == Fraction(1, 13)


def test_void_without_custom_has_no_regions() -> None:
    templates = LayoutTemplates.from_options(options("void"))
    assert templates.regions_for(3, 16) == []
    assert templates.capacity(16) == 0
    layout = Layout(templates)
    layout.add("a")
    assert layout.regions == [] and layout.to_json() == [] and layout.queued() == ["a"]
    assert layout.version == 0
    assert layout.set_primary("a") is False
    with pytest.raises(LayoutError, match="Region 1 does NOT exist"):
        layout.set_region("a", "1")


def test_void_with_custom_templates_only() -> None:
    one = custom(area("1/4", "1/4", "1/2", "1/2"))
    three = custom(
        area("0/1", "0/1", "1/1", "1/1"),
        area("0/1", "3/4", "1/4", "1/4"),
        area("3/4", "3/4", "1/4", "1/4"),
    )
    templates = LayoutTemplates.from_options(options("void", three, one))
    assert [len(templates.regions_for(n, 16)) for n in range(1, 6)] == [1, 3, 3, 3, 3]
    assert templates.capacity(16) == 3
    layout = Layout(templates)
    for stream in "abcd":
        layout.add(stream)
    assert [s for _, s in layout.assignments()] == ["a", "b", "c"]
    assert layout.queued() == ["d"]
    # Overlapping regions: list order is drawing order (the small ones on top).
    assert [r.id for r in layout.regions] == ["1", "2", "3"]


def test_custom_primary_region() -> None:
    two = custom(area("0/1", "0/1", "1/4", "1/4"), area("0/1", "0/1", "1/1", "1/1"), primary="2")
    layout = Layout(LayoutTemplates.from_options(options("void", two)))
    layout.add("a")
    layout.add("b")
    primary = layout.primary_region
    assert primary is not None and primary.id == "2"
    assert layout.set_primary("a") is True
    assert layout.get_region("a") == "2" and layout.get_region("b") == "1"


def test_from_options_accepts_defaults_and_rejects_bad_options() -> None:
    templates = LayoutTemplates.from_options({})
    assert templates.base == "gallery" and templates.fit_policy == "crop"
    # OWT's bases keep OWT's default fit; an explicit fit policy is kept with any base.
    fluid = LayoutTemplates.from_options({"templates": {"base": "fluid"}})
    assert fluid.fit_policy == "letterbox"
    assert LayoutTemplates.from_options({"fitPolicy": "letterbox"}).fit_policy == "letterbox"
    crop = {"fitPolicy": "crop", "templates": {"base": "fluid"}}
    assert LayoutTemplates.from_options(crop).fit_policy == "crop"
    with pytest.raises(LayoutError, match="base"):
        LayoutTemplates.from_options({"templates": {"base": "mosaic"}})
    with pytest.raises(LayoutError, match="greater than 1"):
        LayoutTemplates.from_options(options("fluid", custom(area("0/1", "0/1", "3/2", "1/1"))))


# --- placing inputs ------------------------------------------------------------------


def test_inputs_fill_regions_in_arrival_order() -> None:
    layout = layout_with(3)
    assert [r.id for r in layout.regions] == ["1", "2", "3", "4"]
    assert [s for _, s in layout.assignments()] == ["s0", "s1", "s2", None]
    assert "s1" in layout and None not in layout and "s9" not in layout
    # Only regions that hold a stream are in the wire form (OWT's layoutSolution).
    assert [e["region"]["id"] for e in layout.to_json()] == ["1", "2", "3"]
    layout.add("s1")  # idempotent
    assert layout.streams() == ["s0", "s1", "s2"]


def test_max_input_clamp_and_queue() -> None:
    layout = layout_with(18)
    assert len(layout.regions) == 16
    assert [s for _, s in layout.assignments()] == [f"s{i}" for i in range(16)]
    assert layout.queued() == ["s16", "s17"]
    assert layout.get_region("s16") is None
    layout.remove("s5")
    assert layout.get_region("s16") == "6"  # the first waiting one takes the freed place
    assert layout.queued() == ["s17"]
    assert [s for _, s in layout.assignments()].count(None) == 0
    layout.remove("s17")  # leaving the queue changes nothing that is drawn
    assert layout.queued() == []


def test_lecture_with_max_input_16_shows_16_of_17_regions() -> None:
    layout = layout_with(17, "lecture")
    assert len(layout.regions) == 17
    assert len(layout.to_json()) == 16 and layout.queued() == ["s16"]
    with pytest.raises(LayoutError, match="already shows 16"):
        layout.set_region("s16", "17")
    layout.set_region("s16", "3")
    assert layout.get_region("s16") == "3" and layout.queued() == ["s2"]


def test_remove_keeps_the_others_in_place() -> None:
    layout = layout_with(4)
    layout.remove("s1")  # 3 inputs still use the 2x2 grid: nobody moves (OWT shifts them)
    assert [s for _, s in layout.assignments()] == ["s0", None, "s2", "s3"]
    layout.add("new")
    assert layout.get_region("new") == "2"


def test_shrinking_keeps_relative_order_and_regions_where_possible() -> None:
    layout = layout_with(7)  # 3x3: s0..s6 in regions 1..7
    layout.set_region("s1", "9")  # s1 to the last region, region 2 empty
    layout.remove("s3")
    layout.remove("s4")  # 5 left, still 3x3
    assert [s for _, s in layout.assignments()] == [
        "s0",
        None,
        "s2",
        None,
        None,
        "s5",
        "s6",
        None,
        "s1",
    ]
    layout.remove("s6")  # 4 left: 2x2, order kept, s0 and s2 stay in regions 1 and 3
    assert [s for _, s in layout.assignments()] == ["s0", "s2", "s5", "s1"]
    layout.add("s7")  # back to 3x3: everyone keeps their region
    assert [s for _, s in layout.assignments()][:5] == ["s0", "s2", "s5", "s1", "s7"]


def test_freed_primary_region_takes_the_next_stream() -> None:
    layout = layout_with(4, "lecture")
    layout.remove("s0")
    assert [s for _, s in layout.assignments()][:4] == ["s1", None, "s2", "s3"]
    # With a queue, the first waiting stream takes the primary's place instead.
    layout = layout_with(18, "lecture")
    layout.remove("s0")
    assert layout.get_region("s16") == "1"


def test_set_region_swaps() -> None:
    layout = layout_with(3)
    version = layout.version
    layout.set_region("s2", "1")
    assert [s for _, s in layout.assignments()] == ["s2", "s1", "s0", None]
    assert layout.version == version + 1
    layout.set_region("s1", "4")  # into an empty region (OWT refuses this)
    assert [s for _, s in layout.assignments()] == ["s2", None, "s0", "s1"]
    layout.set_region("s1", "4")  # already there: no change
    assert layout.version == version + 2


def test_set_region_of_a_queued_stream() -> None:
    layout = layout_with(17)
    layout.set_region("s16", "2")
    assert layout.get_region("s16") == "2"
    assert layout.queued() == ["s1"]


def test_set_region_errors_change_nothing() -> None:
    layout = layout_with(3)
    before = snapshot(layout)
    with pytest.raises(LayoutError, match="Region 7 does NOT exist"):
        layout.set_region("s0", "7")
    with pytest.raises(LayoutError, match="Stream nope is NOT in this view"):
        layout.set_region("nope", "1")
    assert snapshot(layout) == before


def test_set_primary() -> None:
    layout = layout_with(17, "lecture")
    assert layout.set_primary("s0") is False  # already primary
    assert layout.set_primary("unknown") is False
    assert layout.set_primary("s3") is True
    assert layout.get_region("s3") == "1" and layout.get_region("s0") == "4"
    assert layout.set_primary("s16") is True  # a waiting stream moves in, the primary waits
    assert layout.get_region("s16") == "1" and layout.queued() == ["s3"]


# --- REST /info/layout -------------------------------------------------------------------


def test_apply_moves_listed_streams_and_keeps_the_rest() -> None:
    layout = layout_with(4)
    version = layout.version
    layout.apply([{"stream": "s3", "region": {"id": "1"}}, {"stream": "s0", "region": {"id": "2"}}])
    assert [s for _, s in layout.assignments()] == ["s3", "s0", "s2", "s1"]
    assert layout.version == version + 1
    layout.apply(layout.to_json())  # the layout as clients see it is a valid request: no change
    assert layout.version == version + 1


def test_apply_can_bring_in_a_queued_stream() -> None:
    layout = layout_with(18)
    layout.apply([{"stream": "s17", "region": {"id": "1"}}])
    assert layout.get_region("s17") == "1"
    assert layout.queued() == ["s0", "s16"]  # the displaced one first


def test_apply_entries_without_stream_reserve_nothing() -> None:
    layout = layout_with(2)
    layout.apply([{"stream": "s1", "region": {"id": "1"}}, {"region": {"id": "2"}}])
    assert [s for _, s in layout.assignments()] == ["s1", "s0", None, None]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ([{"stream": "ghost", "region": {"id": "3"}}], "Stream ghost is NOT in this view"),
        ([{"stream": "s0", "region": {"id": "9"}}], "Region 9 does NOT exist"),
        (
            [{"stream": "s0", "region": {"id": "2"}}, {"stream": "s1", "region": {"id": "2"}}],
            "Region 2 appears more than once",
        ),
        (
            [{"stream": "s0", "region": {"id": "2"}}, {"stream": "s0", "region": {"id": "3"}}],
            "Stream s0 appears more than once",
        ),
        (
            [{"stream": "s0", "region": {"id": "2", "area": area("0/1", "0/1", "1/1", "1/1")}}],
            "Region 2 has another area",
        ),
        ([{"stream": "s0", "region": {"id": "2", "shape": "circle"}}], "not a circle"),
        ({"stream": "s0"}, "must be a list"),
        ([{"stream": "s0"}], "region object"),
    ],
)
def test_apply_validates_everything_before_changing_anything(request_: Any, message: str) -> None:
    layout = layout_with(4)
    # The first entry is valid: a half-applied request would show.
    before = snapshot(layout)
    with pytest.raises(LayoutError, match=message):
        layout.apply(
            [{"stream": "s3", "region": {"id": "1"}}, *request_]
            if isinstance(request_, list)
            else request_
        )
    assert snapshot(layout) == before


def test_apply_accepts_unreduced_fractions_of_the_same_area() -> None:
    layout = layout_with(4)
    layout.apply(
        [{"stream": "s0", "region": {"id": "4", "area": area("2/4", "2/4", "2/4", "2/4")}}]
    )
    assert layout.get_region("s0") == "4"


# --- wire form and versions ------------------------------------------------------------------


def test_to_json_uses_reduced_fraction_strings() -> None:
    layout = layout_with(10)  # 4x4 grid
    entries = layout.to_json()
    assert entries[0] == {
        "stream": "s0",
        "region": {"id": "1", "shape": "rectangle", "area": area("0/1", "0/1", "1/4", "1/4")},
    }
    assert entries[2]["region"]["area"]["left"] == "1/2"  # OWT would send "2/4"
    assert entries[9]["region"]["area"] == area("1/4", "1/2", "1/4", "1/4")
    assert Region.from_json(entries[9]["region"]) == layout.regions[9]
    single = layout_with(1).to_json()
    assert single[0]["region"]["area"] == area("0/1", "0/1", "1/1", "1/1")


def test_version_increments_on_every_visible_change() -> None:
    layout = layout_with(0)
    versions = [layout.version]
    layout.add("a")
    versions.append(layout.version)
    layout.add("b")
    versions.append(layout.version)
    layout.set_region("a", "2")
    versions.append(layout.version)
    layout.set_primary("a")
    versions.append(layout.version)
    layout.remove("b")
    versions.append(layout.version)
    assert versions == [0, 1, 2, 3, 4, 5]
    layout.add("a")
    layout.remove("ghost")
    assert layout.version == 5


# --- pixels -----------------------------------------------------------------------------------


def test_region_rect_is_even_and_shares_edges() -> None:
    assert region_rect(Area(Fraction(0), Fraction(0), Fraction(1), Fraction(1)), 1280, 720) == (
        0,
        0,
        1280,
        720,
    )
    left = Area(Fraction(0), Fraction(0), Fraction(1, 3), Fraction(1, 3))
    right = Area(Fraction(1, 3), Fraction(0), Fraction(2, 3), Fraction(1, 3))
    a, b = region_rect(left, 640, 480), region_rect(right, 640, 480)
    assert a == (0, 0, 214, 160) and b == (214, 0, 426, 160)
    assert a[0] + a[2] == b[0]


fractions = st.fractions(min_value=0, max_value=1, max_denominator=64)


@given(fractions, fractions, st.sampled_from([(1280, 720), (640, 480), (1920, 1080), (176, 144)]))
def test_region_rect_alignment(a: Fraction, b: Fraction, canvas: tuple[int, int]) -> None:
    lo, hi = min(a, b), max(a, b)
    w, h = canvas
    rect = region_rect(Area(lo, lo, hi - lo, hi - lo), w, h)
    x, y, rw, rh = rect
    assert all(v % 2 == 0 for v in rect)
    assert 0 <= x and x + rw <= w and 0 <= y and y + rh <= h
    assert abs(x - lo * w) <= 1 and abs(x + rw - hi * w) <= 1
    # The neighbour to the right starts exactly where this one ends.
    if hi < 1:
        neighbour = region_rect(Area(hi, lo, 1 - hi, hi - lo), w, h)
        assert neighbour[0] == x + rw


def near(actual: int, exact: Fraction) -> bool:
    """Within a pixel of the exact size; 2 (the smallest 4:2:0 picture) below that."""
    return abs(actual - exact) <= 1 or (actual == 2 and exact < 2)


def check_placement(src_w: int, src_h: int, rect: Rect, fit_policy: str) -> None:
    p = place(src_w, src_h, rect, fit_policy)
    x, y, w, h = rect
    cx, cy, cw, ch = p.crop
    sw, sh = p.size
    dx, dy = p.dest
    assert all(v % 2 == 0 for v in (*p.crop, *p.size, *p.dest))
    assert sw >= 2 and sh >= 2
    assert 0 <= cx and 0 <= cy and cx + cw <= src_w and cy + ch <= src_h
    assert x <= dx and y <= dy and dx + sw <= x + w and dy + sh <= y + h
    if fit_policy == "letterbox":
        assert (cx, cy, cw, ch) == (0, 0, src_w - src_w % 2, src_h - src_h % 2)
        assert sw == w or sh == h  # as large as fits
        # Aspect kept within a pixel, and centred within a pixel.
        assert (sw == w and near(sh, Fraction(w * ch, cw))) or (
            sh == h and near(sw, Fraction(h * cw, ch))
        )
        assert abs((dx - x) - (x + w - dx - sw)) <= 2 and abs((dy - y) - (y + h - dy - sh)) <= 2
    else:
        assert (sw, sh, dx, dy) == (w, h, x, y)  # fills the rect
        assert cw == src_w - src_w % 2 or ch == src_h - src_h % 2  # crops one dimension only
        assert (cw == src_w - src_w % 2 and near(ch, Fraction(cw * h, w))) or (
            ch == src_h - src_h % 2 and near(cw, Fraction(ch * w, h))
        )
        assert abs(cx - (src_w - cx - cw)) <= 3 and abs(cy - (src_h - cy - ch)) <= 3


SOURCES = [
    (640, 480),
    (1280, 720),
    (720, 1280),
    (320, 240),
    (1920, 1080),
    (480, 480),
    (176, 144),
    (641, 361),
]
RECTS: list[Rect] = [
    (0, 0, 1280, 720),
    (426, 240, 428, 240),
    (0, 0, 214, 160),
    (854, 0, 426, 720),
    (2, 2, 2, 2),
]


@pytest.mark.parametrize("fit_policy", ["letterbox", "crop"])
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("rect", RECTS)
def test_place(source: tuple[int, int], rect: Rect, fit_policy: str) -> None:
    check_placement(*source, rect, fit_policy)


def test_place_examples() -> None:
    # 4:3 into 16:9: pillarbox; 16:9 into 4:3: letterbox.
    p = place(640, 480, (0, 0, 1280, 720), "letterbox")
    assert p.size == (960, 720) and p.dest == (160, 0) and p.crop == (0, 0, 640, 480)
    p = place(1280, 720, (0, 0, 640, 480), "letterbox")
    assert p.size == (640, 360) and p.dest == (0, 60)
    # Crop: 4:3 into 16:9 keeps the full width and cuts top and bottom.
    p = place(640, 480, (0, 0, 1280, 720), "crop")
    assert p.crop == (0, 60, 640, 360) and p.size == (1280, 720) and p.dest == (0, 0)
    p = place(1280, 720, (100, 40, 480, 480), "crop")
    assert p.crop == (280, 0, 720, 720) and p.dest == (100, 40)


@given(
    st.integers(2, 4096),
    st.integers(2, 4096),
    st.integers(0, 640).map(lambda v: v * 2),
    st.integers(0, 360).map(lambda v: v * 2),
    st.integers(1, 960).map(lambda v: v * 2),
    st.integers(1, 540).map(lambda v: v * 2),
    st.sampled_from(["letterbox", "crop"]),
)
def test_place_properties(
    src_w: int, src_h: int, x: int, y: int, w: int, h: int, fit_policy: str
) -> None:
    check_placement(src_w, src_h, (x, y, w, h), fit_policy)


def test_place_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        place(640, 480, (1, 0, 100, 100), "letterbox")
    with pytest.raises(ValueError):
        place(640, 480, (0, 0, 0, 100), "letterbox")
    with pytest.raises(ValueError):
        place(640, 480, (0, 0, 100, 100), "stretch")


def test_set_templates_keeps_the_streams_in_order() -> None:
    layout = Layout(LayoutTemplates("fluid"), max_input=4)
    for stream in ("a", "b", "c", "d", "e"):
        layout.add(stream)
    assert layout.queued() == ["e"]
    version = layout.version
    layout.set_templates(LayoutTemplates("lecture"))
    assert layout.version > version
    assert layout.templates.base == "lecture"
    assert layout.streams() == ["a", "b", "c", "d", "e"]
    assert layout.get_region("a") == "1"
    # Lecture with four inputs: one large region and three small ones.
    areas = {region.id: region.area for region, _ in layout.assignments()}
    assert areas["1"].width > areas[layout.get_region("b") or ""].width


def test_set_templates_to_void_shows_nothing_and_back_shows_everyone() -> None:
    layout = Layout(LayoutTemplates("fluid"), max_input=4)
    for stream in ("a", "b"):
        layout.add(stream)
    layout.set_templates(LayoutTemplates("void"))
    assert layout.to_json() == []
    assert layout.queued() == ["a", "b"]
    layout.set_templates(LayoutTemplates("fluid"))
    assert [entry["stream"] for entry in layout.to_json()] == ["a", "b"]
