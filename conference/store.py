"""The embedded default store: one SQLite file holding services (tenants), rooms, ad-hoc
room names, consumed token ids, the ticket secret, and the records of recordings and
streaming-outs.

One process owns the database. :class:`Store` is synchronous and quick (tiny rows, WAL
journal); the command line uses it directly, and the room service through
:class:`~tessera.conference.sqlitestore.SqliteStore`, which runs it on a thread of its
own. The one connection may be used from any thread, behind a lock.

A database that cannot be written (its disk full, its file unreadable) is a
:class:`StoreUnavailable` (503, "Storage full: ..."), as a cluster's Redis that is down:
callers answer it as a clear error and nothing changes. Commands that only read open the
store with ``read_only=True``, which writes nothing (a full disk does not stop them).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .records import (
    DefaultService,
    DuplicateError,
    NotFoundError,
    RecordingRecord,
    RoomRecord,
    ServiceRecord,
    StoreError,
    StoreUnavailable,
    configured_service,
    default_room_record,
    new_room_id,
    storage_full,
)

__all__ = [
    "DuplicateError",
    "NotFoundError",
    "RoomRecord",
    "ServiceRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "bootstrap_default_service",
    "new_room_id",
    "open_for_reading",
]

SCHEMA_VERSION = 5
# The ticket secret's name in the secrets table.
TICKET_SECRET = "reconnection-ticket"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
    id              TEXT PRIMARY KEY,
    key             TEXT NOT NULL,
    allowed_origins TEXT NOT NULL,   -- JSON list of strings
    adhoc_rooms     INTEGER NOT NULL,
    recording       INTEGER NOT NULL DEFAULT 1,
    peer_tokens     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rooms (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order
    id         TEXT NOT NULL,
    service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    options    TEXT NOT NULL,        -- JSON form of RoomOptions
    UNIQUE (service_id, id)
);
CREATE INDEX IF NOT EXISTS rooms_by_name ON rooms (service_id, name, seq);
CREATE TABLE IF NOT EXISTS adhoc_rooms (
    service_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    id         TEXT NOT NULL,
    PRIMARY KEY (service_id, name),
    UNIQUE (service_id, id)
);
CREATE TABLE IF NOT EXISTS consumed_tokens (
    id         TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS consumed_tokens_by_expiry ON consumed_tokens (expires_at);
CREATE TABLE IF NOT EXISTS secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recordings (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    info       TEXT NOT NULL,        -- JSON: the REST description when last saved
    file       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_by_room ON recordings (service_id, room_id);
CREATE TABLE IF NOT EXISTS streaming_outs (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    info       TEXT NOT NULL,        -- JSON: the REST description when last saved
    directory  TEXT NOT NULL         -- where an HLS streaming-out served by Tessera writes, or ""
);
CREATE INDEX IF NOT EXISTS streaming_outs_by_room ON streaming_outs (service_id, room_id);
"""


# SQLite's primary result codes that mean "the disk, not the request" (sqlite3.h).
_SQLITE_FULL = 13
_DISK_CODES = {
    10: "disk I/O error",  # SQLITE_IOERR (a write the disk refused, among others)
    14: "cannot open the database file",  # SQLITE_CANTOPEN
    8: "the database is read-only",  # SQLITE_READONLY
    5: "the database is locked",  # SQLITE_BUSY (after busy_timeout)
}


