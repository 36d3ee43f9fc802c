"""Words as the recogniser gives them, and as people compare them (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# pocketsphinx's markers for the start and end of an utterance, silence and noises.
_NOT_WORDS = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")
# Alternative pronunciations are told apart by a suffix: "the(2)".
_VARIANT = re.compile(r"\(\d+\)$")
_LETTERS = re.compile(r"[^\w']+")


def spoken_words(raw: Iterable[str]) -> list[str]:
    """The words of a recogniser's segmentation: markers dropped, variants named plainly."""
    words = []
    for token in raw:
        if _NOT_WORDS.match(token):
            continue
        word = _VARIANT.sub("", token)
        if word:
            words.append(word)
    return words


def normalised(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing what was said with what was heard."""
    return [w.strip("'") for w in _LETTERS.split(text.lower()) if w.strip("'")]


def matched_words(said: str, heard: str) -> list[str]:
    """The words of ``said`` that ``heard`` holds in the same order (a longest common
    subsequence of words), so that a word heard twice counts once."""
    a, b = normalised(said), normalised(heard)
    table = _lcs_table(a, b)
    out: list[str] = []
    i, j = len(a), len(b)
    while i and j:
        if a[i - 1] == b[j - 1]:
            out.append(a[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] >= table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    out.reverse()
    return out


def _lcs_table(a: Sequence[str], b: Sequence[str]) -> list[list[int]]:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            if x == y:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table
