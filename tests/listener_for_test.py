"""The listener alone, out of file descriptors: `python -m tests.listener_for_test`.

Lowers its open-file limit to 256, listens (a /healthz route; failed accepts tallied
every 3 s), then opens /dev/null
until no descriptor is left and prints the port. A line on stdin closes those
files: the clients that waited get answered. Logs go to stderr as JSON.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys

from aiohttp import web

from tessera.portal.config import load_config
from tessera.portal.listener import listen
from tessera.portal.logs import configure_logging

TALLY_INTERVAL = 3.0


async def main() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    config = load_config(None, env={})
    configure_logging("INFO", "json")
    app = web.Application()

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "alive"})

    app.router.add_get("/healthz", healthz)
    _runner, site = await listen(app, config, "127.0.0.1", 0, 0.5)
    # Its failed accepts are tallied every TALLY_INTERVAL s (10 s in production): the test
    # waits for two warnings, not twenty seconds.
    assert site.accepting is not None
    site.accepting.tally.interval = TALLY_INTERVAL
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    filler: list[int] = []
    while True:
        try:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            break
    print(site.port, flush=True)
    await stdin.readline()
    for fd in filler:
        os.close(fd)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
