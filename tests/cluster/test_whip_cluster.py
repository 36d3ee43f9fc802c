"""WHIP and WHEP through a cluster's portal: the room lives on an agent process, the answer
comes back as the transport's event over Redis, media goes straight to the agent."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from tessera_client import ConferenceClient
from tests.cluster.processes import Cluster, room_name, running_cluster
from tests.eventually import eventually
from tests.synthetic import ColorVideoTrack, close_to, mean_rgb, next_video_frame

GREEN = (30, 200, 30)
MIDDLE = (0.3, 0.3, 0.4, 0.4)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("whip-cluster"), portals=1, agents=1) as running:
        yield running


async def http(
    method: str, url: str, token: str, body: str = "", content_type: str = "application/sdp"
) -> tuple[int, str, str | None]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, data=body, headers=headers) as resp:
            return resp.status, await resp.text(), resp.headers.get("Location")


async def test_whip_in_and_whep_out_through_a_cluster_portal(cluster: Cluster) -> None:
    room = room_name()
    portal = cluster.portals[0].url
    viewer = ConferenceClient()
    await viewer.join(cluster.token(0, room, "viewer"))
    publisher, player = RTCPeerConnection(), RTCPeerConnection()
    try:
        publisher.addTrack(ColorVideoTrack(GREEN))
        await publisher.setLocalDescription(await publisher.createOffer())
        token = cluster.token(0, room, "encoder")
        status, answer, location = await http(
            "POST", f"{portal}/whip/{room}", token, publisher.localDescription.sdp
        )
        assert status == 201, answer
        assert location is not None
        await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await eventually(
            lambda: any(s["type"] == "forward" for s in viewer.streams.values()),
            30,
            "the WHIP stream at a client of the portal",
        )

        player.addTransceiver("video", direction="recvonly")
        tracks: list[MediaStreamTrack] = []
        player.on("track", tracks.append)
        await player.setLocalDescription(await player.createOffer())
        player_token = cluster.token(0, room, "player")
        status, answer, player_location = await http(
            "POST", f"{portal}/whep/{room}/views/common", player_token, player.localDescription.sdp
        )
        assert status == 201, answer
        await player.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        video = next(t for t in tracks if t.kind == "video")

        async def shows_green() -> bool:
            return close_to(mean_rgb(await next_video_frame(video), MIDDLE), GREEN)

        await eventually(shows_green, 40, "the WHIP picture in the WHEP view")

        assert player_location is not None
        assert (await http("DELETE", portal + player_location, player_token))[0] == 200
        assert (await http("DELETE", portal + location, token))[0] == 200
        await eventually(
            lambda: not any(s["type"] == "forward" for s in viewer.streams.values()),
            30,
            "the WHIP stream's remove event",
        )
        # The encoder and the player left the room with their sessions.
        await eventually(
            lambda: list(viewer.participants) == [viewer.participant_id],
            30,
            "the WHIP and WHEP participants to leave",
        )
    finally:
        await publisher.close()
        await player.close()
        await viewer.leave()
