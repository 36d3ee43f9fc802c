"""Opus in-band FEC for a lossy subscriber of a mixed view: real aiortc clients on loopback.

One subscriber reaches the server through `tests.shapingrelay` and loses 8 % of
what the server sends it; its own receiver reports move its audio to the view's
FEC encoding (the packets it receives carry SILK's LBRR), and back once the loss
stops. A subscriber of the same view on a clean link stays on the plain
encoding, and the FEC encode stops when nobody receives it.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from tessera.mixer.mixedstream import MixedStream
from tessera.webrtc_agent.adaptiveaudio import AdaptiveAudio
from tessera_client import ConferenceClient
from tessera_client.errors import ClientError
from tests.eventually import eventually
from tests.integration.test_adaptive import server_subscription
from tests.opuspacket import inspect_packet
from tests.shapingrelay import relayed_client
from tests.support import RunningServer, api
from tests.synthetic import RealTimePace, mono_frame

RATE = 48_000
FRAME = 960
# A small view without a ladder: the clean subscriber takes its video too (querybwe needs
# the REMB an aiortc receiver sends for video only), at little cost on a loaded machine.
# The relayed one takes the audio alone: through the relay, an aiortc client's offer of
# audio and video bundled fails ICE (test_adaptive's relayed clients take video alone).
VIEW = {
    "label": "common",
    "video": {
        "parameters": {"resolution": {"width": 320, "height": 180}, "framerate": 10},
        "ladder": [],
    },
}


class VoiceTrack(MediaStreamTrack):
    """Voiced, syllable-paced sound in real time: what SILK codes, and codes LBRR for
    (it codes none for frames its voice detector calls silent, such as a steady tone)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._pace = RealTimePace()
        self._noise = np.random.default_rng(3)

    async def recv(self) -> av.AudioFrame:
        await self._pace.until(self._samples, RATE)
        t = (np.arange(FRAME) + self._samples) / RATE
        voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 600), 1))
        envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
        noise = self._noise.normal(0, 0.05, FRAME)
        wave = ((voiced * 0.3 + noise) * envelope * 10000).astype(np.int16)
        frame = mono_frame(wave, self._samples)
        self._samples += FRAME
        return frame


