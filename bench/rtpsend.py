"""The fan-out worker's cost per subscriber-packet: `python -m bench.rtpsend [--subscribers N]`.

What the shared fan-out's worker thread spends per packet per subscriber, in
thread CPU time (not disturbed by other processes, unlike wall time): the
header rewrite alone, then with SRTP protection, then with the `sendmmsg`
to a loopback socket that does not read (the kernel drops at the receiver,
as for a subscriber that stops reading; a reading receiver adds its kernel
receive path to the sender's system call on loopback).
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Callable

from pylibsrtp import Policy, Session

from tessera.media.rtpheader import ABS_SEND_TIME_URI, MID_URI, RtpHeaderTemplate
from tessera.media.udpbatch import UdpBatchSender, sendmmsg_available

PAYLOAD = 1150  # bytes: a full packet of a 720p frame


def measure(subscribers: int, packets: int, frames: int) -> dict[str, float]:
    """Microseconds of thread CPU per subscriber-packet for each stage."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    senders = []
    for number in range(subscribers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        policy.allow_repeat_tx = True
        template = RtpHeaderTemplate(1000 + number, 96, {MID_URI: 1, ABS_SEND_TIME_URI: 2}, "0")
        senders.append((template, Session(policy), UdpBatchSender(sock, sink.getsockname())))
    payloads = [os.urandom(PAYLOAD) for _ in range(packets)]
    base = [0]

    def run(protect: bool, send: bool) -> float:
        base[0] += frames * packets
        started = time.thread_time()
        for frame in range(frames):
            for template, session, route in senders:
                template.set_abs_send_time(frame)
                wrap: Callable[[bytes], bytes] = session.protect if protect else bytes
                first = base[0] + frame * packets
                datagrams = [
                    wrap(template.packet(first + i, frame * 3000, i == packets - 1, payload))
                    for i, payload in enumerate(payloads)
                ]
                if send:
                    route.send(datagrams)
        return (time.thread_time() - started) / (frames * subscribers * packets) * 1e6

    try:
        return {
            "header": run(False, False),
            "header + SRTP": run(True, False),
            "header + SRTP + send": run(True, True),
        }
    finally:
        for _, _, route in senders:
            route.sock.close()
        sink.close()


def main(argv: list[str] | None = None) -> int:
    """Print the cost of each stage."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.rtpsend", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--packets", type=int, default=10, help="per frame")
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args(argv)
    figures = measure(args.subscribers, args.packets, args.frames)
    print(
        f"{args.subscribers} subscribers x {args.packets} packets of {PAYLOAD} bytes x "
        f"{args.frames} frames; sendmmsg: {sendmmsg_available()}; load average "
        + "/".join(f"{x:.2f}" for x in os.getloadavg())
    )
    for stage, micros in figures.items():
        print(f"  {stage:<22}{micros:6.2f} us of thread CPU per subscriber-packet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
