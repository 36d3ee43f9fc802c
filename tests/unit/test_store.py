import re
import threading
from pathlib import Path

import pytest

from tessera.conference.roomoptions import RoomOptions, parse_room_options
from tessera.conference.store import (
    SCHEMA_VERSION,
    DuplicateError,
    NotFoundError,
    RoomRecord,
    ServiceRecord,
    Store,
    StoreError,
    bootstrap_default_service,
    new_room_id,
)
from tessera.portal.config import load_config

KEY = "k" * 43


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "nested" / "dir" / "tessera.sqlite3")
    s.put_service(ServiceRecord(id="a", key=KEY))
    s.put_service(ServiceRecord(id="b", key=KEY, allowed_origins=["https://b.example"]))
    return s


def room(room_id: str, service_id: str = "a", name: str = "r") -> RoomRecord:
    return RoomRecord(
        id=room_id, service_id=service_id, name=name, options=RoomOptions(name=name).to_json()
    )


def test_creates_parent_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "x" / "y" / "db.sqlite3"
    with Store(path) as s:
        assert path.exists()
        assert s._query("PRAGMA journal_mode")[0][0] == "wal"
        assert s._query("PRAGMA foreign_keys")[0][0] == 1


def test_memory_store() -> None:
    with Store(":memory:") as s:
        s.put_service(ServiceRecord(id="m", key=KEY))
        assert s.get_service("m") == ServiceRecord(id="m", key=KEY)


def test_services_upsert_get_list(store: Store) -> None:
    assert store.get_service("missing") is None
    assert store.get_service("b") == ServiceRecord(
        id="b", key=KEY, allowed_origins=["https://b.example"], adhoc_rooms=True
    )
    store.put_service(ServiceRecord(id="a", key="new" * 20, adhoc_rooms=False))
    service = store.get_service("a")
    assert service is not None
    assert service.key == "new" * 20
    assert service.adhoc_rooms is False
    assert [s.id for s in store.list_services()] == ["a", "b"]


def test_service_record_defaults() -> None:
    first, second = ServiceRecord(id="x", key="k"), ServiceRecord(id="y", key="k")
    first.allowed_origins.append("https://x.example")
    assert second.allowed_origins == []
    assert first.adhoc_rooms is True


def test_room_crud(store: Store) -> None:
    store.create_room(room("r1", name="one"))
    got = store.get_room("a", "r1")
    assert got == room("r1", name="one")
    assert got is not None
    assert parse_room_options(got.options).name == "one"

    with pytest.raises(DuplicateError):
        store.create_room(room("r1", name="again"))

    updated = RoomRecord(id="r1", service_id="a", name="uno", options={"name": "uno"})
    store.update_room(updated)
    assert store.get_room("a", "r1") == updated
    with pytest.raises(NotFoundError):
        store.update_room(room("nope"))

    assert store.delete_room("a", "r1") is True
    assert store.delete_room("a", "r1") is False
    assert store.get_room("a", "r1") is None


def test_room_of_unknown_service(store: Store) -> None:
    with pytest.raises(NotFoundError, match="service 'zzz'"):
        store.create_room(room("r1", service_id="zzz"))


def test_services_never_see_each_others_rooms(store: Store) -> None:
    store.create_room(room("shared-id", service_id="a", name="same"))
    assert store.get_room("b", "shared-id") is None
    assert store.find_room_by_name("b", "same") is None
    assert store.list_rooms("b") == []
    assert store.delete_room("b", "shared-id") is False
    with pytest.raises(NotFoundError):
        store.update_room(room("shared-id", service_id="b"))
    # The same id in another service is a different room.
    store.create_room(room("shared-id", service_id="b", name="theirs"))
    a_room, b_room = store.get_room("a", "shared-id"), store.get_room("b", "shared-id")
    assert a_room is not None and a_room.name == "same"
    assert b_room is not None and b_room.name == "theirs"


