"""Browser fixtures: headless Debian Chromium driven by playwright-core (see harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.harness import Browser, missing_requirements

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(
            f"browser tests skipped: {reason}. `bash scripts/test.sh` as root installs Chromium"
            " and runs `npm ci`."
        )
    launched = await Browser.launch()
    try:
        yield launched
    finally:
        await launched.close()


@pytest.fixture
def artifacts() -> Path:
    """Where tests leave screenshots for people to look at (test-artifacts/, git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
