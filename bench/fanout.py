"""Fan-out: `python -m bench.fanout [--quick] [--cores N] [--paths P,P] [--json FILE]`.

The server CPU of one view (3x3 layout, 1280x720 30 fps VP8, one 640x360
publisher) with 1, 10, 100 and 300 subscribers of one format, end to end with
real aiortc peers on loopback, once with each way of sending subscribers, in
one run: `aiortc` (each subscriber's aiortc sender packetises, protects and
sends on the event loop, as before) and `shared` (media/rtpfanout.py: each
output packetised once, header rewrite + SRTP + `sendmmsg` per subscriber on
one worker thread; what the server uses). The server runs in its own process
(pinned to N cores with --cores; the clients then get the other cores), so
its CPU is read from /proc apart from the clients. The subscribers neither
decode nor decrypt: each counts the view's frames from the clear RTP headers
of the SRTP packets it receives (`--full-receivers`: aiortc's whole receive
path with an encoded-frame tap).

Target (shared path): at most 0.3% of a core per added subscriber from 10 to
300, every subscriber at 30 fps, the server's loop lag p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import os
import time
from dataclasses import dataclass

from .machine import MachineInfo
from .mixer import format_subscribers
from .report import add_common_arguments, finish, header, pin_clients, server_cpus, verdict
from .subscribers import SubscriberBenchConfig, SubscriberFigures, run_subscriber_bench

FULL = SubscriberBenchConfig(
    steps=(0, 1, 10, 100, 300), window=5.0, settle=5.0, batch=10, batch_receivers=True
)
QUICK = SubscriberBenchConfig(steps=(0, 2), window=1.0, settle=0.3, batch=2, batch_receivers=True)
PATHS = ("aiortc", "shared")
#: At most this much of a core per added subscriber, from 10 subscribers on (shared path).
TARGET_PERCENT = 0.3
LOOP_LAG_TARGET_MS = 50.0
FPS_FLOOR = 29.0


@dataclass(frozen=True)
class FanoutFigures:
    """Both paths' runs, and the load average of the machine around them (1, 5, 15 min)."""

    runs: dict[str, SubscriberFigures]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def span_cost(figures: SubscriberFigures, start: int, end: int) -> float | None:
    """Server CPU per added subscriber from `start` to `end` subscribers (% of a core)."""
    by_count = {s.subscribers: s for s in figures.steps}
    if start not in by_count or end not in by_count or end <= start:
        return None
    cpu = by_count[end].server_cpu_percent - by_count[start].server_cpu_percent
    return cpu / (end - start)


def spans(figures: SubscriberFigures) -> list[tuple[int, int]]:
    """Consecutive steps after the first subscriber (1->10, 10->100, 100->300), and 10->last."""
    counts = sorted(s.subscribers for s in figures.steps if s.subscribers > 0)
    pairs = list(itertools.pairwise(counts))
    later = [c for c in counts if c >= 10]
    if len(later) > 2:
        pairs.append((later[0], later[-1]))
    return pairs


def packets_per_frame(figures: SubscriberFigures) -> float | None:
    """RTP packets per view frame for one subscriber (the one-subscriber step's)."""
    one = next((s for s in figures.steps if s.subscribers == 1), None)
    if one is None or one.view_fps <= 0 or one.packets_per_s <= 0:
        return None
    return one.packets_per_s / one.view_fps


def packet_costs(figures: FanoutFigures) -> list[str]:
    """The server's CPU per RTP packet it sent, every cost included (the view's too).

    Unlike the spans above, this holds on a machine whose other processes take the cores:
    a starved server sends fewer packets and spends less CPU alike. It is an upper bound of
    the per-subscriber cost: the whole server's CPU divided over the packets it sent.
    """
    lines = [
        "",
        "   server CPU per RTP packet sent (all of the server's work, the view's included),",
        "   and that per subscriber at 30 fps (an upper bound of the per-subscriber cost):",
        f"   {'subscribers':>11}"
        + "".join(f"{path + ' pkt/s':>16}{'us/pkt':>8}{'%/sub':>7}" for path in figures.runs),
    ]
    counts = sorted({s.subscribers for r in figures.runs.values() for s in r.steps} - {0})
    for count in counts:
        cells = ""
        for run in figures.runs.values():
            step = next((s for s in run.steps if s.subscribers == count), None)
            ppf = packets_per_frame(run)
            if step is None or step.packets_per_s <= 0 or ppf is None:
                cells += f"{'-':>16}{'-':>8}{'-':>7}"
                continue
            seconds = step.server_cpu_percent / 100 / step.packets_per_s
            per_sub = seconds * ppf * 30 * 100
            cells += f"{step.packets_per_s:>16.0f}{seconds * 1e6:>8.1f}{per_sub:>6.2f}%"
        lines.append(f"   {count:>11}{cells}")
    return lines


