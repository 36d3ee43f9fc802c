"""The portal reads a client's real address, not python-engineio's fixed REMOTE_ADDR."""

from __future__ import annotations

from types import SimpleNamespace

from tessera.portal.portal import client_address


def test_the_aiohttp_request_names_the_client() -> None:
    environ = {"REMOTE_ADDR": "127.0.0.1", "aiohttp.request": SimpleNamespace(remote="192.0.2.7")}
    assert client_address(environ) == "192.0.2.7"


def test_without_a_request_the_environ_is_used() -> None:
    assert client_address({"REMOTE_ADDR": "198.51.100.1"}) == "198.51.100.1"
    assert client_address({"aiohttp.request": SimpleNamespace(remote=None)}) is None
