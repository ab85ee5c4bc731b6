"""The controller daemon inside a lab's road warrior, driven from outside: start it, ask its
status and events over the control socket, wait for conditions, stop it.

Shared by the demo and the benchmark. Engine times in the status (`now`, a move's
`decided_at`, ...) are the daemon's time.monotonic(); CLOCK_MONOTONIC is one clock for all
network namespaces, so they compare directly with ours. Event `time`s are wall-clock ISO
strings with milliseconds: `to_monotonic` maps them onto our monotonic clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from mobikectl.errors import MobikectlError, Unavailable

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"
LAB_POLICY = REPO_POLICIES / "lab.toml"
DEFAULT_POLICY = REPO_POLICIES / "default.toml"


def to_monotonic(iso: str, offset: float | None = None) -> float:
    """An event's wall-clock `time` (ISO 8601, UTC, ms) as our time.monotonic()."""
    offset = time.time() - time.monotonic() if offset is None else offset
    wall = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    return wall - offset


class Controller:
    """`mobikectl run` in the lab's rw namespace, its log in the lab's rw directory."""

    def __init__(self, lab, policy: str | os.PathLike | None = None, log_name: str = "mobikectl.log") -> None:
        self.lab = lab
        self.policy = str(policy) if policy else None
        self.socket = str(lab.node_dir("rw") / "mobikectl.sock")
        self.log_path = lab.node_dir("rw") / log_name
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> dict:
        """Start the daemon and wait until it follows charon's SA and every path answered
        (a move needs a known-good target). Returns the status view."""
        argv = [sys.executable, "-m", "mobikectl", "run", "--socket", self.socket]
        if self.policy:
            argv += ["--policy", self.policy]
        log = open(self.log_path, "ab")
        try:
            self.proc = self.lab.popen("rw", argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True)
        finally:
            log.close()
        self.pid = self.proc.pid  # `ip netns exec` execs: the PID is the daemon's

        def ready(v: dict) -> bool:
            return (bool(v.get("sas")) and v.get("chosen") is not None and bool(v.get("paths"))
                    and all(p["health"] == "up" for p in v["paths"]))
        return self.wait(ready, timeout, "the controller to follow the SA with every path up")

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # --- asking -------------------------------------------------------------------------------
    def status(self) -> dict:
        from mobikectl.adapters import control_client

        return control_client.request(self.socket, {"cmd": "status"})["status"]

    def events(self, since: int | None = None) -> list[dict]:
        from mobikectl.adapters import control_client

        return list(control_client.events(self.socket, follow=False, since=since))

    def reload(self, policy: str | os.PathLike) -> dict:
        """Load another policy file into the running daemon (all or nothing)."""
        from mobikectl.adapters import control_client

        return control_client.request(self.socket, {"cmd": "reload", "policy": str(Path(policy).resolve())})

    def last_seq(self) -> int:
        evs = self.events()
        return max((e.get("seq", 0) for e in evs), default=0)

    def wait(self, cond: Callable[[dict], bool], timeout: float, what: str, interval: float = 0.05) -> dict:
        """Poll the status until `cond(view)` holds; Unavailable after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise Unavailable(f"the controller exited ({self.proc.returncode}) while waiting for {what}: "
                                  f"{self.log_tail()}")
            try:
                view = self.status()
                if cond(view):
                    return view
            except MobikectlError as exc:  # not listening yet
                last_error = exc.message
            except OSError as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                raise Unavailable(f"timed out after {timeout:.0f} s waiting for {what}"
                                  + (f" ({last_error})" if last_error else ""))
            time.sleep(interval)


def sa_uplink(view: dict) -> str | None:
    sas = view.get("sas") or []
    return sas[0].get("uplink") if sas else None


def moves_since(view: dict, t0: float) -> list[dict]:
    return [m for m in view.get("moves", []) if m.get("decided_at") is not None and m["decided_at"] >= t0]


def confirmed_move_to(view: dict, uplink: str, t0: float) -> dict | None:
    """The first move decided after t0 toward `uplink` that charon confirmed."""
    for m in moves_since(view, t0):
        if m["to"]["uplink"] == uplink and m["outcome"] == "confirmed":
            return m
    return None
