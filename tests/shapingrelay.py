"""A user-space UDP relay that shapes what the server sends one client: rate, loss, delay.

It stands between a client and the server on loopback (`RelayedClient` points
the client's ICE at it). Towards the client it works as `tc tbf` with a queue
(packets beyond `queue_delay` seconds of backlog at `rate` are dropped) plus
independent random loss and a fixed delay (what netem would add). The client's
own packets pass unchanged, or are all dropped once `drop_feedback` is set (a
subscriber whose RTCP never arrives). Changes to the limits apply at once.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

from tessera.media.aiortcext import LowLatencyJitterBuffer
from tessera.media.mediasource import vp8_frame_size
from tessera_client import ConferenceClient


def is_rtcp(data: bytes) -> bool:
    """RTCP (RFC 5761: packet types 192-223), not RTP, STUN or DTLS."""
    return len(data) >= 8 and 127 < data[0] < 192 and 191 < data[1] < 224


class ShapingRelay(asyncio.DatagramProtocol):
    """One client's relay (see the module docstring); `rate` None is no limit (bit/s)."""

    def __init__(self, seed: int = 17) -> None:
        self.server: tuple[str, int] = ("127.0.0.1", 0)
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.rate: float | None = None
        self.loss = 0.0
        self.delay = 0.0
        self.queue_delay = 0.25
        self.drop_feedback = False
        self._random = random.Random(seed)
        self._free_at = 0.0  # when the shaped link has sent what is queued
        self.forwarded = 0
        self.dropped = 0
        self.octets = 0

    def shape(
        self,
        rate: float | None,
        loss: float = 0.0,
        delay: float = 0.0,
        queue_delay: float = 0.25,
    ) -> None:
        self.rate, self.loss, self.delay, self.queue_delay = rate, loss, delay, queue_delay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if addr == self.server:
            if self.client is not None:
                self._towards_client(data)
            return
        if self.client is None:
            self.client = addr
        if addr == self.client:
            if self.drop_feedback and is_rtcp(data):
                return
            self.transport.sendto(data, self.server)

    def _towards_client(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.loss and self._random.random() < self.loss:
            self.dropped += 1
            return
        leave = now
        if self.rate is not None:
            start = max(now, self._free_at)
            if start - now > self.queue_delay:
                self.dropped += 1  # the bucket's queue is full: tail drop, as tbf
                return
            self._free_at = start + len(data) * 8 / self.rate
            leave = self._free_at
        self.forwarded += 1
        self.octets += len(data)
        leave += self.delay
        if leave <= now:
            self._send(data)
        else:
            loop.call_at(leave, self._send, data)

    def _send(self, data: bytes) -> None:
        # Delayed packets may come due after the relay closed.
        if self.transport is not None and not self.transport.is_closing() and self.client:
            self.transport.sendto(data, self.client)


class RelayedClient(ConferenceClient):
    """A client that reaches the server only through a relay: the candidates of the answer
    and of its own offers are rewritten to the relay's port, so each side's checks and
    media go through the relay."""

    def __init__(self, relay: ShapingRelay, relay_port: int) -> None:
        super().__init__()
        self.relay = relay
        self.relay_port = relay_port

    async def request(self, name: str, data: Any = None, timeout: float = 10.0) -> Any:
        if name == "soac" and isinstance(data, dict) and data.get("signaling", {}).get("sdp"):
            data = {**data, "signaling": {**data["signaling"], "sdp": self._via_relay(data)}}
        return await super().request(name, data, timeout)

    def _via_relay(self, data: dict[str, Any]) -> str:
        """The offer with one IPv4 host candidate, at the relay's port (on every address)."""
        lines, kept = [], False
        for line in str(data["signaling"]["sdp"]).splitlines():
            if line.startswith("a=candidate:"):
                found = re.search(r" udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host", line)
                if found is None or kept:
                    continue
                kept = True
                # The relay sends the server's packets there (known before the server's checks).
                self.relay.client = (found.group(1), int(found.group(2)))
                line = line.replace(f" {found.group(2)} typ", f" {self.relay_port} typ")
            lines.append(line)
        return "\r\n".join(lines) + "\r\n"

    def _ensure_pc(self) -> RTCPeerConnection:
        pc = super()._ensure_pc()
        if getattr(pc, "_relayed", False):
            return pc
        apply = pc.setRemoteDescription

        async def through_relay(description: RTCSessionDescription) -> None:
            lines = []
            for line in description.sdp.splitlines():
                if line.startswith("a=candidate:"):
                    found = re.search(r" udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host", line)
                    if found is None or self.relay.server[1]:
                        continue  # one IPv4 host candidate only, through the relay
                    self.relay.server = (found.group(1), int(found.group(2)))
                    line = line.replace(f" {found.group(2)} typ", f" {self.relay_port} typ")
                lines.append(line)
            await apply(RTCSessionDescription(sdp="\r\n".join(lines) + "\r\n", type="answer"))

        pc.setRemoteDescription = through_relay  # type: ignore[method-assign]
        pc._relayed = True  # type: ignore[attr-defined]
        return pc


async def relayed_client(
    client_class: type[RelayedClient] = RelayedClient,
) -> tuple[RelayedClient, ShapingRelay, asyncio.DatagramTransport]:
    """A client (of `client_class`) behind a new relay (close the returned transport when
    done)."""
    relay = ShapingRelay()
    loop = asyncio.get_running_loop()
    # On every address: the server's candidate address, which the answer names, reaches it.
    transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("0.0.0.0", 0))
    client = client_class(relay, transport.get_extra_info("sockname")[1])
    return client, relay, transport


