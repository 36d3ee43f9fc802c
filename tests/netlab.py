"""Real network conditions for tests, on this machine, without netem.

A `NetLab` is a network namespace joined to the host by a pair of TUN devices,
with a user-space relay between them (a thread of the test process):

```
 namespace (client)                     test process                        host (server)
 app ─► tun "nlnXXXX" ─► tbf (uplink) ─► relay: loss, delay, jitter ─► tun "nlhXXXX" ─► server
 app ◄─ tun "nlnXXXX" ◄──────────────── relay: loss, delay, jitter ◄─ tbf (downlink) ◄─ server
```

Why TUN devices and not a veth pair: with a veth the kernel routes packets
between the namespace and the host by itself, so ICE can find a direct path
that skips a UDP relay (the server gathers a candidate on the veth's address,
the client's host candidate is reachable from the host). Here the relay is the
only link: every IP packet between the namespace and the host is read from one
TUN device and written to the other by the relay, so no candidate pair can
avoid it, and neither the server nor the client (aiortc, Chromium) needs its
SDP rewritten. The kernel's `tbf` shapes each direction on its TUN device
(downlink on the host's device, uplink on the namespace's), before the relay.

The namespace has one default route, through its TUN device: every address of
the host (the server's ICE candidates) is reached through the relay. The host
gets one route, to the namespace's address (a point-to-point /32 on its own TUN
device), which goes when the lab closes. Signaling is not shaped: `forward_tcp`
listens on 127.0.0.1 inside the namespace and connects to the same port of the
host's 127.0.0.1, so a join token naming `127.0.0.1:PORT` works unchanged
inside the namespace.

Needs root, `ip`, `tc` and /dev/net/tun: `netlab_or_skip()` skips otherwise.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import heapq
import itertools
import os
import random
import re
import secrets
import selectors
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pytest

Direction = Literal["down", "up", "both"]
T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_UDP = 17
_MTU = 1500


def netlab_or_skip() -> None:
    """Skip the calling test, saying why, when a `NetLab` cannot be built here."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces and tc need root (CI runs the tests as root)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is missing: apt-get install iproute2")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("/dev/net/tun is missing: the kernel has no TUN driver")


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


