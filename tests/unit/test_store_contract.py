"""The ConferenceStore contract, run against both implementations: SQLite on its thread
(the embedded default) and Redis (a cluster), a real redis-server, never a fake.

Each test gets two store instances over the same data (two SQLite connections to one
file; two Redis clients of one server), as two processes of a cluster would have.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tessera.cluster.redisstore import RedisStore
from tessera.conference.background import SerialWork
from tessera.conference.records import (
    ConferenceStore,
    DuplicateError,
    NotFoundError,
    RoomRecord,
    ServiceRecord,
    StoreUnavailable,
    bootstrap_service,
    default_room_record,
)
from tessera.conference.sqlitestore import SqliteStore
from tessera.conference.store import Store
from tessera.portal.config import load_config
from tests.redisserver import RedisServer

KEY = "k" * 43


@dataclass
class Stores:
    """Two stores over the same data, and how to stop the data's server (Redis only)."""

    one: ConferenceStore
    two: ConferenceStore
    kind: str
    redis: RedisServer | None = None


@pytest.fixture(params=["sqlite", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    if request.param == "sqlite":
        path = tmp_path / "tessera.sqlite3"
        one, two = SqliteStore(Store(path), owned=True), SqliteStore(Store(path), owned=True)
        try:
            yield Stores(one, two, "sqlite")
        finally:
            await one.close()
            await two.close()
        return
    server = RedisServer(tmp_path / "redis")
    await server.start()
    clients = [aioredis.Redis.from_url(server.url) for _ in range(2)]
    try:
        yield Stores(RedisStore(clients[0]), RedisStore(clients[1]), "redis", server)
    finally:
        for client in clients:
            await client.aclose()
        await server.stop()


def room(room_id: str, service_id: str = "a", name: str = "r", **options: Any) -> RoomRecord:
    return RoomRecord(
        id=room_id, service_id=service_id, name=name, options={"name": name, **options}
    )


async def with_services(store: ConferenceStore) -> ConferenceStore:
    await store.put_service(ServiceRecord(id="a", key=KEY))
    await store.put_service(ServiceRecord(id="b", key=KEY, allowed_origins=["https://b.test"]))
    return store


# -- services --


async def test_services(stores: Stores) -> None:
    store = await with_services(stores.one)
    assert await store.get_service("missing") is None
    b = ServiceRecord(id="b", key=KEY, allowed_origins=["https://b.test"])
    assert await stores.two.get_service("b") == b
    await store.put_service(
        ServiceRecord(id="a", key="n" * 40, adhoc_rooms=False, recording=False, peer_tokens=True)
    )
    a = await stores.two.get_service("a")
    assert a == ServiceRecord(
        id="a", key="n" * 40, adhoc_rooms=False, recording=False, peer_tokens=True
    )
    assert [s.id for s in await stores.two.list_services()] == ["a", "b"]
    with pytest.raises(DuplicateError, match="'a' already exists"):
        await stores.two.create_service(ServiceRecord(id="a", key=KEY))
    await stores.two.create_service(ServiceRecord(id="c", key=KEY))
    assert await store.get_service("c") == ServiceRecord(id="c", key=KEY)


async def test_delete_service_takes_its_rooms_and_records(stores: Stores) -> None:
    store = await with_services(stores.one)
    await store.create_room(room("r1", name="kept-name"))
    await store.create_room(room("r2", service_id="b"))
    adhoc = await store.adhoc_room("a", "lobby", create=True)
    await store.save_recording("rec1", "a", "r1", {"id": "rec1", "state": "recording"}, "/f")
    await store.save_streaming_out("so1", "a", "r1", {"id": "so1", "state": "streaming"}, "/d")
    assert await stores.two.delete_service("a") is True
    assert await stores.two.delete_service("a") is False
    assert await store.get_service("a") is None
    assert await store.get_room("a", "r1") is None
    assert await store.find_rooms_by_name("a", "kept-name") == []
    assert await store.count_rooms("a") == 0
    assert await store.adhoc_room("a", "lobby", create=False) is None
    assert adhoc is not None and await store.adhoc_room_name("a", adhoc) is None
    assert await store.list_recordings("a", "r1") == []
    assert await store.interrupted_recordings() == []
    assert await store.list_streaming_outs("a", "r1") == []
    # The other service keeps everything.
    assert await store.get_room("b", "r2") == room("r2", service_id="b")
    assert [s.id for s in await store.list_services()] == ["b"]


# -- stored rooms --


async def test_rooms_create_get_count_delete(stores: Stores) -> None:
    store = await with_services(stores.one)
    await store.create_room(room("r1", options_list=[]))
    assert await stores.two.get_room("a", "r1") == room("r1", options_list=[])
    assert await stores.two.get_room("b", "r1") is None  # services never see each other's
    with pytest.raises(DuplicateError):
        await stores.two.create_room(room("r1"))
    with pytest.raises(NotFoundError, match="service 'zz' does not exist"):
        await store.create_room(room("r9", service_id="zz"))
    await store.create_room(room("r1", service_id="b"))  # the same id in another service
    assert await store.count_rooms("a") == 1
    assert await stores.two.delete_room("a", "r1") is True
    assert await stores.two.delete_room("a", "r1") is False
    assert await store.get_room("a", "r1") is None
    assert await store.get_room("b", "r1") is not None
    assert await store.count_rooms("a") == 0


async def test_rooms_by_name_and_pages_in_creation_order(stores: Stores) -> None:
    store = await with_services(stores.one)
    # Ids that do not sort in creation order: the order is the creation's.
    for index, room_id in enumerate(["z", "m", "a", "q", "b"]):
        await (store if index % 2 else stores.two).create_room(
            room(room_id, name="same" if room_id in "zaq" else room_id)
        )
    same = await store.find_rooms_by_name("a", "same")
    assert [r.id for r in same] == ["z", "a", "q"]
    assert [r.id for r in await store.find_rooms_by_name("a", "same", limit=2)] == ["z", "a"]
    assert await store.find_rooms_by_name("a", "none") == []
    assert [r.id for r in await store.list_rooms("a", 1, 2)] == ["z", "m"]
    assert [r.id for r in await store.list_rooms("a", 2, 2)] == ["a", "q"]
    assert [r.id for r in await store.list_rooms("a", 3, 2)] == ["b"]
    assert await store.list_rooms("a", 4, 2) == []
    with pytest.raises(ValueError):
        await store.list_rooms("a", 0, 2)
    assert await store.count_rooms("a") == 5


async def test_update_room_renames_it(stores: Stores) -> None:
    store = await with_services(stores.one)
    await store.create_room(room("r1", name="old"))
    await store.create_room(room("r2", name="new"))
    await stores.two.update_room(room("r1", name="new", extra=True))
    assert await store.get_room("a", "r1") == room("r1", name="new", extra=True)
    assert await store.find_rooms_by_name("a", "old") == []
    # Renamed, it keeps its place in creation order.
    assert [r.id for r in await store.find_rooms_by_name("a", "new")] == ["r1", "r2"]
    assert [r.id for r in await store.list_rooms("a")] == ["r1", "r2"]
    with pytest.raises(NotFoundError):
        await store.update_room(room("missing"))


async def test_ensure_named_room_makes_one_room(stores: Stores) -> None:
    store = await with_services(stores.one)
    made = await asyncio.gather(
        *(s.ensure_named_room(default_room_record("a", "default")) for s in [store, stores.two] * 4)
    )
    assert len({r.id for r in made}) == 1
    assert [r.id for r in await store.find_rooms_by_name("a", "default")] == [made[0].id]
    assert made[0].options["name"] == "default"
    with pytest.raises(NotFoundError):
        await store.ensure_named_room(default_room_record("zz", "default"))


async def test_bootstrap_service_from_the_configuration(stores: Stores, tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"storage.data_dir": str(tmp_path)})
    first, second = await asyncio.gather(
        bootstrap_service(stores.one, config.service), bootstrap_service(stores.two, config.service)
    )
    stored = await stores.one.get_service(first.id)
    assert stored is not None and first.key and stored.key in (first.key, second.key)
    found = await stores.two.find_rooms_by_name(first.id, config.service.default_room)
    assert len(found) == 1
    # A second start keeps the generated key (tokens handed out stay valid).
    again = await bootstrap_service(stores.two, config.service)
    assert again.key in (first.key, second.key)
    assert (await stores.one.get_service(first.id)) == again


# -- ad-hoc rooms --


async def test_adhoc_room_names(stores: Stores) -> None:
    store = await with_services(stores.one)
    assert await store.adhoc_room("a", "lobby", create=False) is None
    lobby = await store.adhoc_room("a", "lobby", create=True)
    assert lobby is not None and len(lobby) == 24
    assert await stores.two.adhoc_room("a", "lobby", create=False) == lobby
    assert await stores.two.adhoc_room("a", "lobby", create=True) == lobby
    assert await stores.two.adhoc_room("b", "lobby", create=False) is None
    assert await stores.two.adhoc_room_name("a", lobby) == "lobby"
    assert await stores.two.adhoc_room_name("b", lobby) is None
    hall = await store.adhoc_room("a", "hall", create=True)
    assert await store.list_adhoc_rooms("a") == sorted([(lobby, "lobby"), (hall, "hall")])
    await stores.two.end_adhoc_room("a", lobby)
    await stores.two.end_adhoc_room("a", lobby)  # idempotent
    assert await store.adhoc_room("a", "lobby", create=False) is None
    assert await store.adhoc_room_name("a", lobby) is None
    again = await store.adhoc_room("a", "lobby", create=True)
    assert again not in (None, lobby)  # a new room of the same name
    await store.clear_adhoc_rooms()
    assert await stores.two.list_adhoc_rooms("a") == []


async def test_concurrent_adhoc_room_creation_gives_one_id(stores: Stores) -> None:
    await with_services(stores.one)
    for attempt in range(10):
        name = f"room-{attempt}"
        ids = await asyncio.gather(
            stores.one.adhoc_room("a", name, create=True),
            stores.two.adhoc_room("a", name, create=True),
            stores.one.adhoc_room("a", name, create=True),
            stores.two.adhoc_room("a", name, create=True),
        )
        assert None not in ids and len(set(ids)) == 1, ids
    assert len(await stores.two.list_adhoc_rooms("a")) == 10


# -- recordings and streaming-outs --


async def test_recordings(stores: Stores) -> None:
    store = await with_services(stores.one)
    await store.save_recording("rec2", "a", "r1", {"id": "rec2", "state": "recording"}, "/f2")
    await stores.two.save_recording("rec1", "a", "r1", {"id": "rec1", "state": "recording"}, "/f1")
    await store.save_recording("rec3", "a", "r2", {"id": "rec3", "state": "stopped"}, "/f3")
    listed = await stores.two.list_recordings("a", "r1")
    assert listed == [
        ("rec2", {"id": "rec2", "state": "recording"}, "/f2"),
        ("rec1", {"id": "rec1", "state": "recording"}, "/f1"),
    ]
    assert sorted(await store.interrupted_recordings()) == [
        ("rec1", {"id": "rec1", "state": "recording"}),
        ("rec2", {"id": "rec2", "state": "recording"}),
    ]
    await stores.two.update_recording("rec2", {"id": "rec2", "state": "stopped", "n": [1]})
    await store.save_recording("rec1", "a", "r1", {"id": "rec1", "state": "failed"}, "/f1")
    assert await store.interrupted_recordings() == []
    assert await store.list_recordings("a", "r1") == [
        ("rec2", {"id": "rec2", "state": "stopped", "n": [1]}, "/f2"),
        ("rec1", {"id": "rec1", "state": "failed"}, "/f1"),
    ]
    assert await store.list_recordings("b", "r1") == []


async def test_recordings_by_service_whatever_became_of_the_room(stores: Stores) -> None:
    store = await with_services(stores.one)
    await store.create_room(room("r1"))
    await store.save_recording("rec2", "a", "r1", {"id": "rec2", "state": "stopped"}, "/f2")
    await stores.two.save_recording("rec1", "a", "adhoc", {"id": "rec1"}, "/f1")
    await store.save_recording("rec3", "b", "r1", {"id": "rec3"}, "/f3")
    await store.save_recording("rec4", "a", "r1", {"id": "rec4"}, "/f4")
    await store.delete_room("a", "r1")
    assert await stores.two.get_recording("a", "rec2") == (
        "rec2",
        "r1",
        {"id": "rec2", "state": "stopped"},
        "/f2",
    )
    assert await store.get_recording("b", "rec2") is None  # another service's
    assert await store.get_recording("a", "nope") is None
    listed = await stores.two.list_service_recordings("a")
    assert [(i, r) for i, r, _, _ in listed] == [("rec2", "r1"), ("rec1", "adhoc"), ("rec4", "r1")]
    assert [i for i, *_ in await store.list_service_recordings("b")] == ["rec3"]
    assert await store.list_service_recordings("c") == []


async def test_queued_writes_land_in_order(stores: Stores) -> None:
    """The room service queues a recording's records without waiting (SerialWork): they
    are stored in the order they were made, so its end is never overwritten by its start."""
    store = await with_services(stores.one)
    saves = SerialWork("saving a record")
    states = ["recording", "recording", "stopped"] * 10 + ["failed"]
    for index, state in enumerate(states):
        info = {"id": "rec", "state": state, "n": index}
        saves.put(functools.partial(store.save_recording, "rec", "a", "r", info, "/f"))
    await saves.flush()
    [(_, info, _)] = await stores.two.list_recordings("a", "r")
    assert info == {"id": "rec", "state": "failed", "n": len(states) - 1}
    assert await stores.two.interrupted_recordings() == []


async def test_sqlite_runs_calls_in_call_order(stores: Stores) -> None:
    """SqliteStore's one thread runs calls as they were made, even without waiting."""
    if stores.kind != "sqlite":
        pytest.skip("a Redis client's calls on its several connections may overtake")
    store = await with_services(stores.one)
    states = ["recording", "recording", "stopped"] * 10 + ["failed"]
    await asyncio.gather(
        *(
            store.save_recording("rec", "a", "r", {"id": "rec", "state": s, "n": i}, "/f")
            for i, s in enumerate(states)
        )
    )
    [(_, info, _)] = await stores.two.list_recordings("a", "r")
    assert info == {"id": "rec", "state": "failed", "n": len(states) - 1}


async def test_streaming_outs(stores: Stores) -> None:
    store = await with_services(stores.one)
    await store.save_streaming_out("s2", "a", "r1", {"id": "s2", "state": "connecting"}, "")
    await stores.two.save_streaming_out("s1", "a", "r1", {"id": "s1", "state": "streaming"}, "/h")
    await store.save_streaming_out("s3", "a", "r1", {"id": "s3", "state": "failed"}, "")
    assert [i for i, _, _ in await store.list_streaming_outs("a", "r1")] == ["s2", "s1", "s3"]
    assert await stores.two.streaming_out_directory("s1") == "/h"
    assert await stores.two.streaming_out_directory("s2") == ""
    assert await stores.two.streaming_out_directory("none") is None
    assert await stores.two.close_interrupted_streaming_outs("the server stopped") == 2
    assert await store.close_interrupted_streaming_outs("the server stopped") == 0
    infos = {i: info for i, info, _ in await store.list_streaming_outs("a", "r1")}
    assert infos["s1"] == {"id": "s1", "state": "stopped", "reason": "the server stopped"}
    assert infos["s2"]["state"] == "stopped"
    assert infos["s3"] == {"id": "s3", "state": "failed"}


# -- tokens and tickets --


async def test_token_is_consumed_once_across_stores(stores: Stores) -> None:
    import time

    expires = time.time() + 60
    assert await stores.one.consume_token("t1", expires) is True
    assert await stores.two.consume_token("t1", expires) is False
    assert await stores.one.consume_token("t1", expires) is False
    for attempt in range(10):
        used = await asyncio.gather(
            *(s.consume_token(f"race-{attempt}", expires) for s in [stores.one, stores.two] * 3)
        )
        assert sorted(used) == [False] * 5 + [True], used


async def test_ticket_secret_is_made_once_and_shared(stores: Stores) -> None:
    secrets = await asyncio.gather(
        *(s.ticket_secret() for s in [stores.one, stores.two, stores.one, stores.two])
    )
    assert len(secrets[0]) == 32 and len(set(secrets)) == 1
    assert await stores.two.ticket_secret() == secrets[0]


# -- Redis down --


async def test_redis_down_is_a_clear_error_and_passes(stores: Stores) -> None:
    if stores.redis is None:
        pytest.skip("only a cluster's store has a server to lose")
    store = await with_services(stores.one)
    await stores.redis.stop()
    calls = [
        store.get_service("a"),
        store.consume_token("t", 1e10),
        store.adhoc_room("a", "lobby", create=True),
        store.save_recording("rec", "a", "r", {"state": "recording"}, "/f"),
        store.ticket_secret(),
        store.list_rooms("a"),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as refused:
            await call
        assert refused.value.status == 503
        assert "Redis" in refused.value.message
    # Back (empty, as a Redis without persistence restarts): the client reconnects by itself.
    await stores.redis.start()
    assert await store.consume_token("t", 1e10) is True
    assert await store.get_service("a") is None
