"""Shared fixtures: a real Tessera server on 127.0.0.1 (random port, SQLite in tmp_path)."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _check_install() -> None:
    """Stop at once, saying what to run, when a module of ours is not installed.

    Tessera is installed in setuptools' strict editable mode (a tree of links, see
    pyproject.toml): a module added since the last install is not importable.
    """
    import importlib.util

    missing = []
    for folder in ("portal", "conference", "webrtc_agent", "mixer", "recorder", "config", "media"):
        spec = importlib.util.find_spec(f"tessera.{folder}")
        installed = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
        for source in sorted((ROOT / folder).glob("*.py")):
            if installed is None or not (installed / source.name).exists():
                missing.append(f"{folder}/{source.name}")
    if missing:
        pytest.exit(
            f"not installed: {', '.join(missing)}; run `bash scripts/venv.sh -e '.[test]'`",
            returncode=4,
        )


_check_install()

from tests.support import RunningServer, start_server  # noqa: E402

logging.getLogger("aioice").setLevel(logging.WARNING)
logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@pytest.fixture
async def tessera(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path)
    try:
        yield running
    finally:
        await running.stop()
