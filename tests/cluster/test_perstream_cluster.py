"""Per-stream recording in a cluster: started through one portal, the room's agent makes
the files; another portal lists, stops and downloads them (the call crosses the bus)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.processes import Cluster, room_name, running_cluster
from tests.cluster.test_cluster import joined
from tests.eventually import eventually
from tests.synthetic import ColorVideoTrack, ToneTrack


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), portals=2, agents=1) as running:
        yield running


async def test_per_stream_recording_across_portals(cluster: Cluster) -> None:
    room = room_name()
    clients = [await joined(cluster, i % 2, room, user) for i, user in enumerate(("ada", "bob"))]
    for client in clients:
        video, audio = ColorVideoTrack((200, 50, 50)), ToneTrack(440)
        publication = await client.publish(video=video, audio=audio)
        await publication.wait_ready()
    room_id = clients[0].room_id
    path = f"/v1/rooms/{room_id}/recordings"
    status, started = await cluster.rest(0, "POST", path, {"perStream": {}})
    assert status == 200, started
    assert len(started["files"]) == 2 and started["perStream"] == {"room": room_id}

    async def recorded() -> bool:
        status, info = await cluster.rest(1, "GET", f"{path}/{started['id']}")
        assert status == 200, info
        return all(f["duration"] > 1.0 for f in info["files"])

    await eventually(recorded, timeout=60, what="a second in each file")
    status, _ = await cluster.rest(1, "DELETE", f"{path}/{started['id']}")
    assert status == 200
    status, info = await cluster.rest(0, "GET", f"{path}/{started['id']}")
    assert status == 200 and info["state"] == "stopped", info
    status, sidecar = await cluster.rest(1, "GET", f"{path}/{started['id']}/file")
    assert status == 200 and [f["recording"] for f in sidecar["files"]] == [
        f["recording"] for f in info["files"]
    ]
    for entry in info["files"]:
        status, body = await cluster.rest(0, "GET", f"{path}/{entry['recording']}/file")
        assert status == 200 and isinstance(body, bytes) and len(body) > 1000
        assert Path(entry["file"]).suffix == ".mkv"
    for client in clients:
        await client.leave()
