"""The suite's waiting rules, checked on its own source (see tests/eventually.py).

Tests wait on conditions through `eventually()`, never sleep and then assert, and never
assert how long something took (speed is bench/'s business). A sleep is allowed where
it is the stimulus itself (a live source's pace, staying away past a timeout), and then
it says so: a comment with the word "stimulus" on its line or the line above.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = (ROOT / "tests", ROOT / "clients" / "python" / "tests")
# The polling helpers themselves: the only places that may poll.
HELPERS = {ROOT / "tests" / "eventually.py", ROOT / "clients/python/tests/client_eventually.py"}
CLOCKS = {"monotonic", "perf_counter", "monotonic_ns", "perf_counter_ns"}


def sources() -> list[Path]:
    return sorted(p for suite in SUITES for p in suite.rglob("*.py") if p not in HELPERS)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def unmarked_sleeps(source: str) -> list[int]:
    """Lines of `asyncio.sleep(x)` / `time.sleep(x)` (x not 0) without a stimulus comment."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call) and _dotted(node.func) in ("asyncio.sleep", "time.sleep")
        ):
            continue
        if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == 0:
            continue  # a yield to the loop, not a wait
        nearby = " ".join(lines[max(0, node.lineno - 2) : node.lineno]).lower()
        if "stimulus" not in nearby:
            found.append(node.lineno)
    return found


def clock_asserts(source: str) -> list[int]:
    """Lines of asserts on a monotonic clock or on an `elapsed` time."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assert):
            continue
        for inner in ast.walk(node.test):
            clock = isinstance(inner, ast.Call) and _dotted(inner.func).split(".")[-1] in CLOCKS
            if clock or (isinstance(inner, ast.Name) and "elapsed" in inner.id):
                found.append(node.lineno)
                break
    return found


def test_no_sleep_without_its_reason() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sources()
        if (lines := unmarked_sleeps(path.read_text()))
    }
    assert offenders == {}, (
        "sleep in a test: wait with eventually() on a condition, or mark a sleep that is the "
        f"stimulus itself with a 'stimulus' comment: {offenders}"
    )


def test_no_wall_clock_asserts() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sources()
        if (lines := clock_asserts(path.read_text()))
    }
    assert offenders == {}, f"assert on elapsed time (speed belongs in bench/): {offenders}"


def test_the_rules_catch_what_they_are_for() -> None:
    bad = (
        "async def t():\n"
        "    await asyncio.sleep(0.5)\n"
        "    started = time.monotonic()\n"
        "    assert time.monotonic() - started < 1.0\n"
        "    assert elapsed < 2\n"
    )
    assert unmarked_sleeps(bad) == [2]
    assert clock_asserts(bad) == [4, 5]
    good = (
        "async def t():\n"
        "    await asyncio.sleep(0)\n"
        "    # The stimulus: stay away past the keep time.\n"
        "    await asyncio.sleep(KEEP + 1)\n"
        "    time.sleep(0.1)  # stimulus: block the loop\n"
        "    assert claims.expires_at > time.time()\n"
    )
    assert unmarked_sleeps(good) == [] and clock_asserts(good) == []
