"""The benchmark run: charon alone (the lab's stock profile), then charon + mobikectl (the
controller profile and the daemon at the policy under test) on the same faults, the
costs (probe bytes, RSS and CPU), the false-move simulation; one document out.

Between the controller's trials the SA must get back to wlan0 through the controller's
failback. The first N of those failbacks are the failback trials, at the policy under test;
the others wait with the policy reloaded to a copy whose hold-down is 10 s (only the
failback timers differ), then the policy under test is reloaded before the next fault.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import tempfile
import time
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from mobikectl.bench import report, trials as tr, usage
from mobikectl.bench.controller import DEFAULT_POLICY, Controller
from mobikectl.bench.figures import probe_floor
from mobikectl.lab import charon
from mobikectl.lab.netns import require_root, require_tool

FAST_HOLD_DOWN = 10.0
ALONE_DOWN_TRIALS = 5


@dataclass
class Options:
    trials: int = 10
    faults: tuple[str, ...] = ("blackhole", "carrier", "down", "failback")
    name: str = "bench"
    policy: str = str(DEFAULT_POLICY)
    sim_days: float = 1.0


class Clock:
    """Progress lines on stderr with the elapsed time."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.t0 = time.monotonic()
        self.emit = emit

    def __call__(self, text: str) -> None:
        self.emit(f"[{time.monotonic() - self.t0:7.1f}s] {text}")


def check_host() -> None:
    require_root("mobikectl bench")
    for tool in ("ip", "nft", "ping", "sysctl"):
        require_tool(tool)
    charon.require_strongswan()


