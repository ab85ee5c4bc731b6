"""What a process and the probes cost: /proc readers and probe byte arithmetic.

`proc_sample(pid)` reads VmRSS/VmHWM (/proc/PID/status) and utime+stime (/proc/PID/stat,
in clock ticks); `cpu_between(a, b)` is the CPU share between two samples (1.0 = one
core busy). `probe_rates(first, last)` turns two `probe_counters` snapshots of the
daemon's status into bytes per second per uplink (IP headers included, every probe counted:
bursts, rises and the data probe too). The parsers take text, so they are unit-tested
without a process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from mobikectl.bench.figures import SECONDS_PER_MONTH

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcSample:
    pid: int
    at: float  # time.monotonic()
    rss_kb: int | None
    hwm_kb: int | None
    cpu_ticks: int | None  # utime + stime


def parse_status(text: str) -> dict[str, int]:
    """VmRSS and VmHWM in kB from /proc/PID/status text."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0])
    return out


def parse_stat_ticks(text: str) -> int:
    """utime + stime (clock ticks) from /proc/PID/stat text; the command may hold spaces
    and parentheses, so fields are counted after the last ')'."""
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): utime is field 14, stime field 15
    return int(rest[11]) + int(rest[12])


def proc_sample(pid: int | None) -> ProcSample | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            st = parse_status(f.read())
        with open(f"/proc/{pid}/stat") as f:
            ticks = parse_stat_ticks(f.read())
    except (OSError, ValueError, IndexError):
        return None
    return ProcSample(pid, time.monotonic(), st.get("VmRSS"), st.get("VmHWM"), ticks)


def cpu_between(a: ProcSample | None, b: ProcSample | None) -> dict | None:
    """RSS/HWM at the end, CPU share over the window (needs the same PID)."""
    if a is None or b is None or a.pid != b.pid:
        return None
    wall = b.at - a.at
    cpu_s = None if a.cpu_ticks is None or b.cpu_ticks is None else (b.cpu_ticks - a.cpu_ticks) / CLK_TCK
    return {"pid": b.pid, "rss_kb": b.rss_kb, "hwm_kb": b.hwm_kb, "wall_s": round(wall, 1),
            "cpu_s": None if cpu_s is None else round(cpu_s, 2),
            "cpu_percent": None if cpu_s is None or wall <= 0 else round(100 * cpu_s / wall, 2)}


def counters_by_uplink(probe_counters: dict) -> dict[str, dict[str, int]]:
    """Sum the daemon's per-path `probe_counters` per uplink."""
    out: dict[str, dict[str, int]] = {}
    for pid, c in (probe_counters or {}).items():
        up = c.get("uplink") or pid.split(":", 1)[0]
        acc = out.setdefault(up, {"tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0})
        for k in acc:
            acc[k] += int(c.get(k, 0))
    return out


def probe_rates(first: dict, last: dict, seconds: float) -> dict[str, dict]:
    """Bytes per second per uplink between two `probe_counters` snapshots."""
    a, b = counters_by_uplink(first), counters_by_uplink(last)
    out = {}
    for up in sorted(b):
        d = {k: b[up][k] - a.get(up, {}).get(k, 0) for k in b[up]}
        total = d["tx_bytes"] + d["rx_bytes"]
        out[up] = {**d, "seconds": round(seconds, 1),
                   "bytes_per_s": round(total / seconds, 1) if seconds > 0 else None}
    return out


def bytes_per_probe(probe_counters: dict, uplink: str) -> float | None:
    """Mean bytes of one probe and its answer on `uplink` (IP headers included)."""
    c = counters_by_uplink(probe_counters).get(uplink)
    if not c or not c["tx_packets"]:
        return None
    return (c["tx_bytes"] + c["rx_bytes"]) / c["tx_packets"]


def idle_standby_mb_month(per_probe_bytes: float | None, standby_interval: float) -> float | None:
    """An idle standby path probed every `standby_interval` s, at the measured probe size."""
    if per_probe_bytes is None or standby_interval <= 0:
        return None
    return round(SECONDS_PER_MONTH / standby_interval * per_probe_bytes / 1e6, 3)