def in_namespace(namespace: str, work: Callable[[], T]) -> T:
    """Run `work` in a thread that has entered `namespace`, and return its result.

    A socket or TUN device keeps the namespace it was created in, so the test
    process can create them there and use them from its own threads and loop.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: list[Any] = []

    def thread() -> None:
        try:
            fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace}")
            finally:
                os.close(fd)
            outcome.append(work())
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)

    runner = threading.Thread(target=thread, name=f"netns-{namespace}")
    runner.start()
    runner.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]  # type: ignore[no-any-return]


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclass
class Counters:
    """What the relay saw in one direction since the lab opened (or since `reset`)."""

    packets: int = 0  # read from the TUN device (after tbf)
    bytes: int = 0
    udp_packets: int = 0
    lost: int = 0  # dropped by the relay's loss (UDP only)
    delivered: int = 0  # written to the other TUN device
    delivered_bytes: int = 0

    @property
    def loss_fraction(self) -> float:
        return self.lost / self.udp_packets if self.udp_packets else 0.0


@dataclass
class Impairment:
    """Loss and delay the relay adds in one direction; changed live."""

    loss: float = 0.0  # fraction of UDP datagrams dropped, 0..1
    delay_ms: float = 0.0  # one-way, added to every packet
    jitter_ms: float = 0.0  # uniform in [0, jitter_ms] on top of delay_ms
    reorder: bool = True  # jitter may reorder packets (as netem does); False keeps FIFO


@dataclass
class _Lane:
    """One direction of the relay: reads `source`, writes `sink`."""

    source: int
    sink: int
    impairment: Impairment = field(default_factory=Impairment)
    counters: Counters = field(default_factory=Counters)
    last_due: float = 0.0


class Relay:
    """Moves IP packets between two TUN devices, adding loss and delay; one thread.

    Loss applies to UDP datagrams only (media, ICE): TCP (signaling through the
    namespace's default route, if any) is delayed but never dropped, so a test
    measures media, not Socket.IO's reconnects. Loss draws from one seeded
    `random.Random`, so a run is repeatable for a given packet order.
    """

    def __init__(self, down: tuple[int, int], up: tuple[int, int], seed: int) -> None:
        self.lanes: dict[str, _Lane] = {"down": _Lane(*down), "up": _Lane(*up)}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="netlab-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_write, b"x")
        self._thread.join(timeout=10)
        os.close(self._wake_read)
        os.close(self._wake_write)

    def set(self, direction: str, **changes: float | bool) -> None:
        with self._lock:
            lane = self.lanes[direction]
            for key, value in changes.items():
                setattr(lane.impairment, key, value)
        os.write(self._wake_write, b"x")

    def counters(self, direction: str) -> Counters:
        with self._lock:
            return Counters(**vars(self.lanes[direction].counters))

    def reset_counters(self) -> None:
        with self._lock:
            for lane in self.lanes.values():
                lane.counters = Counters()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for lane in self.lanes.values():
            selector.register(lane.source, selectors.EVENT_READ, lane)
        selector.register(self._wake_read, selectors.EVENT_READ, None)
        # (due time, order, sink, packet): the order breaks ties so equal times keep FIFO
        pending: list[tuple[float, int, int, bytes]] = []
        order = itertools.count()
        try:
            while not self._stopping:
                timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        try:
                            os.read(self._wake_read, 512)
                        except BlockingIOError:
                            pass
                        continue
                    self._read(key.data, pending, order)
                now = time.monotonic()
                while pending and pending[0][0] <= now:
                    _, _, sink, packet = heapq.heappop(pending)
                    try:
                        os.write(sink, packet)
                    except OSError:
                        pass  # a device that goes away as the lab closes
        finally:
            selector.close()

    def _read(self, lane: _Lane, pending: list[tuple[float, int, int, bytes]], order: Any) -> None:
        while True:
            try:
                packet = os.read(lane.source, 65535)
            except (BlockingIOError, OSError):
                return
            now = time.monotonic()
            with self._lock:
                impairment = lane.impairment
                counters = lane.counters
                counters.packets += 1
                counters.bytes += len(packet)
                is_udp = len(packet) > 9 and packet[0] >> 4 == 4 and packet[9] == _UDP
                if is_udp:
                    counters.udp_packets += 1
                    if impairment.loss > 0 and self._random.random() < impairment.loss:
                        counters.lost += 1
                        continue
                delay = impairment.delay_ms
                if impairment.jitter_ms > 0:
                    delay += self._random.uniform(0.0, impairment.jitter_ms)
                due = now + delay / 1000.0
                if not impairment.reorder:
                    due = max(due, lane.last_due)
                lane.last_due = due
                counters.delivered += 1
                counters.delivered_bytes += len(packet)
            heapq.heappush(pending, (due, next(order), lane.sink, packet))


def _pick_subnet() -> tuple[str, str]:
    """A host and a namespace address in 10.199.0.0/16 that no interface uses now."""
    in_use = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    while True:
        third, fourth = secrets.randbelow(256), secrets.randbelow(63) * 4
        host, guest = f"10.199.{third}.{fourth + 1}", f"10.199.{third}.{fourth + 2}"
        if f" {host}" not in in_use and f" {guest}" not in in_use:
            return host, guest


class NetLab:
    """A network namespace whose only link to the host is a shaped, lossy relay.

    Open it with `open_netlab()`; everything it made goes when that block ends,
    also when the test fails.
    """

    def __init__(self, seed: int = 17) -> None:
        tag = secrets.token_hex(3)
        # The pid in the name: a lab of a killed test run is found and removed (_remove_stale).
        self.namespace = f"tessera-nl-{os.getpid()}-{tag}"
        self.host_device = f"nlh{tag}"
        self.guest_device = f"nln{tag}"
        self.host_address, self.guest_address = _pick_subnet()
        self._seed = seed
        self._fds: list[int] = []
        self._relay: Relay | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._streams: set[asyncio.StreamWriter] = set()
        self._processes: list[asyncio.subprocess.Process] = []
        self._rates: dict[str, int | None] = {"down": None, "up": None}

    # -- set-up and tear-down ------------------------------------------------

    @staticmethod
    def _remove_stale() -> None:
        """Remove namespaces of labs whose test process died without closing them (SIGKILL).

        Their TUN devices and routes went with the process; only the namespace stays."""
        if not os.path.isdir("/var/run/netns"):
            return
        for name in os.listdir("/var/run/netns"):
            match = re.fullmatch(r"tessera-nl-(\d+)-[0-9a-f]+", name)
            if match and not os.path.exists(f"/proc/{match.group(1)}"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)

    def _open(self) -> None:
        self._remove_stale()
        _run("ip", "netns", "add", self.namespace)
        guest_fd = in_namespace(self.namespace, lambda: _open_tun(self.guest_device))
        self._fds.append(guest_fd)
        host_fd = _open_tun(self.host_device)
        self._fds.append(host_fd)
        ns = ("ip", "netns", "exec", self.namespace)
        _run(*ns, "ip", "link", "set", "lo", "up")
        guest = (self.guest_address, "peer", self.host_address, "dev", self.guest_device)
        _run(*ns, "ip", "addr", "add", *guest)
        _run(*ns, "ip", "link", "set", self.guest_device, "up")
        _run(*ns, "ip", "route", "add", "default", "dev", self.guest_device)
        _run(
            "ip",
            "addr",
            "add",
            self.host_address,
            "peer",
            self.guest_address,
            "dev",
            self.host_device,
        )
        _run("ip", "link", "set", self.host_device, "up")
        # host -> namespace is the host device's egress (downlink); the other way, the guest's
        self._relay = Relay(down=(host_fd, guest_fd), up=(guest_fd, host_fd), seed=self._seed)
        self._relay.start()

    async def _close(self) -> None:
        for process in self._processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        for server in self._servers:
            server.close()
        for writer in list(self._streams):
            writer.close()
        if self._relay is not None:
            self._relay.stop()
        for fd in self._fds:
            os.close(fd)  # a TUN device without an owner is deleted, with its routes
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, check=False)

    # -- shaping ---------------------------------------------------------------

    @staticmethod
    def _directions(direction: Direction) -> tuple[str, ...]:
        if direction not in ("down", "up", "both"):
            raise ValueError(f"direction must be down, up or both, not {direction!r}")
        return ("down", "up") if direction == "both" else (direction,)

    def set_rate(self, kbit: int, direction: Direction = "down", queue_ms: int = 200) -> None:
        """Limit `direction` to `kbit` kbit/s with tbf; a queue of `queue_ms` before drops.

        The bucket holds 20 ms of the rate (at least two full packets), so short
        bursts pass at the rate, as on a real access link.
        """
        if kbit <= 0:
            raise ValueError(f"rate must be positive, not {kbit}")
        burst = max(2 * _MTU + 200, kbit * 1000 // 8 // 50)
        for name in self._directions(direction):
            device, prefix = self._device(name)
            tbf = ["tbf", "rate", f"{kbit}kbit", "burst", str(burst), "latency", f"{queue_ms}ms"]
            _run(*prefix, "tc", "qdisc", "replace", "dev", device, "root", *tbf)
            self._rates[name] = kbit

    def lift(self, direction: Direction = "both") -> None:
        """Remove the rate limit of `direction` (loss and delay stay as set)."""
        for name in self._directions(direction):
            device, prefix = self._device(name)
            if self._rates[name] is not None:
                _run(*prefix, "tc", "qdisc", "del", "dev", device, "root")
                self._rates[name] = None

    def shaper_drops(self, direction: Literal["down", "up"]) -> int:
        """Packets tbf dropped in `direction` since its limit was last set (0 when unlimited)."""
        device, prefix = self._device(direction)
        command = [*prefix, "tc", "-s", "qdisc", "show", "dev", device]
        shown = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        match = re.search(r"qdisc tbf .*?dropped (\d+)", shown, re.S)
        return int(match.group(1)) if match else 0

    def rate(self, direction: Literal["down", "up"]) -> int | None:
        """The rate limit of `direction` in kbit/s, None when unlimited."""
        return self._rates[direction]

    def set_loss(self, fraction: float, direction: Direction = "both") -> None:
        """Drop `fraction` (0..1) of UDP datagrams in `direction`, at random (seeded)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"loss must be within 0..1, not {fraction}")
        for name in self._directions(direction):
            self._the_relay.set(name, loss=fraction)

    def set_delay(
        self,
        ms: float,
        jitter_ms: float = 0.0,
        direction: Direction = "both",
        reorder: bool = True,
    ) -> None:
        """Delay every packet in `direction` by `ms` (one way) plus uniform [0, jitter_ms].

        With `reorder` False a packet never overtakes an earlier one (jitter then
        delays the ones behind a late packet too).
        """
        if ms < 0 or jitter_ms < 0:
            raise ValueError(f"delay and jitter must not be negative: {ms}, {jitter_ms}")
        for name in self._directions(direction):
            self._the_relay.set(name, delay_ms=ms, jitter_ms=jitter_ms, reorder=reorder)

    def counters(self, direction: Literal["down", "up"]) -> Counters:
        """A copy of the relay's counters for `direction`."""
        return self._the_relay.counters(direction)

    def reset_counters(self) -> None:
        self._the_relay.reset_counters()

    @property
    def _the_relay(self) -> Relay:
        if self._relay is None:
            raise RuntimeError("the lab is not open")
        return self._relay

    def _device(self, direction: str) -> tuple[str, tuple[str, ...]]:
        if direction == "down":
            return self.host_device, ()
        return self.guest_device, ("ip", "netns", "exec", self.namespace)

    # -- reaching the host, running programs inside ------------------------------

    async def forward_tcp(self, port: int) -> None:
        """Listen on 127.0.0.1:`port` inside the namespace; connect each to the host's.

        The forwarded bytes do not cross the relay: signaling is not shaped.
        """

        def listener() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(64)
            sock.setblocking(False)
            return sock

        sock = in_namespace(self.namespace, listener)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                self._streams.discard(writer)

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            self._streams.update((writer, up_writer))
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self._servers.append(await asyncio.start_server(accepted, sock=sock))

    def command(self, *argv: str) -> list[str]:
        """`argv` as a command line that runs inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    async def spawn(self, argv: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
        """Start `argv` inside the namespace; killed when the lab closes if still running."""
        process = await asyncio.create_subprocess_exec(*self.command(*argv), **kwargs)
        self._processes.append(process)
        return process


@asynccontextmanager
async def open_netlab(seed: int = 17) -> AsyncIterator[NetLab]:
    """A `NetLab`, removed with all it made when the block ends (skips when not root)."""
    netlab_or_skip()
    lab = NetLab(seed)
    try:
        await asyncio.to_thread(lab._open)
        yield lab
    finally:
        await lab._close()
