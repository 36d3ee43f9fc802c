"""Connection hygiene (issue 22, items 1 and 2): held-open connections and connections
that never log in do not take the server's file descriptors.

The server runs in its own process under ``prlimit --nofile=512``: half the issue's
1,024, so the attack is half the issue's too (750 slowloris, 250 silent sockets).
Attack sockets come from other loopback addresses (127.0.0.0/8 is all local), so the
caps per address are seen at work; /healthz is asked from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.eventually import eventually
from tests.integration.test_operations import ServeProcess
from tests.support import RunningServer, api, start_server

OPEN_FILES = 512
SLOWLORIS = 750  # the 1,500 at 1,024 open files, scaled
SILENT = 250  # the 500, scaled
HEADER_TIMEOUT = 3.0
PER_ADDRESS = 32
SLOWLORIS_ADDRESSES = 30  # 25 each: under the per-address cap, so the global cap is what holds
SILENT_ADDRESS = "127.0.0.99"  # all from one: the per-address cap holds them


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Attacker:
    """Held-open connections: slowloris (a header line a second, reopened when closed)
    or silent (connected, nothing sent, not reopened)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []
        self.opened = 0
        self.sending = True
        self.tasks: list[asyncio.Task[None]] = []

    async def _connect(self, source: str) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source, 0))
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        except OSError:
            sock.close()
            return None
        self.sockets.append(sock)
        self.opened += 1
        return sock

    async def slowloris(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        while self.sending:
            sock = await self._connect(source)
            if sock is None:
                await asyncio.sleep(1.0)  # stimulus: the attacker's pace
                continue
            try:
                await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                while self.sending:
                    await asyncio.sleep(1.0)  # stimulus: a header line a second
                    await loop.sock_sendall(sock, b"X-Slow: 1\r\n")
            except OSError:
                await asyncio.sleep(1.0)  # stimulus: closed by the server, reopen as slowloris does

    async def silent(self, source: str) -> None:
        await self._connect(source)

    def start(self) -> None:
        for i in range(SLOWLORIS):
            source = f"127.0.0.{2 + i % SLOWLORIS_ADDRESSES}"
            self.tasks.append(asyncio.ensure_future(self.slowloris(source)))
        for _ in range(SILENT):
            self.tasks.append(asyncio.ensure_future(self.silent(SILENT_ADDRESS)))

    async def stop_sending(self) -> None:
        """Send nothing more and open nothing more; the sockets stay open on this side."""
        self.sending = False
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


async def healthz_latencies(url: str, count: int) -> list[float]:
    """``count`` requests to /healthz, each on a new connection: seconds each took."""
    latencies = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.get(url + "/healthz") as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
            latencies.append(time.perf_counter() - started)
    return latencies


def warnings_of(serve: ServeProcess, text: str) -> list[dict[str, Any]]:
    return [line for line in serve.lines if text in str(line.get("msg", ""))]


async def test_slowloris_and_silent_sockets_under_a_low_open_file_limit(tmp_path: Path) -> None:
    serve = ServeProcess(
        tmp_path,
        shutdown_timeout=10.0,
        server=(
            f"header_timeout = {HEADER_TIMEOUT}\nidle_timeout = 10.0\n"
            f"connections_per_address = {PER_ADDRESS}\nmedia_check = false\n"
        ),
        prefix=("prlimit", f"--nofile={OPEN_FILES}:{OPEN_FILES}", "--"),
    )
    await serve.start()
    assert serve.proc is not None
    pid = serve.proc.pid
    url = serve.url
    port = int(url.rsplit(":", 1)[1])
    attacker = Attacker(port)
    try:
        await healthz_latencies(url, 5)
        baseline = open_fds(pid)
        attacker.start()
        peak = 0

        def attack_in_place() -> bool:
            nonlocal peak
            peak = max(peak, open_fds(pid))
            return attacker.opened >= SLOWLORIS + PER_ADDRESS

        await eventually(attack_in_place, 60, "every attack socket opened once")
        latencies = sorted(await healthz_latencies(url, 200))
        peak = max(peak, open_fds(pid))
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        # The figure: /healthz keeps answering, p99 under 100 ms.
        assert p99 < 0.1, f"/healthz p99 {p99 * 1000:.0f} ms under attack"
        # The global cap (512 - 128 = 384) kept the process below its open-file limit.
        assert peak < OPEN_FILES - 64, (peak, baseline)
        await attacker.stop_sending()
        # Every attack socket is still open on this side: the server closes its ends.
        await eventually(
            lambda: open_fds(pid) <= baseline + 2,
            HEADER_TIMEOUT + 5,
            f"open files back to the baseline {baseline} (now {open_fds(pid)})",
        )
        await healthz_latencies(url, 5)
        # Refusals and timeouts were summed up, one warning per 10 s, never one per socket.
        tallies = warnings_of(serve, "closed by the listener's limits")
        assert tallies, "no warning about the limits"
        assert len(tallies) <= 10, len(tallies)
        assert not warnings_of(serve, "accept() failed")
        others = [line for line in serve.lines if line.get("logger") != "aiohttp.access"]
        assert len(others) < 50, others
        print(f"/healthz p99 {p99 * 1000:.1f} ms; open files {baseline} -> peak {peak}")
    finally:
        await attacker.stop_sending()
        attacker.close()
        serve.kill()
        await serve.proc.wait()


async def test_a_cap_above_the_open_file_limit_stops_the_start(tmp_path: Path) -> None:
    serve = ServeProcess(
        tmp_path, shutdown_timeout=10.0, server="max_connections = 1000\nmedia_check = false\n"
    )
    proc = await asyncio.create_subprocess_exec(
        *("prlimit", "--nofile=512:512", "--", sys.executable, "-m", "tessera.portal.cli"),
        *("serve", "--config", str(serve.config)),
        env={k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert b"server.max_connections = 1000 is above what the open-file limit (512)" in stderr


async def test_accept_out_of_files_backs_off_with_one_warning() -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.listener_for_test"),
        cwd=Path(__file__).resolve().parents[2],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            lines.append(raw.decode(errors="replace"))

    reader = asyncio.ensure_future(read_log())
    try:
        port = int(await asyncio.wait_for(proc.stdout.readline(), 60))
        url = f"http://127.0.0.1:{port}"
        waiting = asyncio.ensure_future(healthz_latencies(url, 20))
        # Out of descriptors, the listener retries each second: the failures of the first
        # tally interval (3 s in this listener, 10 s by default) are one warning, then one
        # more, never a line per attempt.
        accept_failed = lambda: [line for line in lines if "accept() failed" in line]  # noqa: E731
        await eventually(lambda: len(accept_failed()) >= 2, 40, "a second accept() warning")
        assert len(accept_failed()) == 2, accept_failed()
        assert '"EMFILE": 1' not in accept_failed()[1], accept_failed()  # several, summed
        assert not waiting.done()
        proc.stdin.write(b"free\n")
        await proc.stdin.drain()
        assert len(await asyncio.wait_for(waiting, 30)) == 20
    finally:
        proc.kill()
        await proc.wait()
        reader.cancel()


# -- connections that never log in --------------------------------------------------


async def websocket_answering_pings(
    tessera: RunningServer, eio: int
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    """A Socket.IO client on a WebSocket that keeps its connection alive and never logs in."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(
        f"{tessera.url}/socket.io/?EIO={eio}&transport=websocket", autoping=True
    )
    opening = await ws.receive_str(timeout=20)
    assert opening.startswith("0"), opening
    if eio == 4:
        await ws.send_str("40")  # Engine.IO 3 joins the default namespace unasked
    return session, ws


async def keep_alive_until_closed(ws: aiohttp.ClientWebSocketResponse, eio: int) -> str:
    """Answer pings (Engine.IO 4) or send them (3) until the server closes; what it said last."""
    last = ""
    while True:
        if eio == 3:
            await ws.send_str("2")
        message = await ws.receive(timeout=30)
        if message.type != aiohttp.WSMsgType.TEXT:
            return last
        last = message.data
        if eio == 4 and message.data == "2":
            await ws.send_str("3")


async def test_the_login_timeout_closes_the_websocket_beneath(tmp_path: Path) -> None:
    tessera = await start_server(
        tmp_path,
        **{"portal.login_timeout": 1.0, "portal.ping_interval": 0.5, "portal.ping_timeout": 1.0},
    )
    try:
        for eio in (4, 3):
            session, ws = await websocket_answering_pings(tessera, eio)
            try:
                await asyncio.wait_for(keep_alive_until_closed(ws, eio), 30)
                assert ws.closed
                await eventually(
                    lambda: (
                        not tessera.server.sio.eio.sockets and not tessera.server.portal.connections
                    ),
                    what=f"no Engine.IO {eio} socket left",
                )
            finally:
                await ws.close()
                await session.close()
    finally:
        await tessera.stop()


# -- a request body trickled slowly -----------------------------------------------------


async def test_a_trickled_request_body_is_cut_at_the_body_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tessera = await start_server(tmp_path, **{"server.body_timeout": 1.0})
    key = tessera.server.default_service.key
    reader, writer = await asyncio.open_connection("127.0.0.1", tessera.port)
    trickle: asyncio.Task[None] | None = None
    try:
        body = b'{"name": "slow"}'
        writer.write(
            b"POST /v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) + 1000)
        )
        await writer.drain()

        async def send_slowly() -> None:
            with contextlib.suppress(OSError):
                for byte in body + b" " * 1000:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.2)  # stimulus: a byte every 0.2 s (200 s in all)

        trickle = asyncio.ensure_future(send_slowly())
        # The server closes the connection without an answer (and long before 200 s).
        assert await asyncio.wait_for(reader.read(), 60) == b""
        await eventually(
            lambda: any(
                "request body not complete within 1 s" in r.getMessage() for r in caplog.records
            ),
            what="the tally's warning",
        )
        assert not [r for r in caplog.records if "REST request failed" in r.getMessage()]
        status, rooms = await api(tessera, "GET", "/v1/rooms")
        assert status == 200 and "slow" not in [r["name"] for r in rooms]
        # A body sent at once is answered as always.
        status, room = await api(tessera, "POST", "/v1/rooms", {"name": "quick"})
        assert status == 200, room
    finally:
        if trickle is not None:
            trickle.cancel()
        writer.close()
        await tessera.stop()


# -- the login timeout on a polling session ---------------------------------------------


def eio_packets(payload: str, eio: int) -> list[str]:
    """The packets of a polling payload: "\\x1e"-separated (4), "<length>:<packet>" (3)."""
    if eio == 4:
        return payload.split("\x1e") if payload else []
    packets = []
    while payload:
        length, _, rest = payload.partition(":")
        packets.append(rest[: int(length)])
        payload = rest[int(length) :]
    return packets


def eio_payload(packet: str, eio: int) -> str:
    return packet if eio == 4 else f"{len(packet)}:{packet}"


async def poll_until_closed(session: aiohttp.ClientSession, url: str, eio: int) -> None:
    """Poll and answer pings (Engine.IO 4) or ping (3), never logging in, until the server
    ends the session (a close packet, or the session unknown)."""
    while True:
        if eio == 3:
            await asyncio.sleep(0.25)  # stimulus: the client's ping interval
            async with session.post(url, data=eio_payload("2", eio)) as resp:
                if resp.status != 200:
                    return
        async with session.get(url) as resp:
            if resp.status != 200:
                return
            packets = eio_packets(await resp.text(), eio)
        if "1" in packets:
            return
        if eio == 4 and "2" in packets:
            async with session.post(url, data=eio_payload("3", eio)) as resp:
                if resp.status != 200:
                    return


async def test_the_login_timeout_closes_a_polling_session(tmp_path: Path) -> None:
    tessera = await start_server(
        tmp_path,
        **{"portal.login_timeout": 1.0, "portal.ping_interval": 0.5, "portal.ping_timeout": 1.0},
    )
    try:
        for eio in (4, 3):
            base = f"{tessera.url}/socket.io/?EIO={eio}&transport=polling"
            async with aiohttp.ClientSession() as session:
                async with session.get(base) as resp:
                    assert resp.status == 200
                    opening = eio_packets(await resp.text(), eio)[0]
                assert opening.startswith("0"), opening
                sid = json.loads(opening[1:])["sid"]
                url = f"{base}&sid={sid}"
                if eio == 4:  # Engine.IO 3 joins the default namespace unasked
                    async with session.post(url, data=eio_payload("40", eio)) as resp:
                        assert resp.status == 200
                await asyncio.wait_for(poll_until_closed(session, url, eio), 60)
            await eventually(
                lambda: (
                    not tessera.server.sio.eio.sockets and not tessera.server.portal.connections
                ),
                what=f"no Engine.IO {eio} polling session left",
            )
    finally:
        await tessera.stop()
