"""A detector of event-loop stalls: callbacks that hold the loop thread too long.

Every callback the loop runs (``asyncio.Handle._run``: task steps, timers, I/O
callbacks) is timed. What counts is how long the callback *held* the loop:

- its CPU time on the loop thread (computing on the loop), and
- its wall time, less the time the machine made it wait: the loop thread's own
  run-queue delay (runnable, no core free), the run-queue delay of the process's
  other threads meanwhile (one of them may hold the interpreter lock the loop waits
  for, while the kernel runs another process; ``/proc/self/task/<tid>/schedstat``),
  and the time the hypervisor took the machine's cores away (steal, ``/proc/stat``).

So CPU work and blocking calls on the loop thread (a thread join, a file or SQLite
write, ``time.sleep``) count, and another process keeping the cores busy does not:
the suite must hold on a loaded 2-core machine. The other threads' delay is read
afresh when a callback ends, per thread, against the watcher's last sample before
it began: the watcher itself starves on a loaded machine, and a sample from before
the callback ended missed the delay that explained the rest (aiortc callbacks
"held" 78-120 ms with no CPU at load 10-20). The watcher's own delay is not
counted: it holds the interpreter lock only for a moment. (On a machine so loaded
that the other threads queue for long, a blocking call is forgiven; the same test
on a quiet machine catches it.)

A watcher thread takes the loop thread's stack once a callback has run past the
threshold, so a report says where it was stuck, not only which callback.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

TASKS = "/proc/self/task"
SAMPLE_INTERVAL = 0.005
TICK = 1 / os.sysconf("SC_CLK_TCK")  # /proc/stat counts in these


@dataclass
class Stall:
    """One callback that held the loop thread: how long, what it was, where it was stuck."""

    held: float  # seconds the loop was held (see the module docstring)
    wall: float
    cpu: float
    callback: str
    stack: str = ""
    waited: float = 0.0  # the loop thread's own run-queue delay
    others_waited: float = 0.0
    stolen: float = 0.0

    def __str__(self) -> str:
        held, wall, cpu = self.held * 1000, self.wall * 1000, self.cpu * 1000
        waits = f"waited {self.waited * 1000:.0f} ms, others {self.others_waited * 1000:.0f} ms"
        where = f"\n{self.stack}" if self.stack else ""
        return (
            f"{held:.0f} ms (wall {wall:.0f} ms, cpu {cpu:.0f} ms, {waits},"
            f" stolen {self.stolen * 1000:.0f} ms) in {self.callback}{where}"
        )


def _runqueue_ns(fd: int) -> int:
    # schedstat: "<ns on a cpu> <ns runnable, waiting for a cpu> <timeslices>".
    return int(os.pread(fd, 128, 0).split()[1])


def _steal_seconds() -> list[float]:
    """Each core's time taken away by the hypervisor so far (``/proc/stat``)."""
    with open("/proc/stat", "rb") as stat:
        lines = stat.read().split(b"\n")
    # "cpuN user nice system idle iowait irq softirq steal ...": per core, not the total.
    return [
        int(line.split()[8]) * TICK
        for line in lines
        if line.startswith(b"cpu") and not line.startswith(b"cpu ")
    ]


@dataclass
class _Sample:
    """What the watcher read at one moment: each other thread's run-queue ns, each core's steal."""

    time: float
    waits: dict[int, int]
    steal: list[float]


