"""WHIP ingest and WHEP playback: FFmpeg's whip muxer and aiortc peers against a real server."""

from __future__ import annotations

import asyncio
import datetime
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from tessera.conference.records import ServiceRecord
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, joined, room_with
from tests.synthetic import ColorVideoTrack, ToneTrack, close_to, mean_rgb, next_video_frame

pytestmark = pytest.mark.timeout(180)
PUSHER = Path(__file__).resolve().parents[1] / "whip_pusher.py"
RED = (200, 30, 30)
GREEN = (30, 200, 30)


def ecdsa_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate and its key, as PEM files (for FFmpeg's DTLS)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whip-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "whip-cert.pem", folder / "whip-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@asynccontextmanager
async def ffmpeg_pushing(
    url: str, token: str, folder: Path | None, rgb: tuple[int, int, int] = RED
) -> AsyncIterator[asyncio.subprocess.Process]:
    """FFmpeg's whip muxer (tests/whip_pusher.py) pushing ``rgb`` until the block ends.

    With a ``folder``, the muxer is given an ECDSA P-256 certificate made there; without,
    it makes its own (as a user's FFmpeg does).
    """
    certificate: list[str] = []
    if folder is not None:
        cert, key = ecdsa_certificate(folder)
        certificate = ["--cert-file", str(cert), "--key-file", str(key)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PUSHER),
        url,
        token,
        *certificate,
        "--rgb",
        *map(str, rgb),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.strip() == b"pushing", f"the pusher said {line!r}"
        yield process
    finally:
        if process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def nothing_left(tessera: RunningServer, *staying: ConferenceClient) -> bool:
    """No WHIP/WHEP session, participant, forward stream or transport anywhere (but those
    of the ``staying`` clients, which publish nothing)."""
    rooms = tessera.server.rooms.values()
    ids = {c.participant_id for c in staying}
    return (
        not tessera.server.whip.sessions
        and all(set(r.participants) <= ids for r in rooms)
        and all(s.type != "forward" for r in rooms for s in r.streams.values())
        and tessera.server.agent.stats()["transports"]
        == sum(len(r.participants[i].transports) for r in rooms for i in ids if i in r.participants)
    )


async def sending_offer(video: bool = True, audio: bool = True) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    if audio:
        pc.addTrack(ToneTrack(440))
    if video:
        pc.addTrack(ColorVideoTrack(GREEN))
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def receiving_offer() -> RTCPeerConnection:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def post(
    tessera: RunningServer,
    path: str,
    body: str,
    token: str | None,
    content_type: str = "application/sdp",
) -> tuple[int, str, CIMultiDict[str]]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.post(tessera.url + path, data=body, headers=headers) as resp:
            return resp.status, await resp.text(), CIMultiDict(resp.headers)


async def request(
    tessera: RunningServer,
    method: str,
    path: str,
    token: str | None,
    body: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, str, CIMultiDict[str]]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.request(method, tessera.url + path, data=body, headers=sent) as resp:
            return resp.status, await resp.text(), CIMultiDict(resp.headers)


async def test_ffmpeg_whip_push_is_a_forward_stream_a_subscriber_decodes(
    tessera: RunningServer, tmp_path: Path
) -> None:
    viewer = await joined(tessera, "viewer")
    try:
        async with ffmpeg_pushing(
            f"{tessera.url}/whip/default", tessera.token("default", "obs"), tmp_path
        ):
            await eventually(
                lambda: any(s["type"] == "forward" for s in viewer.streams.values()),
                30,
                "the WHIP publication's stream add event",
            )
            stream = next(s for s in viewer.streams.values() if s["type"] == "forward")
            kinds = sorted(t["type"] for t in stream["media"]["tracks"])
            assert kinds == ["audio", "video"]
            assert stream["info"]["attributes"] == {"ingest": "whip"}
            (session,) = tessera.server.whip.sessions.values()
            assert session.kind == "whip"
            # A subscriber decodes the pattern FFmpeg encoded (H.264 forwarded as it came).
            sub = await viewer.subscribe(stream["id"])
            await sub.wait_ready()
            assert sub.video_track is not None

            async def shows_red() -> bool:
                assert sub.video_track is not None
                return close_to(mean_rgb(await next_video_frame(sub.video_track)), RED)

            await eventually(shows_red, 30, "the pushed red picture at the subscriber")
        # The pusher closed its muxer: FFmpeg ends the session with DELETE.
        await eventually(lambda: nothing_left(tessera, viewer), 30, "the WHIP session to end")
        await eventually(
            lambda: not any(s["type"] == "forward" for s in viewer.streams.values()),
            30,
            "the stream's remove event",
        )
    finally:
        await viewer.leave()


async def test_ffmpeg_whip_with_its_own_p224_certificate_is_refused_by_name(
    tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    # FFmpeg with GnuTLS (PyAV's) makes a P-224 key, which aiortc's OpenSSL 4 cannot accept
    # (README, WHIP): the push fails, the log names the curve, and nothing is left behind.
    caplog.set_level(logging.WARNING, logger="tessera.webrtc_agent.transport")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PUSHER),
        f"{tessera.url}/whip/default",
        tessera.token("default", "ffmpeg"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    try:
        # stdin stays open: the pusher would stop before its muxer's first packet otherwise.
        await asyncio.wait_for(process.wait(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        process.stdin.close()
    stdout, stderr = await process.stdout.read(), await process.stderr.read()
    assert process.returncode != 0 and b"pushing" not in stdout, stderr.decode()[-2000:]

    def refusals() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "tessera.webrtc_agent.transport" and "DTLS" in r.getMessage()
        ]

    await eventually(lambda: refusals(), 30, "the refusal in the log")
    assert "secp224r1" in refusals()[0], refusals()
    await eventually(lambda: nothing_left(tessera), 30, "the refused session to leave nothing")


async def test_whep_plays_a_view_and_a_forward_stream_in_aiortc(tessera: RunningServer) -> None:
    publisher = await joined(tessera, "camera")
    pcs: list[RTCPeerConnection] = []
    started: list[tuple[str, str]] = []  # (Location, the token that started it)
    try:
        pub = await publisher.publish(video=ColorVideoTrack(GREEN), audio=ToneTrack(440))
        await pub.wait_ready()
        await eventually(lambda: pub.id in publisher.streams, 30, "the publication's stream")
        for path in ("/whep/default/views/common", f"/whep/default/streams/{pub.id}"):
            pc = await receiving_offer()
            pcs.append(pc)
            tracks: list[MediaStreamTrack] = []
            pc.on("track", tracks.append)
            token = tessera.token(user="player")
            status, answer, headers = await post(tessera, path, pc.localDescription.sdp, token)
            assert status == 201, answer
            assert headers["Content-Type"].startswith("application/sdp")
            assert headers["Location"].startswith("/whep/sessions/")
            started.append((headers["Location"], token))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            video = next(t for t in tracks if t.kind == "video")

            async def shows_green(track: MediaStreamTrack = video) -> bool:
                # The middle: a view letterboxes the 4:3 picture.
                middle = (0.3, 0.3, 0.4, 0.4)
                return close_to(mean_rgb(await next_video_frame(track), middle), GREEN)

            await eventually(shows_green, 30, f"green at the WHEP player of {path}")
        assert sorted(s.kind for s in tessera.server.whip.sessions.values()) == ["whep", "whep"]
        for location, token in started:
            # Only the token that started a session ends it.
            status, _, _ = await request(tessera, "DELETE", location, tessera.token(user="x"))
            assert status == 401
            status, _, _ = await request(tessera, "DELETE", location, token)
            assert status == 200
            status, _, _ = await request(tessera, "DELETE", location, token)
            assert status == 404
        assert not tessera.server.whip.sessions
        room = next(iter(tessera.server.rooms.values()))
        assert list(room.participants) == [publisher.participant_id]
    finally:
        for pc in pcs:
            await pc.close()
        await publisher.leave()
    await eventually(lambda: nothing_left(tessera), 30, "every session to end")


async def test_whip_refusals_leave_nothing_behind(tessera: RunningServer) -> None:
    pc = await sending_offer()
    offer = pc.localDescription.sdp
    try:
        token = tessera.token(user="encoder")
        cases = [
            ("/whip/default", offer, None, "application/sdp", 401, "Authorization"),
            ("/whip/default", offer, "Basic abc", "application/sdp", 401, "Authorization"),
            ("/whip/default", offer, "Bearer not-a-token", "application/sdp", 401, "malformed"),
            (
                "/whip/default",
                offer,
                "Bearer " + tessera.token(service=other_service(tessera)),
                "application/sdp",
                401,
                "service",
            ),
            (
                "/whip/default",
                "v=0\r\nthis is no SDP\r\n",
                f"Bearer {token}",
                "application/sdp",
                400,
                "Invalid offer",
            ),
            ("/whip/default", "", f"Bearer {token}", "application/sdp", 400, "empty"),
            ("/whip/default", offer, f"Bearer {token}", "text/plain", 415, "application/sdp"),
            ("/whip/elsewhere", offer, f"Bearer {token}", "application/sdp", 403, "does not grant"),
            (
                "/whip/default",
                offer,
                "Bearer " + tessera.token(user="watcher", role="viewer"),
                "application/sdp",
                403,
                "Permission denied",
            ),
            (
                "/whep/default/views/nosuch",
                offer,
                f"Bearer {tessera.token(user='p')}",
                "application/sdp",
                404,
                "View",
            ),
            (
                "/whep/default/streams/nosuch",
                offer,
                f"Bearer {tessera.token(user='p')}",
                "application/sdp",
                404,
                "Stream",
            ),
        ]
        too_long = "v=0\r\n" + "a=x-padding\r\n" * 6000
        cases.append(
            ("/whip/default", too_long, f"Bearer {token}", "application/sdp", 413, "longer")
        )
        for path, body, authorization, content_type, status, words in cases:
            headers = {"Content-Type": content_type}
            if authorization is not None:
                headers["Authorization"] = authorization
            got, text, answer_headers = await request(tessera, "POST", path, None, body, headers)
            assert (got, words in text) == (status, True), (path, authorization, got, text)
            if got == 401:
                assert answer_headers["WWW-Authenticate"].startswith("Bearer")
            assert nothing_left(tessera), (path, got)
        # The malformed offer did not use the token up: it still publishes.
        status, answer, headers = await post(tessera, "/whip/default", offer, token)
        assert status == 201, answer
        status, _, _ = await request(tessera, "DELETE", headers["Location"], token)
        assert status == 200
        await eventually(lambda: nothing_left(tessera), 30, "the session to end")
        # Used once: a second POST with it is refused.
        status, text, _ = await post(tessera, "/whip/default", offer, token)
        assert (status, "already been used" in text) == (401, True)
        assert nothing_left(tessera)
    finally:
        await pc.close()


def other_service(tessera: RunningServer) -> ServiceRecord:
    """A service the server does not know (its tokens name an unknown issuer)."""
    return ServiceRecord(id=uuid.uuid4().hex[:24], key="k" * 32)


async def test_whip_from_aiortc_with_a_service_signed_jwt_and_patch(tessera: RunningServer) -> None:
    service = tessera.server.default_service
    now = int(time.time())
    claims = {
        "iss": service.id,
        "room": "default",
        "user": "app-encoder",
        "role": "presenter",
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, service.key, algorithm="HS256")
    viewer = await joined(tessera, "viewer")
    pc = await sending_offer()
    try:
        status, answer, headers = await post(
            tessera, "/whip/default", pc.localDescription.sdp, token
        )
        assert status == 201, answer
        assert headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
        etag = headers["ETag"]
        location = headers["Location"]
        assert location.startswith("/whip/sessions/")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await eventually(
            lambda: any(s["type"] == "forward" for s in viewer.streams.values()),
            30,
            "the aiortc WHIP publication's stream",
        )
        stream = next(s for s in viewer.streams.values() if s["type"] == "forward")
        sub = await viewer.subscribe(stream["id"])
        await sub.wait_ready()
        assert sub.video_track is not None

        async def shows_green() -> bool:
            assert sub.video_track is not None
            return close_to(mean_rgb(await next_video_frame(sub.video_track)), GREEN)

        await eventually(shows_green, 30, "green from the WHIP publisher")

        frag = "application/trickle-ice-sdpfrag"
        ufrag = next(
            line.split(":", 1)[1]
            for line in pc.localDescription.sdp.splitlines()
            if line.startswith("a=ice-ufrag:")
        )
        trickle = (
            f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:whatever\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
            "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
            "a=end-of-candidates\r\n"
        )
        patches = [
            ({"Content-Type": frag, "If-Match": etag}, trickle, 204, ""),
            ({"Content-Type": frag}, trickle, 204, ""),
            ({"Content-Type": frag, "If-Match": '"other"'}, trickle, 412, "ETag"),
            (
                {"Content-Type": frag, "If-Match": "*"},
                "a=ice-ufrag:new1\r\na=ice-pwd:newpassword1234567890\r\n",
                422,
                "ICE restart",
            ),
            ({"Content-Type": "application/sdp"}, trickle, 415, "trickle-ice-sdpfrag"),
            ({"Content-Type": frag}, "garbage", 400, "SDP fragment"),
        ]
        for headers_sent, body, status, words in patches:
            got, text, _ = await request(tessera, "PATCH", location, token, body, headers_sent)
            assert (got, words in text) == (status, True), (headers_sent, got, text)
        got, _, _ = await request(tessera, "PATCH", location, None, trickle, {"Content-Type": frag})
        assert got == 401
        got, _, _ = await request(
            tessera, "PATCH", "/whip/sessions/nosuch", token, trickle, {"Content-Type": frag}
        )
        assert got == 404
        # CORS for browsers.
        got, _, cors = await request(
            tessera, "OPTIONS", location, None, headers={"Origin": "http://page.example"}
        )
        assert got == 204
        assert cors["Access-Control-Allow-Origin"] == "http://page.example"
        assert "PATCH" in cors["Access-Control-Allow-Methods"]
        got, _, cors = await request(
            tessera, "OPTIONS", "/whip/default", None, headers={"Origin": "http://page.example"}
        )
        assert (got, cors["Accept-Post"]) == (204, "application/sdp")
        assert "Location" in cors["Access-Control-Expose-Headers"]

        got, _, _ = await request(tessera, "DELETE", location, token)
        assert got == 200
        await eventually(
            lambda: not any(s["type"] == "forward" for s in viewer.streams.values()),
            30,
            "the stream's remove event",
        )
        assert not tessera.server.whip.sessions
    finally:
        await pc.close()
        await viewer.leave()
    await eventually(lambda: nothing_left(tessera), 30, "nothing left")


async def test_a_whip_session_whose_participant_is_dropped_ends(tessera: RunningServer) -> None:
    pc = await sending_offer(audio=False)
    try:
        status, answer, headers = await post(
            tessera, "/whip/default", pc.localDescription.sdp, tessera.token(user="enc")
        )
        assert status == 201, answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        (session,) = tessera.server.whip.sessions.values()
        room = tessera.server.rooms[session.participant.room_id]
        status, _, _ = await request(
            tessera,
            "DELETE",
            f"/v1/rooms/{room.id}/participants/{session.participant.participant_id}",
            tessera.server.default_service.key,
        )
        assert status == 200
        await eventually(lambda: nothing_left(tessera), 30, "the dropped session to go")
        status, _, _ = await request(tessera, "DELETE", headers["Location"], tessera.token())
        assert status == 404
    finally:
        await pc.close()


async def test_an_offer_in_a_format_the_room_does_not_take_is_refused(
    tessera: RunningServer,
) -> None:
    room = await room_with(tessera, "h264-only", mediaIn={"video": [{"codec": "h264"}]})
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver(ColorVideoTrack(GREEN), direction="sendonly")
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name == "VP8"]
    transceiver.setCodecPreferences(vp8)
    await pc.setLocalDescription(await pc.createOffer())
    try:
        token = tessera.token(room=room, user="vp8-encoder")
        status, text, _ = await post(tessera, f"/whip/{room}", pc.localDescription.sdp, token)
        assert (status, text.strip()) == (400, "Video format unacceptable")
        assert nothing_left(tessera)
    finally:
        await pc.close()


async def test_a_whep_session_ends_with_its_stream(tessera: RunningServer) -> None:
    publisher = await joined(tessera, "camera")
    pc = await receiving_offer()
    try:
        pub = await publisher.publish(video=ColorVideoTrack(GREEN))
        await pub.wait_ready()
        await eventually(lambda: pub.id in publisher.streams, 30, "the publication's stream")
        status, answer, _ = await post(
            tessera, f"/whep/default/streams/{pub.id}", pc.localDescription.sdp, tessera.token()
        )
        assert status == 201, answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        (session,) = tessera.server.whip.sessions.values()
        await publisher.leave()
        # "Source stream loss": the player's participant leaves the room with its session.
        await eventually(lambda: nothing_left(tessera), 30, "the WHEP session to end")
        assert session.closed
    finally:
        await pc.close()
