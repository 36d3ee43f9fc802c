"""The code blocks of README.md, for the tests that run them as written.

A block that cannot run in a test is marked on the line before its fence with
``<!-- readme-test: skip (why) -->``; the reason is required.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
FENCE = re.compile(r"^```(?P<language>[a-z]*)\s*$")
# Where the README's examples say the server is; the tests put their server elsewhere.
DEFAULT_ADDRESS = "127.0.0.1:8080"


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, its text, the line its fence opens on (1-based)
    and, if it is marked so, why it is not run."""

    language: str
    text: str
    line: int
    skip: str | None


def parse_blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown``, in order; a fence left open is an error."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            index += 1
        if index == len(lines):
            raise ValueError(f"README line {start + 1}: a code block is never closed")
        marker = SKIP.search(lines[start - 1]) if start > 0 else None
        blocks.append(
            Block(
                language=opening["language"],
                text="\n".join(lines[start + 1 : index]) + "\n",
                line=start + 1,
                skip=marker["reason"] if marker else None,
            )
        )
        index += 1
    return blocks


def readme_blocks() -> list[Block]:
    return parse_blocks(README.read_text(encoding="utf-8"))


def at(text: str, address: str) -> str:
    """``text`` with the README's default address replaced by the test server's."""
    return text.replace(DEFAULT_ADDRESS, address)
