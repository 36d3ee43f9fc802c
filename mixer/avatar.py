"""Avatar tiles: what a view shows in a region whose input has no video.

An input is drawn as an avatar when it is audio only, paused, or its frames have
stopped: a background colour derived from a stable key (the participant or
stream id), a slightly darker disc, and the user's initials in white. Pure:
numpy and Pillow, no I/O. The text uses the font bundled inside Pillow
(`ImageFont.load_default`), so the result is the same on every machine and
nothing is fetched at run time.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Colours are chosen in OKLCH, a perceptual space, so that every hue is equally
# light: white initials read the same on a yellow tile as on a blue one (contrast
# with white >= 4.3:1 on the disc, >= 3.3:1 on the background), and no key can
# come out near-black or garish.
BACKGROUND_LIGHTNESS = 0.62
DISC_LIGHTNESS = 0.55
CHROMA = 0.13

DISC_DIAMETER = 0.72  # of the tile's shorter side
TEXT_SIZE = 0.45  # font size (em) as a fraction of the disc diameter
TEXT_WIDTH = 0.72  # initials may use at most this much of the disc's width
MIN_FONT_PX = 7  # below this initials are not legible: a tiny tile gets the silhouette

# A full-view 1080p tile is 6 MB, and every publication has its own key: the
# compositor keeps the tiles of its current inputs itself, this cache only
# spares re-rendering the few most recent (the soak benchmark found 64 tiles
# of 2.7 MB each held for streams long gone).
CACHE_SIZE = 8

# Name parts that are not the name: "Ada Lovelace (guest)", "ada@example.com".
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_APOSTROPHES = frozenset("'\u2019\u02bc")

# Pillow's bundled font covers ASCII only. Latin letters that do not decompose
# to an ASCII base under NFKD get their usual transliteration.
_LATIN_EXTRA = {
    "Ł": "L",
    "Ø": "O",
    "Đ": "D",
    "Ð": "D",
    "Æ": "A",
    "Œ": "O",
    "Þ": "T",
    "ß": "S",
    "ẞ": "S",
    "Ħ": "H",
    "Ŧ": "T",
    "Ŋ": "N",
}


def initials(user_name: str) -> str:
    """Up to two upper-case initials: first and last word ("Ada Lovelace" -> "AL").

    Words are runs of letters, digits and combining marks (so "Jean-Luc Picard"
    -> "JP" and "ada.lovelace@example.com" -> "AL"); an initial keeps its
    combining marks ("émile" -> "É"). A name without letters or digits -> "?".
    """
    name = unicodedata.normalize("NFC", user_name).strip()
    if "@" in name and not any(ch.isspace() for ch in name):
        name = name.split("@", 1)[0]  # an e-mail address used as a name
    words = _words(_PARENTHESES.sub(" ", name)) or _words(name)
    if not words:
        return "?"
    picked = words[:1] if len(words) == 1 else [words[0], words[-1]]
    return "".join(_upper(word) for word in picked)


def _words(name: str) -> list[str]:
    """The initial (first letter or digit, with the marks that follow it) of each word."""
    firsts: list[str] = []
    in_word = False
    extending = False  # still right after the word's initial
    for ch in name:
        kind = unicodedata.category(ch)[0]
        if kind in "LN":
            if not in_word:
                firsts.append(ch)
                in_word = extending = True
            else:
                extending = False
        elif kind == "M":
            if extending:
                # A mark right after the initial belongs to it (Devanagari vowel
                # signs, accents that NFC could not compose).
                firsts[-1] += ch
        elif ch in _APOSTROPHES and in_word:
            extending = False  # "O'Brien" is one word
        else:
            in_word = extending = False
    return firsts


def _upper(letter: str) -> str:
    upper = letter.upper()
    # Some letters grow when upper-cased ("ß" -> "SS"): keep them as they are.
    return upper if len(upper) == len(letter) else letter


def avatar_color(key: str) -> RGB:
    """A stable RGB background colour for `key`: hash -> hue at fixed lightness and chroma.

    Stable across processes and machines (a cryptographic hash, not `hash()`,
    which is salted per process).
    """
    return _oklch_rgb(BACKGROUND_LIGHTNESS, CHROMA, _hue(key))


def _hue(key: str) -> float:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return 360.0 * int.from_bytes(digest, "big") / 2.0**64


def _oklch_rgb(lightness: float, chroma: float, hue: float) -> RGB:
    """OKLCH to 8-bit sRGB, lowering chroma until the colour fits the sRGB gamut."""
    for step in range(21):
        c = chroma * (1.0 - step / 20.0)
        a, b = c * math.cos(math.radians(hue)), c * math.sin(math.radians(hue))
        l_ = (lightness + 0.3963377774 * a + 0.2158037573 * b) ** 3
        m_ = (lightness - 0.1055613458 * a - 0.0638541728 * b) ** 3
        s_ = (lightness - 0.0894841775 * a - 1.2914855480 * b) ** 3
        linear = (
            4.0767416621 * l_ - 3.3077115913 * m_ + 0.2309699292 * s_,
            -1.2684380046 * l_ + 2.6097574011 * m_ - 0.3413193965 * s_,
            -0.0041960863 * l_ - 0.7034186147 * m_ + 1.7076147010 * s_,
        )
        if all(-1e-6 <= v <= 1.0 + 1e-6 for v in linear):
            break
    r, g, b = (_srgb8(v) for v in linear)
    return (r, g, b)


def _srgb8(linear: float) -> int:
    v = min(1.0, max(0.0, linear))
    encoded = 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055
    return round(255 * encoded)


def render_avatar(user_name: str, key: str, width: int, height: int) -> npt.NDArray[np.uint8]:
    """An (height, width, 3) uint8 RGB avatar tile; cached, so read-only.

    The background colour comes from `key`, the disc is the same hue a little
    darker, and the initials of `user_name` are centred on it in white. When the
    initials cannot be drawn with the bundled font (Pillow's covers ASCII: "É"
    is drawn as "E", Cyrillic or CJK names are not), when there is no name, or
    when the tile is too small for legible letters, the disc shows a
    head-and-shoulders silhouette instead.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"avatar size must be positive, not {width}x{height}")
    return _render(user_name, key, int(width), int(height))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _render(user_name: str, key: str, width: int, height: int) -> npt.NDArray[np.uint8]:
    hue = _hue(key)
    background = np.array(_oklch_rgb(BACKGROUND_LIGHTNESS, CHROMA, hue), np.float32)
    disc_color = np.array(_oklch_rgb(DISC_LIGHTNESS, CHROMA, hue), np.float32)

    diameter = DISC_DIAMETER * min(width, height)
    cx, cy = width / 2.0, height / 2.0
    ys, xs = np.ogrid[:height, :width]
    # Distance of each pixel centre from the tile centre.
    distance = np.hypot(xs + 0.5 - cx, ys + 0.5 - cy).astype(np.float32)
    disc = _coverage(diameter / 2.0 - distance)

    image = background + (disc_color - background) * disc[:, :, None]
    ink = _initials_ink(_renderable(initials(user_name)), diameter, width, height)
    if ink is None:
        ink = _silhouette(xs, ys, cx, cy, diameter) * disc
    image += (255.0 - image) * ink[:, :, None]

    tile = np.rint(image).astype(np.uint8)
    tile.flags.writeable = False  # shared by every caller through the cache
    return tile


