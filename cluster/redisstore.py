"""RedisStore: the room service's ConferenceStore in Redis, shared by every process.

Every portal and agent of a cluster reads and writes the same records, so a token is
used once whichever portal sees it, a room name means one room everywhere, a client's
reconnection ticket is good on any portal, and a recording's record outlives the agent
that made it. Changes that read before they write run as Lua scripts, which Redis runs
one at a time (atomic, as SQLite's transactions are in the embedded store). Some
scripts reach keys they compute (a service's rooms and records): one Redis server (with
replicas), not a sharded Redis Cluster.

Keys (all under ``tessera:``; ``<svc>`` a service id):

- ``service:<id>`` the service's JSON; ``services`` the set of ids.
- ``room:<svc>:<id>`` a stored room's JSON (with its creation ``seq``); ``rooms:<svc>``
  its ids by creation order (a sorted set); ``room-names:<svc>:<name>`` the ids of the
  rooms with that name, by creation order.
- ``adhoc:<svc>`` (name -> id) and ``adhoc-ids:<svc>`` (id -> name): ad-hoc rooms.
- ``recording:<id>``, ``streaming-out:<id>``: an output's JSON; ``recordings:<svc>:<room>``
  and ``streaming-outs:<svc>:<room>`` their ids by creation order; ``recordings-running``
  and ``streaming-outs-running`` the ids stored as running; ``output-rooms:<svc>`` the
  rooms of a service that have outputs.
- ``token:<id>``: a used token id, until the token expires (``SET NX PXAT``).
- ``ticket-secret``: the secret reconnection tickets are signed with (``SET NX``).

A Redis that cannot be reached is a :class:`StoreUnavailable` (a ConferenceError that
says so): the caller hears it, nothing was half done.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tessera.conference.records import (
    DuplicateError,
    NotFoundError,
    OutputRecord,
    RecordingRecord,
    RoomRecord,
    ServiceRecord,
    StoreUnavailable,
    new_room_id,
)

from .nodes import INFO_PREFIX
from .roomplacement import ROOM_AGENT_PREFIX

P = "tessera:"
UNAVAILABLE = "The cluster's database (Redis) is not answering; try again"

_CREATE_SERVICE = """
-- KEYS: service, services. ARGV: id, json
if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# Lua decodes a room's JSON only to read its name: cjson would write an empty list back as {}.
_CREATE_ROOM = """
-- KEYS: service, room, rooms, room-names, seq. ARGV: id, json
if redis.call('EXISTS', KEYS[1]) == 0 then return 'noservice' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'duplicate' end
local seq = redis.call('INCR', KEYS[5])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('ZADD', KEYS[4], seq, ARGV[1])
return 'ok'
"""

_ENSURE_NAMED_ROOM = """
-- KEYS: service, room, rooms, room-names, seq. ARGV: id, json, room key prefix
local first = redis.call('ZRANGE', KEYS[4], 0, 0)
if #first > 0 then
  local found = redis.call('GET', ARGV[3] .. first[1])
  if found then return found end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'noservice' end
local seq = redis.call('INCR', KEYS[5])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('ZADD', KEYS[4], seq, ARGV[1])
return ARGV[2]
"""

