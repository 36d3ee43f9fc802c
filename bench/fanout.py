"""Fan-out: `python -m bench.fanout [--quick] [--cores N] [--json FILE]`.

The server CPU of one view (3x3 layout, 1280x720 30 fps VP8, one 640x360
publisher) with 1, 10, 50 and 100 subscribers of one format, end to end with
real aiortc peers on loopback. The server runs in its own process (pinned to
N cores with --cores; the clients then get the other cores), so its CPU is
read from /proc apart from the clients. The subscribers neither decode nor
decrypt: each counts the view's frames from the clear RTP headers of the
SRTP packets it receives, which proves the media flows without 100 Python
receive paths in the benchmark process (`--full-receivers`: aiortc's whole
receive path with an encoded-frame tap, as before).

Target: at most 1% of a core per added subscriber (every span after the
first, which also starts the view). Under two minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

from .machine import MachineInfo
from .mixer import format_subscribers
from .report import add_common_arguments, finish, header, pin_clients, server_cpus
from .subscribers import SubscriberBenchConfig, SubscriberFigures, run_subscriber_bench

FULL = SubscriberBenchConfig(steps=(0, 1, 10, 50, 100), window=5.0, settle=5.0, batch=10)
QUICK = SubscriberBenchConfig(steps=(0, 1, 3), window=1.5, settle=0.5, batch=3)


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
        "   target: at most 1% of a core per subscriber (every span after the first, above)",
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
    parser.add_argument("--subscribers", metavar="N,N,...", help="steps (default 0,1,10,50,100)")
    parser.add_argument(
        "--full-receivers",
        action="store_true",
        help="clients decrypt and reassemble every frame (aiortc's receive path)",
    )
    args = parser.parse_args(argv)

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
    figures = asyncio.run(run_subscriber_bench(config))
    return finish(
        "fanout",
        args.json,
        machine,
        figures,
        [*format_subscribers(figures), *summary(figures)],
        started,
        cpus,
    )


if __name__ == "__main__":
    raise SystemExit(main())
