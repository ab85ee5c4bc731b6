"""The controller as a user runs it, for the lab tests (tests/netns/test_controller*.py).

    ctl_policy   a policy file: policies/default.toml with a short hold-down and min dwell
                 (HOLD_DOWN s each) and a 1 s standby probe on Wi-Fi, checked with
                 `mobikectl policy check`
    controller   function-scoped Controller on `mobike_lab` (wlan0 + wwan0), started and
                 ready; at teardown every daemon it started is stopped and the lab is put
                 back as it was found (no impairment, no route of ours or of the test, the
                 same-looking SA on wlan0 carrying traffic)

Everything goes through the CLI, as a user runs it:

    mobikectl lab exec --name LAB rw -- mobikectl run --socket S --policy P   (the daemon)
    mobikectl status --lab LAB --json / mobikectl events --lab LAB --json     (its view)
    mobikectl lab impair|clear|restart-charon --name LAB ...                  (the faults)

Each daemon run logs (stderr) to its own file under the test's tmp dir; the tail of every
run's log is printed at teardown, so a failing test shows what the daemon did.
Waits poll a condition against a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from mobikectl.lab import topology as t
from mobikectl.lab.fixtures import poll
from mobikectl.errors import Unavailable

__all__ = ["ctl_policy", "controller"]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MOBIKECTL = str(BIN / "mobikectl")
HOLD_DOWN = 5.0  # [failback] hold_down and min_dwell of the test policy, seconds
WLAN, WWAN = t.UPLINKS["wlan0"], t.UPLINKS["wwan0"]
TEST_ROUTE = "198.51.100.0/24"  # TEST-NET-2: the "unrelated route" of the route-churn test


def cli_env() -> dict[str, str]:
    """The user's environment with the venv's bin first, so `mobikectl` inside `lab exec` is ours."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}


