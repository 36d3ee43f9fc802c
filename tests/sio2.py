"""socket.io-client 2.x (npm; Engine.IO 3, Socket.IO 4) driven from Python tests, in Node.

OWT 5.x's pages load this client. ``Sio2Node`` runs ``tests/sio2_node.mjs`` (one Node
process, any number of sockets; a `NodeDriver`); ``Sio2Socket`` is one socket of it: connect, emit
with an ack, the events heard in order, its state, and a dropped transport.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.eventually import eventually
from tests.nodedriver import ROOT, NodeDriver

DRIVER = Path(__file__).with_name("sio2_node.mjs")


def skip_without_node() -> None:
    """Skip the test, saying how to enable it, where Node or the npm package is missing."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed (apt-get install nodejs npm)")
    if not (ROOT / "node_modules" / "socket.io-client-2").is_dir():
        pytest.skip("node_modules/socket.io-client-2 is missing: run `npm ci`")


class Sio2Error(Exception):
    """The Node driver reported an error for a request."""


class Sio2Node(NodeDriver):
    """One Node process running socket.io-client 2.x sockets."""

    script = DRIVER
    title = "the socket.io-client 2 driver"
    error = Sio2Error
    call_timeout = 30.0
    line_limit = 16 * 1024 * 1024

    @classmethod
    async def start(cls) -> Sio2Node:
        skip_without_node()
        process, _ = await cls.spawn(ready_timeout=30)
        return cls(process)

    async def connect(self, url: str, **options: Any) -> Sio2Socket:
        """A new socket to ``url`` (``transports=["websocket"]``, ``extraHeaders=...``)."""
        number = await self.call("connect", url=url, options=options)
        return Sio2Socket(self, int(number))


class Sio2Socket:
    """One socket.io-client 2.x socket in the Node driver."""

    def __init__(self, node: Sio2Node, number: int) -> None:
        self.node = node
        self.number = number

    async def emit(self, event: str, *args: Any, timeout: float = 30.0) -> list[Any]:
        """Emit ``event`` with ``args`` and an ack; the ack's arguments."""
        reply: list[Any] = await self.node.call(
            "emit", timeout=timeout, socket=self.number, event=event, args=list(args)
        )
        return reply

    async def request(self, event: str, *args: Any) -> Any:
        """A Client-Portal request: the data of an ``"ok"`` reply (AssertionError otherwise)."""
        reply = await self.emit(event, *args)
        assert reply[0] == "ok", f"{event}: {reply}"
        return reply[1] if len(reply) > 1 else None

    async def events(self, name: str | None = None) -> list[list[Any]]:
        """Every event heard so far, in order (``[name, *args]``), or those named ``name``."""
        heard: list[list[Any]] = await self.node.call("events", socket=self.number)
        return [e for e in heard if name is None or e[0] == name]

    async def wait_event(self, name: str, count: int = 1, timeout: float = 20.0) -> list[Any]:
        """The ``count``-th event named ``name`` (waiting for it)."""

        async def heard() -> list[list[Any]] | None:
            found = await self.events(name)
            return found if len(found) >= count else None

        found = await eventually(heard, timeout, f"{count} {name!r} event(s)")
        return found[count - 1]

    async def state(self) -> dict[str, Any]:
        """``{connected, id, transport, engineId, readyState}``."""
        state: dict[str, Any] = await self.node.call("state", socket=self.number)
        return state

    async def wait_connected(self, timeout: float = 20.0) -> dict[str, Any]:
        async def connected() -> dict[str, Any] | None:
            state = await self.state()
            return state if state["connected"] else None

        return await eventually(connected, timeout, "socket.io-client 2 connected")

    async def drop_transport(self) -> str:
        """Cut the engine's transport as a network failure would; its name."""
        name: str = await self.node.call("dropTransport", socket=self.number)
        return name

    async def close(self) -> None:
        await self.node.call("close", socket=self.number)