@dataclass
class LoopStallDetector:
    """Times every callback of the running loop (see the module docstring)."""

    threshold: float = 0.05
    stalls: list[Stall] = field(default_factory=list)
    callbacks: int = 0
    longest: float = 0.0
    longest_callback: str = ""
    _fd: int = -1
    _thread_id: int = 0
    _native_id: int = 0
    _running: tuple[float, Any] | None = None
    _watcher_id: int = 0
    _sampled: str = ""
    # The watcher's samples, oldest first.
    _samples: deque[_Sample] = field(default_factory=lambda: deque(maxlen=4000))

    @contextmanager
    def watching(self) -> Iterator[LoopStallDetector]:
        """Time every callback of the current thread's loop while the block runs."""
        self._thread_id = threading.get_ident()
        self._native_id = threading.get_native_id()
        self._fd = os.open(f"{TASKS}/{self._native_id}/schedstat", os.O_RDONLY)
        original = asyncio.events.Handle._run
        detector = self

        def timed_run(handle: asyncio.Handle) -> None:
            if threading.get_ident() != detector._thread_id:
                original(handle)  # another loop (a test helper's thread): not ours to time
                return
            waited = _runqueue_ns(detector._fd)
            cpu = time.thread_time()
            started = time.perf_counter()
            detector._sampled = ""
            detector._running = (started, handle)
            try:
                original(handle)
            finally:
                detector._running = None
                # Not if the block ended inside this very callback (its fd is closed).
                if detector._fd >= 0:
                    detector._count(handle, started, waited, cpu)

        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True)
        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        watcher.start()
        try:
            yield self
        finally:
            asyncio.events.Handle._run = original  # type: ignore[method-assign,assignment]
            stop.set()
            watcher.join()
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _count(self, handle: asyncio.Handle, started: float, waited: int, cpu: float) -> None:
        ended = time.perf_counter()
        wall = ended - started
        cpu = time.thread_time() - cpu
        held = cpu
        own = others = stolen = 0.0
        if wall > self.threshold:
            own = (_runqueue_ns(self._fd) - waited) / 1e9
            others, stolen = self._taken_away(started)
            held = max(cpu, wall - own - others - stolen)
        self.callbacks += 1
        if held > self.longest:
            self.longest = held
            self.longest_callback = _describe(handle)
        if held > self.threshold:
            stack, self._sampled = self._sampled, ""
            stall = Stall(held, wall, cpu, _describe(handle), stack, own, others, stolen)
            self.stalls.append(stall)

    def _taken_away(self, started: float) -> tuple[float, float]:
        """Seconds the other threads were runnable without a core since ``started``, and
        the most any one core was stolen meanwhile: now against the watcher's last sample
        before ``started`` (the first one, if none is older)."""
        samples = list(self._samples)
        times = [sample.time for sample in samples]
        if not samples:
            return 0.0, 0.0
        base = samples[max(bisect.bisect_right(times, started) - 1, 0)]
        waited = 0
        for tid, now in self._other_waits().items():
            # A thread the sample did not know was started since: all its delay is new.
            waited += max(0, now - base.waits.get(tid, 0))
        steal = _steal_seconds()
        stolen = max((now - then for now, then in zip(steal, base.steal, strict=False)), default=0)
        return waited / 1e9, max(0.0, stolen)

    def _other_waits(self) -> dict[int, int]:
        """Each other thread's run-queue ns so far (not the loop's, not the watcher's)."""
        waits: dict[int, int] = {}
        for name in os.listdir(TASKS):
            tid = int(name)
            if tid in (self._native_id, self._watcher_id):
                continue
            with suppress(OSError, ValueError, IndexError):
                fd = os.open(f"{TASKS}/{tid}/schedstat", os.O_RDONLY)
                try:
                    waits[tid] = _runqueue_ns(fd)
                finally:
                    os.close(fd)
        return waits

    def _watch(self, stop: threading.Event) -> None:
        self._watcher_id = threading.get_native_id()
        fds: dict[int, int] = {}
        last: Any = None
        try:
            while not stop.wait(SAMPLE_INTERVAL):
                now = time.perf_counter()
                # Listed at every sample: a thread it missed would count all its delay.
                self._refresh(fds)
                waits: dict[int, int] = {}
                for tid, fd in list(fds.items()):
                    with suppress(OSError, ValueError, IndexError):
                        waits[tid] = _runqueue_ns(fd)
                self._samples.append(_Sample(now, waits, _steal_seconds()))
                last = self._sample(last)
        finally:
            for fd in fds.values():
                os.close(fd)

    def _refresh(self, fds: dict[int, int]) -> None:
        # The other threads come and go: one open schedstat per live thread.
        live = {int(tid) for tid in os.listdir(TASKS)} - {self._native_id, self._watcher_id}
        for tid in [t for t in fds if t not in live]:
            os.close(fds.pop(tid))
        for tid in live - set(fds):
            with suppress(OSError):
                fds[tid] = os.open(f"{TASKS}/{tid}/schedstat", os.O_RDONLY)

    def _sample(self, last: Any) -> Any:
        # The loop thread's stack, once per callback that runs past the threshold.
        running = self._running
        if running is None:
            return last
        started, handle = running
        if handle is last or time.perf_counter() - started < self.threshold:
            return last
        frame = sys._current_frames().get(self._thread_id)
        if frame is not None and self._running is running:
            self._sampled = "".join(traceback.format_stack(frame)[-12:])
            return handle
        return last

    def report(self) -> str:
        worst = sorted(self.stalls, key=lambda s: -s.held)[:5]
        return "\n\n".join(str(stall) for stall in worst)


def _describe(handle: asyncio.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return repr(owner.get_coro())
    return repr(callback)
