"""drain_datagrams: one wake-up of the loop reads what waits on a real loopback socket."""

from __future__ import annotations

import asyncio
import socket

from tessera.media.udpdrain import MAX_READS, drain_datagrams


class Counting(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.datagrams.append(data)


async def _endpoint() -> tuple[asyncio.DatagramTransport, Counting]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Counting, local_addr=("127.0.0.1", 0))
    await asyncio.sleep(0)  # its reader is registered on the next iteration
    return transport, protocol


async def _after_a_few_wakeups(
    transport: asyncio.DatagramTransport, protocol: Counting, count: int
) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(count):  # loopback: queued at the receiver when sendto returns
            sender.sendto(i.to_bytes(2, "big"), transport.get_extra_info("sockname"))
    for _ in range(3):
        await asyncio.sleep(0)
    return len(protocol.datagrams)


async def test_one_wakeup_reads_up_to_max_reads_where_asyncio_reads_one() -> None:
    plain, plain_protocol = await _endpoint()
    drained, drained_protocol = await _endpoint()
    assert drain_datagrams(drained) and drain_datagrams(drained)  # idempotent
    assert await _after_a_few_wakeups(plain, plain_protocol, 50) <= 3
    assert await _after_a_few_wakeups(drained, drained_protocol, 50) >= MAX_READS
    # Nothing lost or reordered; the rest comes at the next wake-ups.
    for _ in range(5):
        await asyncio.sleep(0)
    assert drained_protocol.datagrams == [i.to_bytes(2, "big") for i in range(50)]
    plain.close()
    drained.close()


async def test_a_closing_transport_is_left_alone() -> None:
    transport, _ = await _endpoint()
    transport.close()
    assert not drain_datagrams(transport)