def comparison(figures: FanoutFigures) -> tuple[list[str], bool]:
    """Per-subscriber cost of each span on each path, and whether the shared path met the target."""
    runs = figures.runs
    shown = next(iter(runs.values()))
    lines = [
        "",
        "   server CPU per added subscriber, % of one core:",
        f"   {'span':>12}" + "".join(f"{path:>10}" for path in runs),
    ]
    for start, end in spans(shown):
        cells = ""
        for run in runs.values():
            cost = span_cost(run, start, end)
            cells += f"{cost:>9.2f}%" if cost is not None else f"{'-':>10}"
        lines.append(f"   {f'{start} -> {end}':>12}{cells}")
    shared = runs.get("shared")
    ok = False
    if shared is not None:
        costs = [span_cost(shared, a, b) for a, b in spans(shared) if a >= 10]
        watched = [s for s in shared.steps if s.subscribers > 0]
        slow = [s.subscribers for s in watched if s.fps_min < FPS_FLOOR]
        lagged = [s.subscribers for s in watched if s.loop_lag_p99_ms >= LOOP_LAG_TARGET_MS]
        cost_ok = bool(costs) and all(c is not None and c <= TARGET_PERCENT for c in costs)
        ok = cost_ok and not slow and not lagged
        lines += [
            "",
            f"   target (shared): <= {TARGET_PERCENT}% of a core per subscriber from 10 on: "
            f"{verdict(cost_ok)}; every subscriber >= {FPS_FLOOR:g} fps: "
            f"{verdict(not slow)}{f' (not at {slow})' if slow else ''}; loop lag p99 < "
            f"{LOOP_LAG_TARGET_MS:g} ms: {verdict(not lagged)}"
            f"{f' (not at {lagged})' if lagged else ''}",
        ]
    before, after = figures.load_before, figures.load_after
    lines.append(
        f"   machine load average (1/5/15 min) before {before[0]:.2f}/{before[1]:.2f}/"
        f"{before[2]:.2f}, after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}"
    )
    return lines, ok


def summary(figures: SubscriberFigures) -> list[str]:
    """The headline: server CPU per step and per subscriber; whether media kept its rate.

    The server's view frame rate and event-loop lag (from its /metrics) tell
    whether the server kept up; the subscribers' frame rate also depends on
    the clients, which share the machine with it.
    """
    lines = [
        "",
        f"   {'subscribers':>11}{'server':>9}{'per sub':>10}{'view fps':>10}{'loop lag':>10}"
        f"{'received fps':>14}{'clients':>9}{'others':>8}",
        f"   {'':>11}{'% core':>9}{'from 1':>10}{'server':>10}{'p99 ms':>10}"
        f"{'min / mean':>14}{'% core':>9}{'% core':>8}",
    ]
    first = next((s for s in figures.steps if s.subscribers == 1), None)
    for step in figures.steps:
        if step.subscribers == 0:
            continue
        per = "-"
        others = max(
            0.0, step.machine_busy_percent - step.server_cpu_percent - step.bench_cpu_percent
        )
        if first is not None and step.subscribers > 1:
            cost = (step.server_cpu_percent - first.server_cpu_percent) / (step.subscribers - 1)
            per = f"{cost:.2f}%"
        received = f"{step.fps_min:.1f} / {step.fps_mean:.1f}"
        lines.append(
            f"   {step.subscribers:>11}{step.server_cpu_percent:>9.1f}{per:>10}"
            f"{step.view_fps:>10.1f}{step.loop_lag_p99_ms:>10.1f}{received:>14}"
            f"{step.bench_cpu_percent:>9.0f}{others:>8.0f}"
        )
    lines += [
        "",
        f"   target: at most {TARGET_PERCENT}% of a core per subscriber from 10 on (shared path)",
    ]
    slow = [s.subscribers for s in figures.steps if s.subscribers and s.fps_min < 29]
    if slow:
        lines.append(
            f"   subscribers received under 29 fps at {slow}: see the server's view fps and "
            "loop lag (did it keep up?) and the clients' and others' CPU (did they?)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the fan-out benchmark, print the tables, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser, cores=True)
    parser.add_argument("--subscribers", metavar="N,N,...", help="steps (default 0,1,10,100,300)")
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        metavar="P,P",
        help="which ways of sending to measure, in order (default aiortc,shared)",
    )
    parser.add_argument(
        "--full-receivers",
        action="store_true",
        help="clients decrypt and reassemble every frame (aiortc's receive path)",
    )
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        parser.error(f"--paths takes {', '.join(PATHS)}, not {args.paths!r}")

    cpus = server_cpus(args.cores)
    clients = pin_clients(cpus)
    machine = MachineInfo.collect()
    for line in header("Tessera fan-out benchmark", machine, cpus):
        print(line, flush=True)
    if clients is not None:
        print(f"clients   pinned to CPU(s) {sorted(clients)}")
    config = QUICK if args.quick else FULL
    if args.subscribers:
        steps = tuple(int(n) for n in args.subscribers.split(",") if n.strip())
        config = dataclasses.replace(config, steps=steps)
    config = dataclasses.replace(
        config,
        server_cpus=frozenset(cpus) if cpus is not None else None,
        full_receivers=args.full_receivers,
    )

    started = time.monotonic()
    load_before = os.getloadavg()
    runs: dict[str, SubscriberFigures] = {}
    lines: list[str] = []
    for path in paths:
        print(f"-- {path} senders", flush=True)
        run_config = dataclasses.replace(config, aiortc_senders=path == "aiortc")
        runs[path] = dataclasses.replace(
            asyncio.run(run_subscriber_bench(run_config)), target_percent=TARGET_PERCENT
        )
        lines += ["", f"== {path} senders", *format_subscribers(runs[path]), *summary(runs[path])]
    figures = FanoutFigures(runs, load_before, os.getloadavg())
    compared, _ = comparison(figures)
    lines += [*packet_costs(figures), *compared]
    return finish("fanout", args.json, machine, figures, lines, started, cpus)


if __name__ == "__main__":
    raise SystemExit(main())
