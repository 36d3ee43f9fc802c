"""The network lab itself: rate, loss and delay are what a test sets (needs root)."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.netclient import SubscriberProcess
from tests.netlab import NetLab, in_namespace, open_netlab
from tests.support import RunningServer, room_with
from tests.synthetic import NoiseVideoTrack, RealTimePace

DATAGRAM = 1200


def guest_socket(lab: NetLab) -> socket.socket:
    """A UDP socket inside the lab's namespace, on its address (used from this process)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((lab.guest_address, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.settimeout(0.5)
        return sock

    return in_namespace(lab.namespace, make)


class Arrivals:
    """Receives on `sock` in a thread: (monotonic arrival time, sequence, send time) each."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[tuple[float, int, float]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            sequence, sent = struct.unpack_from("!Id", data)
            self.seen.append((time.monotonic(), sequence, sent))

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


async def send_datagrams(target: tuple[str, int], count: int, kbit: int) -> None:
    """`count` datagrams from the host to `target`, paced at `kbit` kbit/s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        pace = RealTimePace()
        for sequence in range(count):
            await pace.until(sequence, kbit * 1000 / (DATAGRAM * 8))
            payload = struct.pack("!Id", sequence, time.monotonic())
            sock.sendto(payload.ljust(DATAGRAM, b"\0"), target)


async def test_rate_limit_holds_and_lifts() -> None:
    async with open_netlab() as lab:
        arrivals = Arrivals(guest_socket(lab))
        target = arrivals.sock.getsockname()
        try:
            lab.set_rate(500, "down")
            assert lab.rate("down") == 500
            await send_datagrams(target, 300, kbit=2000)  # 2.9 Mbit in 1.4 s: 4x the limit
            await eventually(lambda: arrivals.seen, what="datagrams through the limit")
            count = len(arrivals.seen)
            await eventually(lambda: len(arrivals.seen) == count, what="the queue drained")
            first, last = arrivals.seen[0][0], arrivals.seen[-1][0]
            # tbf lets a 20 ms bucket through at once; after it, never more than the rate.
            allowed = 500_000 / 8 * (last - first) * 1.05 + 2 * 3200 + DATAGRAM
            assert (len(arrivals.seen) - 1) * DATAGRAM <= allowed
            assert len(arrivals.seen) < 300, "nothing was dropped at 4x the limit"

            lab.lift("down")
            assert lab.rate("down") is None
            arrivals.seen.clear()
            await send_datagrams(target, 300, kbit=2000)
            await eventually(lambda: len(arrivals.seen) >= 295, what="the lifted link carries")
        finally:
            arrivals.close()


async def test_loss_is_the_fraction_set_and_counted() -> None:
    async with open_netlab(seed=3) as lab:
        arrivals = Arrivals(guest_socket(lab))
        try:
            lab.set_loss(0.1, "down")
            lab.reset_counters()
            await send_datagrams(arrivals.sock.getsockname(), 2000, kbit=8000)
            await eventually(
                lambda: lab.counters("down").udp_packets == 2000, what="the relay read all 2000"
            )
            counters = lab.counters("down")

            def all_arrived() -> bool:
                assert len(arrivals.seen) == counters.udp_packets - counters.lost, counters
                return True

            await eventually(all_arrived, what="every datagram the relay passed has arrived")
            assert 0.08 <= counters.loss_fraction <= 0.12, counters
            assert 0.08 <= 1 - len(arrivals.seen) / 2000 <= 0.12
            assert lab.counters("up").lost == 0  # the other direction was left alone
        finally:
            arrivals.close()


async def test_delay_and_jitter_are_added_one_way() -> None:
    async with open_netlab() as lab:
        arrivals = Arrivals(guest_socket(lab))
        try:
            lab.set_delay(40, jitter_ms=50, direction="down")
            await send_datagrams(arrivals.sock.getsockname(), 100, kbit=500)
            await eventually(lambda: len(arrivals.seen) == 100, what="100 delayed datagrams")
            delays = [(arrived - sent) * 1000 for arrived, _, sent in arrivals.seen]
            assert min(delays) >= 40.0  # never early: the relay holds each one
            # Under load a packet can be later still; the median stays near 40..90 ms
            # (a generous ceiling: it catches a delay applied twice or in the wrong unit).
            assert statistics.median(delays) < 90 + 500, delays
            order = [sequence for _, sequence, _ in arrivals.seen]
            assert order != sorted(order), "50 ms of jitter at 19 ms spacing reorders some"

            arrivals.seen.clear()
            lab.set_delay(40, jitter_ms=50, direction="down", reorder=False)
            await send_datagrams(arrivals.sock.getsockname(), 100, kbit=500)
            await eventually(lambda: len(arrivals.seen) == 100, what="100 more datagrams")
            assert [sequence for _, sequence, _ in arrivals.seen] == list(range(100))
        finally:
            arrivals.close()


async def test_shaped_subscriber_gets_no_more_than_the_rate(tessera: RunningServer) -> None:
    # A room without resolution transcoding: no forward ladder, so the subscriber keeps the
    # publisher's ~1 Mbit/s against the limit (the limit, not adaptation, is under test).
    transcoding = {"video": {"parameters": {"resolution": False}}}
    room = await room_with(tessera, "shaped", transcoding=transcoding)
    async with open_netlab() as lab:
        await lab.forward_tcp(tessera.port)
        alice = ConferenceClient()
        await alice.join(tessera.token(room=room, user="alice"))
        publication = await alice.publish(video=NoiseVideoTrack(640, 360, fps=15))
        await publication.wait_ready()
        bob = await SubscriberProcess.start(
            lab, tessera.token(room=room, user="bob"), publication.id
        )
        try:

            def decoding() -> bool:
                bob.check_alive()
                return bool(bob.report.stats) and bob.report.latest()["frames"] > 0

            await eventually(decoding, 60, "the subscriber in the lab decodes frames")
            lab.set_rate(400, "down")
            start, before = time.monotonic(), lab.counters("down")
            await eventually(
                lambda: lab.counters("down").delivered > before.delivered + 150,
                60,
                "150 packets through the limit",
            )
            # A ceiling, not a speed: a loaded machine carries less in the window, never more.
            ceiling = 400_000 * (time.monotonic() - start) * 1.05 + 8 * 5000
            after = lab.counters("down")
            carried = (after.delivered_bytes - before.delivered_bytes) * 8
            # The publisher sends ~1 Mbit/s of noise; the link carries 400 kbit/s and a bucket.
            assert 0 < carried <= ceiling, (carried, ceiling)
            assert lab.shaper_drops("down") > 0, "the stream fitted the limit: nothing shown"

            lab.lift()
            frames = bob.report.latest()["frames"]
            await eventually(
                lambda: bob.check_alive() and bob.report.latest()["frames"] >= frames + 30,
                60,
                "30 more decoded frames once the limit is lifted",
            )
        finally:
            await bob.stop()
            await alice.leave()