@dataclass
class HeardAudio:
    """The Opus packets one client's audio receiver got: sequence number, timestamp, FEC."""

    packets: list[tuple[int, int, bool]] = field(default_factory=list)

    def fec_since(self, index: int) -> int:
        return sum(fec for _, _, fec in self.packets[index:])

    def discontinuities(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Neighbours (by sequence number) whose timestamps do not step on by whole ticks,
        at least one per sequence number: a repeated tick or a shifted clock at a switch.
        (More ticks than sequence numbers are allowed: a loaded machine's mixer skips
        ticks it fell behind on.)"""
        found = []
        ordered = sorted({(s, t) for s, t, _ in self.packets})
        for (s1, t1), (s2, t2) in itertools.pairwise(ordered):
            step = (t2 - t1) & 0xFFFFFFFF
            if step % FRAME or step < FRAME * (s2 - s1):
                found.append(((s1, t1), (s2, t2)))
        return found


def hear(subscription: Any) -> HeardAudio:
    """Record what the subscription's audio receiver gets (before aiortc decodes it)."""
    heard = HeardAudio()
    receiver = subscription.transceivers["audio"].receiver
    handle = receiver._handle_rtp_packet

    async def recorded(packet: RtpPacket, arrival_time_ms: int) -> None:
        if packet.payload:
            fec = inspect_packet(packet.payload).has_fec
            heard.packets.append((packet.sequence_number, packet.timestamp, fec))
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = recorded
    return heard


def audio_of(tessera: RunningServer, subscription_id: str) -> AdaptiveAudio:
    audio = server_subscription(tessera, subscription_id).adaptive_audio
    assert audio is not None, "the subscription's audio does not adapt"
    return audio


@contextlib.asynccontextmanager
async def joined(client: ConferenceClient, token: str) -> AsyncIterator[ConferenceClient]:
    await client.join(token)
    try:
        yield client
    finally:
        await client.leave()


async def metrics(tessera: RunningServer) -> str:
    async with aiohttp.ClientSession() as session, session.get(tessera.url + "/metrics") as resp:
        return await resp.text()


async def test_a_lossy_subscriber_gets_in_band_fec_and_a_clean_one_does_not(
    tessera: RunningServer,
) -> None:
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "fec", "options": {"views": [VIEW]}}
    )
    assert status == 200, room
    room_id = str(room["id"])
    lossy_client, relay, relay_transport = await relayed_client()
    try:
        async with (
            joined(ConferenceClient(), tessera.token(room=room_id, user="speaker")) as speaker,
            joined(lossy_client, tessera.token(room=room_id, user="lossy")) as lossy,
            joined(ConferenceClient(), tessera.token(room=room_id, user="clean")) as clean,
        ):
            publication = await speaker.publish(audio=VoiceTrack(), video=None)
            await publication.wait_ready()
            view_id = f"{room_id}-common"
            subs = {
                "lossy": await lossy.subscribe(view_id, video=False),
                "clean": await clean.subscribe(view_id),
            }
            heard = {name: hear(sub) for name, sub in subs.items()}
            # The answer asks for in-band FEC in the Opus fmtp (RFC 7587: the receiver says).
            answer = clean.pc.remoteDescription.sdp if clean.pc else ""
            opus = re.search(r"a=rtpmap:(\d+) opus/48000/2", answer)
            assert opus is not None, answer
            assert re.search(rf"a=fmtp:{opus.group(1)} .*useinbandfec=1", answer), answer
            audio = {name: audio_of(tessera, sub.id) for name, sub in subs.items()}
            view: MixedStream = tessera.server.rooms[room_id].views["common"]  # type: ignore[index]
            await eventually(
                lambda: all(len(h.packets) >= 25 for h in heard.values()),
                what="half a second of audio for both subscribers",
            )
            assert not view.fec_outputs and view.stats.fec_ticks == 0

            # The 4 s hold before FEC goes off is unit-tested (test_opusfec.py); here 1 s
            # of it shows the way back and keeps the suite short.
            audio["lossy"].switch.off_hold = 1.0
            relay.shape(None, loss=0.08)
            await eventually(
                lambda: audio["lossy"].encoding == "opus+fec",
                what="the lossy subscriber's audio switched to the FEC encoding",
            )
            switched_at = len(heard["lossy"].packets)
            await eventually(
                lambda: heard["lossy"].fec_since(switched_at) >= 10,
                what="FEC (LBRR) in the packets the lossy subscriber receives",
            )
            # The server says so: in what querybwe and REST show, and in the metrics.
            said = audio["lossy"].describe()
            assert said["encoding"] == "opus+fec" and said["inbandFec"]
            assert said["fractionLost"] > 0.03

            async def querybwe() -> Any:
                try:
                    return await clean.request(
                        "subscription-control", {"id": subs["clean"].id, "operation": "querybwe"}
                    )
                except ClientError as exc:
                    raise AssertionError(str(exc)) from exc  # no REMB yet: not yet

            reply = await eventually(querybwe, what="querybwe answered (a REMB arrived)")
            assert reply["audio"] == {
                "encoding": "opus",
                "inbandFec": False,
                "fractionLost": 0.0,
                "fecSwitches": 0,
            }, reply
            text = await metrics(tessera)
            for encoding in ("opus", "opus+fec"):
                line = f'tessera_audio_subscribers{{encoding="{encoding}",view="{view_id}"}} 1.0'
                assert line in text, text
            assert view.stats.fec_ticks > 0 and view.stats.fec_encode_seconds > 0
            # The clean subscriber of the same view stays on the plain encoding.
            assert audio["clean"].encoding == "opus" and audio["clean"].switch.switches == 0
            assert heard["clean"].fec_since(0) == 0

            relay.shape(None, loss=0.0)
            await eventually(
                lambda: audio["lossy"].encoding == "opus",
                what="the lossy subscriber's audio back on the plain encoding",
            )
            back_at = len(heard["lossy"].packets)
            await eventually(
                lambda: not view.fec_outputs,
                what="the view's FEC output closed with nobody on it",
            )
            ticks = view.stats.audio_ticks
            await eventually(lambda: view.stats.audio_ticks >= ticks + 2, what="two audio ticks")
            fec_ticks = view.stats.fec_ticks
            await eventually(
                lambda: len(heard["lossy"].packets) >= back_at + 25,
                what="half a second of plain audio",
            )
            assert view.stats.fec_ticks == fec_ticks, "the FEC encode went on with nobody on it"
            assert heard["lossy"].fec_since(back_at) == 0
            assert audio["lossy"].switch.switches == 2
            # Switching encodings cost the subscriber no repeat, gap or shift of its stream.
            assert heard["lossy"].discontinuities() == []
            assert heard["clean"].discontinuities() == []
            assert audio["lossy"].track.rung_switches == 2
    finally:
        relay_transport.close()
