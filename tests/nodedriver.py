"""Node child processes that tests drive over pipes.

`run_node()` runs a script once: one JSON request in, one JSON answer out. A `NodeDriver`
keeps one running (tests/nodeserve.mjs is its other end): one JSON request a line on its
stdin (``{id, op, ...}``), one JSON answer a line on its stdout (``{id, ok, value}`` or
``{id, ok: false, error}``); its first line (id 0) says it is ready. ``tests/sio2.py``
(socket.io-client 2.x) and ``tests/browser/harness.py`` (Chromium through playwright-core)
are two such drivers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_node(script: Path, request: Any, needs: Path, checked_against: str) -> Any:
    """Run `script` with `request` as JSON on its stdin; the JSON it prints.

    Skips the test, saying how to enable it, where Node or `needs` (a path under
    node_modules) is missing: the test then has nothing to check against.
    """
    if shutil.which("node") is None:
        pytest.skip(f"Node.js is not installed: no cross-check with {checked_against}")
    if not needs.exists():
        pytest.skip(
            f"node_modules is missing (run `npm ci`): no cross-check with {checked_against}"
        )
    result = subprocess.run(
        ["node", str(script)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


class NodeDriver:
    """One Node process answering requests; a subclass names its script and its error."""

    script: ClassVar[Path]
    # What the driver is called in errors ("the browser bridge").
    title: ClassVar[str]
    error: ClassVar[type[Exception]]
    # Seconds a request may take unless the caller says otherwise.
    call_timeout: ClassVar[float]
    # The longest answer line, in bytes (screenshots and event logs are large).
    line_limit: ClassVar[int]

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(
        cls, ready_timeout: float, prefix: Sequence[str] = ()
    ) -> tuple[asyncio.subprocess.Process, Any]:
        """Start the script and wait for its ready line; the process and the line's value.

        `prefix` runs it through another program (`ip netns exec NAME`: tests/netlab.py)."""
        process = await asyncio.create_subprocess_exec(
            *prefix,
            "node",
            str(cls.script),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=cls.line_limit,
        )
        assert process.stdout is not None
        try:
            first = await asyncio.wait_for(process.stdout.readline(), ready_timeout)
            if not first:
                raise cls.error(f"{cls.title} exited before it was ready")
            hello = json.loads(first)
            if not hello.get("ok"):
                raise cls.error(f"{cls.title} did not start: {hello.get('error')}")
        except BaseException:
            # A driver that did not come up is not left running (nor what it started).
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        return process, hello.get("value")

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            message = json.loads(line)
            future = self._waiting.pop(message.get("id"), None)
            if future is None or future.done():
                continue
            if message.get("ok"):
                future.set_result(message.get("value"))
            else:
                future.set_exception(self.error(str(message.get("error"))))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(self.error(f"{self.title} exited"))
        self._waiting.clear()

    async def call(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send one request and wait for its answer (`call_timeout` seconds by default)."""
        assert self._process.stdin is not None
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._process.stdin.write(json.dumps({"id": request_id, "op": op, **fields}).encode())
        self._process.stdin.write(b"\n")
        await self._process.stdin.drain()
        try:
            return await asyncio.wait_for(future, self.call_timeout if timeout is None else timeout)
        finally:
            self._waiting.pop(request_id, None)

    async def close(self) -> None:
        """End the process: its stdin closes (it cleans up and exits), killed if it hangs."""
        if self._process.returncode is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                await asyncio.wait_for(self._process.wait(), 15)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._reader.cancel()
