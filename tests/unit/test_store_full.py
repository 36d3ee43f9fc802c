"""The SQLite store on a database that cannot grow: every write is a 503 "Storage full"
(StoreUnavailable), never an sqlite3 error; reads go on; once there is room again, writes
work again. SQLite's ``max_page_count`` makes the database full without a full disk;
``integration/test_storage_full.py`` fills real (tmpfs) disks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tessera.conference.records import STORAGE_FULL, ServiceRecord, StoreUnavailable
from tessera.conference.store import Store, storage_error

KEY = "k" * 43


def fill(store: Store) -> None:
    """Let the database grow by no page more than it has now."""
    conn = store._connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")


def test_a_full_database_refuses_writes_with_storage_full(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.put_service(ServiceRecord(id="a", key=KEY))
    fill(store)
    with pytest.raises(StoreUnavailable) as refused:
        for n in range(10_000):
            store.consume_token(f"token-{n}-" + "x" * 200, 1e12)
    assert refused.value.status == 503
    assert refused.value.message.startswith(STORAGE_FULL), refused.value.message
    # Nothing half-done: reads work, the connection is usable, the refused write left nothing.
    assert store.get_service("a") == ServiceRecord(id="a", key=KEY)
    with pytest.raises(StoreUnavailable):
        store.save_recording("rec", "a", "r", {"state": "recording", "pad": "y" * 50_000}, "/f")
    assert store.get_recording("a", "rec") is None
    # Room again: writes work again (the server degrades, it does not lock out).
    store._connection().execute("PRAGMA max_page_count=1073741823")
    assert store.consume_token("after", 1e12) is True
    store.close()


def test_only_errors_of_the_disk_are_storage_errors() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]
    mapped = storage_error(full)
    assert mapped is not None and mapped.message.startswith(STORAGE_FULL)
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5  # type: ignore[attr-defined]
    mapped = storage_error(locked)
    assert mapped is not None and "locked" in mapped.message and mapped.status == 503
    bug = sqlite3.OperationalError("no such table: x")
    bug.sqlite_errorcode = 1  # type: ignore[attr-defined]
    assert storage_error(bug) is None
    assert storage_error(sqlite3.OperationalError("no code")) is None


def test_read_only_store_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    with pytest.raises(StoreUnavailable, match="no database"):
        Store(path, read_only=True)
    assert not path.exists()
    with Store(path) as store:
        store.put_service(ServiceRecord(id="a", key=KEY))
    before = sorted(p.name for p in tmp_path.iterdir())
    with Store(path, read_only=True) as reader:
        assert [s.id for s in reader.list_services()] == ["a"]
        with pytest.raises(StoreUnavailable, match="read-only"):
            reader.put_service(ServiceRecord(id="b", key=KEY))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # While the server has it open (its WAL beside it), the reader sees the latest writes.
    with Store(path) as server:
        server.put_service(ServiceRecord(id="c", key=KEY))
        with Store(path, read_only=True) as reader:
            assert [s.id for s in reader.list_services()] == ["a", "c"]