def cli(*args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([MOBIKECTL, *args], capture_output=True, text=True, env=cli_env(), timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"mobikectl {' '.join(args)} -> exit {done.returncode}: {done.stderr.strip()}")
    return done


# --- what charon says (the lab's own view, independent of the daemon) --------------------

def rw_sas(lab) -> list[dict]:
    try:
        return lab.list_sas(t.RW)
    except Unavailable:
        return []


def spis(sa: dict) -> tuple[str, str]:
    return (sa["initiator_spi"], sa["responder_spi"])


def settled_sa(lab, local: str | None = None, remote: str | None = None) -> dict | None:
    """rw's one IKE_SA if it is ESTABLISHED with no exchange in flight (and on local/remote)."""
    sas = rw_sas(lab)
    if len(sas) != 1:
        return None
    sa = sas[0]
    if sa["state"] != "ESTABLISHED" or sa["tasks_active"]:
        return None
    if local is not None and sa["local_host"] != local:
        return None
    if remote is not None and sa["remote_host"] != remote:
        return None
    return sa


def steering_routes(lab) -> list[str]:
    """`ip route show proto 73` in rw: the controller's steering routes."""
    done = lab.exec(t.RW, ["ip", "route", "show", "proto", "73"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return sorted(line.strip() for line in done.stdout.splitlines() if line.strip())


# --- the daemon --------------------------------------------------------------------------

class Controller:
    """`mobikectl run` in the lab's rw, started and stopped as a user (or a service manager) would."""

    def __init__(self, lab, policy: Path, logdir: Path) -> None:
        self.lab = lab
        self.policy = policy
        self.logdir = logdir
        self.socket = str(lab.node_dir(t.RW) / "mobikectl.sock")
        self.proc: subprocess.Popen | None = None
        self.runs: list[tuple[subprocess.Popen, Path]] = []

    # lifecycle
    def start(self, *extra: str, ready: bool = True, timeout: float = 20.0) -> "Controller":
        assert self.proc is None or self.proc.poll() is not None, "a daemon of this test is still running"
        log = self.logdir / f"mobikectl-run-{len(self.runs) + 1}.log"
        argv = [MOBIKECTL, "lab", "exec", "--name", self.lab.name, t.RW, "--",
                "mobikectl", "run", "--socket", self.socket, "--policy", str(self.policy), *extra]
        with open(log, "w") as fh:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                         env=cli_env())
        self.runs.append((self.proc, log))
        if ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0, all_up: bool = True) -> dict:
        """Until `status --json` comes from this run's daemon and shows charon connected, an
        established SA and a chosen path (and, with all_up, every uplink's path healthy)."""
        def ready():
            self.assert_running()
            st = self.status()
            if not st or st["daemon"]["pid"] != self.proc.pid or not st["charon"]["connected"]:
                return None
            if not st["chosen"] or not any(sa["state"] == "ESTABLISHED" for sa in st["sas"]):
                return None
            if all_up and any(u["health"] != "up" for u in st["uplinks"].values()):
                return None
            return st

        return self.wait(ready, timeout, "the daemon to answer with charon, the SA and a chosen path")

    def assert_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"mobikectl run exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (None if it had to be killed)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None

    def stop_all(self) -> None:
        for proc, _ in self.runs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        self.proc = None

    # the daemon's view, through the CLI
    def status(self) -> dict | None:
        """`mobikectl status --lab NAME --json`'s status object; None while no daemon answers."""
        done = cli("status", "--lab", self.lab.name, "--json", check=False)
        if done.returncode == 69:
            return None
        if done.returncode not in (0, 1):  # 1: the tunnel is not ok, the document is still there
            raise AssertionError(f"mobikectl status -> exit {done.returncode}: {done.stderr.strip()}")
        return json.loads(done.stdout)["status"]

    def events(self, since: int | None = None) -> list[dict]:
        args = ["events", "--lab", self.lab.name, "--json"] + (["--since", str(since)] if since else [])
        done = cli(*args)
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def last_seq(self) -> int:
        evs = self.events()
        return evs[-1]["seq"] if evs else 0

    def wait(self, condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
        value = poll(condition, timeout=timeout, interval=interval)
        if not value:
            pytest.fail(f"no {what} within {timeout:g} s\n{self.describe()}")
        return value

    def describe(self) -> str:
        """What a failing test should show: charon's SAs, our routes, the daemon's log."""
        lines = [f"rw SAs: {[(s['state'], s['local_host'], s['remote_host'], spis(s)) for s in rw_sas(self.lab)]}"]
        try:
            lines.append(f"steering routes: {steering_routes(self.lab)}")
        except Exception as exc:  # noqa: BLE001 - only a description
            lines.append(f"steering routes: ({exc})")
        lines.append(self.log_tail())
        return "\n".join(lines)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for n, (_, path) in enumerate(self.runs, 1):
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            out.append(f"--- mobikectl run #{n} ({path}), last {min(lines, len(text))} of {len(text)} lines:")
            out.extend(text[-lines:])
        return "\n".join(out)


# --- the lab as the tests found it --------------------------------------------------------

def baseline(lab) -> dict | None:
    """The lab as every test starts: one settled SA from wlan0 to the gateway's first
    address, carrying traffic."""
    sa = settled_sa(lab, local=WLAN.rw_addr, remote=t.GW_ADDR)
    return sa if sa and lab.tunnel_ok(count=1) else None


def restore(lab) -> None:
    """Undo what a test did: impairments, routes (ours and the test's), the SA off wlan0.
    Removing our steering route lets charon follow the metrics (wlan0, metric 600); if it
    does not come back to wlan0 and the gateway's first address by itself, restart rw's charon."""
    lab.clear()
    lab.exec(t.RW, ["ip", "route", "del", TEST_ROUTE], capture_output=True, timeout=10)
    lab.exec(t.RW, ["ip", "route", "flush", "proto", "73"], capture_output=True, timeout=10)
    if poll(lambda: baseline(lab), timeout=10, interval=0.1):
        return
    lab.restart_charon(t.RW)
    assert poll(lambda: baseline(lab), timeout=15, interval=0.1), \
        f"could not put the lab back (SA on wlan0, tunnel ok): {rw_sas(lab)}"


@pytest.fixture(scope="session")
def ctl_policy(tmp_path_factory) -> Path:
    text = (REPO / "policies" / "default.toml").read_text()
    subs = [
        (r'(?m)^description = .*$', 'description = "lab tests: policies/default.toml with a short hold-down"'),
        (r'(?m)^hold_down = "30s"', f'hold_down = "{HOLD_DOWN:g}s"'),
        (r'(?m)^min_dwell = "30s"', f'min_dwell = "{HOLD_DOWN:g}s"'),
        # a recovered Wi-Fi is seen within ~1 s instead of 5 s: shorter failback tests
        (r'(\[classes\.wlan\.probe\]\n(?:.*\n)*?)standby_interval = "5s"', r'\1standby_interval = "1s"'),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text, count=1)
        assert n == 1, f"policies/default.toml changed: {pattern!r} no longer matches"
    path = tmp_path_factory.mktemp("policy") / "short-hold-down.toml"
    path.write_text(text)
    done = cli("policy", "check", str(path), check=False)
    assert done.returncode == 0, f"the test policy does not pass `mobikectl policy check`: {done.stdout}{done.stderr}"
    return path


@contextlib.contextmanager
def running_controller(lab, policy: Path, logdir: Path):
    """A started Controller on `lab` with `policy`; stopped and the lab restored afterwards."""
    if not baseline(lab):
        restore(lab)
    ctl = Controller(lab, policy, logdir)
    try:
        ctl.start()
        yield ctl
    finally:
        ctl.stop_all()
        print(f"\n{ctl.log_tail()}")
        restore(lab)


@pytest.fixture
def controller(mobike_lab, ctl_policy, tmp_path):
    with running_controller(mobike_lab, ctl_policy, tmp_path) as ctl:
        yield ctl
