"""Every code block of README.md runs as written, against `tessera serve` on a free port.

Shell blocks run in order in bash (`set -euo pipefail`; curl fails on an HTTP error), each
with the variables the blocks before it set, from a folder whose `.venv` is this
checkout's; the README's data directory (`~/.local/share/tessera`) is a temporary one
(XDG_DATA_HOME), and its address 127.0.0.1:8080 the test server's. The Python block runs
with the command its first line gives; a JSON block (room options) is created as a room.
The HTML and JavaScript blocks run in Chromium (tests/browser/test_readme_page.py). Blocks marked
`<!-- readme-test: skip (why) -->` are not run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
from pathlib import Path

import pytest

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.readme_blocks import Block, at, parse_blocks, readme_blocks
from tests.support import rest_call
from tests.synthetic import ColorVideoTrack, ToneTrack

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
RUN_HERE = {"sh", "python", "json"}
RUN_IN_BROWSER = {"html", "js"}  # tests/browser/test_readme_page.py
PRELUDE = 'set -euo pipefail\nset -a\ncurl() { command curl --fail-with-body "$@"; }\n'
RED = (220, 30, 30)
DRAINING: set[asyncio.Task[None]] = set()  # readers of the servers' stderr


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 10
    for block in blocks:
        if block.skip is None:
            assert block.language in RUN_HERE | RUN_IN_BROWSER, (
                f"README line {block.line}: a {block.language!r} block no test runs; "
                "mark it <!-- readme-test: skip (why) --> if it cannot run"
            )
        else:
            assert len(block.skip.strip()) > 10, f"README line {block.line}: say why"


class Shell:
    """Runs shell blocks one after another, carrying the variables they set."""

    def __init__(self, work: Path, env: dict[str, str], address: str) -> None:
        self.work = work
        self.env = env
        self.address = address
        self.count = 0

    async def run(self, block: Block) -> str:
        self.count += 1
        state = self.work / f".state-{self.count}"
        script = self.work / f".block-{self.count}.sh"
        script.write_text(PRELUDE + at(block.text, self.address) + f"env -0 > {state}\n")
        status, out, err = await run(["bash", str(script)], self.work, self.env)
        assert status == 0, f"README line {block.line} failed ({status}):\n{out}\n{err}"
        self.env = dict(item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
        return out


async def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def start_serve(work: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """`tessera serve --port 0` (a free port, never 8080); returns it and its host:port."""
    proc = await asyncio.create_subprocess_exec(
        str(work / ".venv" / "bin" / "tessera"),
        "serve",
        "--port",
        "0",
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen = []
    while line := (await asyncio.wait_for(proc.stderr.readline(), 120)).decode():
        seen.append(line)
        found = re.search(r"listening on http://(127\.0\.0\.1:\d+)", line)
        if found:
            DRAINING.add(asyncio.ensure_future(drain(proc.stderr)))  # its pipe must not fill
            return proc, found[1]
    raise AssertionError("tessera serve did not start:\n" + "".join(seen))


async def drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def someone_in(address: str, key: str, room: str) -> ConferenceClient:
    """A participant publishing in `room`, so that its view runs (recording, streaming)."""
    status, token = await rest_call(
        f"http://{address}",
        key,
        "POST",
        f"/v1/rooms/{room}/tokens",
        {"user": "host", "role": "presenter"},
    )
    assert status == 200, token
    client = ConferenceClient(reconnect=False)
    await client.join(token)
    publication = await client.publish(video=ColorVideoTrack(RED), audio=ToneTrack(440))
    await publication.wait_ready()
    return client


async def recording_has_media(address: str, env: dict[str, str]) -> None:
    path = f"/v1/rooms/{env['ROOM']}/recordings/{env['ID']}"

    async def written() -> bool:
        status, info = await rest_call(f"http://{address}", env["KEY"], "GET", path)
        assert status == 200, info
        return bool(info["size"] > 0 and info["duration"] > 0)

    await eventually(written, 60, "the recording writing media")


async def test_readme_blocks_run_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")  # the README's ~/.local/share
    server, address = await start_serve(work, env)
    assert not address.endswith(":8080")
    shell = Shell(work, env, address)
    participant: ConferenceClient | None = None
    recording = ""
    ran = 0
    try:
        for block in readme_blocks():
            if block.skip is not None or block.language not in RUN_HERE:
                continue
            ran += 1
            if block.language == "sh":
                if "-common" in block.text and participant is None:
                    participant = await someone_in(address, shell.env["KEY"], "weekly")
                if "-X DELETE" in block.text and "/recordings/$ID" in block.text:
                    # The README's "later": the recording has written media by then.
                    await recording_has_media(address, shell.env)
                    recording = shell.env["ID"]
                out = await shell.run(block)
                if "tessera token" in block.text:
                    # The token names the server that runs, on its port.
                    envelope = json.loads(base64.b64decode(out.splitlines()[0]))
                    assert envelope["host"] == address
            elif block.language == "python":
                first = block.text.splitlines()[0]
                found = re.fullmatch(r"# (\S+\.py): (.+)", first)
                assert found, f"README line {block.line}: the first line says how to run it"
                (work / found[1]).write_text(block.text)
                status, out, err = await run(["bash", "-c", found[2]], work, shell.env)
                assert status == 0, f"README line {block.line} failed:\n{out}\n{err}"
                assert "received a 640x480 frame" in out, out
            else:  # json: room options, created as a room
                status, created = await rest_call(
                    f"http://{address}",
                    shell.env["KEY"],
                    "POST",
                    "/v1/rooms",
                    json.loads(block.text),
                )
                assert status == 200, f"README line {block.line}: {created}"
        assert ran >= 6
        assert participant is not None  # the recording and streaming blocks ran with it
        (downloaded,) = work.glob("*.mkv")  # named by the answer's Content-Disposition
        assert downloaded.name == f"{recording}.mkv" and downloaded.stat().st_size > 0
    finally:
        if participant is not None:
            await participant.leave()
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 60) == 0


def test_blocks_are_parsed_with_their_skip_reasons() -> None:
    text = "a\n<!-- readme-test: skip (needs 8080) -->\n```sh\necho 1\n```\n```json\n{}\n```\n"
    skipped, run_it = parse_blocks(text)
    assert (skipped.language, skipped.text, skipped.line, skipped.skip) == (
        "sh",
        "echo 1\n",
        3,
        "needs 8080",
    )
    assert (run_it.language, run_it.skip) == ("json", None)
    with pytest.raises(ValueError, match="line 1: a code block is never closed"):
        parse_blocks("```sh\necho\n")
