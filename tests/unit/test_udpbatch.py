"""UdpBatchSender: datagrams in order, in one sendmmsg, to a real loopback socket."""

from __future__ import annotations

import socket
import sys

import pytest

from tessera.media.udpbatch import MAX_BATCH, UdpBatchSender, sendmmsg_available, sockaddr


@pytest.fixture
def pair() -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    yield sender, receiver
    sender.close()
    receiver.close()


def test_linux_sends_batches_with_sendmmsg() -> None:
    assert sendmmsg_available() == sys.platform.startswith("linux")


def test_every_datagram_arrives_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    batch = UdpBatchSender(sender, receiver.getsockname())
    datagrams = [bytes([i % 256]) * (100 + i) for i in range(MAX_BATCH + 7)]  # two calls
    assert batch.send(datagrams) == len(datagrams)
    got = [receiver.recvfrom(2048) for _ in datagrams]
    assert [data for data, _ in got] == datagrams
    assert {address for _, address in got} == {sender.getsockname()}
    assert batch.dropped == 0


def test_a_datagram_larger_than_a_slot_is_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    batch = UdpBatchSender(sender, receiver.getsockname())
    if not sendmmsg_available():
        pytest.skip("slots only with sendmmsg")
    with pytest.raises(ValueError):
        batch.send([b"x" * 1501])


def test_sockaddr_layouts() -> None:
    v4 = sockaddr(socket.AF_INET, "127.0.0.1", 5004)
    assert len(v4) == 16 and v4[2:4] == (5004).to_bytes(2, "big") and v4[4:8] == b"\x7f\0\0\1"
    v6 = sockaddr(socket.AF_INET6, "::1", 5004)
    assert len(v6) == 28 and v6[8:24] == socket.inet_pton(socket.AF_INET6, "::1")
    with pytest.raises(ValueError):
        sockaddr(socket.AF_INET, "127.0.0.1", 0)
    with pytest.raises(OSError):
        sockaddr(socket.AF_INET, "not an address", 1)
