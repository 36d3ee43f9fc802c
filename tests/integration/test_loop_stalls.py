"""Nothing holds the event loop: a room under churn, timed callback by callback.

Joins, publications, subscriptions to forward and mixed streams, recordings, views
added and removed over REST, leaves and rooms deleted, a few rounds, while every
callback of the loop is timed (tests/loopstall.py: the time the loop thread was
held, not the time another process kept the cores busy). One over 50 ms fails the
test, naming the callback and where it was stuck.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.loopstall import LoopStallDetector
from tests.support import RunningServer, api
from tests.synthetic import ColorVideoTrack, ToneTrack

pytestmark = pytest.mark.timeout(240)
logger = logging.getLogger(__name__)

ROUNDS = 3
COLOURS = ((220, 30, 30), (30, 220, 30), (30, 30, 220))


async def churn_round(tessera: RunningServer, round_number: int) -> None:
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": f"churn-{round_number}"})
    assert status == 200, room
    room_id = room["_id"]
    path = f"/v1/rooms/{room_id}"
    clients = []
    publications = []
    for index, colour in enumerate(COLOURS):
        client = ConferenceClient()
        await client.join(tessera.token(room=room_id, user=f"user-{index}"))
        clients.append(client)
        publication = await client.publish(
            video=ColorVideoTrack(colour), audio=ToneTrack(300.0 + 100 * index)
        )
        publications.append(publication)
    for publication in publications:
        await publication.wait_ready()
    viewer = clients[0]
    mixed = await viewer.subscribe(f"{room_id}-common")
    forward = await clients[1].subscribe(publications[2].id)
    await mixed.wait_ready()
    await forward.wait_ready()
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
    extra = await clients[2].subscribe(f"{room_id}-extra", audio=False)
    await extra.wait_ready()
    extra_view = tessera.server.rooms[room_id].views["extra"]
    await eventually(lambda: extra_view.stats.frames >= 15, what="the new view mixing")
    status, body = await api(tessera, "PATCH", path, {"views": views[:1]})
    assert status == 200, body
    await eventually(lambda: extra.ended.is_set(), what="the removed view's subscription ended")
    status, _ = await api(tessera, "DELETE", f"{path}/recordings/{recording['id']}")
    assert status == 200
    await publications[1].unpublish()
    for client in clients:
        await client.leave()
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
    detector = LoopStallDetector(threshold=0.05)
    with detector.watching():
        for round_number in range(ROUNDS):
            await churn_round(tessera, round_number)
    logger.info(
        "loop stalls: %d callbacks, the longest held the loop %.1f ms (%s)",
        detector.callbacks,
        detector.longest * 1000,
        detector.longest_callback,
    )
    assert detector.stalls == [], "the loop was held:\n" + detector.report()
