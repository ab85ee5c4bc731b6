"""A tunnel gap meter: pings from the virtual IP at a fixed rate and measures silences.

Runs inside rw (raw ICMP socket bound to the source address):

    ip netns exec mk-default-rw python -m mobikectl.lab.pinger --src 10.99.0.1 \\
        --dst 10.200.0.10 --hz 100 --duration 20

or from Python through `Pinger(lab, src=...)`, which spawns exactly that.

Marking "the fault starts now" from outside: send SIGUSR1, or write `mark` (now) or
`mark T` (T an absolute time.monotonic(); CLOCK_MONOTONIC is shared across network
namespaces) to its stdin. `stop` on stdin or SIGTERM ends the run early. The report is
one JSON document on stdout.

The gap after the mark is the longest silence between two consecutive replies whose end
lies after the mark, so replies already in flight while the fault was applied do not hide
it. A silence still open at the end counts too (ending at the end of the run), and then
`recovered` is false.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

SCHEMA = 1


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, size: int) -> bytes:
    payload = struct.pack("!d", time.monotonic()).ljust(max(size, 8), b"\0")
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
    csum = checksum(header + payload)
    return struct.pack("!BBHHH", 8, 0, csum, ident, seq & 0xFFFF) + payload


def analyze(replies: list[float], start: float, end: float, mark: float | None, interval: float) -> dict:
    """Silences between consecutive reply times (plus start->first and last->end)."""
    ref = mark if mark is not None else start
    points = [start, *sorted(replies)]
    silences = [(a, b, False) for a, b in zip(points, points[1:])]
    silences.append((points[-1], end, True))  # still open at the end
    after = [s for s in silences if s[1] > ref]
    longest = max(after, key=lambda s: s[1] - s[0]) if after else None
    open_gap = end - points[-1]
    threshold = max(5 * interval, 0.1)
    notable = [s for s in silences if s[1] - s[0] > max(2.5 * interval, 0.02) and s[1] > ref]

    def ms(x: float) -> float:
        return round(x * 1000, 1)

    return {
        "max_gap_ms": ms(longest[1] - longest[0]) if longest else None,
        "max_gap_from_ms": ms(longest[0] - ref) if longest else None,
        "max_gap_open": bool(longest and longest[2]),
        "open_gap_ms": ms(open_gap),
        "recovered": open_gap <= threshold and bool(replies),
        "replies_after_mark": sum(1 for r in replies if r > ref),
        "gaps": [{"from_ms": ms(a - ref), "to_ms": ms(b - ref), "ms": ms(b - a), "open": o} for a, b, o in notable],
    }


def run(src: str, dst: str, hz: float, duration: float, size: int = 56, mark_at: float | None = None,
        out=sys.stdout) -> dict:
    interval = 1.0 / hz
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.bind((src, 0))
    sock.setblocking(False)
    state = {"mark": mark_at, "stop": False}
    signal.signal(signal.SIGUSR1, lambda *_: state.__setitem__("mark", time.monotonic()))
    signal.signal(signal.SIGTERM, lambda *_: state.__setitem__("stop", True))
    signal.signal(signal.SIGINT, lambda *_: state.__setitem__("stop", True))
    stdin = sys.stdin if not sys.stdin.isatty() else None
    sent = send_errors = 0
    replies: list[float] = []
    seen: set[int] = set()
    print("ready", file=sys.stderr, flush=True)
    start = time.monotonic()
    deadline = start + duration
    next_send = start
    while not state["stop"]:
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= next_send:
            try:
                sock.sendto(echo_request(ident, sent, size), (dst, 0))
            except OSError:
                send_errors += 1
            sent += 1
            next_send = start + sent * interval
            continue
        watch = [sock] + ([stdin] if stdin else [])
        try:
            ready, _, _ = select.select(watch, [], [], max(0.0, min(next_send, deadline) - now))
        except InterruptedError:
            continue
        if sock in ready:
            while True:
                try:
                    data, addr = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                at = time.monotonic()
                ihl = (data[0] & 0x0F) * 4
                if len(data) < ihl + 8 or addr[0] != dst:
                    continue
                kind, _, _, rid, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if kind == 0 and rid == ident and seq not in seen:
                    seen.add(seq)
                    replies.append(at)
        if stdin and stdin in ready:
            line = stdin.readline()
            if not line or line.strip() == "stop":
                if not line:
                    stdin = None
                else:
                    state["stop"] = True
            elif line.startswith("mark"):
                parts = line.split()
                state["mark"] = float(parts[1]) if len(parts) > 1 else time.monotonic()
    end = time.monotonic()
    report = {"schema": SCHEMA, "src": src, "dst": dst, "hz": hz, "sent": sent, "received": len(replies),
              "send_errors": send_errors, "start": start, "end": end, "mark": state["mark"],
              "duration_s": round(end - start, 3),
              **analyze(replies, start, end, state["mark"], interval)}
    json.dump(report, out)
    out.write("\n")
    out.flush()
    return report


class Pinger:
    """Spawns the gap meter inside a lab node (rw by default) and collects its report."""

    def __init__(self, lab, src: str, dst: str | None = None, hz: float = 100, duration: float = 60,
                 node: str = "rw", size: int = 56) -> None:
        from mobikectl.lab.topology import SRV_ADDR

        self.lab, self.node = lab, node
        self.argv = [sys.executable, "-m", "mobikectl.lab.pinger", "--src", src, "--dst", dst or SRV_ADDR,
                     "--hz", str(hz), "--duration", str(duration), "--size", str(size)]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 5.0) -> "Pinger":
        self.proc = self.lab.popen(self.node, self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        ready, _, _ = select.select([self.proc.stderr], [], [], timeout)
        line = self.proc.stderr.readline() if ready else ""
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"pinger did not start: {line.strip() or 'no answer'}")
        return self

    def mark(self, at: float | None = None) -> float:
        at = time.monotonic() if at is None else at
        self.proc.stdin.write(f"mark {at!r}\n")
        self.proc.stdin.flush()
        return at

    def stop(self, timeout: float = 5.0) -> dict:
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        out, err = self.proc.communicate(timeout=timeout)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise RuntimeError(f"pinger gave no report: {err.strip()[-300:]}") from None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobikectl.lab.pinger", description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, help="source address (the virtual IP)")
    p.add_argument("--dst", default="10.200.0.10", help="the protected host")
    p.add_argument("--hz", type=float, default=100.0)
    p.add_argument("--duration", type=float, default=30.0, help="seconds (stop earlier with `stop` or SIGTERM)")
    p.add_argument("--size", type=int, default=56, help="ICMP payload bytes")
    p.add_argument("--mark-at", type=float, default=None, help="fault start as absolute time.monotonic()")
    args = p.parse_args(argv)
    run(args.src, args.dst, args.hz, args.duration, args.size, args.mark_at)
    return 0


if __name__ == "__main__":
    sys.exit(main())
