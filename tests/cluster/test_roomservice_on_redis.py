"""Two room services on one Redis store, as two agents of a cluster would be: one ad-hoc
room id per name, a token used once, tickets any of them can read, and Redis down as a
clear error (real redis-server, real RoomService; no network clients needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tessera.cluster.redisstore import RedisStore
from tessera.conference.errors import ConferenceError
from tessera.conference.events import ClientAddress
from tessera.conference.records import ServiceRecord, StoreUnavailable
from tessera.conference.requests import JoinRequest
from tessera.conference.roomservice import RoomService
from tessera.conference.settings import ConferenceSettings
from tessera.conference.tokens import TokenError, verify_ticket
from tests.redisserver import RedisServer

KEY = "k" * 43


@pytest.fixture
async def services(
    redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[RoomService, RoomService]]:
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(2)]
    made = []
    for index, client in enumerate(clients):
        settings = ConferenceSettings(
            recording_dir=tmp_path / f"rec{index}",
            hls_dir=tmp_path / f"hls{index}",
            advertised_host=lambda: "127.0.0.1:1",
        )
        service = RoomService(settings, RedisStore(client))
        await service.start(only_process=False)
        made.append(service)
    await made[0].store.put_service(ServiceRecord(id="acme", key=KEY))
    try:
        yield made[0], made[1]
    finally:
        for service in made:
            await service.close()
        for client in clients:
            await client.aclose()


def join(room: str, key: str, *, reconnection: bool = False) -> JoinRequest:
    return JoinRequest(
        service_id="acme",
        room=room,
        user=f"user-{key}",
        role="presenter",
        client=ClientAddress(front_end="portal", key=key),
        reconnection=reconnection,
    )


async def test_an_adhoc_room_name_is_one_id_everywhere(
    services: tuple[RoomService, RoomService],
) -> None:
    a, b = services
    joined = await asyncio.gather(a.join(join("lobby", "1")), b.join(join("lobby", "2")))
    assert joined[0].participant.room_id == joined[1].participant.room_id
    # Once it ended everywhere, the name is free: the next room of that name is a new one.
    for service, result in zip((a, b), joined, strict=True):
        await service.leave(result.participant)
    again = await b.join(join("lobby", "3"))
    assert again.participant.room_id != joined[0].participant.room_id


async def test_a_token_is_used_once_across_room_services(
    services: tuple[RoomService, RoomService],
) -> None:
    a, b = services
    token = (await a.issue_token("acme", "lobby", "ann", "presenter", adhoc=True)).token
    results = await asyncio.gather(
        a.authenticate(token), b.authenticate(token), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, TokenError)]
    assert len(refused) == 1 and str(refused[0]) == "Token has already been used", results
    with pytest.raises(TokenError, match="already been used"):
        await a.authenticate(token)


async def test_a_ticket_names_its_room_and_is_signed_with_the_shared_secret(
    services: tuple[RoomService, RoomService],
) -> None:
    a, b = services
    assert a.context.ticket_secret == b.context.ticket_secret != b""
    result = await a.join(join("lobby", "1", reconnection=True))
    assert result.ticket is not None
    claims = verify_ticket(result.ticket, b.context.ticket_secret)
    assert (claims.service_id, claims.room_id) == ("acme", result.participant.room_id)
    # b hosts no such participant: it says so (a relogin must go to the room's host),
    # not that the ticket is forged.
    with pytest.raises(ConferenceError, match="Participant does NOT exist"):
        await b.participant_of_ticket(result.ticket)
    info = await a.participant_of_ticket(result.ticket)
    assert info.participant == result.participant


async def test_redis_down_is_a_clear_error_and_nothing_breaks(
    services: tuple[RoomService, RoomService], redis_server: RedisServer
) -> None:
    a, b = services
    token = (await a.issue_token("acme", "lobby", "ann", "presenter", adhoc=True)).token
    inside = await a.join(join("hall", "1"))
    await redis_server.stop()
    for call in (
        a.join(join("lobby", "2")),
        b.authenticate(token),
        a.list_rooms("acme"),
        b.get_service("acme"),
    ):
        with pytest.raises(StoreUnavailable) as refused:
            await call
        assert refused.value.status == 503
        assert refused.value.message == "The cluster's database (Redis) is not answering; try again"
    # The room already loaded carries on: its participant is still there.
    assert (await a.room_info(inside.participant))["id"] == inside.participant.room_id
    await redis_server.start()  # empty, as a Redis without persistence restarts
    await a.store.put_service(ServiceRecord(id="acme", key=KEY))
    assert (await b.join(join("lobby", "3"))).participant.room_id
