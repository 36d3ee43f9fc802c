"""A Tessera client in its own process, for tests that kill or freeze it.

``python -m tests.fault_client TOKEN publish`` publishes a coloured video;
``python -m tests.fault_client TOKEN subscribe STREAM`` subscribes to a stream
and keeps reading its video. Either prints one JSON line (``participant``, and
``stream`` or ``subscription``) once ready, then runs until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tessera_client import ConferenceClient
from tests.synthetic import ColorVideoTrack


async def main(token: str, mode: str, stream: str | None) -> None:
    client = ConferenceClient(reconnect=False)
    await client.join(token)
    ready: dict[str, str | None] = {"participant": client.participant_id}
    if mode == "publish":
        publication = await client.publish(video=ColorVideoTrack((250, 250, 0), 160, 120, 15))
        await publication.wait_ready()
        ready["stream"] = publication.id
    else:
        assert stream is not None
        subscription = await client.subscribe(stream, audio=False)
        await subscription.wait_ready()
        ready["subscription"] = subscription.id
        track = subscription.video_track
        assert track is not None
        reader = asyncio.ensure_future(_drain(track))
    print(json.dumps(ready), flush=True)
    await asyncio.Event().wait()
    reader.cancel()


async def _drain(track: object) -> None:
    while True:
        await track.recv()  # type: ignore[attr-defined]


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], args[2] if len(args) > 2 else None))
