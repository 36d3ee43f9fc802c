"""The mixer benchmark: `python -m bench.mixer [--quick] [--json FILE] [--no-subscribers]`.

Prints, in one run on this machine:

1. process CPU per output frame of a 3x3 view at 1280x720 30 fps fed by nine
   640x360 VP8 inputs, split into decode / composite / encode (median, p90);
2. the same for a codec-only pipeline (decode + encode of the very same
   composed frames, no composite) and the ratio, against "compositing adds at
   most 25%";
3. whether the view holds 30 fps within half a core (16.7 ms per frame);
4. the server CPU of adding 1, 10 and 50 subscribers of one format to a view,
   end to end with real aiortc peers on loopback (server in its own process).

The full run takes about a minute on a 2-core machine; `--quick` a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from typing import Any

from .machine import CLOCK_TICKS, MachineInfo
from .pipeline import QUICK_MIXER, MixerBenchConfig, MixerFigures, run_mixer_bench
from .report import add_common_arguments, finish, header, verdict
from .subscribers import (
    QUICK_SUBSCRIBERS,
    SubscriberBenchConfig,
    SubscriberFigures,
    run_subscriber_bench,
)


def format_mixer(figures: MixerFigures) -> list[str]:
    """Parts 1-3 as a table and three verdict lines."""
    c = figures.config
    t, b = figures.tessera, figures.codec_only
    settings = c.encoder_settings()
    lines = [
        "",
        f"1-3. 3x3 view ({figures.regions} regions, fluid, {c.fit_policy}) "
        f"{c.width}x{c.height} @ {c.framerate} fps, VP8 out at {settings.bitrate // 1000} kbit/s",
        f"     inputs: {c.inputs} x {c.input_width}x{c.input_height} VP8 from aiortc's encoder, "
        f"{figures.input_kbps:.0f} kbit/s each, {c.input_seconds:g} s looped "
        f"(keyframes staggered)",
        f"     process CPU per output frame (all threads), {t.frames} frames after "
        f"{c.period} warm-up frames",
        "",
        f"     {'ms per output frame':<30}{'Tessera':>24}{'codec-only':>26}",
        f"     {'':<30}{'median':>8}{'p90':>8}{'mean':>8}{'median':>10}{'p90':>8}{'mean':>8}",
    ]
    names = {
        "decode": f"decode {c.inputs} x {c.input_height}p",
        "composite": "composite (VideoCompositor)",
        "encode": f"encode {c.height}p (VideoEncoder)",
    }
    for stage, name in names.items():
        a = t.stages[stage]
        row = f"     {name:<30}{a.median_ms:>8.2f}{a.p90_ms:>8.2f}{a.mean_ms:>8.2f}"
        other = b.stages.get(stage)
        if other is None:
            row += f"{'-':>10}{'-':>8}{'-':>8}"
        else:
            row += f"{other.median_ms:>10.2f}{other.p90_ms:>8.2f}{other.mean_ms:>8.2f}"
        lines.append(row)
    lines.append(
        f"     {'total':<30}{t.total.median_ms:>8.2f}{t.total.p90_ms:>8.2f}{t.total.mean_ms:>8.2f}"
        f"{b.total.median_ms:>10.2f}{b.total.p90_ms:>8.2f}{b.total.mean_ms:>8.2f}"
    )
    same = "identical" if figures.same_bitstream else "DIFFERENT"
    lines += [
        "",
        f"     both encoders produced {same} bitstreams ({t.output_kbps:.0f} kbit/s): "
        "they encoded the same pictures",
        f"     CPU on helper threads (not the calling thread): Tessera "
        f"{100 * t.helper_thread_share:.0f}%, codec-only {100 * b.helper_thread_share:.0f}%",
        "",
        f"  2. Tessera / codec-only = {figures.ratio:.3f}"
        f" (medians; means {figures.ratio_mean:.3f}):"
        f" compositing adds {100 * (figures.ratio - 1):.1f}%"
        f" - target <= {100 * (figures.target_ratio - 1):.0f}%: {verdict(figures.meets_ratio)}",
        f"  3. whole view {t.total.median_ms:.2f} ms per frame (p90 {t.total.p90_ms:.2f})"
        f" vs {figures.budget_ms:.1f} ms = {figures.core_percent:.0f}% of one core at"
        f" {c.framerate} fps - 30 fps within half a core: {verdict(figures.holds_frame_rate)}",
        f"     (machine busy {figures.machine_busy_cores:.2f} cores during parts 1-3, this process"
        f" {figures.own_cores:.2f}: other work on the machine "
        f"{max(0.0, figures.machine_busy_cores - figures.own_cores):.2f} cores)",
    ]
    return lines


def format_subscribers(figures: SubscriberFigures) -> list[str]:
    """Part 4 as a table of windows and the cost per added subscriber."""
    c = figures.config
    lines = [
        "",
        f"4. subscribers of one view format (vp8 1280x720, shared encoder), 1 publisher "
        f"{c.width}x{c.height}; server in its own process; {c.window:g} s windows",
        "",
        f"     {'subscribers':>11}{'server CPU':>12}{'frames/s per sub':>18}{'kbit/s':>9}"
        f"{'connect':>9}{'bench proc':>12}{'machine':>9}",
        f"     {'':>11}{'% core':>12}{'mean':>10}{'min':>8}{'per sub':>9}{'s':>9}{'% core':>12}"
        f"{'% core':>9}",
    ]
    for s in figures.steps:
        fps = f"{s.fps_mean:>10.1f}{s.fps_min:>8.1f}" if s.subscribers else f"{'-':>10}{'-':>8}"
        kbps = f"{s.kbps_mean:>9.0f}" if s.subscribers else f"{'-':>9}"
        lines.append(
            f"     {s.subscribers:>11}{s.server_cpu_percent:>12.1f}{fps}{kbps}"
            f"{s.connect_seconds:>9.1f}{s.bench_cpu_percent:>12.1f}{s.machine_busy_percent:>9.0f}"
        )
    resolution = 100 / CLOCK_TICKS / c.window
    lines += [
        "",
        "     server CPU per added subscriber (% of one core; /proc counts in clock ticks,"
        f" +-{resolution:.2f}% per window):",
    ]
    for cost in figures.costs:
        note = ""
        if cost.label.startswith("first"):
            note = "  the first one starts the view: decode, composite, 720p encode"
        lines.append(
            f"     {cost.start:>4} -> {cost.end:<4}{cost.percent_per_subscriber:>8.2f}%  {note}"
        )
    headline = figures.headline
    if headline is not None:
        lines.append(
            f"     per added subscriber {headline.start} -> {headline.end}: "
            f"{headline.percent_per_subscriber:.2f}% of a core"
            f" - target <= {figures.target_percent:g}% (every span after the first): "
            f"{verdict(figures.meets_target)}"
        )
    if c.full_receivers:
        taps = (
            "all before their receivers started"
            if not figures.late_taps
            else (f"{figures.late_taps} AFTER their receiver started (those decoded)")
        )
        lines.append(f"     encoded-frame taps (no decoding in the clients): {taps}")
    else:
        lines.append(
            "     clients count frames from the RTP headers (no decrypting, no decoding);"
            " --full-receivers for aiortc's whole receive path"
        )
    if figures.server_log:
        lines.append(f"     the server logged {len(figures.server_log)} warning line(s), last:")
        lines.append(f"       {figures.server_log[-1][:150]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables, write the figures as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.mixer", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--no-subscribers", "--skip-subscribers", action="store_true", help="skip part 4"
    )
    parser.add_argument(
        "--subscribers",
        metavar="N,N,...",
        help="subscriber counts of part 4 (default 0,1,10,50; quick 0,1,2)",
    )
    parser.add_argument("--window", type=float, metavar="S", help="seconds per part-4 window")
    args = parser.parse_args(argv)

    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera mixer benchmark", machine):
        print(line, flush=True)
    mixer_config = QUICK_MIXER if args.quick else MixerBenchConfig()
    mixer = run_mixer_bench(mixer_config)
    for line in format_mixer(mixer):
        print(line, flush=True)
    figures: dict[str, Any] = {"mixer": mixer}

    if not args.no_subscribers:
        sub_config = QUICK_SUBSCRIBERS if args.quick else SubscriberBenchConfig()
        if args.subscribers:
            counts = tuple(int(n) for n in args.subscribers.split(",") if n.strip())
            sub_config = dataclasses.replace(sub_config, steps=counts)
        if args.window:
            sub_config = dataclasses.replace(sub_config, window=args.window)
        subscribers = asyncio.run(run_subscriber_bench(sub_config))
        for line in format_subscribers(subscribers):
            print(line, flush=True)
        figures["subscribers"] = subscribers

    # The tables are printed as each part ends (part 4 takes a while); finish adds the JSON.
    return finish("mixer", args.json, machine, figures, [""], started)


if __name__ == "__main__":
    raise SystemExit(main())
