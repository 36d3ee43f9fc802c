"""limit_malloc_arenas: glibc takes the limit; 0 leaves the default alone."""

from __future__ import annotations

import platform

import pytest

from tessera.portal.config import load_config
from tessera.portal.malloc import fix_malloc_trim_threshold, limit_malloc_arenas


def test_zero_leaves_the_default() -> None:
    assert limit_malloc_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_limit() -> None:
    assert limit_malloc_arenas(2) is True


def test_setting() -> None:
    assert load_config(None, env={}).server.malloc_arenas == 2
    assert load_config(None, env={"TESSERA_SERVER_MALLOC_ARENAS": "0"}).server.malloc_arenas == 0


def test_trim_threshold_zero_leaves_the_default() -> None:
    assert fix_malloc_trim_threshold(0) is False
    assert load_config(None, env={}).server.malloc_trim_threshold == 1 << 20
    env = {"TESSERA_SERVER_MALLOC_TRIM_THRESHOLD": "0"}
    assert load_config(None, env=env).server.malloc_trim_threshold == 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_trim_threshold() -> None:
    assert fix_malloc_trim_threshold(1 << 20) is True
