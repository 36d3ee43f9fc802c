"""TextRenderer: one line of any Unicode text, shaped, as an RGBA picture.

Names come in every script. No single font covers them, and Pillow draws a run
of text in one font, so the text is cut into runs, each in the first font of
a chain that has glyphs for it (read from the fonts' character maps with
fontTools): Noto Sans for Latin, Greek and Cyrillic, then Noto's Arabic,
Hebrew, Devanagari, Thai and CJK fonts, Noto Color Emoji, any other installed
``NotoSans*-Regular`` font, and DejaVu Sans. Each run is shaped by Pillow's
libraqm layout (HarfBuzz for shaping: Arabic joining, Indic reordering,
emoji sequences; FriBiDi for direction within the run). Runs are put in visual
order by the Unicode bidi algorithm's rules applied to whole runs
(:func:`visual_order`): the paragraph's direction is its first strong
character's; a run takes the direction of its first strong character, a run
without one (spaces, emoji, digits) that of the runs around it when they
agree, else the paragraph's; then the runs are reordered by level (rule L2).
So a right-to-left name reads right to left, and a left-to-right phrase in it
("محمد John 😀 Smith") keeps its own order across fonts. Not the full
algorithm: names have no embeddings (``display_text`` drops the controls),
and a run of one font is shaped and ordered inside by libraqm. No PyPI package
gives what this needs (the levels of each character, to shape each font's run
in logical order): python-bidi's current API returns only the reordered text,
which cannot be shaped (Arabic joins in logical order), and its older Python
implementation gives levels only through internal functions, for Unicode 5's
rules.

The fonts are Debian's ``fonts-noto-core``, ``fonts-noto-cjk``,
``fonts-noto-color-emoji`` and ``fonts-dejavu-core``; a machine without them
draws what its remaining fonts cover (Pillow's own font last: ASCII only).

Rendering costs milliseconds, not microseconds: callers render once per
text change and keep the result (see `tessera.mixer.decorations`).
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

__all__ = [
    "ELLIPSIS",
    "FONT_DIRS",
    "MAX_TEXT",
    "FontFile",
    "TextRenderer",
    "default_renderer",
    "display_text",
    "visual_order",
]

logger = logging.getLogger(__name__)

ELLIPSIS = "\u2026"
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/noto"),
    Path("/usr/share/fonts/opentype/noto"),
    Path("/usr/share/fonts/truetype/dejavu"),
)
# Tried first, in this order; then every other NotoSans*-Regular font, then DejaVu.
_PREFERRED = (
    "NotoSans-Regular.ttf",
    "NotoSansArabic-Regular.ttf",
    "NotoSansHebrew-Regular.ttf",
    "NotoSansDevanagari-Regular.ttf",
    "NotoSansThai-Regular.ttf",
    "NotoSansCJK-Regular.ttc",
    "NotoColorEmoji.ttf",
    "NotoSansSymbols-Regular.ttf",
    "NotoSansSymbols2-Regular.ttf",
)
_LAST = ("DejaVuSans.ttf",)
# Noto Color Emoji is a bitmap font with one strike: Pillow loads it at this size only.
_EMOJI_STRIKE = 109
# Joiners, variation selectors, emoji modifiers and tags belong to the cluster before them.
_JOINING = {0x200C, 0x200D, 0x20E3} | set(range(0xFE00, 0xFE10)) | set(range(0x1F3FB, 0x1F400))


@dataclass(frozen=True)
class FontFile:
    """One font of the chain: its file, the face in a collection, what it covers."""

    path: Path
    index: int
    codepoints: frozenset[int]
    bitmap: bool  # a colour bitmap font (emoji): drawn at its strike, then scaled

    def font(self, size: int) -> ImageFont.FreeTypeFont:
        """This font at ``size`` pixels (a bitmap font at its strike)."""
        return _load(self.path, self.index, _EMOJI_STRIKE if self.bitmap else size)


@lru_cache(maxsize=256)
def _load(path: Path, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=index, layout_engine=ImageFont.Layout.RAQM)


def _font_file(path: Path) -> FontFile | None:
    from fontTools.ttLib import TTCollection, TTFont  # imported when first needed: slow

    try:
        if path.suffix == ".ttc":
            font = TTCollection(str(path), lazy=True).fonts[0]
        else:
            font = TTFont(str(path), lazy=True)
        cmap = font.getBestCmap() or {}
        bitmap = "CBDT" in font or "sbix" in font
    except Exception:
        logger.warning("font %s cannot be read; it is not used", path)
        return None
    return FontFile(path, 0, frozenset(cmap), bitmap)


MAX_TEXT = 256  # characters of a label drawn at most: a longer name is elided anyway


def display_text(text: str) -> str:
    """``text`` as one line to draw: control characters and line breaks become spaces.

    Pillow would draw a line break as a second line (and refuses anchors on
    multiline text); bidi embedding controls are dropped, so a name cannot
    reorder what is around it. Joiners and variation selectors stay (emoji).
    """
    kept = []
    for char in text[:MAX_TEXT]:
        category = unicodedata.category(char)
        if category == "Cc" or category in ("Zl", "Zp"):
            kept.append(" ")
        elif category == "Cf" and ord(char) not in _JOINING and not 0xE0020 <= ord(char) <= 0xE007F:
            continue
        else:
            kept.append(char)
    return " ".join("".join(kept).split())


def _strong_direction(text: str) -> str | None:
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return None


def visual_order(directions: list[str | None], paragraph: str) -> list[tuple[int, str]]:
    """The runs' visual order, left to right, as ``(logical index, direction)`` pairs.

    ``directions`` holds each run's strong direction in logical order (``"ltr"``,
    ``"rtl"``, or None for a run of neutral characters); ``paragraph`` is the
    text's. The bidi algorithm's levels at the granularity of runs: a paragraph
    has level 0 (ltr) or 1 (rtl); a run against it one level more (a left-to-right
    run in a right-to-left paragraph takes level 2, as rule I2 gives); a neutral
    run between two runs of one direction takes theirs (N1), else the paragraph's
    (N2); then every maximal sequence at a level or higher is reversed, from the
    highest level down to the lowest odd one (L2). Pure logic.
    """
    base = 1 if paragraph == "rtl" else 0

    def level_of(direction: str) -> int:
        if direction == "rtl":
            return 1 if base == 1 else base + 1
        return base + 1 if base == 1 else 0

    strong = [level_of(d) if d is not None else None for d in directions]
    levels: list[int] = []
    for index, level in enumerate(strong):
        if level is not None:
            levels.append(level)
            continue
        before = next((lv for lv in reversed(strong[:index]) if lv is not None), base)
        after = next((lv for lv in strong[index + 1 :] if lv is not None), base)
        # One level is one direction here: neighbours that agree give theirs.
        levels.append(before if before == after else base)
    order = list(range(len(levels)))
    highest = max(levels, default=0)
    lowest_odd = min((lv for lv in levels if lv % 2), default=highest + 1)
    for level in range(highest, lowest_odd - 1, -1):
        index = 0
        while index < len(order):
            if levels[order[index]] < level:
                index += 1
                continue
            end = index
            while end < len(order) and levels[order[end]] >= level:
                end += 1
            order[index:end] = reversed(order[index:end])
            index = end
    return [(i, "rtl" if levels[i] % 2 else "ltr") for i in order]


def _neutral(char: str) -> bool:
    # Spaces, punctuation, digits and marks go with the run they are in when its font has them.
    category = unicodedata.category(char)
    return category[0] in "ZPNM" or ord(char) in _JOINING


class TextRenderer:
    """Renders one line of text in the font chain (see the module's docstring).

    Thread-safe: the font chain is built once, under a lock, on first use.
    """

    def __init__(self, font_dirs: tuple[Path, ...] = FONT_DIRS) -> None:
        self._dirs = font_dirs
        self._lock = threading.Lock()
        self._chain: list[FontFile] | None = None
        self._rest: list[Path] = []  # fonts not read yet, tried when the chain lacks a glyph
        self.shaping = features.check("raqm") is True
        if not self.shaping:
            logger.warning("Pillow has no libraqm: names in complex scripts are not shaped")

    # --- the font chain

    def _fonts(self) -> list[FontFile]:
        """The fonts read so far, in chain order; the first is read at once."""
        with self._lock:
            if self._chain is None:
                files = {p.name: p for d in self._dirs if d.is_dir() for p in sorted(d.iterdir())}
                others = [
                    p
                    for name, p in files.items()
                    if name.startswith("NotoSans")
                    and name.endswith("-Regular.ttf")
                    and name not in _PREFERRED
                ]
                self._rest = [files[n] for n in _PREFERRED if n in files] + others
                self._rest += [files[n] for n in _LAST if n in files]
                if not self._rest:
                    logger.warning("no Noto or DejaVu fonts found: labels are drawn in ASCII only")
                self._chain = []
                self._read_next()
            return self._chain

    def _read_next(self) -> FontFile | None:
        # Fonts are read in chain order, only as far as the text drawn so far needed:
        # a CJK font's character map costs a tenth of a second to read.
        assert self._chain is not None
        while self._rest:
            font_file = _font_file(self._rest.pop(0))
            if font_file is not None:
                self._chain.append(font_file)
                return font_file
        return None

    def font_for(self, char: str) -> FontFile | None:
        """The first font of the chain with a glyph for ``char``; None if none has one."""
        code = ord(char)
        # Every font not read yet comes after every font read: the first read one that
        # has the glyph is the chain's first.
        for font in self._fonts():
            if code in font.codepoints:
                return font
        with self._lock:
            while (font_file := self._read_next()) is not None:
                if code in font_file.codepoints:
                    return font_file
        return None

    def runs(self, text: str) -> list[tuple[str, FontFile | None]]:
        """``text`` cut into runs of one font each, in logical order."""
        result: list[tuple[str, FontFile | None]] = []
        for char in text:
            if result:
                run, font = result[-1]
                # Not into an emoji run: the emoji font's spaces are as wide as its pictures.
                fits = font is None or (not font.bitmap and ord(char) in font.codepoints)
                if _neutral(char) and fits:
                    result[-1] = (run + char, font)
                    continue
                if ord(char) in _JOINING:
                    result[-1] = (run + char, font)
                    continue
            chosen = self.font_for(char)
            if result and result[-1][1] == chosen:
                result[-1] = (result[-1][0] + char, chosen)
            else:
                result.append((char, chosen))
        return result

    # --- measuring and drawing

    def width(self, text: str, size: int) -> int:
        """The advance width of ``text`` at ``size`` pixels."""
        return sum(self._run_width(run, font, size) for run, font in self.runs(text))

    def _run_width(self, run: str, font: FontFile | None, size: int) -> int:
        if font is None:
            return round(ImageFont.load_default(size).getlength(run))
        length = font.font(size).getlength(run)
        return round(length * size / _EMOJI_STRIKE) if font.bitmap else round(length)

    def elide(self, text: str, size: int, max_width: int) -> str:
        """``text`` if it fits in ``max_width``, else its longest start that fits plus "…"."""
        if self.width(text, size) <= max_width:
            return text
        clusters = _clusters(text)
        low, high = 0, len(clusters)
        # The longest prefix (in clusters, never cutting an emoji sequence) that fits.
        while low < high:
            middle = (low + high + 1) // 2
            candidate = "".join(clusters[:middle]).rstrip() + ELLIPSIS
            if self.width(candidate, size) <= max_width:
                low = middle
            else:
                high = middle - 1
        return "".join(clusters[:low]).rstrip() + ELLIPSIS

    def render(
        self, text: str, size: int, rgb: tuple[int, int, int] = (255, 255, 255)
    ) -> Image.Image:
        """``text`` in colour ``rgb`` (emoji in their own colours) on transparency.

        The picture is one line high (ascent + descent of the main font at
        ``size``), as wide as the text; the baseline is the same for every text.
        """
        main = self._fonts()[0].font(size) if self._fonts() else ImageFont.load_default(size)
        ascent, descent = (
            main.getmetrics() if isinstance(main, ImageFont.FreeTypeFont) else (size, 0)
        )
        height = ascent + descent
        logical = self.runs(text)
        placed = visual_order(
            [_strong_direction(run) for run, _ in logical], _strong_direction(text) or "ltr"
        )
        runs = [(*logical[index], direction) for index, direction in placed]
        widths = [max(1, self._run_width(run, font, size)) for run, font, _ in runs]
        image = Image.new("RGBA", (max(1, sum(widths)), max(1, height)), (0, 0, 0, 0))
        x = 0
        for (run, font, direction), width in zip(runs, widths, strict=True):
            if font is not None and font.bitmap:
                self._draw_bitmap_run(image, run, font, size, x, ascent)
            else:
                face = font.font(size) if font is not None else ImageFont.load_default(size)
                ImageDraw.Draw(image).text(
                    (x, ascent),
                    run,
                    font=face,
                    fill=(*rgb, 255),
                    anchor="ls",
                    # The run's resolved direction: its spaces go to the side the bidi
                    # rules put them (libraqm orders what is inside the run).
                    direction=direction if self.shaping else None,
                )
            x += width
        return image

    def _draw_bitmap_run(
        self, image: Image.Image, run: str, font: FontFile, size: int, x: int, baseline: int
    ) -> None:
        face = font.font(size)
        strike = Image.new("RGBA", (max(1, round(face.getlength(run))), _EMOJI_STRIKE * 5 // 4))
        ImageDraw.Draw(strike).text(
            (0, _EMOJI_STRIKE), run, font=face, anchor="ls", embedded_color=True
        )
        scale = size / _EMOJI_STRIKE
        scaled = strike.resize(
            (max(1, round(strike.width * scale)), max(1, round(strike.height * scale))),
            Image.Resampling.LANCZOS,
        )
        top = baseline - round(_EMOJI_STRIKE * scale)
        image.alpha_composite(scaled, (x, max(0, top)))


def _clusters(text: str) -> list[str]:
    # Approximate grapheme clusters: a base character with its marks, joiners and
    # what a joiner joins (emoji ZWJ sequences), so elision never cuts one apart.
    clusters: list[str] = []
    joined = False
    for char in text:
        attach = clusters and (
            joined or unicodedata.category(char).startswith("M") or ord(char) in _JOINING
        )
        if attach:
            clusters[-1] += char
        else:
            clusters.append(char)
        joined = ord(char) == 0x200D
    return clusters


_default: TextRenderer | None = None
_default_lock = threading.Lock()


def default_renderer() -> TextRenderer:
    """The process's one renderer (its font chain is read once)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TextRenderer()
        return _default


def rgba_array(image: Image.Image) -> np.ndarray:
    """A Pillow image as an ``h x w x 4`` uint8 array."""
    return np.asarray(image.convert("RGBA"), np.uint8)
