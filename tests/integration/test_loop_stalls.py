"""Nothing holds the event loop: a room under churn, timed callback by callback.

Joins, publications, subscriptions to forward and mixed streams, recordings, views
added and removed over REST, leaves and rooms deleted, a few rounds, while every
callback of the loop is timed (tests/loopstall.py: the time the loop thread was
held, not the time another process kept the cores busy). One over 50 ms fails the
test, naming the callback and where it was stuck.

The clients run in a process of their own (tests/churnclients.py), as a server's
clients do: in this one, their callbacks were timed as the server's and their
threads (aiortc's encoders and decoders, the synthetic media) competed with the
server's loop for the interpreter lock. A wait for that lock is a wait in a futex
like a thread join, and the detector cannot tell one from the other without
forgiving real joins, so it counts it; under heavy load (7-15 on 2 cores) the
clients' share of it took callbacks with no CPU past 50 ms.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from tests.churnclients import ChurnClients
from tests.eventually import eventually
from tests.loopstall import LoopStallDetector
from tests.support import RunningServer, api

pytestmark = pytest.mark.timeout(240)
logger = logging.getLogger(__name__)

ROUNDS = 3


async def churn_round(tessera: RunningServer, clients: ChurnClients, round_number: int) -> None:
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": f"churn-{round_number}"})
    assert status == 200, room
    room_id = room["_id"]
    path = f"/v1/rooms/{room_id}"
    tokens = [tessera.token(room=room_id, user=f"user-{index}") for index in range(3)]
    publications = await clients.call("join", tokens=tokens)
    await clients.call("subscribe", client=0, stream=f"{room_id}-common", name="mixed")
    await clients.call("subscribe", client=1, stream=publications[2], name="forward")
    status, recording = await api(
        tessera,
        "POST",
        f"{path}/recordings",
        {
            "container": "mkv",
            "media": {
                "audio": {"from": f"{room_id}-common"},
                "video": {"from": f"{room_id}-common"},
            },
        },
    )
    assert status == 200, recording
    view = tessera.server.rooms[room_id].views["common"]
    await eventually(lambda: view.stats.frames >= 30, what="the view mixing")
    # A view added while the room runs, watched, then removed (its threads stop).
    views = [{"label": "common"}, {"label": "extra"}]
    status, body = await api(tessera, "PATCH", path, {"views": views})
    assert status == 200, body
    await clients.call("subscribe", client=2, stream=f"{room_id}-extra", name="extra", audio=False)
    extra_view = tessera.server.rooms[room_id].views["extra"]
    await eventually(lambda: extra_view.stats.frames >= 15, what="the new view mixing")
    status, body = await api(tessera, "PATCH", path, {"views": views[:1]})
    assert status == 200, body
    await clients.call("ended", name="extra")  # the removed view's subscription ended
    status, _ = await api(tessera, "DELETE", f"{path}/recordings/{recording['id']}")
    assert status == 200
    await clients.call("unpublish", index=1)
    await clients.call("leave")
    await eventually(lambda: room_id not in tessera.server.rooms, what="the room closed")
    status, _ = await api(tessera, "DELETE", path)
    assert status == 200


@pytest.fixture
def frozen_start_up() -> Iterator[None]:
    """What `tessera serve` does once started: its start-up objects leave the garbage
    collector's work (here the test runner's too, which a server process does not have)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def test_a_room_under_churn_never_holds_the_loop(
    tessera: RunningServer, frozen_start_up: None
) -> None:
    clients = await ChurnClients.start()
    detector = LoopStallDetector(threshold=0.05)
    try:
        with detector.watching():
            for round_number in range(ROUNDS):
                await churn_round(tessera, clients, round_number)
    finally:
        await clients.stop()
    logger.info(
        "loop stalls: %d callbacks, the longest held the loop %.1f ms (%s)",
        detector.callbacks,
        detector.longest * 1000,
        detector.longest_callback,
    )
    assert detector.stalls == [], "the loop was held:\n" + detector.report()
