"""A full disk degrades Tessera, it never locks people out (issue 22 item 3), on real small
tmpfs mounts (root and mount rights are needed; the tests are skipped otherwise):

- database and recordings on one disk: a recording stops ("disk full") at the reserve
  ([recording] disk_reserve_mb) and its file plays, logins go on, a new recording is
  refused saying why; with the disk filled by something else too, logins and REST writes
  answer 503 "Storage full", reads and the read-only commands go on, and once there is
  room again everything works again;
- database and recordings on separate disks: the database's disk full gives the same 503s
  while a recording on the other disk goes on.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tessera.conference.records import STORAGE_FULL
from tessera.portal.cli import main
from tessera_client import ClientError, ConferenceClient
from tests.eventually import eventually
from tests.integration.test_peer import raw_peer
from tests.integration.test_recording import publishers, read_file, recorded, wait_state
from tests.support import RunningServer, api, start_server

MIB = 1 << 20
RESERVE_MB = 4


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the test (skipped without mount rights)."""
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root needed): {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(disk: Path, name: str, leave: int = 0) -> Path:
    """Write a file on ``disk`` until at most ``leave`` bytes are free (0: none at all)."""
    filler = disk / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (MIB, 64 * 1024, 4096, 1):
            while free(disk) - chunk >= leave:
                try:
                    if os.write(fd, b"\xa5" * chunk) == 0:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


async def refused_login(tessera: RunningServer) -> str:
    """The error of a login while the database cannot be written (each try uses a token)."""
    for attempt in range(20):
        client = ConferenceClient()
        try:
            await client.join(tessera.token(user=f"late{attempt}"))
        except ClientError as exc:
            return str(exc)
        # SQLite wrote into space its files already had: the next write needs more.
        await client.leave()
    raise AssertionError("every login succeeded on a full disk")


async def assert_storage_full(tessera: RunningServer, data: Path, conf: Path) -> None:
    message = await refused_login(tessera)
    assert message.startswith(STORAGE_FULL), message
    # A peer that must open with a token (the token's use is written) is refused the same way.
    token = tessera.token(user="peer", service=tessera.server.default_service)
    peer = await raw_peer(tessera, "p1", token=token)
    try:
        refusal = await peer.recv()
        assert refusal["type"] == "ERROR", refusal
        assert refusal["payload"]["msg"].startswith(STORAGE_FULL), refusal
    finally:
        await peer.close()
    status, body = await api(tessera, "POST", "/v1/rooms", {"name": "more"})
    assert status == 503, body
    assert body["error"]["message"].startswith(STORAGE_FULL), body
    assert "Internal error" not in str(body)
    # Reading goes on: REST reads, and the command line (it opens the store read-only).
    status, rooms = await api(tessera, "GET", "/v1/rooms")
    assert status == 200 and rooms, rooms
    # The server's configuration: the stored service is the configured one, nothing to write.
    conf.write_text(f'[storage]\ndata_dir = "{data}"\n[service]\npeer_tokens = true\n')
    assert main(["service", "show", "--config", str(conf)]) == 0
    token_args = ["token", "default", "--user", "u", "--role", "presenter"]
    assert main([*token_args, "--config", str(conf)]) == 0


async def assert_working_again(tessera: RunningServer) -> None:
    client = ConferenceClient()
    await client.join(tessera.token(user="back"))
    await client.leave()
    status, body = await api(tessera, "POST", "/v1/rooms", {"name": "after"})
    assert status == 200, body


async def test_one_disk_recording_stops_at_the_reserve_and_nobody_is_locked_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tmpfs(tmp_path / "disk", "32m") as disk:
        data = disk / "data"
        overrides: dict[str, Any] = {
            "recording.disk_reserve_mb": RESERVE_MB,
            "service.peer_tokens": True,
        }
        tessera = await start_server(data, **overrides)
        try:
            pubs = await publishers(tessera)
            room = str(pubs[0][0].room_id)
            media = {"audio": {"from": pubs[0][1]}, "video": {"from": pubs[0][1]}}
            path = f"/v1/rooms/{room}/recordings"
            status, rec = await api(tessera, "POST", path, {"container": "mkv", "media": media})
            assert status == 200, rec
            await recorded(tessera.url, tessera.server.default_service.key, room, rec["id"], 1.0)
            # Others fill the disk to just above the reserve: the recording takes the rest.
            filler = fill(disk, "filler", leave=RESERVE_MB * MIB + 24 * 1024)
            info = await wait_state(tessera, room, rec["id"], "stopped")
            assert info["reason"].startswith("disk full"), info
            assert f"{RESERVE_MB} MiB kept free for the database" in info["reason"], info
            played = read_file(Path(info["storage"]["file"]))
            assert played["video"] == "vp8" and played["frames"] > 0, played
            # The reserve kept the database writable: people still log in.
            await assert_working_again(tessera)
            # A new recording is refused, saying why (and nothing is created).
            status, body = await api(tessera, "POST", path, {"container": "mkv", "media": media})
            assert status == 507, body
            assert body["error"]["message"].startswith("Cannot record: disk full"), body
            status, listed = await api(tessera, "GET", f"{path}?state=all")
            assert [r["id"] for r in listed] == [rec["id"]], listed
            # Something else takes the reserve too: 503 "Storage full", no lock-out.
            more = fill(disk, "more")
            await assert_storage_full(tessera, data, tmp_path / "cli.toml")
            more.unlink()
            filler.unlink()
            await assert_working_again(tessera)
            for client, _ in pubs:
                await client.leave()
        finally:
            await tessera.stop()
    capsys.readouterr()


async def test_separate_disks_a_full_database_disk_leaves_recordings_going(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        tmpfs(tmp_path / "db", "4m") as db_disk,
        tmpfs(tmp_path / "rec", "32m") as rec_disk,
    ):
        data = db_disk / "data"
        overrides: dict[str, Any] = {
            "recording.directory": str(rec_disk),
            "recording.disk_reserve_mb": RESERVE_MB,
            "service.peer_tokens": True,
        }
        tessera = await start_server(data, **overrides)
        try:
            pubs = await publishers(tessera)
            room = str(pubs[0][0].room_id)
            media = {"audio": {"from": pubs[0][1]}, "video": {"from": pubs[0][1]}}
            path = f"/v1/rooms/{room}/recordings"
            status, rec = await api(tessera, "POST", path, {"container": "mkv", "media": media})
            assert status == 200, rec
            key = tessera.server.default_service.key
            filler = fill(db_disk, "filler")
            await assert_storage_full(tessera, data, tmp_path / "cli.toml")
            # The recordings' disk has room: the recording goes on.
            await recorded(tessera.url, key, room, rec["id"], 2.0)
            filler.unlink()
            await assert_working_again(tessera)
            status, _ = await api(tessera, "DELETE", f"{path}/{rec['id']}")
            assert status == 200
            info = await wait_state(tessera, room, rec["id"], "stopped")
            assert read_file(Path(info["storage"]["file"]))["frames"] > 0
            for client, _ in pubs:
                await client.leave()
        finally:
            await tessera.stop()
    capsys.readouterr()


async def test_a_recording_does_not_start_below_the_reserve(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        overrides: dict[str, Any] = {
            "recording.directory": str(disk),
            "recording.disk_reserve_mb": 16,  # more than the whole disk
        }
        tessera = await start_server(tmp_path / "data", **overrides)
        try:
            pubs = await publishers(tessera)
            room = str(pubs[0][0].room_id)
            media = {"audio": {"from": pubs[0][1]}, "video": {"from": pubs[0][1]}}
            status, body = await api(
                tessera, "POST", f"/v1/rooms/{room}/recordings", {"media": media}
            )
            assert status == 507, body
            message = body["error"]["message"]
            assert "disk full" in message and "[recording] disk_reserve_mb" in message, message
            assert list(disk.iterdir()) == []
            await eventually(lambda: not tessera.server.rooms[room].recordings)
            for client, _ in pubs:
                await client.leave()
        finally:
            await tessera.stop()
