"""RoomHost: the room service asks before it loads a room and says when the room closed
(a cluster agent refuses rooms hosted elsewhere). Real RoomService on a real SQLite store;
the host is a small real implementation that hosts the rooms it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tessera.conference.errors import ConferenceError
from tessera.conference.events import ClientAddress
from tessera.conference.records import ServiceRecord
from tessera.conference.requests import JoinRequest
from tessera.conference.roomservice import RoomService
from tessera.conference.settings import ConferenceSettings
from tessera.conference.sqlitestore import SqliteStore
from tessera.conference.store import Store
from tests.eventually import eventually

ELSEWHERE = "The room is hosted by another media server"


class HostOf:
    """Hosts the rooms whose names it was given; remembers what it claimed and released."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.claimed: list[tuple[str, str, bool]] = []
        self.released: list[tuple[str, str, bool]] = []

    async def claim(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        if name not in self.names:
            raise ConferenceError(ELSEWHERE, status=409)
        self.claimed.append((room_id, name, persistent))

    async def release(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        self.released.append((room_id, name, persistent))


@pytest.fixture
async def hosted(tmp_path: Path) -> AsyncIterator[tuple[RoomService, HostOf]]:
    host = HostOf("mine")
    store = SqliteStore(Store(tmp_path / "db.sqlite3"), owned=True)
    await store.put_service(ServiceRecord(id="acme", key="k" * 43))
    settings = ConferenceSettings(recording_dir=tmp_path / "rec", hls_dir=tmp_path / "hls")
    service = RoomService(settings, store, host=host)
    await service.start()
    try:
        yield service, host
    finally:
        await service.close()
        await store.close()


def join(room: str, key: str) -> JoinRequest:
    client = ClientAddress(front_end="portal", key=key)
    return JoinRequest(service_id="acme", room=room, user=key, role="presenter", client=client)


async def test_a_room_is_claimed_before_it_loads_and_released_when_it_closes(
    hosted: tuple[RoomService, HostOf],
) -> None:
    service, host = hosted
    result = await service.join(join("mine", "1"))
    room_id = result.participant.room_id
    assert host.claimed == [(room_id, "mine", False)]
    await service.join(join("mine", "2"))  # loaded already: not claimed again
    assert len(host.claimed) == 1 and host.released == []
    await service.leave(result.participant)
    assert host.released == []  # someone is still in it
    await service.drop_participant(
        "acme", room_id, (await service.list_participants("acme", room_id))[0]["id"], "test over"
    )
    await eventually(lambda: host.released == [(room_id, "mine", False)], what="the release")


async def test_a_room_hosted_elsewhere_is_refused_and_nothing_loads(
    hosted: tuple[RoomService, HostOf],
) -> None:
    service, host = hosted
    with pytest.raises(ConferenceError, match=ELSEWHERE):
        await service.join(join("theirs", "1"))
    assert service.rooms == {} and host.claimed == []
    # The name keeps its cluster-wide id: whoever hosts it uses the same one.
    room_id = await service.store.adhoc_room("acme", "theirs", create=False)
    assert room_id is not None
    with pytest.raises(ConferenceError, match=ELSEWHERE):
        await service.join(join(room_id, "2"))
    assert service.rooms == {}
