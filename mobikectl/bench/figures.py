"""Pure arithmetic for the benchmark: summaries, ratios, the probe floor and probe costs.

The probe floor is the detection time the probe settings allow, before charon's move:
the path dies right after an answered probe (worst case) or right before a probe is due
(best case); `fall` consecutive probes must time out (each after `timeout_min` on a
low-RTT path), then the confirming burst of `confirm` probes `confirm_interval` apart must
all time out too.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mobikectl.engine.ids import ProbeKind
from mobikectl.engine.probing import PROBE_BYTES
from mobikectl.policy.model import ProbeTiming

ICMP4_ECHO_BYTES = PROBE_BYTES[(ProbeKind.ECHO, 4)][0]  # each way, as the engine counts it (36 B)
SECONDS_PER_MONTH = 30 * 86400


@dataclass(frozen=True)
class Summary:
    trials: int
    recovered: int
    median: float | None  # seconds, over recovered trials (None if none recovered)
    max: float | None
    not_recovered: int

    def to_json(self) -> dict:
        return {"trials": self.trials, "recovered": self.recovered, "not_recovered": self.not_recovered,
                "median_s": self.median, "max_s": self.max}


def summarize(gaps: list[float | None]) -> Summary:
    """`None` is a trial that did not recover within the deadline."""
    ok = [g for g in gaps if g is not None]
    return Summary(
        trials=len(gaps), recovered=len(ok), not_recovered=len(gaps) - len(ok),
        median=statistics.median(ok) if ok else None, max=max(ok) if ok else None,
    )


def ratio(alone: Summary, controller: Summary, deadline: float) -> str:
    """charon alone / charon + mobikectl, on medians; "> N×" when charon alone never
    recovered within `deadline`."""
    if controller.median is None or controller.median <= 0:
        return "n/a"
    if alone.not_recovered and (alone.median is None or alone.not_recovered >= alone.recovered):
        return f"> {deadline / controller.median:.0f}×"
    if alone.median is None:
        return "n/a"
    return f"{alone.median / controller.median:.1f}×"


def probe_floor(t: ProbeTiming) -> dict:
    """Detection time bounds (seconds) on a low-RTT path for these probe settings."""
    burst = (t.confirm - 1) * t.confirm_interval + t.timeout_min
    worst = t.fall * t.interval + t.timeout_min + burst
    best = (t.fall - 1) * t.interval + t.timeout_min + burst
    return {"best_s": round(best, 3), "worst_s": round(worst, 3)}


def standby_bytes_per_month(t: ProbeTiming, probe_bytes: int = 2 * ICMP4_ECHO_BYTES) -> float:
    """Bytes a month an idle standby path costs at its standby interval (no bursts)."""
    return SECONDS_PER_MONTH / t.standby_interval * probe_bytes


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"
