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
