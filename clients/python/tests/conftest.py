from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from client_fakeportal import FakePortal
from tessera_client import ConferenceClient


@pytest.fixture
async def portal() -> AsyncIterator[FakePortal]:
    server = FakePortal()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., ConferenceClient]]:
    clients: list[ConferenceClient] = []

    def factory(**kwargs: Any) -> ConferenceClient:
        client = ConferenceClient(**kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.leave()
