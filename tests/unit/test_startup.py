"""The server record `tessera token` reads, and start-up failures explained in one line."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from tessera.portal.serverrecord import (
    ServerRecord,
    parse_record,
    record_path,
    remove_record,
    running_server,
    write_record,
)
from tessera.portal.startupfailure import explain_listen_failure, explain_storage_failure


def test_record_round_trip_and_what_is_not_a_record(tmp_path: Path) -> None:
    database = tmp_path / "tessera.sqlite3"
    record = ServerRecord("127.0.0.1:18081", False, os.getpid(), str(database))
    write_record(record_path(tmp_path), record)
    assert running_server(tmp_path, database) == record
    assert running_server(tmp_path, tmp_path / "other.sqlite3") is None  # another store
    cluster = ServerRecord("127.0.0.1:8080", False, os.getpid(), str(database), "redis://h:1/0")
    write_record(record_path(tmp_path), cluster)
    assert running_server(tmp_path, database) == cluster  # `cluster up` names its Redis
    for text in (
        "",
        "{",
        "[]",
        '{"host": "h:1"}',
        '{"host": "", "secure": false, "pid": 1, "database": "d"}',
        '{"host": "h:1", "secure": 1, "pid": 1, "database": "d"}',
        '{"host": "h:1", "secure": false, "pid": true, "database": "d"}',
        '{"host": "h:1", "secure": false, "pid": 1, "database": "d", "redis": 6379}',
    ):
        assert parse_record(text) is None, text


def test_a_record_of_a_gone_process_or_another_process_is_left_alone(tmp_path: Path) -> None:
    database = tmp_path / "tessera.sqlite3"
    path = record_path(tmp_path)
    gone = 2**22 + 12345  # above Linux's pid_max default: no such process
    write_record(path, ServerRecord("127.0.0.1:1", False, gone, str(database)))
    assert running_server(tmp_path, database) is None
    remove_record(path, os.getpid())  # not ours: stays
    assert path.exists()
    remove_record(path, gone)
    assert not path.exists()


def test_listen_failures_say_what_and_how_to_fix_it() -> None:
    in_use = explain_listen_failure(OSError(errno.EADDRINUSE, "in use"), "127.0.0.1", 8080)
    assert "127.0.0.1:8080: the port is in use" in in_use and "--port 8081" in in_use
    assert "--port 9001" in explain_listen_failure(OSError(errno.EADDRINUSE, "x"), "::1", 9000)
    denied = explain_listen_failure(OSError(errno.EACCES, "denied"), "0.0.0.0", 80)
    assert "ports below 1024 need root" in denied
    absent = explain_listen_failure(OSError(errno.EADDRNOTAVAIL, "x"), "10.9.9.9", 9000)
    assert "10.9.9.9 is not an address of this machine" in absent
    other = explain_listen_failure(OSError(errno.ENOBUFS, "No buffer space"), "h", 1)
    assert other == "cannot listen on h:1: No buffer space"
    for message in (in_use, denied, absent, other):
        assert "\n" not in message


def test_storage_failures_name_the_directory_and_the_setting() -> None:
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope/data")
    text = explain_storage_failure(missing, "/nope/data")
    assert text.startswith("cannot open the data directory /nope/data: No such file")
    assert "[storage] data_dir" in text
    locked = explain_storage_failure(sqlite3.OperationalError("database is locked"), "/d")
    assert "database is locked" in locked
