"""RedisRestore on a real redis-server: what a Redis that restarted empty forgot is
written back (ticket secret, configured service, ad-hoc room names), nothing else."""

from __future__ import annotations

import redis.asyncio as aioredis

from tessera.cluster.redisrestore import RedisRestore
from tessera.cluster.redisstore import RedisStore
from tessera.conference.records import bootstrap_service
from tessera.portal.config import load_config
from tests.redisserver import RedisServer


async def test_restore_writes_back_what_an_empty_redis_forgot(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    store = RedisStore(client)
    service = load_config(None).service
    try:
        await bootstrap_service(store, service)
        secret = await store.ticket_secret()
        named = await store.adhoc_room(service.id, "standup", create=True)
        assert named is not None
        rooms = [(service.id, named, "standup")]
        restore = RedisRestore(store, lambda: secret, service=service, adhoc_rooms=lambda: rooms)

        await restore.restore()  # nothing missing: nothing changes
        assert await store.ticket_secret() == secret

        await redis_server.stop()
        await restore.restore()  # Redis down: a warning, no exception
        await redis_server.start()
        assert await store.get_service(service.id) is None  # it came back empty

        await restore.restore()
        assert await store.ticket_secret() == secret
        assert await store.get_service(service.id) is not None
        assert await store.adhoc_room(service.id, "standup", create=False) == named
        assert await store.adhoc_room_name(service.id, named) == "standup"
        # A name taken meanwhile by another room stays that room's.
        await client.flushall()
        other = await store.adhoc_room(service.id, "standup", create=True)
        await restore.restore()
        assert await store.adhoc_room(service.id, "standup", create=False) == other
    finally:
        await client.aclose()
