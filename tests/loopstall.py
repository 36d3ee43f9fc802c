"""A detector of event-loop stalls: callbacks that hold the loop thread too long.

Every callback the loop runs (``asyncio.Handle._run``: task steps, timers, I/O
callbacks) is timed. What counts is how long the callback *held* the loop:

- its CPU time on the loop thread (computing on the loop), and
- its wall time, less the time the machine made it wait: the loop thread's own
  run-queue delay (runnable, no core free) and the run-queue delay of the process's
  other threads meanwhile (one of them may hold the interpreter lock the loop waits
  for, while the kernel runs another process); ``/proc/self/task/<tid>/schedstat``.

So CPU work and blocking calls on the loop thread (a thread join, a file or SQLite
write, ``time.sleep``) count, and another process keeping the cores busy does not:
the suite must hold on a loaded 2-core machine. (On a machine so loaded that the
other threads queue for long, a blocking call is forgiven; the same test on a quiet
machine catches it.)

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


@dataclass
class Stall:
    """One callback that held the loop thread: how long, what it was, where it was stuck."""

    held: float  # seconds the loop was held (see the module docstring)
    wall: float
    cpu: float
    callback: str
    stack: str = ""

    def __str__(self) -> str:
        held, wall, cpu = self.held * 1000, self.wall * 1000, self.cpu * 1000
        where = f"\n{self.stack}" if self.stack else ""
        return f"{held:.0f} ms (wall {wall:.0f} ms, cpu {cpu:.0f} ms) in {self.callback}{where}"


def _runqueue_ns(fd: int) -> int:
    # schedstat: "<ns on a cpu> <ns runnable, waiting for a cpu> <timeslices>".
    return int(os.pread(fd, 128, 0).split()[1])


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
    _sampled: str = ""
    # (time, the other threads' total run-queue ns), sampled by the watcher.
    _times: deque[float] = field(default_factory=lambda: deque(maxlen=4000))
    _waits: deque[int] = field(default_factory=lambda: deque(maxlen=4000))

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
        if wall > self.threshold:
            own = (_runqueue_ns(self._fd) - waited) / 1e9
            held = max(cpu, wall - own - self._others_waited(started, ended))
        self.callbacks += 1
        if held > self.longest:
            self.longest = held
            self.longest_callback = _describe(handle)
        if held > self.threshold:
            stack, self._sampled = self._sampled, ""
            self.stalls.append(Stall(held, wall, cpu, _describe(handle), stack))

    def _others_waited(self, started: float, ended: float) -> float:
        """Seconds the process's other threads were runnable without a core, meanwhile."""
        times, waits = list(self._times), list(self._waits)
        if not times:
            return 0.0
        before = max(bisect.bisect_right(times, started) - 1, 0)
        after = min(bisect.bisect_left(times, ended), len(times) - 1)
        return max(0, waits[after] - waits[before]) / 1e9

    def _watch(self, stop: threading.Event) -> None:
        fds: dict[int, int] = {}
        last: Any = None
        listed = 0.0
        try:
            while not stop.wait(SAMPLE_INTERVAL):
                now = time.perf_counter()
                if now - listed > 0.1:
                    listed = now
                    self._refresh(fds)
                total = 0
                for fd in list(fds.values()):
                    with suppress(OSError, ValueError, IndexError):
                        total += _runqueue_ns(fd)
                self._times.append(now)
                self._waits.append(total)
                last = self._sample(last)
        finally:
            for fd in fds.values():
                os.close(fd)

    def _refresh(self, fds: dict[int, int]) -> None:
        # The other threads come and go: one open schedstat per live thread.
        live = {int(tid) for tid in os.listdir(TASKS)} - {self._native_id}
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
