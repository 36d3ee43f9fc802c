"""Calls across processes (cluster/rpc.py) and room events back (cluster/busrouter.py),
on a real redis-server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tessera.cluster.bus import Bus, RemoteError
from tessera.cluster.busrouter import BusRouter, client_message_handler
from tessera.cluster.rpc import MethodTable, MethodTableError, RequestRouter, RpcClient, RpcServer
from tessera.conference.errors import ConferenceError, ErrorCode
from tessera.conference.events import ClientAddress, LocalRouter
from tessera.conference.requests import ParticipantRef, TextRequest
from tessera.conference.tokens import TokenError
from tests.eventually import eventually
from tests.redisserver import RedisServer


@dataclass
class Record:
    id: str
    tags: list[str]


class Calls:
    """A small interface of the kinds the room service has."""

    def __init__(self) -> None:
        self.texts: list[tuple[ParticipantRef, TextRequest]] = []

    async def text(self, ref: ParticipantRef, request: TextRequest) -> None:
        self.texts.append((ref, request))

    async def record(self, service_id: str, *, tags: list[str] | None = None) -> Record | None:
        return Record(service_id, tags or []) if service_id != "none" else None

    async def file(self, name: str) -> Path:
        return Path("/recordings") / name

    async def refuse(self, kind: str) -> dict[str, Any]:
        if kind == "token":
            raise TokenError("Token has expired")
        if kind == "conference":
            raise ConferenceError("Stream does NOT exist", ErrorCode.STREAM_NOT_FOUND, 404)
        raise ValueError("a bug")

    async def hidden(self) -> None:
        """Not in the table: cannot be called from another process."""


TABLE = MethodTable(Calls, ["text", "record", "file", "refuse"], errors=[TokenError])


async def started(server: RedisServer, node: str) -> Bus:
    bus = Bus(server.url, node)
    await bus.start()
    return bus


async def test_calls_cross_with_their_types_and_errors(redis_server: RedisServer) -> None:
    agent, portal = await started(redis_server, "agent-1"), await started(redis_server, "portal-1")
    target = Calls()
    requests = RequestRouter()
    requests.add("rooms.", RpcServer(TABLE, target, "rooms.").handle)
    agent.on_request(requests.handle)
    client = RpcClient(portal, TABLE, "rooms.")
    try:
        ref = ParticipantRef(room_id="r1", participant_id="p1")
        await client.call("agent-1", "text", ref, TextRequest(to="all", message="hi"))
        assert target.texts == [(ref, TextRequest(to="all", message="hi"))]
        assert await client.call("agent-1", "record", "s1", tags=["a"]) == Record("s1", ["a"])
        assert await client.call("agent-1", "record", "none") is None
        assert await client.call("agent-1", "file", "x.mkv") == Path("/recordings/x.mkv")

        with pytest.raises(TokenError) as token:
            await client.call("agent-1", "refuse", "token")
        assert (token.value.message, token.value.code, token.value.status) == (
            "Token has expired",
            ErrorCode.AUTHENTICATION,
            401,
        )
        with pytest.raises(ConferenceError) as refused:
            await client.call("agent-1", "refuse", "conference")
        assert type(refused.value) is ConferenceError
        assert (refused.value.code, refused.value.status) == (ErrorCode.STREAM_NOT_FOUND, 404)
        with pytest.raises(ConferenceError, match="Internal error") as crashed:
            await client.call("agent-1", "refuse", "bug")
        assert crashed.value.status == 500

        # Only the table's methods, with arguments of their types, are called.
        with pytest.raises(RemoteError, match="cannot be called"):
            await portal.request("agent-1", "rooms.hidden", {})
        with pytest.raises(RemoteError, match="invalid"):
            await portal.request("agent-1", "rooms.text", {"ref": {"room_id": 5}, "request": {}})
        with pytest.raises(RemoteError, match="not an object"):
            await portal.request("agent-1", "rooms.record", {"service_id": "s", "other": 1})
        with pytest.raises(RemoteError, match="no handler"):
            await portal.request("agent-1", "elsewhere.x", {})
        with pytest.raises(TypeError):
            await client.call("agent-1", "record")  # a missing argument fails in the caller
        assert len(target.texts) == 1
    finally:
        await agent.close()
        await portal.close()


def test_a_method_that_cannot_cross_is_refused_at_start_up() -> None:
    class Untyped:
        async def call(self, x):  # type: ignore[no-untyped-def]
            return x

        def sync(self) -> None:
            return None

    with pytest.raises(MethodTableError, match="has no type"):
        MethodTable(Untyped, ["call"])
    with pytest.raises(MethodTableError, match="not a coroutine"):
        MethodTable(Untyped, ["sync"])
    with pytest.raises(MethodTableError, match="not a coroutine"):
        MethodTable(Untyped, ["missing"])


class _Recorder:
    """A front end that keeps what reaches it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []

    def deliver(self, key: str, event: str, data: Any) -> None:
        self.seen.append(("deliver", key, (event, data)))

    def disconnect(
        self, key: str, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None:
        self.seen.append(("disconnect", key, (reason, notify)))


async def test_room_events_reach_the_portal_holding_the_client_in_order(
    redis_server: RedisServer,
) -> None:
    agent, portal = await started(redis_server, "agent-1"), await started(redis_server, "portal-1")
    local, front_end = LocalRouter(), _Recorder()
    local.register("portal", front_end)
    portal.on_message(client_message_handler(local))
    router = BusRouter(agent)
    try:
        address = ClientAddress(front_end="portal", key="sid-1", node="portal-1")
        for n in range(50):
            router.deliver(address, "text", {"n": n})
        router.disconnect(address, "the room was deleted", notify=True)
        # No portal node: nothing is sent (a bug upstream, logged).
        router.deliver(ClientAddress(front_end="portal", key="sid-2"), "text", {})
        await eventually(lambda: len(front_end.seen) == 51, 10, "events at the portal")
        assert [s[2][1]["n"] for s in front_end.seen[:50]] == list(range(50))
        assert front_end.seen[50] == ("disconnect", "sid-1", ("the room was deleted", True))
        # A malformed message is dropped without harm.
        await agent.send("portal-1", "client.deliver", {"address": {"front_end": ""}})
        router.deliver(address, "text", {"n": "last"})
        await eventually(lambda: len(front_end.seen) == 52, 10, "the event after a bad one")
    finally:
        await agent.close()
        await portal.close()
