"""What of python-engineio the Engine.IO 3 sessions rely on is there (pinned; checked at start)."""

from __future__ import annotations

import pytest
import socketio

from tessera.portal.eio3session import check_engine


def test_the_installed_python_engineio_has_what_the_sessions_use() -> None:
    check_engine(socketio.AsyncServer(async_mode="aiohttp").eio)


def test_a_python_engineio_without_it_stops_the_start_naming_what_is_missing() -> None:
    class Engine:
        sockets: list[str] = []

    with pytest.raises(RuntimeError) as failure:
        check_engine(Engine())
    message = str(failure.value)
    assert "AsyncServer.handlers" in message and "AsyncServer.sockets (a dict)" in message
    assert "AsyncSocket(server, sid)" in message