def test_find_room_by_name_returns_first_created(store: Store) -> None:
    store.create_room(room("zz", name="dup"))
    store.create_room(room("aa", name="dup"))
    found = store.find_room_by_name("a", "dup")
    assert found is not None and found.id == "zz"
    assert store.find_room_by_name("a", "none") is None


def test_list_rooms_paged_in_creation_order(store: Store) -> None:
    ids = [f"room{i:02d}" for i in range(7)][::-1]
    for room_id in ids:
        store.create_room(room(room_id))
    assert [r.id for r in store.list_rooms("a")] == ids
    assert [r.id for r in store.list_rooms("a", page=1, per_page=3)] == ids[:3]
    assert [r.id for r in store.list_rooms("a", page=3, per_page=3)] == ids[6:]
    assert store.list_rooms("a", page=4, per_page=3) == []
    with pytest.raises(ValueError):
        store.list_rooms("a", page=0)
    with pytest.raises(ValueError):
        store.list_rooms("a", per_page=0)


def test_consume_token(store: Store) -> None:
    assert store.consume_token("t1", expires_at=100.0, now=10.0) is True
    assert store.consume_token("t1", expires_at=100.0, now=20.0) is False
    assert store.consume_token("t2", expires_at=50.0, now=20.0) is True
    # Past their expiry, rows are purged: the table does not grow forever.
    store.consume_token("t3", expires_at=500.0, now=200.0)
    assert [row["id"] for row in store._query("SELECT id FROM consumed_tokens")] == ["t3"]


def test_consume_token_once_across_threads(store: Store) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def consume() -> None:
        result = store.consume_token("shared", expires_at=1e12)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=consume) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True]


def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with Store(path) as s:
        s.put_service(ServiceRecord(id="a", key=KEY))
        s.create_room(room("r1"))
        s.consume_token("t", expires_at=1e12)
    with Store(path) as s:
        assert s.get_room("a", "r1") is not None
        assert s.consume_token("t", expires_at=1e12) is False