def storage_error(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The clear error for a database that cannot be used now, or None for other errors
    (a bug, a constraint): those stay what they are."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary == _SQLITE_FULL:
        return storage_full(str(exc))
    what = _DISK_CODES.get(primary)
    if what is None:
        return None
    if primary == 10 and "full" in str(exc):
        return storage_full(str(exc))
    return StoreUnavailable(f"Storage unavailable: {what}; try again later")


class Store:
    """Services, rooms, token ids and output records in SQLite (``":memory:"`` for tests).

    ``read_only``: open an existing database without writing anything (no schema, no
    directory; :class:`StoreUnavailable` if there is none or it cannot be read).
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        location = str(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if read_only:
            self._conn = _open_read_only(Path(location).expanduser())
            self._conn.row_factory = sqlite3.Row
            return
        if location != ":memory:":
            file = Path(location).expanduser()
            file.parent.mkdir(parents=True, exist_ok=True)
            location = str(file)
        try:
            self._conn = sqlite3.connect(location, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._create_schema()
        except StoreUnavailable:
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            mapped = storage_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _create_schema(self) -> None:
        assert self._conn is not None
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
            with self._transaction() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(services)")}
                if "recording" not in columns:  # a version 1 database
                    conn.execute(
                        "ALTER TABLE services ADD COLUMN recording INTEGER NOT NULL DEFAULT 1"
                    )
                if "peer_tokens" not in columns:  # a version 1 or 2 database
                    conn.execute(
                        "ALTER TABLE services ADD COLUMN peer_tokens INTEGER NOT NULL DEFAULT 0"
                    )
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- plumbing --

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # Autocommit connection + explicit BEGIN IMMEDIATE: each method is one atomic unit.
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    _rollback(conn)
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                # SQLite may have rolled back already (a full disk at COMMIT does).
                _rollback(conn)
                mapped = storage_error(exc)
                if mapped is None:
                    raise
                raise mapped from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is closed")
        return self._conn

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                mapped = storage_error(exc)
                if mapped is None:
                    raise
                raise mapped from exc

    def close(self) -> None:
        """Close the database; idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- services --

    def put_service(self, service: ServiceRecord) -> None:
        """Create or replace a service."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO services"
                " (id, key, allowed_origins, adhoc_rooms, recording, peer_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET key = excluded.key,"
                " allowed_origins = excluded.allowed_origins, adhoc_rooms = excluded.adhoc_rooms,"
                " recording = excluded.recording, peer_tokens = excluded.peer_tokens",
                (
                    service.id,
                    service.key,
                    json.dumps(list(service.allowed_origins)),
                    int(service.adhoc_rooms),
                    int(service.recording),
                    int(service.peer_tokens),
                ),
            )

    def get_service(self, service_id: str) -> ServiceRecord | None:
        """The service with that id, or None."""
        rows = self._query("SELECT * FROM services WHERE id = ?", (service_id,))
        return _service(rows[0]) if rows else None

    def list_services(self) -> list[ServiceRecord]:
        """All services, by id."""
        return [_service(row) for row in self._query("SELECT * FROM services ORDER BY id")]

    def create_service(self, service: ServiceRecord) -> None:
        """Store a new service; DuplicateError if one with that id exists."""
        with self._transaction() as conn:
            try:
                conn.execute(
                    "INSERT INTO services"
                    " (id, key, allowed_origins, adhoc_rooms, recording, peer_tokens)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        service.id,
                        service.key,
                        json.dumps(list(service.allowed_origins)),
                        int(service.adhoc_rooms),
                        int(service.recording),
                        int(service.peer_tokens),
                    ),
                )
            except sqlite3.IntegrityError:
                raise DuplicateError(f"service {service.id!r} already exists") from None

    def delete_service(self, service_id: str) -> bool:
        """Delete a service with its rooms and the records of their recordings and
        streaming-outs; False if there is none.

        Recording files stay on disk: the store only forgets them.
        """
        with self._transaction() as conn:
            conn.execute("DELETE FROM recordings WHERE service_id = ?", (service_id,))
            conn.execute("DELETE FROM streaming_outs WHERE service_id = ?", (service_id,))
            conn.execute("DELETE FROM rooms WHERE service_id = ?", (service_id,))
            conn.execute("DELETE FROM adhoc_rooms WHERE service_id = ?", (service_id,))
            cursor = conn.execute("DELETE FROM services WHERE id = ?", (service_id,))
            return cursor.rowcount > 0

    # -- rooms --

    def create_room(self, room: RoomRecord) -> None:
        """Store a new room; DuplicateError if the service has a room with that id."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM services WHERE id = ?", (room.service_id,)).fetchone():
                try:
                    conn.execute(
                        "INSERT INTO rooms (id, service_id, name, options) VALUES (?, ?, ?, ?)",
                        (room.id, room.service_id, room.name, json.dumps(room.options)),
                    )
                except sqlite3.IntegrityError:
                    raise DuplicateError(f"room {room.id!r} already exists") from None
            else:
                raise NotFoundError(f"service {room.service_id!r} does not exist")

    def ensure_named_room(self, room: RoomRecord) -> RoomRecord:
        """The service's first room named ``room.name``, creating ``room`` if it has none."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT * FROM rooms WHERE service_id = ? AND name = ? ORDER BY seq LIMIT 1",
                (room.service_id, room.name),
            ).fetchone()
            if row is not None:
                return _room(row)
            if not conn.execute(
                "SELECT 1 FROM services WHERE id = ?", (room.service_id,)
            ).fetchone():
                raise NotFoundError(f"service {room.service_id!r} does not exist")
            conn.execute(
                "INSERT INTO rooms (id, service_id, name, options) VALUES (?, ?, ?, ?)",
                (room.id, room.service_id, room.name, json.dumps(room.options)),
            )
            return room

    def update_room(self, room: RoomRecord) -> None:
        """Replace a room's name and options; NotFoundError if there is no such room."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE rooms SET name = ?, options = ? WHERE service_id = ? AND id = ?",
                (room.name, json.dumps(room.options), room.service_id, room.id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"room {room.id!r} does not exist")

    def get_room(self, service_id: str, room_id: str) -> RoomRecord | None:
        """The service's room with that id, or None."""
        rows = self._query(
            "SELECT * FROM rooms WHERE service_id = ? AND id = ?", (service_id, room_id)
        )
        return _room(rows[0]) if rows else None

    def find_room_by_name(self, service_id: str, name: str) -> RoomRecord | None:
        """The service's first-created room with that name, or None (names need not be unique)."""
        rows = self._query(
            "SELECT * FROM rooms WHERE service_id = ? AND name = ? ORDER BY seq LIMIT 1",
            (service_id, name),
        )
        return _room(rows[0]) if rows else None

    def find_rooms_by_name(self, service_id: str, name: str, limit: int = 10) -> list[RoomRecord]:
        """Up to ``limit`` of the service's rooms with that name, in creation order."""
        rows = self._query(
            "SELECT * FROM rooms WHERE service_id = ? AND name = ? ORDER BY seq LIMIT ?",
            (service_id, name, limit),
        )
        return [_room(row) for row in rows]

    def list_rooms(self, service_id: str, page: int = 1, per_page: int = 50) -> list[RoomRecord]:
        """One page (1-based) of the service's rooms, in creation order."""
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page start at 1")
        rows = self._query(
            "SELECT * FROM rooms WHERE service_id = ? ORDER BY seq LIMIT ? OFFSET ?",
            (service_id, per_page, (page - 1) * per_page),
        )
        return [_room(row) for row in rows]

    def count_rooms(self, service_id: str) -> int:
        """How many rooms the service has stored."""
        rows = self._query("SELECT COUNT(*) AS n FROM rooms WHERE service_id = ?", (service_id,))
        return int(rows[0]["n"])

    def delete_room(self, service_id: str, room_id: str) -> bool:
        """Delete a room; False if the service has no room with that id."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM rooms WHERE service_id = ? AND id = ?", (service_id, room_id)
            )
            return cursor.rowcount > 0

    # -- ad-hoc rooms --

    def adhoc_room(self, service_id: str, name: str, *, create: bool) -> str | None:
        """The id of the service's ad-hoc room ``name`` (a new one if ``create``)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT id FROM adhoc_rooms WHERE service_id = ? AND name = ?", (service_id, name)
            ).fetchone()
            if row is not None:
                return str(row["id"])
            if not create:
                return None
            room_id = new_room_id()
            conn.execute(
                "INSERT INTO adhoc_rooms (service_id, name, id) VALUES (?, ?, ?)",
                (service_id, name, room_id),
            )
            return room_id

    def adhoc_room_name(self, service_id: str, room_id: str) -> str | None:
        """The name of the service's ad-hoc room with that id, or None."""
        rows = self._query(
            "SELECT name FROM adhoc_rooms WHERE service_id = ? AND id = ?", (service_id, room_id)
        )
        return str(rows[0]["name"]) if rows else None

    def list_adhoc_rooms(self, service_id: str) -> list[tuple[str, str]]:
        """(id, name) of the service's ad-hoc rooms, by id."""
        rows = self._query(
            "SELECT id, name FROM adhoc_rooms WHERE service_id = ? ORDER BY id", (service_id,)
        )
        return [(str(row["id"]), str(row["name"])) for row in rows]

    def end_adhoc_room(self, service_id: str, room_id: str) -> None:
        """The ad-hoc room with that id ended: its name is free again."""
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM adhoc_rooms WHERE service_id = ? AND id = ?", (service_id, room_id)
            )

    def clear_adhoc_rooms(self) -> None:
        """Forget every ad-hoc room (the process starts: none of them runs)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM adhoc_rooms")

    # -- recordings --

    def save_recording(
        self, recording_id: str, service_id: str, room_id: str, info: dict[str, Any], file: str
    ) -> None:
        """Create or update what is known of a recording (its REST description and file)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO recordings (id, service_id, room_id, info, file)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET info = excluded.info, file = excluded.file",
                (recording_id, service_id, room_id, json.dumps(info), file),
            )

    def update_recording(self, recording_id: str, info: dict[str, Any]) -> None:
        """Replace the stored description of a recording."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE recordings SET info = ? WHERE id = ?", (json.dumps(info), recording_id)
            )

    def list_recordings(
        self, service_id: str, room_id: str
    ) -> list[tuple[str, dict[str, Any], str]]:
        """(id, info, file) of a room's recordings, oldest first."""
        rows = self._query(
            "SELECT id, info, file FROM recordings WHERE service_id = ? AND room_id = ?"
            " ORDER BY rowid",
            (service_id, room_id),
        )
        return [(row["id"], json.loads(row["info"]), row["file"]) for row in rows]

    def get_recording(self, service_id: str, recording_id: str) -> RecordingRecord | None:
        """(id, room id, info, file) of the service's recording with that id, or None."""
        rows = self._query(
            "SELECT id, room_id, info, file FROM recordings WHERE service_id = ? AND id = ?",
            (service_id, recording_id),
        )
        return _recording(rows[0]) if rows else None

    def list_service_recordings(self, service_id: str) -> list[RecordingRecord]:
        """(id, room id, info, file) of every recording of the service, oldest first."""
        rows = self._query(
            "SELECT id, room_id, info, file FROM recordings WHERE service_id = ? ORDER BY rowid",
            (service_id,),
        )
        return [_recording(row) for row in rows]

    def interrupted_recordings(self) -> list[tuple[str, dict[str, Any]]]:
        """Recordings stored as running: the server stopped (or died) while they ran."""
        rows = self._query("SELECT id, info FROM recordings")
        found = []
        for row in rows:
            info = json.loads(row["info"])
            if info.get("state") == "recording":
                found.append((row["id"], info))
        return found

    # -- streaming-outs --

    def save_streaming_out(
        self, streaming_id: str, service_id: str, room_id: str, info: dict[str, Any], directory: str
    ) -> None:
        """Create or update what is known of a streaming-out (its REST description)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO streaming_outs (id, service_id, room_id, info, directory)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET info = excluded.info",
                (streaming_id, service_id, room_id, json.dumps(info), directory),
            )

    def list_streaming_outs(
        self, service_id: str, room_id: str
    ) -> list[tuple[str, dict[str, Any], str]]:
        """(id, info, directory) of a room's streaming-outs, oldest first."""
        rows = self._query(
            "SELECT id, info, directory FROM streaming_outs WHERE service_id = ? AND room_id = ?"
            " ORDER BY rowid",
            (service_id, room_id),
        )
        return [(row["id"], json.loads(row["info"]), row["directory"]) for row in rows]

    def streaming_out_directory(self, streaming_id: str) -> str | None:
        """Where a streaming-out served by Tessera wrote its HLS ("" if it pushed), or None."""
        rows = self._query("SELECT directory FROM streaming_outs WHERE id = ?", (streaming_id,))
        return str(rows[0]["directory"]) if rows else None

    def close_interrupted_streaming_outs(self, reason: str) -> int:
        """Streaming-outs stored as running ended with the run that made them: stopped."""
        count = 0
        with self._transaction() as conn:
            for row in conn.execute("SELECT id, info FROM streaming_outs").fetchall():
                info = json.loads(row["info"])
                if info.get("state") in ("connecting", "streaming"):
                    info["state"] = "stopped"
                    info["reason"] = reason
                    conn.execute(
                        "UPDATE streaming_outs SET info = ? WHERE id = ?",
                        (json.dumps(info), row["id"]),
                    )
                    count += 1
        return count

    # -- single-use tokens --

    def consume_token(self, token_id: str, expires_at: float, now: float | None = None) -> bool:
        """Mark a token id used: True the first time, False if it was already used.

        A row is only needed until the token expires (after that the token is
        refused anyway), so expired rows are purged here and the table stays small.
        """
        current = time.time() if now is None else now
        with self._transaction() as conn:
            conn.execute("DELETE FROM consumed_tokens WHERE expires_at < ?", (current,))
            cursor = conn.execute(
                "INSERT OR IGNORE INTO consumed_tokens (id, expires_at) VALUES (?, ?)",
                (token_id, expires_at),
            )
            return cursor.rowcount == 1

    # -- secrets --

    def ticket_secret(self) -> bytes:
        """The secret reconnection tickets are signed with (made on first use, then kept)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)",
                (TICKET_SECRET, secrets.token_bytes(32)),
            )
            row = conn.execute("SELECT value FROM secrets WHERE name = ?", (TICKET_SECRET,))
            return bytes(row.fetchone()["value"])


def _open_read_only(file: Path) -> sqlite3.Connection:
    """A connection that writes nothing: ``mode=ro`` while a server has the database open
    (its WAL is then current), ``immutable`` when nobody has (no WAL file beside it), which
    needs no shared-memory file either: on a full disk that file cannot be made."""
    if not file.is_file():
        raise StoreUnavailable(f"Storage unavailable: there is no database at {file}")
    wal = file.with_name(file.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    uri = f"{file.absolute().as_uri()}?{mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise storage_error(exc) or StoreUnavailable(
            f"Storage unavailable: cannot read {file} ({exc})"
        ) from exc
    return conn


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # nothing was committed; the connection is still usable


def _recording(row: sqlite3.Row) -> RecordingRecord:
    return (row["id"], row["room_id"], json.loads(row["info"]), row["file"])


def _service(row: sqlite3.Row) -> ServiceRecord:
    return ServiceRecord(
        id=row["id"],
        key=row["key"],
        allowed_origins=list(json.loads(row["allowed_origins"])),
        adhoc_rooms=bool(row["adhoc_rooms"]),
        recording=bool(row["recording"]),
        peer_tokens=bool(row["peer_tokens"]),
    )


def _room(row: sqlite3.Row) -> RoomRecord:
    return RoomRecord(
        id=row["id"],
        service_id=row["service_id"],
        name=row["name"],
        options=json.loads(row["options"]),
    )


def open_for_reading(path: str | Path, settings: DefaultService) -> Store:
    """The store for a command that only reads (``tessera token``, ``service list/show``):
    read-only when the database holds the configured service as the server would store it,
    so nothing is written (a full disk does not stop it); otherwise (first run, changed
    ``[service]``) opened to write and bootstrapped as ``tessera serve`` would."""
    if str(path) != ":memory:" and Path(path).expanduser().is_file():
        store = Store(path, read_only=True)
        existing = store.get_service(settings.id)
        if existing is not None and configured_service(existing, settings) == existing:
            return store
        store.close()
    store = Store(path)
    try:
        bootstrap_default_service(store, settings)
    except BaseException:
        store.close()
        raise
    return store


def bootstrap_default_service(store: Store, settings: DefaultService) -> ServiceRecord:
    """Make sure the configured service and its default room exist; return the service
    (the command line's, synchronous twin of ``records.bootstrap_service``)."""
    existing = store.get_service(settings.id)
    service = configured_service(existing, settings)
    if service != existing:
        store.put_service(service)
    store.ensure_named_room(default_room_record(service.id, settings.default_room))
    return service
