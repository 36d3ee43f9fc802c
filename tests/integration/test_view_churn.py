"""Subscriber churn on a mixed view: outputs open and close while the view thread encodes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, joined
from tests.synthetic import ColorVideoTrack, next_video_frame

CHURNERS = 4
CYCLES = 12


class FrameCounter:
    """Counts the frames a subscription's video track delivers, in the background."""

    def __init__(self, track: Any) -> None:
        self.frames = 0
        self._task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: Any) -> None:
        while True:
            await next_video_frame(track)
            self.frames += 1

    def stop(self) -> None:
        self._task.cancel()


async def churn(client: ConferenceClient, view: str, resolution: dict[str, int]) -> int:
    """Subscribe to the view in its own format, take a frame, unsubscribe; `CYCLES` times."""
    frames = 0
    for _ in range(CYCLES):
        sub = await client.subscribe(view, audio=False, video_parameters={"resolution": resolution})
        await sub.wait_ready()
        assert sub.video_track is not None
        frame = await next_video_frame(sub.video_track, timeout=20)
        assert (frame.width, frame.height) == (resolution["width"], resolution["height"])
        frames += 1
        await sub.unsubscribe()
    return frames


async def test_subscriber_churn_leaves_the_encoders_and_other_subscribers_alone(
    tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="tessera")
    publisher = await joined(tessera, "cam")
    pub = await publisher.publish(video=ColorVideoTrack((200, 40, 40)))
    await pub.wait_ready()
    view = f"{publisher.room_id}-common"

    steady_client = await joined(tessera, "steady")
    steady = await steady_client.subscribe(view, audio=False)
    await steady.wait_ready()
    assert steady.video_track is not None
    counter = FrameCounter(steady.video_track)
    await eventually(lambda: counter.frames >= 5, what="the steady subscriber's first frames")

    # Each churner asks for a size of its own: every unsubscribe closes that size's
    # output (its encoder) while the view thread keeps encoding the others.
    video = next(t for t in steady_client.streams[view]["media"]["tracks"] if t["type"] == "video")
    sizes = sorted(
        video["optional"]["parameters"]["resolution"], key=lambda r: r["width"] * r["height"]
    )[:CHURNERS]
    assert len(sizes) == CHURNERS
    churners = [await joined(tessera, f"churner{i}") for i in range(CHURNERS)]
    before = counter.frames
    results = await asyncio.gather(
        *(churn(client, view, size) for client, size in zip(churners, sizes, strict=True))
    )
    assert results == [CYCLES] * CHURNERS

    # The steady subscriber kept receiving through the churn and still does.
    assert counter.frames > before
    after = counter.frames
    await eventually(lambda: counter.frames >= after + 15, what="frames after the churn")
    counter.stop()

    # Every churned output was closed and forgotten; only the steady one encodes.
    room = tessera.server.rooms[publisher.room_id]  # type: ignore[index]
    mixed = room.views["common"]
    await eventually(lambda: len(mixed.video_outputs) == 1, what="only the steady output left")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in errors]
    for client in (publisher, steady_client, *churners):
        await client.leave()
