"""The free space recordings leave for the database (recorder/diskreserve.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.recorder.diskreserve import (
    MIB,
    DiskReserveReached,
    check_reserve,
    free_bytes,
    shortfall,
)


def test_shortfall_names_what_is_free_and_the_setting() -> None:
    assert shortfall(free=300 * MIB, reserve=256 * MIB) is None
    assert shortfall(free=0, reserve=0) is None  # no reserve: recordings may fill the disk
    reason = shortfall(free=256 * MIB, reserve=256 * MIB)
    assert reason == (
        "disk full: 256.0 MiB free on the recordings' disk, not more than the "
        "256 MiB kept free for the database ([recording] disk_reserve_mb)"
    )


def test_a_folder_not_made_yet_is_measured_on_its_parent(tmp_path: Path) -> None:
    assert free_bytes(tmp_path / "room" / "not-yet") == free_bytes(tmp_path)
    check_reserve(tmp_path / "room", 0)
    with pytest.raises(DiskReserveReached) as reached:
        check_reserve(tmp_path / "room", free_bytes(tmp_path) + 1024 * MIB)
    assert reached.value.strerror.startswith("disk full: ")
    assert not (tmp_path / "room").exists()
