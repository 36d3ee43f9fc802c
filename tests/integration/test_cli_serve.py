"""`tessera token` names the server that runs; `tessera serve` fails to start in one line."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
from pathlib import Path

from tessera_client import ConferenceClient
from tests.integration.test_operations import ROOT, ServeProcess


async def tessera(*args: str) -> tuple[int, str, str]:
    """`python -m tessera.portal.cli ARGS` in its own process: (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tessera.portal.cli",
        *args,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def token_host(token: str) -> str:
    return str(json.loads(base64.b64decode(token))["host"])


async def test_token_names_the_running_server_and_says_when_it_assumed_one(
    tmp_path: Path,
) -> None:
    serve = ServeProcess(tmp_path, shutdown_timeout=10)
    await serve.start()  # on a port the system picks: never the default 8080
    try:
        host = serve.url.removeprefix("http://")
        assert not host.endswith(":8080")
        status, out, err = await tessera(
            "token", "weekly", "--user", "ada", "--role", "presenter", "--config", str(serve.config)
        )
        assert status == 0, err
        assert err == ""
        assert token_host(out.strip()) == host
        client = ConferenceClient(reconnect=False)
        info = await client.join(out.strip())
        assert info["room"]["name"] == "weekly"
        await client.leave()
    finally:
        assert await serve.terminate() == 0
    assert not (tmp_path / "server.json").exists()

    # No server runs: the token is for the configuration's address, and stderr says so.
    status, out, err = await tessera(
        "token", "weekly", "--user", "ada", "--role", "presenter", "--config", str(serve.config)
    )
    assert status == 0, err
    assert token_host(out.strip()) == "127.0.0.1:0"
    assert "no running server found" in err and "http://127.0.0.1:0" in err


async def test_a_port_in_use_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "tessera.toml"
        config.write_text(f'[storage]\ndata_dir = "{tmp_path}"\n')  # logs at level info
        status, out, err = await tessera("serve", "--config", str(config), "--port", str(port))
    assert status == 1
    assert out == ""
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"tessera: cannot listen on 127.0.0.1:{port}: the port is in use")
    assert f"--port {port + 1}" in line
    assert not (tmp_path / "server.json").exists()


async def test_an_unusable_data_directory_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = tmp_path / "tessera.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{blocker / "data"}"\n[server]\nport = 0\n'
        '[log]\nlevel = "warning"\n'
    )
    status, out, err = await tessera("serve", "--config", str(config))
    assert status == 1
    assert out == ""
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"tessera: cannot open the data directory {blocker / 'data'}")
    assert "[storage] data_dir" in line