# Packets past a gap before the receiver gives up waiting for its retransmission.
GAP_PATIENCE = 24


class KeyframeResumingBuffer(LowLatencyJitterBuffer):
    """A receiver's video jitter buffer that gives up on a gap at the next complete keyframe.

    aiortc's (and Tessera's low-latency one) waits for a missing packet until 128
    more are in: seconds of a frozen picture at a low rung's packet rate. A
    browser decodes on from the next keyframe; so does this buffer. The
    receiver asks for that keyframe itself (PLI, on its decoder's errors).
    """

    _asked_at: int | None = None  # the gap (its first sequence number) a PLI was sent for

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        origin = self._origin
        if (
            frame is None
            and origin is not None
            and uint16_add(packet.sequence_number, -origin) > GAP_PATIENCE
            and self._asked_at != origin
        ):
            self._asked_at = origin
            pli = True  # NACK did not fill the gap: ask for the keyframe to resume at
        return pli, frame

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        frame = super()._remove_frame(sequence_number)
        if frame is not None or self._origin is None or not self._is_video:
            return frame
        # Nothing released: a complete keyframe further on has a gap before it (its packets
        # before would otherwise have made frames to release).
        start = self._keyframe_after_gap()
        if start is None:
            return None
        self.remove(uint16_add(start, -self._origin))
        return super()._remove_frame(sequence_number)

    def _keyframe_after_gap(self) -> int | None:
        """The sequence number of the first packet of a complete keyframe past the gap."""
        assert self._origin is not None
        capacity = self.capacity
        for count in range(1, capacity):
            packet = self._packets[(self._origin + count) % capacity]
            # A keyframe's first packet starts with its header (RFC 6386 9.1, start code).
            if (
                packet is not None
                and vp8_frame_size(packet._data) is not None  # type: ignore[attr-defined]
                and self._complete_from(count)
            ):
                return uint16_add(self._origin, count)
        return None

    def _complete_from(self, count: int) -> bool:
        assert self._origin is not None
        for offset in range(count, self.capacity):
            packet = self._packets[(self._origin + offset) % self.capacity]
            if packet is None:
                return False
            if packet.marker:
                return True
        return False


def resume_at_keyframes(subscription: Any) -> None:
    """Give a subscription's video receiver a `KeyframeResumingBuffer` (before media flows)."""
    receiver = subscription.transceivers["video"].receiver
    current = receiver._RTCRtpReceiver__jitter_buffer
    receiver._RTCRtpReceiver__jitter_buffer = KeyframeResumingBuffer(
        capacity=current.capacity, is_video=True
    )
