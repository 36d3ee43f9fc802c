"""A Tessera server in its own process, so that its CPU can be read apart from its clients.

``python -m bench._server --data-dir DIR`` listens on 127.0.0.1 on a free
port, prints one JSON line (``port``, ``host``, ``service``, ``key``,
``room`` name, ``room_id``, ``pid``) once it accepts connections, and runs
until its stdin closes or it gets SIGTERM/SIGINT. The parent issues join
tokens with the printed service key, as an application server would.

``python -m bench._server CONFIG.toml PORT_FILE`` is the other form (a TOML
config instead of a data dir; ``port key room_id`` written to PORT_FILE once
listening); it runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from aiohttp import web

from tessera.portal.config import load_config
from tessera.portal.server import SERVER_KEY, create_app


async def serve(
    data_dir: str | None,
    log_level: str | None,
    config_file: str | None = None,
    port_file: str | None = None,
    aiortc_senders: bool = False,
) -> None:
    """Run the server until a termination signal arrives (or, without `port_file`, stdin ends).

    `aiortc_senders`: subscribers are sent by aiortc's own sender (packetise, protect and send
    per subscriber on the loop) instead of the shared fan-out, for bench.fanout's comparison.
    """
    overrides = {
        "storage.data_dir": data_dir,
        "server.host": "127.0.0.1",
        "server.port": 0,
        "log.level": log_level,
        # Every benchmark client logs in from 127.0.0.1, and fast.
        "limits.login_attempts_per_minute": 100_000,
        "limits.requests_per_second": 10_000.0,
        "limits.request_burst": 10_000,
    }
    config = load_config(config_file, env={}, overrides=overrides)
    logging.basicConfig(
        level=config.log.level, format="server %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    app = create_app(config)
    app.router.add_get("/bench/rtp-sent", _rtp_sent)
    app.router.add_post("/bench/loop-lag-reset", _reset_loop_lag)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = app[SERVER_KEY]
    server.port = int(runner.addresses[0][1])
    server.agent.shared_fanout = not aiortc_senders

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def watch_stdin() -> None:
        # The parent closes our stdin to stop us (and an exiting parent closes it too).
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    service = server.default_service
    room = config.service.default_room
    # An embedded server (the only kind this starts) always has its SQLite store.
    assert server.store is not None
    record = server.store.find_room_by_name(service.id, room)
    room_id = record.id if record is not None else room
    if port_file is not None:
        _write_port_file(port_file, f"{server.port} {service.key} {room_id}\n")
    else:
        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
        ready = {
            "port": server.port,
            "host": server.advertised_host(),
            "service": service.id,
            "key": service.key,
            "room": room,
            "room_id": room_id,
            "pid": os.getpid(),
        }
        print(json.dumps(ready), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def _rtp_sent(request: web.Request) -> web.Response:
    """RTP packets and payload bytes every sender has sent so far (aiortc's getStats).

    Whichever way subscribers are sent, aiortc's sender counts them (the shared fan-out
    reports its counts to it), so bench.fanout can read the server's CPU per packet sent.
    """
    server = request.app[SERVER_KEY]
    packets = octets = 0
    for number, transport in enumerate(list(server.agent.transports.values())):
        if number % 10 == 9:
            await asyncio.sleep(0)  # 300 getStats() in one go would hold the loop ~50 ms
        for transceiver in transport.pc.getTransceivers():
            report = await transceiver.sender.getStats()
            for stats in report.values():
                if stats.type == "outbound-rtp":
                    packets += stats.packetsSent
                    octets += stats.bytesSent
    return web.json_response({"packets": packets, "octets": octets})


async def _reset_loop_lag(request: web.Request) -> web.Response:
    """Forget the loop-lag samples so far: /metrics then gives the lag of a measurement window
    (its p99 otherwise covers the last minute, the connecting of a step's subscribers too)."""
    request.app[SERVER_KEY].loop_lag.reset()
    return web.json_response({})


def _write_port_file(path: str, text: str) -> None:
    # Once, at startup, before any client can connect: blocking the loop here costs nothing.
    Path(path).write_text(text)


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("config", nargs="?", help="TOML config file (the PORT_FILE form)")
    parser.add_argument("port_file", nargs="?", help="where to write 'port key room_id'")
    parser.add_argument("--data-dir", help="database and state (a temp folder)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument(
        "--aiortc-senders",
        action="store_true",
        help="send subscribers with aiortc's own sender, not the shared fan-out (comparison)",
    )
    args = parser.parse_args()
    if args.port_file is None and args.data_dir is None:
        parser.error("give --data-dir DIR, or CONFIG PORT_FILE")
    log_level = args.log_level or (None if args.config else "WARNING")
    asyncio.run(serve(args.data_dir, log_level, args.config, args.port_file, args.aiortc_senders))


if __name__ == "__main__":
    main()
