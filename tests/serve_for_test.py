"""A Tessera server in a subprocess: `python -m tests.serve_for_test CONFIG PORTFILE`.

Writes "<port> <service key> <default room id>" to PORTFILE once listening, so
the test can reach it and then kill it (SIGKILL) to check what survives.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tessera.portal.config import load_config
from tests.support import serve


async def main(config_path: str, port_file: str) -> None:
    config = load_config(config_path, env={})
    server = (await serve(config)).server
    record = server.store.find_room_by_name(server.default_service.id, config.service.default_room)
    assert record is not None
    Path(port_file).write_text(f"{server.port} {server.default_service.key} {record.id}\n")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
