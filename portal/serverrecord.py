"""Where the running ``tessera serve`` listens, recorded in its data directory.

The server writes ``server.json`` once it listens and removes it when it stops, so that
``tessera token`` names the server that actually runs (its port may be another than the
configuration's default) instead of guessing from the configuration. ``tessera cluster
up`` writes one too, naming its first portal and its Redis (where the services are).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD_NAME = "server.json"


@dataclass(frozen=True)
class ServerRecord:
    """A running server: the ``host:port`` its tokens name, whether it is https, its
    process id and the database it keeps its services in; for a cluster (``tessera
    cluster up``), the Redis that holds them instead."""

    host: str
    secure: bool
    pid: int
    database: str
    redis: str = ""


def record_path(data_dir: Path) -> Path:
    """The record's file in a data directory."""
    return data_dir / RECORD_NAME


def parse_record(text: str) -> ServerRecord | None:
    """The record in ``text``, or None when it is not one (a torn or foreign file)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    host, secure, pid, database = (data.get(k) for k in ("host", "secure", "pid", "database"))
    if not (isinstance(host, str) and host and isinstance(secure, bool)):
        return None
    if not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
        return None
    if not isinstance(database, str):
        return None
    redis = data.get("redis", "")
    if not isinstance(redis, str):
        return None
    return ServerRecord(host=host, secure=secure, pid=pid, database=database, redis=redis)


def write_record(path: Path, record: ServerRecord) -> None:
    """Write ``record`` whole (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{record.pid}")
    partial.write_text(json.dumps(asdict(record)) + "\n", encoding="utf-8")
    os.replace(partial, path)


def remove_record(path: Path, pid: int) -> None:
    """Remove the record if it is still this process's (another server may have replaced it)."""
    try:
        current = parse_record(path.read_text(encoding="utf-8"))
    except OSError:
        return
    if current is not None and current.pid == pid:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


def running_server(data_dir: Path, database: Path) -> ServerRecord | None:
    """The server running on ``database`` as recorded in ``data_dir``; None when there is
    no record, it is for another database, or its process has gone (a killed server)."""
    try:
        record = parse_record(record_path(data_dir).read_text(encoding="utf-8"))
    except OSError:
        return None
    if record is None or record.database != str(database) or not _alive(record.pid):
        return None
    return record
