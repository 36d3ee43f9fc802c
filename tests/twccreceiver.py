"""A subscriber that negotiates transport-cc and sends its feedback, as a browser does.

aiortc offers no transport-cc: `offer_transport_cc` adds the extension and the
``transport-cc`` feedback to an offer's video m-lines (as Chromium offers
them), and `TransportCcFeedback` makes the client's peer connection answer
what arrives: it reads each RTP packet's transport-wide sequence number off
the clear header (SRTP encrypts the payload only) as the datagram arrives,
and once `interval` has passed since its last feedback, the packet that
arrives sends which packets arrived and when (RTCP RTPFB FMT 15), as
libwebrtc's receiver does about every 50 ms while media flows. Its REMB is
switched off: a browser receiving transport-wide numbers sends no REMB.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from tessera.media.transportcc import TRANSPORT_CC_URI, TransportFeedback

EXTENSION_ID = 5  # not one aiortc's offer uses (1: mid, 2: audio level, 3: abs-send-time)


def offer_transport_cc(sdp: str) -> str:
    """The offer with transport-cc offered on its video m-lines."""
    out: list[str] = []
    video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            video = line.startswith("m=video")
            out.append(line)
            if video:
                out.append(f"a=extmap:{EXTENSION_ID} {TRANSPORT_CC_URI}")
            continue
        out.append(line)
        found = re.match(r"a=rtcp-fb:(\d+) nack$", line)
        if video and found:
            out.append(f"a=rtcp-fb:{found.group(1)} transport-cc")
    return "\r\n".join(out) + "\r\n"


def answered_transport_cc(sdp: str) -> list[tuple[str, str, bool]]:
    """(kind, direction, transport-cc answered) of each m-line of an answer."""
    sections = re.split(r"\r\n(?=m=)", sdp)[1:]
    result = []
    for section in sections:
        kind = section[2:7]
        direction = next(
            (d for d in ("sendonly", "recvonly", "sendrecv", "inactive") if f"a={d}" in section),
            "",
        )
        result.append((kind, direction, TRANSPORT_CC_URI in section and "transport-cc" in section))
    return result


class TransportCcFeedback:
    """Transport-cc feedback for everything a peer connection receives (see the module)."""

    def __init__(self, receiver: Any, interval: float = 0.05) -> None:
        receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # no REMB
        self.dtls = receiver.transport
        self.interval = interval
        self.sent = 0  # feedbacks
        self.reported = 0  # packets reported
        self._extensions = HeaderExtensionsMap()
        self._extensions.configure(
            RTCRtpParameters(
                headerExtensions=[
                    RTCRtpHeaderExtensionParameters(id=EXTENSION_ID, uri=TRANSPORT_CC_URI)
                ]
            )
        )
        self._arrivals: dict[int, int] = {}  # extended sequence number -> arrival (us)
        self._next: int | None = None  # the first extended number not reported yet
        self._highest: int | None = None
        self._last_feedback = time.monotonic()
        self._tasks: set[asyncio.Future[None]] = set()
        ice = self.dtls.transport
        receive = ice._recv

        async def next_datagram() -> bytes:
            data: bytes = await receive()
            self._on_datagram(data)
            return data

        ice._recv = next_datagram
        self._closed = False

    def _on_datagram(self, data: bytes) -> None:
        # RTP (not RTCP, STUN or DTLS), still protected: its header is in the clear.
        if not (127 < data[0] < 192 and len(data) >= 12 and not 191 < data[1] < 224):
            return
        try:
            number = RtpPacket.parse(data, self._extensions).extensions.transport_sequence_number
        except ValueError:
            return
        if number is None:
            return
        arrival = int(time.monotonic() * 1e6)
        if self._highest is None:
            extended = number
            self._next = number
        else:
            extended = self._highest + ((number - self._highest + 0x8000) & 0xFFFF) - 0x8000
        if self._next is not None and extended < self._next:
            return  # already reported (late or repeated)
        self._highest = extended if self._highest is None else max(self._highest, extended)
        self._arrivals[extended] = arrival
        if not self._closed and arrival / 1e6 - self._last_feedback >= self.interval:
            self._last_feedback = arrival / 1e6
            task = asyncio.ensure_future(self._send_feedback(self._feedback()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _feedback(self) -> TransportFeedback:
        """Everything from the first number not reported yet to the highest arrived."""
        assert self._next is not None and self._highest is not None
        first, last = self._next, min(self._highest, self._next + 0xFFFE)
        arrivals = tuple(self._arrivals.pop(n, None) for n in range(first, last + 1))
        self._next = last + 1
        feedback = TransportFeedback(1, 0, first & 0xFFFF, self.sent & 0xFF, arrivals)
        self.sent += 1
        self.reported += len(arrivals)
        return feedback

    async def _send_feedback(self, feedback: TransportFeedback) -> None:
        with contextlib.suppress(ConnectionError):
            await self.dtls._send_rtp(feedback.to_bytes())

    def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