def machine() -> dict:
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    summary = f"{socket.gethostname()}, {platform.system()} {platform.release()}, {os.cpu_count()} CPUs {model}".strip()
    return {"summary": summary, "host": socket.gethostname(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "cpu_model": model, "load_at_start": load}


def toml_dump(doc: dict) -> str:
    """Enough TOML for a policy file (tables, strings, numbers, booleans, lists)."""
    def val(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    out: list[str] = []

    def table(prefix: str, d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix and scalars:
            out.append(f"[{prefix}]")
        for k, v in scalars.items():
            out.append(f"{k} = {val(v)}")
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", doc)
    return "\n".join(out) + "\n"


def fast_policy_file(policy_path: str, hold_down: float) -> str | None:
    """A copy of the policy with a 10 s failback (None: already that short)."""
    if hold_down <= FAST_HOLD_DOWN:
        return None
    with open(policy_path, "rb") as f:
        doc = tomllib.load(f)
    doc.setdefault("failback", {}).update(hold_down=f"{FAST_HOLD_DOWN:g}s", min_dwell=f"{FAST_HOLD_DOWN:g}s")
    fd, path = tempfile.mkstemp(prefix="mobikectl-bench-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(toml_dump(doc))
    return path


def run_alone(lab, opts: Options, say: Clock, out: list, costs: dict) -> None:
    say(f"charon alone: lab {lab.name} up (stock profile: prefer_best_path = no, no controller)")
    lab.up(uplinks=[tr.ACTIVE, tr.STANDBY], profile="stock")
    pid = lab.state.pids.get("rw")
    first = usage.proc_sample(pid)
    plan = []
    if "down" in opts.faults:
        plan += [("down", i) for i in range(1, min(ALONE_DOWN_TRIALS, opts.trials) + 1)]
    plan += [(f, 1) for f in ("blackhole", "carrier") if f in opts.faults]
    for fault, i in plan:
        n = sum(1 for f, _ in plan if f == fault)
        say(f"charon alone: {fault} {i}/{n}" + (" (one trial: up to 30 s)" if fault != "down" else ""))
        trial = tr.alone_fault(lab, fault, i)
        out.append(trial)
        say(f"  gap {'not recovered' if trial.gap_s is None else f'{trial.gap_s:.3f} s'}; {trial.note}")
        say(f"  back to the start: {tr.alone_restore(lab, say)}")
    if "failback" in opts.faults:
        say("charon alone: failback 1/1 (wlan0 down, charon moves to wwan0, clear, watch)")
        trial = tr.alone_failback(lab, 1, say)
        out.append(trial)
        say(f"  {'failed back' if trial.failed_back else 'no failback'}; {trial.note}")
    costs["charon_alone"] = usage.cpu_between(first, usage.proc_sample(pid))
    lab.down()


def run_controller(lab, opts: Options, say: Clock, out: list, costs: dict, probes: dict) -> None:
    from mobikectl.policy.load import load_policy

    policy = load_policy(opts.policy)
    fast = fast_policy_file(opts.policy, policy.failback.hold_down)
    try:
        say(f"charon + mobikectl: lab {lab.name} up (controller profile)")
        lab.up(uplinks=[tr.ACTIVE, tr.STANDBY], profile="controller")
        ctl = Controller(lab, opts.policy, log_name="mobikectl-bench.log")
        ctl.start()
        say(f"  controller up (pid {ctl.pid}, policy {opts.policy}, log {ctl.log_path})")
        charon_pid = lab.state.pids.get("rw")
        s_ctl, s_charon = usage.proc_sample(ctl.pid), usage.proc_sample(charon_pid)
        c0, w0 = ctl.status().get("probe_counters", {}), time.monotonic()
        faults = [f for f in opts.faults if f != "failback"] or ["blackhole"]
        want_failbacks = opts.trials if "failback" in opts.faults else 0
        failbacks = 0
        for fi, fault in enumerate(faults):
            for i in range(1, opts.trials + 1):
                say(f"controller: {fault} {i}/{opts.trials}")
                trial = ctl_trial = tr.controller_fault(lab, ctl, fault, i)
                out.append(trial)
                ph = ctl_trial.phases
                say(f"  gap {'NOT RECOVERED' if trial.gap_s is None else f'{trial.gap_s:.3f} s'}"
                    + (f" (decision at {ph['decision_s']:.3f} s, ike-update at {ph['ike_update_s']:.3f} s)"
                       if ph.get("decision_s") is not None and ph.get("ike_update_s") is not None else "")
                    + (f"; {trial.note}" if trial.note else ""))
                last = fi == len(faults) - 1 and i == opts.trials
                measure = failbacks < want_failbacks
                if last and not measure:
                    break
                if measure:
                    say(f"  failback {failbacks + 1}/{want_failbacks}: clear, wait for the failback at "
                        f"hold-down {policy.failback.hold_down:g} s")
                else:
                    say(f"  back to the start: clear, failback at a {FAST_HOLD_DOWN:g} s hold-down"
                        if fast else "  back to the start: clear, wait for the failback")
                fb = tr.controller_restore(lab, ctl, opts.policy, measure=measure, fast_policy=fast,
                                           index=failbacks + 1, progress=say)
                if fb is not None:
                    failbacks += 1
                    out.append(fb)
                    say(f"  failback: {fb.lost} of {fb.sent} pings lost at 20 Hz, move "
                        f"{'-' if fb.move_s is None else f'{fb.move_s:.3f} s'}, "
                        f"{fb.phases.get('failback_after_clear_s')} s after the clear")
        view = ctl.status()
        c1, w1 = view.get("probe_counters", {}), time.monotonic()
        costs["controller"] = usage.cpu_between(s_ctl, usage.proc_sample(ctl.pid))
        costs["charon_with_controller"] = usage.cpu_between(s_charon, usage.proc_sample(charon_pid))
        probes["rates"] = usage.probe_rates(c0, c1, w1 - w0)
        cell = policy.class_of(tr.STANDBY)
        per_probe = usage.bytes_per_probe(c1, tr.STANDBY)
        mb = usage.idle_standby_mb_month(per_probe, cell.probe.standby_interval)
        from mobikectl.bench.figures import standby_bytes_per_month

        probes["idle_standby"] = {"uplink": tr.STANDBY, "standby_interval_s": cell.probe.standby_interval,
                                  "bytes_per_probe": None if per_probe is None else round(per_probe, 1),
                                  "mb_per_month": mb,
                                  "engine_mb_per_month": round(standby_bytes_per_month(cell.probe) / 1e6, 3),
                                  **report.standby_target(mb)}
        ctl.stop()
        keep = Path(tempfile.gettempdir()) / f"mobikectl-bench-{lab.name}-daemon.log"
        shutil.copyfile(ctl.log_path, keep)  # the lab directory goes with the lab
        probes["daemon_log"] = str(keep)
        say(f"  controller stopped (its log kept in {keep})")
    finally:
        if fast:
            os.unlink(fast)


def run_bench(opts: Options, emit: Callable[[str], None]) -> dict:
    from mobikectl.lab.api import Lab
    from mobikectl.policy.load import load_policy
    from mobikectl.sim import simulate_false_moves

    check_host()
    policy = load_policy(opts.policy)  # a bad policy fails before any lab exists
    say = Clock(emit)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lab = Lab(opts.name)
    trials: list[tr.Trial] = []
    costs: dict = {}
    probes: dict = {}
    try:
        if any(f in opts.faults for f in ("blackhole", "carrier", "down", "failback")):
            run_alone(lab, opts, say, trials, costs)
        run_controller(lab, opts, say, trials, costs, probes)
    finally:
        lab.down()
    sim = None
    if opts.sim_days > 0:
        say(f"false moves: the engine over {opts.sim_days:g} simulated days at 3% random loss each way on wlan0")
        t0 = time.monotonic()
        sim = simulate_false_moves(policy, loss=0.03, days=opts.sim_days)
        sim = {k: v for k, v in sim.items() if k != "move_log"} | {"move_log": sim["move_log"][:5],
                                                                     "seconds": round(time.monotonic() - t0, 1)}
        sim.update(report.false_move_target(sim["false_moves_per_day"]))
        say(f"  {sim['false_moves']} false moves in {opts.sim_days:g} days")
    active = policy.class_of(tr.ACTIVE)
    floor = {"class": active.cls.value, **probe_floor(active.probe)}
    daemon_log = probes.pop("daemon_log", None)
    return report.build(trials, list(opts.faults), date=started, daemon_log=daemon_log, machine=machine(), policy=str(Path(opts.policy)),
                        trials=opts.trials, probe_floor=floor, probes=probes, usage=costs, false_moves=sim,
                        seconds=round(time.monotonic() - say.t0, 1))
