"""The churn test's conference clients, in a process of their own.

Run as ``python -m tests.churnclients``.

A server's clients run elsewhere: here they neither share the server's event loop
(their callbacks would be timed as the server's) nor its interpreter lock (their
encoders, decoders and synthetic media would keep the server's loop waiting for it).
The test sends one JSON command a line on stdin; each gets one JSON line on stdout:
the result, or ``{"error": ...}``. :class:`ChurnClients` is the test's side.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from tessera_client import ConferenceClient, Publication, Subscription
from tests.synthetic import ColorVideoTrack, ToneTrack

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ((220, 30, 30), (30, 220, 30), (30, 30, 220))


class ChurnClients:
    """The test's handle on the client process: ``await clients.call("join", tokens=...)``."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> ChurnClients:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.churnclients",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def call(self, op: str, timeout: float = 60.0, **arguments: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **arguments}).encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the client process ended during {op!r}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{op!r} failed in the client process:\n{reply['error']}")
        return reply["result"]

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class Clients:
    """The process's side: three clients that publish, subscribe and leave on command."""

    def __init__(self) -> None:
        self.clients: list[ConferenceClient] = []
        self.publications: list[Publication] = []
        self.subscriptions: dict[str, Subscription] = {}

    async def join(self, tokens: list[str]) -> list[str]:
        """Each token's client joins and publishes a colour and a tone; their stream ids."""
        for index, token in enumerate(tokens):
            client = ConferenceClient()
            await client.join(token)
            self.clients.append(client)
            publication = await client.publish(
                video=ColorVideoTrack(COLOURS[index % 3]), audio=ToneTrack(300.0 + 100 * index)
            )
            self.publications.append(publication)
        for publication in self.publications:
            await publication.wait_ready()
        return [publication.id for publication in self.publications]

    async def subscribe(self, client: int, stream: str, name: str, audio: bool = True) -> None:
        subscription = await self.clients[client].subscribe(stream, audio=audio)
        await subscription.wait_ready()
        self.subscriptions[name] = subscription

    async def ended(self, name: str) -> None:
        await self.subscriptions[name].ended.wait()

    async def unpublish(self, index: int) -> None:
        await self.publications[index].unpublish()

    async def leave(self) -> None:
        for client in self.clients:
            await client.leave()
        self.clients, self.publications, self.subscriptions = [], [], {}


async def serve() -> None:
    clients = Clients()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        op = command.pop("op")
        try:
            reply = {"result": await getattr(clients, op)(**command)}
        except Exception:
            reply = {"error": traceback.format_exc()}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    await clients.leave()


if __name__ == "__main__":
    asyncio.run(serve())
