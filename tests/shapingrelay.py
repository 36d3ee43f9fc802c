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

from aiortc import RTCPeerConnection, RTCSessionDescription

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
        self.queue_delay = 0.05
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
        queue_delay: float = 0.05,
    ) -> None:
        self.rate, self.loss, self.delay, self.queue_delay = rate, loss, delay, queue_delay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
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
        if self.transport is not None and self.client is not None:
            self.transport.sendto(data, self.client)


class RelayedClient(ConferenceClient):
    """A client that reaches the server only through a relay: the answer's candidates are
    rewritten to the relay's address (the server then sees the relay as a peer-reflexive
    candidate and sends there)."""

    def __init__(self, relay: ShapingRelay, relay_port: int) -> None:
        super().__init__()
        self.relay = relay
        self.relay_port = relay_port

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


async def relayed_client() -> tuple[RelayedClient, ShapingRelay, asyncio.DatagramTransport]:
    """A client behind a new relay (close the returned transport when done)."""
    relay = ShapingRelay()
    loop = asyncio.get_running_loop()
    # On every address: the server's candidate address, which the answer names, reaches it.
    transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("0.0.0.0", 0))
    client = RelayedClient(relay, transport.get_extra_info("sockname")[1])
    return client, relay, transport