def test_close_is_idempotent(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite3")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get_service("a")


def test_new_room_id() -> None:
    ids = {new_room_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{24}", room_id) for room_id in ids)


def test_bootstrap_generates_and_keeps_key(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"storage.data_dir": str(tmp_path)})
    with Store(config.database_path()) as s:
        service = bootstrap_default_service(s, config.service)
        assert service.id == "default"
        assert len(service.key) >= 32
        assert s.get_service("default") == service
        default_room = s.find_room_by_name("default", "default")
        assert default_room is not None
        assert re.fullmatch(r"[0-9a-f]{24}", default_room.id)
        assert parse_room_options(default_room.options) == RoomOptions(name="default")
    # A second start keeps the key (tokens out there stay valid) and the room.
    with Store(config.database_path()) as s:
        again = bootstrap_default_service(s, config.service)
        assert again.key == service.key
        assert len(s.list_rooms("default")) == 1


def test_bootstrap_configured_key_and_settings_win() -> None:
    configured_key = "c" * 40
    with Store(":memory:") as s:
        s.put_service(ServiceRecord(id="svc", key="old" * 20))
        config = load_config(
            env={},
            overrides={
                "service.id": "svc",
                "service.key": configured_key,
                "service.allowed_origins": ["https://app.example"],
                "service.adhoc_rooms": False,
                "service.default_room": "lobby",
            },
        )
        service = bootstrap_default_service(s, config.service)
        assert service == ServiceRecord(
            id="svc", key=configured_key, allowed_origins=["https://app.example"], adhoc_rooms=False
        )
        assert s.get_service("svc") == service
        assert s.find_room_by_name("svc", "lobby") is not None


def test_version_2_database_gains_peer_tokens_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE services (id TEXT PRIMARY KEY, key TEXT NOT NULL,"
        " allowed_origins TEXT NOT NULL, adhoc_rooms INTEGER NOT NULL,"
        " recording INTEGER NOT NULL DEFAULT 1)"
    )
    old.execute("INSERT INTO services VALUES ('old', ?, '[]', 1, 0)", (KEY,))
    old.execute("PRAGMA user_version=2")
    old.commit()
    old.close()
    with Store(path) as s:
        assert s.get_service("old") == ServiceRecord(
            id="old", key=KEY, recording=False, peer_tokens=False
        )
        s.put_service(ServiceRecord(id="old", key=KEY, peer_tokens=True))
        service = s.get_service("old")
        assert service is not None and service.peer_tokens is True
        assert s._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
        # Tables added since (ad-hoc room names, the ticket secret) are made too.
        assert s.adhoc_room("old", "lobby", create=True) is not None
        assert len(s.ticket_secret()) == 32


def test_create_service_refuses_a_duplicate(store: Store) -> None:
    store.create_service(ServiceRecord(id="c", key=KEY))
    assert store.get_service("c") == ServiceRecord(id="c", key=KEY)
    with pytest.raises(DuplicateError):
        store.create_service(ServiceRecord(id="c", key="other" * 10))
    assert store.get_service("c") == ServiceRecord(id="c", key=KEY)


def test_delete_service_takes_its_rooms_and_recordings(store: Store) -> None:
    store.create_room(room("r1", "a"))
    store.create_room(room("r2", "b"))
    store.save_recording("rec1", "a", "r1", {"state": "stopped"}, "/tmp/rec1.mkv")
    store.save_recording("rec2", "b", "r2", {"state": "stopped"}, "/tmp/rec2.mkv")
    assert store.delete_service("a") is True
    assert store.get_service("a") is None
    assert store.get_room("a", "r1") is None
    assert store.list_recordings("a", "r1") == []
    # Another service keeps everything.
    assert store.get_room("b", "r2") is not None
    assert [r[0] for r in store.list_recordings("b", "r2")] == ["rec2"]
    assert store.delete_service("a") is False


def test_find_rooms_by_name_lists_every_match_in_creation_order(store: Store) -> None:
    store.create_room(room("r1", "a", name="weekly"))
    store.create_room(room("r2", "a", name="daily"))
    store.create_room(room("r3", "a", name="weekly"))
    store.create_room(room("r4", "b", name="weekly"))
    assert [r.id for r in store.find_rooms_by_name("a", "weekly")] == ["r1", "r3"]
    assert [r.id for r in store.find_rooms_by_name("a", "weekly", limit=1)] == ["r1"]
    assert store.find_rooms_by_name("a", "monthly") == []


def test_streaming_out_records_outlive_their_streaming_outs(store: Store) -> None:
    # A finished streaming-out leaves memory; its record (and an HLS folder) stays.
    store.put_service(ServiceRecord(id="s", key=KEY))
    running = {"id": "o1", "protocol": "hls", "state": "streaming"}
    store.save_streaming_out("o1", "s", "r1", running, "/data/hls/o1")
    store.save_streaming_out("o2", "s", "r1", {"id": "o2", "state": "stopped"}, "")
    store.save_streaming_out("o3", "s", "r2", {"id": "o3", "state": "connecting"}, "")
    assert [i for i, _, _ in store.list_streaming_outs("s", "r1")] == ["o1", "o2"]
    assert store.streaming_out_directory("o1") == "/data/hls/o1"
    assert store.streaming_out_directory("o2") == ""
    assert store.streaming_out_directory("nope") is None
    stopped = {**running, "state": "stopped", "reason": "Source stream loss"}
    store.save_streaming_out("o1", "s", "r1", stopped, "ignored on update")
    assert store.list_streaming_outs("s", "r1")[0] == ("o1", stopped, "/data/hls/o1")
    # Those a stopped (or killed) server left running end with the reason given.
    assert store.close_interrupted_streaming_outs("the server stopped") == 1
    (only,) = store.list_streaming_outs("s", "r2")
    assert only[1]["state"] == "stopped" and only[1]["reason"] == "the server stopped"
    store.delete_service("s")
    assert store.list_streaming_outs("s", "r1") == []