def forget_avatars() -> None:
    """Drop the cached tiles (rooms closed: running views keep their current inputs' own)."""
    _render.cache_clear()


def _coverage(signed_distance: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Antialiased coverage from a distance to an edge (positive inside)."""
    coverage: npt.NDArray[np.float32] = np.clip(signed_distance + 0.5, 0.0, 1.0)
    return coverage


def _renderable(text: str) -> str:
    """`text` reduced to what the bundled ASCII font can draw (maybe nothing)."""
    out = []
    for ch in text:
        if ch.isascii():
            if ch.isalnum():
                out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if c.isascii() and c.isalnum())
        if base:
            out.append(base[0].upper())
        elif ch in _LATIN_EXTRA:
            out.append(_LATIN_EXTRA[ch])
        elif unicodedata.category(ch)[0] != "M":
            return ""  # half a name's initials would be wrong initials: draw none
    return "".join(out)


@functools.lru_cache(maxsize=32)
def _font(size: int) -> Font:
    # Pillow >= 10.1 embeds a TrueType font here when FreeType is available;
    # without FreeType it returns its fixed-size bitmap font (scaled up below).
    return ImageFont.load_default(size=size)


def _initials_ink(
    text: str, diameter: float, width: int, height: int
) -> npt.NDArray[np.float32] | None:
    """Coverage (0..1) of the initials centred on the tile, or None if not drawable."""
    size = round(TEXT_SIZE * diameter)
    if not text or size < MIN_FONT_PX:
        return None
    font = _font(size)
    left, top, right, bottom = (round(v) for v in font.getbbox(text))
    if right - left > TEXT_WIDTH * diameter and isinstance(font, ImageFont.FreeTypeFont):
        size = max(MIN_FONT_PX, int(size * TEXT_WIDTH * diameter / (right - left)))
        font = _font(size)
        left, top, right, bottom = (round(v) for v in font.getbbox(text))
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255)
    if not isinstance(font, ImageFont.FreeTypeFont):
        # Bitmap font: scale its glyphs to the height a TrueType cap would have.
        scale = min(0.32 * diameter / mask.height, TEXT_WIDTH * diameter / mask.width)
        if scale > 1.0:
            new_size = (max(1, round(mask.width * scale)), max(1, round(mask.height * scale)))
            mask = mask.resize(new_size, Image.Resampling.BILINEAR)

    ink = np.zeros((height, width), np.float32)
    x0 = round(width / 2.0 - mask.width / 2.0)
    y0 = round(height / 2.0 - mask.height / 2.0)
    glyphs = np.asarray(mask, np.float32) / 255.0
    # The text fits inside the disc, but clip anyway for odd aspect ratios.
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(width, x0 + mask.width), min(height, y0 + mask.height)
    if xe <= xs or ye <= ys:
        return None
    ink[ys:ye, xs:xe] = glyphs[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return ink


def _silhouette(
    xs: npt.NDArray[np.int_],
    ys: npt.NDArray[np.int_],
    cx: float,
    cy: float,
    diameter: float,
) -> npt.NDArray[np.float32]:
    """Coverage of a head-and-shoulders figure for a participant without a usable name."""
    px = (xs + 0.5 - cx).astype(np.float32)
    py = (ys + 0.5 - cy).astype(np.float32)
    head = _coverage(0.16 * diameter - np.hypot(px, py + 0.11 * diameter))
    # Shoulders: the top of an ellipse below the head (the disc clips its bottom).
    rx, ry = 0.30 * diameter, 0.24 * diameter
    norm = np.hypot(px / rx, (py - 0.36 * diameter) / ry)
    shoulders = _coverage((1.0 - norm) * min(rx, ry))
    return np.maximum(head, shoulders)