_UPDATE_ROOM = """
-- KEYS: room, rooms. ARGV: new name, new json, room-names prefix, id
local found = redis.call('GET', KEYS[1])
if not found then return 0 end
local seq = redis.call('ZSCORE', KEYS[2], ARGV[4])
redis.call('ZREM', ARGV[3] .. cjson.decode(found)['name'], ARGV[4])
redis.call('ZADD', ARGV[3] .. ARGV[1], seq, ARGV[4])
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

_DELETE_ROOM = """
-- KEYS: room, rooms. ARGV: room-names prefix, id
local found = redis.call('GET', KEYS[1])
if not found then return 0 end
local record = cjson.decode(found)
redis.call('ZREM', ARGV[1] .. record['name'], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""

_DELETE_SERVICE = """
-- KEYS: service, services, rooms, adhoc, adhoc-ids, output-rooms. ARGV: service id, prefix
local p = ARGV[2]
local svc = ARGV[1]
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local found = redis.call('GET', p .. 'room:' .. svc .. ':' .. id)
  if found then
    redis.call('DEL', p .. 'room-names:' .. svc .. ':' .. cjson.decode(found)['name'])
  end
  redis.call('DEL', p .. 'room:' .. svc .. ':' .. id)
end
for _, room in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  for _, kind in ipairs({'recording', 'streaming-out'}) do
    local list = p .. kind .. 's:' .. svc .. ':' .. room
    for _, id in ipairs(redis.call('ZRANGE', list, 0, -1)) do
      redis.call('DEL', p .. kind .. ':' .. id)
      redis.call('SREM', p .. kind .. 's-running', id)
    end
    redis.call('DEL', list)
  end
end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('SREM', KEYS[2], svc)
return redis.call('DEL', KEYS[1])
"""

_ADHOC_ROOM = """
-- KEYS: adhoc, adhoc-ids. ARGV: name, new id ('' = do not create)
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then return id end
if ARGV[2] == '' then return false end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return ARGV[2]
"""

_END_ADHOC_ROOM = """
-- KEYS: adhoc, adhoc-ids. ARGV: id
local name = redis.call('HGET', KEYS[2], ARGV[1])
if not name then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], name) == ARGV[1] then redis.call('HDEL', KEYS[1], name) end
return 1
"""

# An output is a hash: service, room, where (its file or HLS directory), info (its JSON).
_SAVE_OUTPUT = """
-- KEYS: record, room list, running, output-rooms, seq.
-- ARGV: id, info json, running (1/0), service, room, where
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), ARGV[1])
  redis.call('SADD', KEYS[4], ARGV[5])
end
redis.call('HSET', KEYS[1], 'service', ARGV[4], 'room', ARGV[5], 'where', ARGV[6], 'info', ARGV[2])
if ARGV[3] == '1' then redis.call('SADD', KEYS[3], ARGV[1])
else redis.call('SREM', KEYS[3], ARGV[1]) end
return 1
"""

_UPDATE_OUTPUT_INFO = """
-- KEYS: record, running. ARGV: id, info json, running (1/0)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'info', ARGV[2])
if ARGV[3] == '1' then redis.call('SADD', KEYS[2], ARGV[1])
else redis.call('SREM', KEYS[2], ARGV[1]) end
return 1
"""


# A recording whose agent was lost is marked failed by whoever notices first, exactly once:
# only while it is still running (SREM says who took it), and only if no live agent but
# ARGV[3] hosts its room now (a live host's recordings are its own).
_FAIL_LOST_RECORDING = """
-- KEYS: record, running, room-agent. ARGV: id, info json, the claiming agent ('' = none),
-- node-info prefix
local host = redis.call('GET', KEYS[3])
if host and host ~= ARGV[3] and redis.call('EXISTS', ARGV[4] .. host) == 1 then return 0 end
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'info', ARGV[2])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _room(value: Any) -> RoomRecord:
    data = json.loads(value)
    return RoomRecord(
        id=str(data["id"]),
        service_id=str(data["serviceId"]),
        name=str(data["name"]),
        options=dict(data["options"]),
    )


def _room_json(room: RoomRecord) -> str:
    return json.dumps(
        {"id": room.id, "serviceId": room.service_id, "name": room.name, "options": room.options}
    )


RECORDING_RUNNING = ("recording",)
STREAMING_OUT_RUNNING = ("connecting", "streaming")


class RedisStore:
    """The ConferenceStore of a cluster (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._create_service = redis.register_script(_CREATE_SERVICE)
        self._create_room = redis.register_script(_CREATE_ROOM)
        self._ensure_named_room = redis.register_script(_ENSURE_NAMED_ROOM)
        self._update_room = redis.register_script(_UPDATE_ROOM)
        self._delete_room = redis.register_script(_DELETE_ROOM)
        self._delete_service = redis.register_script(_DELETE_SERVICE)
        self._adhoc_room = redis.register_script(_ADHOC_ROOM)
        self._end_adhoc_room = redis.register_script(_END_ADHOC_ROOM)
        self._save_output = redis.register_script(_SAVE_OUTPUT)
        self._update_output = redis.register_script(_UPDATE_OUTPUT_INFO)
        self._fail_lost_recording = redis.register_script(_FAIL_LOST_RECORDING)

    @asynccontextmanager
    async def _redis(self) -> AsyncIterator[aioredis.Redis]:
        try:
            yield self.redis
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(UNAVAILABLE) from exc

    # -- services --

    async def get_service(self, service_id: str) -> ServiceRecord | None:
        async with self._redis() as r:
            value = await r.get(f"{P}service:{service_id}")
        return ServiceRecord.from_json(json.loads(value)) if value is not None else None

    async def list_services(self) -> list[ServiceRecord]:
        async with self._redis() as r:
            ids = sorted(_text(i) for i in await r.smembers(f"{P}services"))
            values = await r.mget([f"{P}service:{i}" for i in ids]) if ids else []
        return [ServiceRecord.from_json(json.loads(v)) for v in values if v is not None]

    async def put_service(self, service: ServiceRecord) -> None:
        async with self._redis() as r, r.pipeline(transaction=True) as pipe:
            pipe.set(f"{P}service:{service.id}", json.dumps(service.to_json()))
            pipe.sadd(f"{P}services", service.id)
            await pipe.execute()

    async def create_service(self, service: ServiceRecord) -> None:
        async with self._redis():
            created = await self._create_service(
                keys=[f"{P}service:{service.id}", f"{P}services"],
                args=[service.id, json.dumps(service.to_json())],
            )
        if not created:
            raise DuplicateError(f"service {service.id!r} already exists")

    async def delete_service(self, service_id: str) -> bool:
        s = service_id
        async with self._redis():
            deleted = await self._delete_service(
                keys=[
                    f"{P}service:{s}",
                    f"{P}services",
                    f"{P}rooms:{s}",
                    f"{P}adhoc:{s}",
                    f"{P}adhoc-ids:{s}",
                    f"{P}output-rooms:{s}",
                ],
                args=[s, P],
            )
        return bool(deleted)

    # -- stored rooms --

    def _room_keys(self, room: RoomRecord) -> list[str]:
        s = room.service_id
        return [
            f"{P}service:{s}",
            f"{P}room:{s}:{room.id}",
            f"{P}rooms:{s}",
            f"{P}room-names:{s}:{room.name}",
            f"{P}room-seq",
        ]

    async def create_room(self, room: RoomRecord) -> None:
        async with self._redis():
            result = _text(
                await self._create_room(
                    keys=self._room_keys(room), args=[room.id, _room_json(room)]
                )
            )
        if result == "noservice":
            raise NotFoundError(f"service {room.service_id!r} does not exist")
        if result == "duplicate":
            raise DuplicateError(f"room {room.id!r} already exists")

    async def ensure_named_room(self, room: RoomRecord) -> RoomRecord:
        async with self._redis():
            result = await self._ensure_named_room(
                keys=self._room_keys(room),
                args=[room.id, _room_json(room), f"{P}room:{room.service_id}:"],
            )
        if _text(result) == "noservice":
            raise NotFoundError(f"service {room.service_id!r} does not exist")
        return _room(result)

    async def update_room(self, room: RoomRecord) -> None:
        async with self._redis():
            updated = await self._update_room(
                keys=[f"{P}room:{room.service_id}:{room.id}", f"{P}rooms:{room.service_id}"],
                args=[
                    room.name,
                    _room_json(room),
                    f"{P}room-names:{room.service_id}:",
                    room.id,
                ],
            )
        if not updated:
            raise NotFoundError(f"room {room.id!r} does not exist")

    async def get_room(self, service_id: str, room_id: str) -> RoomRecord | None:
        async with self._redis() as r:
            value = await r.get(f"{P}room:{service_id}:{room_id}")
        return _room(value) if value is not None else None

    async def _rooms(self, service_id: str, ids: list[Any]) -> list[RoomRecord]:
        if not ids:
            return []
        async with self._redis() as r:
            values = await r.mget([f"{P}room:{service_id}:{_text(i)}" for i in ids])
        return [_room(v) for v in values if v is not None]

    async def find_rooms_by_name(
        self, service_id: str, name: str, limit: int = 10
    ) -> list[RoomRecord]:
        async with self._redis() as r:
            ids = await r.zrange(f"{P}room-names:{service_id}:{name}", 0, limit - 1)
        return await self._rooms(service_id, ids)

    async def list_rooms(
        self, service_id: str, page: int = 1, per_page: int = 50
    ) -> list[RoomRecord]:
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page start at 1")
        start = (page - 1) * per_page
        async with self._redis() as r:
            ids = await r.zrange(f"{P}rooms:{service_id}", start, start + per_page - 1)
        return await self._rooms(service_id, ids)

    async def count_rooms(self, service_id: str) -> int:
        async with self._redis() as r:
            return int(await r.zcard(f"{P}rooms:{service_id}"))

    async def delete_room(self, service_id: str, room_id: str) -> bool:
        async with self._redis():
            deleted = await self._delete_room(
                keys=[f"{P}room:{service_id}:{room_id}", f"{P}rooms:{service_id}"],
                args=[f"{P}room-names:{service_id}:", room_id],
            )
        return bool(deleted)

    # -- ad-hoc rooms --

    async def adhoc_room(self, service_id: str, name: str, *, create: bool) -> str | None:
        async with self._redis():
            room_id = await self._adhoc_room(
                keys=[f"{P}adhoc:{service_id}", f"{P}adhoc-ids:{service_id}"],
                args=[name, new_room_id() if create else ""],
            )
        return _text(room_id) if room_id else None

    async def adhoc_room_name(self, service_id: str, room_id: str) -> str | None:
        async with self._redis() as r:
            name = await r.hget(f"{P}adhoc-ids:{service_id}", room_id)
        return _text(name) if name is not None else None

    async def list_adhoc_rooms(self, service_id: str) -> list[tuple[str, str]]:
        async with self._redis() as r:
            rooms = await r.hgetall(f"{P}adhoc-ids:{service_id}")
        return sorted((_text(i), _text(n)) for i, n in rooms.items())

    async def restore_adhoc_room(self, service_id: str, name: str, room_id: str) -> str:
        """Name ``room_id`` (a running ad-hoc room) ``name`` again unless the name is taken
        (a Redis that restarted empty forgot it); the id the name now has."""
        async with self._redis():
            named = await self._adhoc_room(
                keys=[f"{P}adhoc:{service_id}", f"{P}adhoc-ids:{service_id}"],
                args=[name, room_id],
            )
        return _text(named)

    async def end_adhoc_room(self, service_id: str, room_id: str) -> None:
        async with self._redis():
            await self._end_adhoc_room(
                keys=[f"{P}adhoc:{service_id}", f"{P}adhoc-ids:{service_id}"], args=[room_id]
            )

    async def clear_adhoc_rooms(self) -> None:
        async with self._redis() as r:
            keys = [k async for k in r.scan_iter(match=f"{P}adhoc*")]
            if keys:
                await r.delete(*keys)

    # -- recordings and streaming-outs --

    async def _save(
        self,
        kind: str,
        output_id: str,
        service_id: str,
        room_id: str,
        info: dict[str, Any],
        where: str,
        running: bool,
    ) -> None:
        async with self._redis():
            await self._save_output(
                keys=[
                    f"{P}{kind}:{output_id}",
                    f"{P}{kind}s:{service_id}:{room_id}",
                    f"{P}{kind}s-running",
                    f"{P}output-rooms:{service_id}",
                    f"{P}output-seq",
                ],
                args=[
                    output_id,
                    json.dumps(info),
                    "1" if running else "0",
                    service_id,
                    room_id,
                    where,
                ],
            )

    async def _list(self, kind: str, service_id: str, room_id: str) -> list[OutputRecord]:
        async with self._redis() as r:
            ids = [_text(i) for i in await r.zrange(f"{P}{kind}s:{service_id}:{room_id}", 0, -1)]
            records = await self._outputs(r, kind, ids)
        return [
            (i, json.loads(rec["info"]), rec["where"])
            for i, rec in zip(ids, records, strict=True)
            if rec
        ]

    @staticmethod
    async def _outputs(r: aioredis.Redis, kind: str, ids: list[str]) -> list[dict[str, str]]:
        """Each output's hash fields as text ({} for one that is gone)."""
        if not ids:
            return []
        async with r.pipeline(transaction=False) as pipe:
            for output_id in ids:
                pipe.hgetall(f"{P}{kind}:{output_id}")
            values = await pipe.execute()
        return [{_text(k): _text(v) for k, v in value.items()} for value in values]

    async def save_recording(
        self, recording_id: str, service_id: str, room_id: str, info: dict[str, Any], file: str
    ) -> None:
        running = info.get("state") in RECORDING_RUNNING
        await self._save("recording", recording_id, service_id, room_id, info, file, running)

    async def update_recording(self, recording_id: str, info: dict[str, Any]) -> None:
        async with self._redis():
            await self._update_output(
                keys=[f"{P}recording:{recording_id}", f"{P}recordings-running"],
                args=[
                    recording_id,
                    json.dumps(info),
                    "1" if info.get("state") in RECORDING_RUNNING else "0",
                ],
            )

    async def list_recordings(self, service_id: str, room_id: str) -> list[OutputRecord]:
        return await self._list("recording", service_id, room_id)

    async def running_recordings(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(id, service id, room id, info) of every recording stored as running."""
        async with self._redis() as r:
            ids = sorted(_text(i) for i in await r.smembers(f"{P}recordings-running"))
            records = await self._outputs(r, "recording", ids)
        return [
            (i, rec["service"], rec["room"], json.loads(rec["info"]))
            for i, rec in zip(ids, records, strict=True)
            if rec
        ]

    async def get_recording(self, service_id: str, recording_id: str) -> RecordingRecord | None:
        async with self._redis() as r:
            record = (await self._outputs(r, "recording", [recording_id]))[0]
        if not record or record.get("service") != service_id:
            return None
        return (recording_id, record["room"], json.loads(record["info"]), record["where"])

    async def list_service_recordings(self, service_id: str) -> list[RecordingRecord]:
        # Every room that had an output, then each room's recordings with their save order.
        async with self._redis() as r:
            rooms = sorted(_text(i) for i in await r.smembers(f"{P}output-rooms:{service_id}"))
            ordered: list[tuple[float, str]] = []
            for room_id in rooms:
                # (member, score) pairs with withscores (redis-py types the reply loosely).
                listed = cast(
                    list[tuple[Any, float]],
                    await r.zrange(f"{P}recordings:{service_id}:{room_id}", 0, -1, withscores=True),
                )
                ordered.extend((float(score), _text(i)) for i, score in listed)
            ids = [i for _, i in sorted(ordered)]
            records = await self._outputs(r, "recording", ids)
        return [
            (i, rec["room"], json.loads(rec["info"]), rec["where"])
            for i, rec in zip(ids, records, strict=True)
            if rec
        ]

    async def interrupted_recordings(self) -> list[tuple[str, dict[str, Any]]]:
        return [(i, info) for i, _, _, info in await self.running_recordings()]

    async def fail_lost_recordings(
        self,
        service_id: str,
        room_id: str,
        reason: str,
        *,
        claiming: str = "",
    ) -> list[str]:
        """Mark failed (with ``reason``) the room's recordings still stored as running whose
        agent was lost: none if a live agent other than ``claiming`` hosts the room (its
        recordings are running). Each is marked once, whichever process asks first. The
        ids marked here."""
        async with self._redis() as r:
            ids = [_text(i) for i in await r.zrange(f"{P}recordings:{service_id}:{room_id}", 0, -1)]
            if not ids:
                return []
            running = await r.smismember(f"{P}recordings-running", ids)
            candidates = [i for i, on in zip(ids, running, strict=True) if on]
            records = await self._outputs(r, "recording", candidates)
            failed = []
            for recording_id, record in zip(candidates, records, strict=True):
                if not record:
                    continue
                info = json.loads(record["info"])
                info["state"] = "failed"
                info["reason"] = reason
                marked = await self._fail_lost_recording(
                    keys=[
                        f"{P}recording:{recording_id}",
                        f"{P}recordings-running",
                        ROOM_AGENT_PREFIX + room_id,
                    ],
                    args=[recording_id, json.dumps(info), claiming, INFO_PREFIX],
                )
                if marked:
                    failed.append(recording_id)
        return failed

    async def save_streaming_out(
        self, streaming_id: str, service_id: str, room_id: str, info: dict[str, Any], directory: str
    ) -> None:
        running = info.get("state") in STREAMING_OUT_RUNNING
        await self._save(
            "streaming-out", streaming_id, service_id, room_id, info, directory, running
        )

    async def list_streaming_outs(self, service_id: str, room_id: str) -> list[OutputRecord]:
        return await self._list("streaming-out", service_id, room_id)

    async def streaming_out_directory(self, streaming_id: str) -> str | None:
        async with self._redis() as r:
            value = await r.hget(f"{P}streaming-out:{streaming_id}", "where")
        return _text(value) if value is not None else None

    async def close_interrupted_streaming_outs(self, reason: str) -> int:
        async with self._redis() as r:
            ids = sorted(_text(i) for i in await r.smembers(f"{P}streaming-outs-running"))
        count = 0
        for streaming_id in ids:
            async with self._redis() as r:
                value = await r.hget(f"{P}streaming-out:{streaming_id}", "info")
            if value is None:
                continue
            info = json.loads(value)
            info["state"] = "stopped"
            info["reason"] = reason
            async with self._redis():
                await self._update_output(
                    keys=[f"{P}streaming-out:{streaming_id}", f"{P}streaming-outs-running"],
                    args=[streaming_id, json.dumps(info), "0"],
                )
            count += 1
        return count

    # -- tokens and tickets --

    async def consume_token(self, token_id: str, expires_at: float) -> bool:
        # Kept until the token expires (after that it is refused anyway); at least a second.
        until = max(int(expires_at * 1000), int(time.time() * 1000) + 1000)
        async with self._redis() as r:
            return bool(await r.set(f"{P}token:{token_id}", 1, nx=True, pxat=until))

    async def ticket_secret(self) -> bytes:
        # Hex text: the same value whether or not the client decodes responses.
        async with self._redis() as r:
            await r.set(f"{P}ticket-secret", secrets.token_hex(32), nx=True)
            value = await r.get(f"{P}ticket-secret")
        if value is None:  # deleted between the two calls: the next call makes one again
            raise StoreUnavailable(UNAVAILABLE)
        return bytes.fromhex(_text(value))

    async def restore_ticket_secret(self, secret: bytes) -> bool:
        """Write back the secret this process read at start if Redis has none (it restarted
        empty): tickets issued before stay good. True if it was missing."""
        async with self._redis() as r:
            return bool(await r.set(f"{P}ticket-secret", secret.hex(), nx=True))

    async def close(self) -> None:
        """The Redis client belongs to whoever made it (the node); nothing of our own."""
