"""A publication whose offer, ICE or DTLS never completes fails with a progress error
(issue 22 item 7: one was kept, counted, for ever), and its transport goes."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.integration.test_bad_inputs import RawClient
from tests.support import RunningServer, start_server
from tests.synthetic import ToneTrack

TIMEOUT = 3.0


async def logged_in(tessera: RunningServer, progress: list[dict[str, Any]]) -> RawClient:
    client = RawClient()
    client.sio.on("progress", progress.append)
    await client.connect(tessera.url)
    status, _ = await client.login(tessera.token())
    assert status == "ok"
    return client


async def publish_audio(client: RawClient) -> tuple[str, str]:
    status, reply = await client.request(
        "publish",
        {"media": {"tracks": [{"type": "audio", "mid": "0", "source": "mic"}]}, "attributes": {}},
    )
    assert status == "ok", reply
    return reply["id"], reply["transportId"]


def failed(progress: list[dict[str, Any]], session: str) -> str | None:
    return next(
        (p["data"] for p in progress if p.get("sessionId") == session and p["status"] == "error"),
        None,
    )


def no_sessions_left(tessera: RunningServer) -> bool:
    participants = [p for room in tessera.server.rooms.values() for p in room.participants.values()]
    return (
        all(not p.publications and not p.transports for p in participants)
        and not tessera.server.agent.transports
    )


async def test_a_publication_that_never_connects_fails(tmp_path: Path) -> None:
    tessera = await start_server(tmp_path, **{"webrtc.connect_timeout": TIMEOUT})
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes ICE checks, answers none
    silent.bind(("127.0.0.1", 0))
    pc = RTCPeerConnection()
    try:
        progress: list[dict[str, Any]] = []
        client = await logged_in(tessera, progress)
        # No offer at all.
        session, _ = await publish_audio(client)
        reason = await eventually(lambda: failed(progress, session), TIMEOUT + 20, "the error")
        assert reason == f"No offer for the session within {TIMEOUT:g} s"
        await eventually(lambda: no_sessions_left(tessera), what="the session and transport gone")

        # An offer whose only candidate never answers: ICE stays checking.
        session, transport = await publish_audio(client)
        pc.addTransceiver(ToneTrack(440.0), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        port = silent.getsockname()[1]
        sdp = re.sub(r"a=candidate:.*\r\n", "", pc.localDescription.sdp)
        sdp = sdp.replace(
            "a=end-of-candidates",
            f"a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host\r\na=end-of-candidates",
        )
        status, reply = await client.request(
            "soac", {"id": transport, "signaling": {"type": "offer", "sdp": sdp}}
        )
        assert status == "ok", reply
        reason = await eventually(lambda: failed(progress, session), TIMEOUT + 20, "the error")
        assert reason.startswith(f"ICE/DTLS did not complete within {TIMEOUT:g} s"), reason
        await eventually(lambda: no_sessions_left(tessera), what="the session and transport gone")
        # The client is still there and can go on.
        status, _ = await client.request("text", {"to": "all", "message": "still here"})
        assert status == "ok"
        await client.sio.disconnect()
    finally:
        await pc.close()
        silent.close()
        await tessera.stop()


async def test_a_subscription_that_never_connects_fails(tmp_path: Path) -> None:
    tessera = await start_server(tmp_path, **{"webrtc.connect_timeout": TIMEOUT})
    try:
        publisher = ConferenceClient()
        await publisher.join(tessera.token(user="pub"))
        publication = await publisher.publish(audio=ToneTrack(440.0))
        await publication.wait_ready()
        progress: list[dict[str, Any]] = []
        client = await logged_in(tessera, progress)
        status, reply = await client.request(
            "subscribe",
            {"media": {"audio": {"from": publication.id, "mid": "0"}, "video": False}},
        )
        assert status == "ok", reply
        reason = await eventually(lambda: failed(progress, reply["id"]), TIMEOUT + 20, "the error")
        assert reason == f"No offer for the session within {TIMEOUT:g} s"
        # The publisher's own session is untouched.
        assert publication.id in tessera.server.rooms[publisher.room_id].streams  # type: ignore[index]
        await client.sio.disconnect()
        await publisher.leave()
    finally:
        await tessera.stop()
