"""Counting lost pings by sequence number (for the failback: "no ping lost at 20 Hz").

The gap meter (mobikectl.lab.pinger) measures silences; a failback should lose nothing, so
here every ping counts. iputils `ping -D -n -i 0.05 -I VIP SRV` runs inside rw; on stop
(SIGINT) the reply lines give the sequence numbers that came back. A sequence number
below the last answered one that never came back was lost; the unanswered tail was still
in flight at the stop (or, if it is long, the tunnel never came back: counted as lost).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

_REPLY = re.compile(r"^\[(?P<ts>[\d.]+)\].*icmp_seq=(?P<seq>\d+)(?!.*(?:DUP|Unreachable))")
_SENT = re.compile(r"(\d+) packets transmitted")


def parse(output: str, hz: float) -> dict:
    """`ping -D` output -> sent, received, lost (by sequence) and when the losses were."""
    replies: dict[int, float] = {}
    for line in output.splitlines():
        m = _REPLY.match(line.strip())
        if m and "bytes from" in line:
            replies.setdefault(int(m.group("seq")), float(m.group("ts")))
    sm = _SENT.search(output)
    sent = int(sm.group(1)) if sm else (max(replies) if replies else 0)
    last = max(replies) if replies else 0
    first_seq = 1
    lost_seqs = [s for s in range(first_seq, last + 1) if s not in replies]
    tail = sent - last
    tail_lost = tail if tail > max(2, int(hz)) else 0  # more than a second unanswered: not in flight
    return {"hz": hz, "sent": sent, "received": len(replies), "lost": len(lost_seqs) + tail_lost,
            "lost_seqs": lost_seqs[:50], "unanswered_tail": tail, "tail_counted_lost": bool(tail_lost)}


class SeqPing:
    def __init__(self, lab, src: str, dst: str | None = None, hz: float = 20.0, node: str = "rw") -> None:
        from mobikectl.lab.topology import SRV_ADDR

        self.lab, self.node, self.hz = lab, node, hz
        self.argv = ["ping", "-D", "-n", "-i", f"{1.0 / hz:.3f}", "-W", "1", "-I", src, dst or SRV_ADDR]
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None

    def start(self) -> "SeqPing":
        self.proc = self.lab.popen(self.node, self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.started_at = time.monotonic()
        return self

    def stop(self, timeout: float = 5.0) -> dict:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.proc = None
        report = parse(out or "", self.hz)
        report["duration_s"] = round(time.monotonic() - (self.started_at or time.monotonic()), 3)
        return report

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
