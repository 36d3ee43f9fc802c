"""Operations: /readyz under load, draining, and `tessera serve` shutting down on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from tessera.conference.store import Store
from tessera.conference.tokens import issue_token
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.integration.test_bad_inputs import RawClient
from tests.integration.test_recording import read_file
from tests.support import RunningServer, api, joined, rest_call, start_server
from tests.synthetic import ColorVideoTrack, ToneTrack, close_to, mean_rgb

ROOT = Path(__file__).resolve().parents[2]
RED = (220, 30, 30)
KEY = "operations-test-service-key-" + "k" * 16


async def readyz(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/readyz") as resp:
            return resp.status, await resp.json()


async def test_readyz_is_false_while_the_loop_lags_and_recovers(tmp_path: Path) -> None:
    # 50 ms: an idle loop stays well below it even on a loaded machine; the hog goes above.
    tessera = await start_server(tmp_path, **{"server.ready_max_loop_lag": 0.05})
    try:

        async def ready() -> bool:
            return await readyz(tessera.url) == (200, {"status": "ready"})

        await eventually(ready, what="/readyz ready")
        # Hog the event loop (as a slow handler would): every lag sample is late.
        for _ in range(15):
            time.sleep(0.15)  # noqa: ASYNC251 (stimulus: blocking the loop is the point)
            await asyncio.sleep(0)
        status, body = await readyz(tessera.url)
        assert status == 503 and body["status"] == "overloaded", body
        assert "event-loop lag" in body["reason"] and "above 50 ms" in body["reason"]
        # Once the loop is responsive again (the window is 2 s), so is /readyz.
        await eventually(ready, what="/readyz ready again")
    finally:
        await tessera.stop()


async def test_drain_refuses_logins_drops_clients_and_finalises_recordings(
    tessera: RunningServer,
) -> None:
    alice = await joined(tessera, "alice")
    publication = await alice.publish(video=ColorVideoTrack(RED))
    await publication.wait_ready()
    room = alice.room_id
    status, rec = await api(
        tessera,
        "POST",
        f"/v1/rooms/{room}/recordings",
        {"container": "webm", "media": {"video": {"from": publication.id}}},
    )
    assert status == 200, rec
    late = RawClient()
    await late.connect(tessera.url)
    recording = tessera.server.rooms[room].recordings[rec["id"]]  # type: ignore[index]
    await eventually(lambda: recording.duration >= 1.0, what="a second of media recorded")
    await tessera.server.drain()
    await asyncio.wait_for(alice.dropped.wait(), 20)
    status, message = await late.login(tessera.token(user="late"))
    assert (status, message) == ("error", "Server is shutting down")
    assert await readyz(tessera.url) == (503, {"status": "shutting down"})
    assert recording.state == "stopped"
    # Finalised, and gone from memory: its record in the store says so.
    service = tessera.server.default_service.id
    stored = await tessera.server.conference.get_recording(service, room, rec["id"])  # type: ignore[arg-type]
    assert stored["state"] == "stopped" and not tessera.server.rooms[room].recordings  # type: ignore[index]
    assert read_file(Path(rec["storage"]["file"]))["frames"] > 10
    await late.sio.disconnect()
    await alice.leave()


class ServeProcess:
    """`python -m tessera.portal.cli serve` with JSON logs; its stderr lines are collected."""

    def __init__(
        self,
        tmp_path: Path,
        shutdown_timeout: float,
        server: str = "",
        prefix: tuple[str, ...] = (),
    ) -> None:
        """``server``: more ``[server]`` lines; ``prefix``: a command to run it under (prlimit)."""
        self.prefix = prefix
        self.config = tmp_path / "tessera.toml"
        self.config.write_text(
            f"[server]\nport = 0\nshutdown_timeout = {shutdown_timeout}\n{server}"
            f'[storage]\ndata_dir = "{tmp_path}"\n'
            f'[service]\nkey = "{KEY}"\n'
            '[log]\nformat = "json"\n'
        )
        self.database = tmp_path / "tessera.sqlite3"
        self.lines: list[dict[str, Any]] = []
        self.url = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.prefix,
            sys.executable,
            "-m",
            "tessera.portal.cli",
            "serve",
            "--config",
            str(self.config),
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.ensure_future(self._read())
        try:
            await asyncio.wait_for(self._listening.wait(), 60)
        except BaseException:
            self.kill()  # a server that did not come up is not left running
            raise

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").strip()
            try:
                event = json.loads(line)
            except ValueError:
                event = {"msg": line, "unstructured": True}
            self.lines.append(event)
            if str(event.get("msg", "")).startswith("Tessera listening"):
                self.url = event["url"]
                self._listening.set()

    def token(self, room: str, user: str) -> str:
        return issue_token(
            service_id="default",
            key=KEY,
            room=room,
            user=user,
            role="presenter",
            host=self.url.removeprefix("http://"),
            secure=False,
            lifetime=60,
        )

    async def terminate(self) -> int:
        """SIGTERM; the exit status (1 when the server's own deadline cut the shutdown)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.proc.wait(), 60)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 20)
        return status

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


async def _record_and_stream(
    serve: ServeProcess,
) -> tuple[ConferenceClient, RawClient, dict[str, Any]]:
    client = ConferenceClient(reconnect=False)
    await client.join(serve.token("default", "alice"))
    pub = await client.publish(video=ColorVideoTrack(RED), audio=ToneTrack(440))
    await pub.wait_ready()
    room = client.room_id
    status, rec = await rest_call(
        serve.url,
        KEY,
        "POST",
        f"/v1/rooms/{room}/recordings",
        {"container": "webm", "media": {"audio": {"from": pub.id}, "video": {"from": pub.id}}},
    )
    assert status == 200, rec
    waiting = RawClient()  # connected, not logged in, when the signal comes
    await waiting.connect(serve.url)

    async def recorded() -> bool:
        status, info = await rest_call(
            serve.url, KEY, "GET", f"/v1/rooms/{room}/recordings/{rec['id']}"
        )
        assert status == 200, info
        return float(info["duration"]) >= 2.0

    await eventually(recorded, what="two seconds of media recorded")
    return client, waiting, rec


def _assert_recording_finalised(serve: ServeProcess, rec: dict[str, Any]) -> None:
    store = Store(serve.database)
    try:
        listing = store.list_recordings("default", _room(rec))
    finally:
        store.close()
    info = next(info for rec_id, info, _ in listing if rec_id == rec["id"])
    # Finalised by the server itself, not marked as cut off by the next start.
    assert info["state"] == "stopped" and "reason" not in info, info
    media = read_file(Path(rec["storage"]["file"]))
    assert media["video"] == "vp8" and media["audio"] == "opus"
    assert media["frames"] > 30, media["frames"]
    assert close_to(mean_rgb(media["last"]), RED)
    assert written_duration(Path(rec["storage"]["file"])) > 1.5


def written_duration(path: Path) -> float:
    """The duration the muxer wrote into the header when it closed the file (0 if none)."""
    with av.open(str(path)) as container:
        return (container.duration or 0) / av.time_base


def _room(rec: dict[str, Any]) -> str:
    # storage.file is <recordings>/<room id>/<recording id>.<ext>
    return Path(rec["storage"]["file"]).parent.name


async def test_sigterm_drops_clients_finalises_recording_and_exits(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path, shutdown_timeout=10.0)
    await serve.start()
    try:
        client, waiting, rec = await _record_and_stream(serve)
        # 0: the shutdown ended within the server's own deadline (it exits 1 past it).
        assert await serve.terminate() == 0, serve.lines[-5:]
        assert client.dropped.is_set()
        _assert_recording_finalised(serve, rec)
        messages = [str(line.get("msg")) for line in serve.lines]
        assert any(m.startswith("shutting down: 1 recordings finalised") for m in messages)
        assert any(m.startswith("stopped in") for m in messages)
        assert not any(line.get("unstructured") for line in serve.lines), serve.lines
        await client.leave()
        await waiting.sio.disconnect()
    finally:
        serve.kill()


async def test_sigterm_exits_within_the_deadline_when_something_hangs(tmp_path: Path) -> None:
    deadline = 3.0
    serve = ServeProcess(tmp_path, shutdown_timeout=deadline)
    await serve.start()
    lock = sqlite3.connect(serve.database, timeout=0)
    try:
        client, waiting, rec = await _record_and_stream(serve)
        # Someone holds the database (a backup, an admin's sqlite3 shell): saving the
        # finished recording blocks the server's loop for the 5 s busy timeout.
        lock.execute("BEGIN EXCLUSIVE")
        assert await serve.terminate() == 1, serve.lines[-5:]
        messages = [str(line.get("msg")) for line in serve.lines]
        assert any("took longer than 3.0 s" in m for m in messages)
        # The watchdog cut it while the store was still blocked: a shutdown that waited for
        # SQLite's 5 s busy timeout would have logged the failed save before exiting.
        assert not any("cannot save a recording" in m for m in messages), messages[-5:]
        assert client.dropped.is_set()
        # The file itself was finalised before the store was reached.
        path = Path(rec["storage"]["file"])
        assert written_duration(path) > 1.5
        assert read_file(path)["frames"] > 30
        await client.leave()
        await waiting.sio.disconnect()
    finally:
        lock.close()
        serve.kill()


@pytest.fixture(autouse=True)
def _no_tessera_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TESSERA_"):
            monkeypatch.delenv(name)
