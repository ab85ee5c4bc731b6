"""The CLI around the running controller, against the real daemon in the lab (issue 4).

Every test gets a fresh lab (`lab_factory`: under a second to build, torn down at the end
of the test) and its own `mobikectl run` in rw, started and stopped through
tests/netns/controller.py's `Controller`, exactly as a user runs it:

    mobikectl lab exec --name LAB rw -- mobikectl run --socket S --policy P [...]
    mobikectl status|paths|events|switch|reload --lab LAB [--json]

What each test proves:
    switch and its expiry          `switch wwan0 --for 5s` moves the SA (MOBIKE, same SPIs) and
                                   status shows the override; it expires and the SA goes back to
                                   wlan0 once the expiry and min_dwell (counted from the manual
                                   move, docs/engine.md rule 4) allow; `switch --auto` ends one
    refused switch, --force        a switch to an uplink detected DOWN exits 1 with one line;
                                   --force is honoured (status, route, SA once the path answers)
    reload with a bad file         exit 65 with every problem (FILE: KEY: expected ..., got ...),
                                   no traceback; the old policy stays and the daemon still moves
                                   on a blackhole; a good file is in force after exit 0
    SIGHUP                         the daemon's --policy file: bad -> old stays, the log says why;
                                   good -> the new one in force
    events during a failover       `events --follow --json` in the background: probe transition
                                   of wlan0, decision naming wlan0, move to wwan0, in order, each
                                   line schema 1 with seq/time/kind/message; Ctrl-C ends it (130),
                                   a stopping daemon ends it (0)
    non-root                       77 with what is needed (the socket's mode refuses the connect);
                                   a member of the read group may read (0) but not change (77)
    metered last resort            all three uplinks: eth0 blackholed -> wlan0, not wwan0; eth0 and
                                   wlan0 blackholed -> wwan0; wlan0 recovers -> back after the
                                   hold-down; `paths --json` shows wwan0's bytes this month and
                                   its slower standby probing

The policy is tests/netns/controller.py's `ctl_policy` (policies/default.toml with a 5 s
hold-down and min dwell, Wi-Fi standby probed every second); the switch tests also probe the
cellular standby path every second (without a budget) so a blackholed wwan0 is seen DOWN
within seconds. Waits poll against deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from controller import (
    HOLD_DOWN, MOBIKECTL, WLAN, WWAN, Controller, baseline, cli, cli_env, settled_sa, spis, steering_routes,
)
from mobikectl.lab import topology as t

pytestmark = pytest.mark.netns

ETH = t.UPLINKS["eth0"]
FAILOVER = 10.0        # s from a fault to the SA on the next path (the target is ~1 s)
FAILBACK_SLACK = 8.0   # s beyond what the policy waits for: probes, the move, its confirmation
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534"]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


# --- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fast_wwan_policy(ctl_policy, tmp_path_factory) -> Path:
    """ctl_policy with the cellular standby path probed every second and no budget, so a
    blackholed wwan0 is DOWN within seconds (30 s standby probes would take minutes)."""
    text = ctl_policy.read_text()
    subs = [(r'(\[classes\.wwan\]\n(?:.*\n)*?)monthly_budget = "15MB"', r'\1monthly_budget = 0'),
            (r'(\[classes\.wwan\.probe\]\n(?:.*\n)*?)standby_interval = "30s"', r'\1standby_interval = "1s"')]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text, count=1)
        assert n == 1, f"{ctl_policy} changed: {pattern!r} no longer matches"
    path = tmp_path_factory.mktemp("policy") / "fast-wwan.toml"
    path.write_text(text)
    cli("policy", "check", str(path))
    return path


@pytest.fixture
def start_daemon(lab_factory, tmp_path):
    """start_daemon(policy, uplinks=..., extra=...) -> a ready Controller on a fresh lab.
    At teardown: every daemon stopped (SIGTERM, then SIGKILL), its log printed; then
    lab_factory removes the lab (namespaces, charons)."""
    made: list[Controller] = []

    def start(policy: Path, uplinks=("wlan0", "wwan0"), extra=(), logdir: Path | None = None) -> Controller:
        lab = lab_factory(uplinks=list(uplinks) if uplinks else None)
        ctl = Controller(lab, policy, logdir or tmp_path)
        made.append(ctl)
        ctl.start(*extra)
        return ctl

    try:
        yield start
    finally:
        for ctl in made:
            ctl.stop_all()
            print(f"\n{ctl.log_tail()}")


def impair(lab, uplink: str, kind: str) -> None:
    cli("lab", "impair", "--name", lab.name, uplink, kind)


def clear(lab, uplink: str) -> None:
    cli("lab", "clear", "--name", lab.name, uplink)


def on(ctl: Controller, uplink, timeout: float, what: str) -> dict:
    """Until charon's one IKE_SA is settled on `uplink` (charon's own view, not the daemon's)."""
    return ctl.wait(lambda: settled_sa(ctl.lab, local=uplink.rw_addr), timeout, what)


def health(ctl: Controller, uplink: str) -> str | None:
    st = ctl.status()
    return st and st["uplinks"][uplink]["health"]


def last_move_to(ctl: Controller, uplink: str, after: int = 0) -> dict | None:
    """The last confirmed move to `uplink` among status's moves[after:]."""
    st = ctl.status()
    moves = [m for m in (st["moves"] if st else [])[after:] if m["to"]["uplink"] == uplink]
    return moves[-1] if moves and moves[-1]["outcome"] == "confirmed" else None


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """stderr must be one `mobikectl: error: ...` line: no traceback, nothing else."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mobikectl: error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# --- switch ------------------------------------------------------------------------------

def test_switch_for_a_while_then_back_and_switch_auto(start_daemon, fast_wwan_policy):
    ctl = start_daemon(fast_wwan_policy)
    lab = ctl.lab
    before = ctl.wait(lambda: baseline(lab), 10, "the SA on wlan0 carrying traffic")

    # switch --for 5s: the SA moves to wwan0 (MOBIKE: the same IKE_SA), status shows it
    done = cli("switch", "--lab", lab.name, "wwan0", "--for", "5s")
    switched_at = time.monotonic()
    assert done.stdout.strip() == "manual switch to wwan0 for 5 s", done.stdout
    on(ctl, WWAN, FAILOVER, "the SA on wwan0 after `switch wwan0 --for 5s`")
    assert spis(settled_sa(lab, local=WWAN.rw_addr)) == spis(before), "a switch must move the SA, not replace it"
    manual = ctl.wait(lambda: last_move_to(ctl, "wwan0"), 5, "status showing the manual move confirmed")
    assert manual["manual"] and manual["from"]["uplink"] == "wlan0", manual
    st = ctl.status()
    ov = st["override"]
    assert ov["uplink"] == "wwan0" and not ov["force"], ov
    assert 0 < ov["until"] - st["now"] <= 5.0, (ov, st["now"])
    assert st["chosen"]["uplink"] == "wwan0" and st["sas"][0]["uplink"] == "wwan0"
    text = cli("status", "--lab", lab.name).stdout
    assert re.search(r"^override: wwan0 for \d+ s more$", text, re.M), text
    assert tuple(st["sas"][0]["spis"]) == spis(before)

    # expiry: back to wlan0 (healthy all along, so its hold-down is long over) once the
    # override has expired and min_dwell since the manual move has passed, not before
    back = on(ctl, WLAN, 5.0 + HOLD_DOWN + FAILBACK_SLACK, "the SA back on wlan0 after the switch expired")
    back_at = time.monotonic()
    assert back_at - switched_at >= 5.0, f"back on wlan0 {back_at - switched_at:.2f} s after a 5 s switch"
    assert spis(back) == spis(before)
    fb = ctl.wait(lambda: last_move_to(ctl, "wlan0"), 5, "status showing the move back confirmed")
    assert not fb["manual"] and "failback" in fb["reason"], fb
    assert fb["decided_at"] >= ov["until"] - 0.01, (fb, ov)
    assert fb["decided_at"] - manual["decided_at"] >= HOLD_DOWN - 0.01, "min_dwell counts from the manual move"
    st = ctl.status()
    assert st["override"] is None
    expired = [e for e in ctl.events() if e["kind"] == "switch" and e["data"].get("expired")]
    assert expired and "expired" in expired[0]["message"], expired
    print(f"\nswitch --for 5s: back on wlan0 {back_at - switched_at:.2f} s after the switch")

    # switch without --for lasts until `switch --auto`
    n_moves = len(st["moves"])
    done = cli("switch", "--lab", lab.name, "wwan0", "--json")
    reply = json.loads(done.stdout)
    assert reply["schema"] == 1 and reply["ok"] is True and reply["message"] == "manual switch to wwan0", reply
    on(ctl, WWAN, FAILOVER, "the SA on wwan0 after `switch wwan0`")
    second = ctl.wait(lambda: last_move_to(ctl, "wwan0", n_moves), 5, "the second manual move confirmed")
    assert ctl.status()["override"]["until"] is None
    assert "until `switch --auto`" in cli("status", "--lab", lab.name).stdout
    done = cli("switch", "--lab", lab.name, "--auto")
    auto_at = time.monotonic()
    assert "ended" in done.stdout and "automatic" in done.stdout, done.stdout
    assert ctl.status()["override"] is None
    back = on(ctl, WLAN, HOLD_DOWN + FAILBACK_SLACK, "the SA back on wlan0 after `switch --auto`")
    assert spis(back) == spis(before)
    fb = ctl.wait(lambda: last_move_to(ctl, "wlan0", n_moves), 5, "the move back confirmed")
    assert fb["decided_at"] - second["decided_at"] >= HOLD_DOWN - 0.01, (fb, second)
    print(f"switch --auto: back on wlan0 {time.monotonic() - auto_at:.2f} s later (min dwell {HOLD_DOWN:g} s)")


def test_switch_to_an_uplink_that_is_down_is_refused_unless_forced(start_daemon, fast_wwan_policy):
    ctl = start_daemon(fast_wwan_policy)
    lab = ctl.lab
    before = ctl.wait(lambda: baseline(lab), 10, "the SA on wlan0 carrying traffic")
    impair(lab, "wwan0", "blackhole")
    ctl.wait(lambda: health(ctl, "wwan0") == "down", 15, "wwan0 (blackholed) seen down")

    refused = cli("switch", "--lab", lab.name, "wwan0", check=False)
    assert refused.returncode == 1, (refused.returncode, refused.stderr)
    line = one_error_line(refused)
    assert "switch to wwan0 refused" in line and "down" in line and line.endswith("(use --force to override)"), line
    assert refused.stdout == ""
    assert cli("switch", "--lab", lab.name, "wwan0", "--for", "1m", "--json", check=False).returncode == 1
    st = ctl.status()
    assert st["override"] is None and st["chosen"]["uplink"] == "wlan0"
    assert spis(settled_sa(lab, local=WLAN.rw_addr)) == spis(before)

    forced = cli("switch", "--lab", lab.name, "wwan0", "--force")
    assert forced.stdout.strip() == "manual switch to wwan0 (forced)", forced.stdout
    st = ctl.status()
    assert st["override"]["uplink"] == "wwan0" and st["override"]["force"] is True, st["override"]
    assert st["chosen"]["uplink"] == "wwan0"
    assert "(forced)" in cli("status", "--lab", lab.name, check=False).stdout
    route = f"{t.GW_ADDR} via {WWAN.router_addr} dev wwan0 src {WWAN.rw_addr}"
    ctl.wait(lambda: route in " ".join(steering_routes(lab)), 5, "the steering route via wwan0")

    # the forced switch stands: once wwan0 answers again the SA is moved there (same SA)
    clear(lab, "wwan0")
    after = on(ctl, WWAN, FAILOVER, "the SA on wwan0 after the forced switch and wwan0 cleared")
    assert spis(after) == spis(before)
    assert ctl.status()["override"]["uplink"] == "wwan0"
    cli("switch", "--lab", lab.name, "--auto")
    back = on(ctl, WLAN, HOLD_DOWN + FAILBACK_SLACK, "the SA back on wlan0 after `switch --auto`")
    assert spis(back) == spis(before)


def test_a_forced_switch_to_a_down_uplink_does_not_churn(start_daemon, fast_wwan_policy):
    ctl = start_daemon(fast_wwan_policy)
    lab = ctl.lab
    ctl.wait(lambda: baseline(lab), 10, "the SA on wlan0 carrying traffic")
    impair(lab, "wwan0", "blackhole")
    ctl.wait(lambda: health(ctl, "wwan0") == "down", 15, "wwan0 (blackholed) seen down")
    seq = ctl.last_seq()
    cli("switch", "--lab", lab.name, "wwan0", "--force")
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        ctl.assert_running()
        time.sleep(0.1)  # an observation window, not a wait for a condition
    events = ctl.events(since=seq)
    aborted = [e for e in events if e["kind"] == "move" and "aborted" in e["message"]]
    decisions = [e["message"] for e in events if e["kind"] == "decision"]
    cli("switch", "--lab", lab.name, "--auto")
    assert len(aborted) <= 1, f"{len(aborted)} aborted moves in 2 s: {aborted[:3]}"
    assert decisions == ["manual switch to wwan0"], decisions[:5]


# --- reload ------------------------------------------------------------------------------

BAD_POLICY = """\
schema = 1
[classes.wwan.probe]
fall = 0
[failback]
hold_dwon = "5s"
[order]
prefer = ["dokc", "wifi", "cell"]
"""
BAD_PROBLEMS = [  # what each line of stderr must say (after "mobikectl: error: FILE: ")
    'classes.wwan.probe.fall: expected an integer >= 1, got 0',
    'failback.hold_dwon: unknown key (expected one of: hold_down, min_dwell)',
    'order.prefer[0]: expected an uplink label defined under [uplinks] (dock, wifi, cell), got "dokc"',
]


def with_wlan_standby(policy: Path, interval: str) -> str:
    text, n = re.subn(r'(\[classes\.wlan\.probe\]\n(?:.*\n)*?)standby_interval = "[^"]*"',
                      rf'\1standby_interval = "{interval}"', policy.read_text(), count=1)
    assert n == 1
    return text


def test_reload_with_a_bad_file_keeps_the_old_policy(start_daemon, ctl_policy, tmp_path):
    ctl = start_daemon(ctl_policy)
    lab = ctl.lab
    before = ctl.wait(lambda: baseline(lab), 10, "the SA on wlan0 carrying traffic")
    seq = ctl.last_seq()
    (tmp_path / "bad.toml").write_text(BAD_POLICY)

    # a relative path, as a user types it: the CLI sends it absolute
    done = subprocess.run([MOBIKECTL, "reload", "--lab", lab.name, "--policy", "bad.toml"], cwd=tmp_path,
                          capture_output=True, text=True, env=cli_env(), timeout=30)
    assert done.returncode == 65, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    bad = str(tmp_path / "bad.toml")
    assert sorted(done.stderr.strip().splitlines()) == sorted(f"mobikectl: error: {bad}: {p}" for p in BAD_PROBLEMS)
    assert cli("reload", "--lab", lab.name, "--policy", bad, "--json", check=False).returncode == 65
    missing = cli("reload", "--lab", lab.name, "--policy", str(tmp_path / "missing.toml"), check=False)
    assert missing.returncode == 65 and "cannot read" in one_error_line(missing)

    st = ctl.status()
    assert st["daemon"]["policy"] == str(ctl_policy) and st["policy"] == str(ctl_policy)
    assert st["uplinks"]["wlan0"]["standby_interval"] == 1.0  # ctl_policy's, not the default's 5 s
    policy_events = [e for e in ctl.events(since=seq) if e["kind"] == "policy"]
    assert policy_events and all(e["data"]["refused"] for e in policy_events), policy_events
    assert policy_events[0]["data"]["problems"] and policy_events[0]["data"]["in_force"] == str(ctl_policy)

    # the daemon keeps working under the old policy: a blackhole still moves the SA
    impair(lab, "wlan0", "blackhole")
    moved = on(ctl, WWAN, FAILOVER, "the SA on wwan0 after wlan0 blackholed (after the refused reload)")
    assert spis(moved) == spis(before)
    clear(lab, "wlan0")

    # a good file: exit 0, in force (its wlan standby interval shows in status)
    good = tmp_path / "good.toml"
    good.write_text(with_wlan_standby(ctl_policy, "2s"))
    done = cli("reload", "--lab", lab.name, "--policy", str(good))
    assert done.stdout.strip() == f"policy {good} in force", done.stdout
    st = ctl.status()
    assert st["daemon"]["policy"] == str(good) and st["policy"] == str(good)
    assert st["uplinks"]["wlan0"]["standby_interval"] == 2.0
    assert any(e["kind"] == "policy" and e["message"] == f"policy {good} in force" for e in ctl.events(since=seq))
    # and a plain `reload` goes back to the file the daemon was started with (its --policy)
    assert cli("reload", "--lab", lab.name, "--json").returncode == 0
    assert ctl.status()["daemon"]["policy"] == str(ctl_policy)


def test_reload_to_no_budget_drops_the_budget(start_daemon, ctl_policy, fast_wwan_policy):
    ctl = start_daemon(ctl_policy)
    assert ctl.status()["uplinks"]["wwan0"]["monthly_budget_bytes"] == 15e6
    cli("reload", "--lab", ctl.lab.name, "--policy", str(fast_wwan_policy))
    st = ctl.status()
    assert st["daemon"]["policy"] == str(fast_wwan_policy) and st["uplinks"]["wwan0"]["standby_interval"] == 1.0
    assert st["uplinks"]["wwan0"]["monthly_budget_bytes"] is None


def test_sighup_reloads_the_policy_file_all_or_nothing(start_daemon, ctl_policy, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(ctl_policy.read_text())
    ctl = start_daemon(policy)
    pid = ctl.status()["daemon"]["pid"]
    seq = ctl.last_seq()
    log = ctl.runs[-1][1]

    policy.write_text(BAD_POLICY)
    os.kill(pid, signal.SIGHUP)
    ctl.wait(lambda: all(p in log.read_text() for p in BAD_PROBLEMS), 5, "the daemon's log naming every problem")
    text = log.read_text()
    assert f"reload of {policy} refused, the running policy {policy} stays" in text, text[-2000:]
    assert "Traceback" not in text
    ctl.assert_running()
    st = ctl.status()
    assert st["uplinks"]["wlan0"]["standby_interval"] == 1.0 and st["daemon"]["pid"] == pid
    assert [e["data"].get("refused") for e in ctl.events(since=seq) if e["kind"] == "policy"] == [True]

    policy.write_text(with_wlan_standby(ctl_policy, "2s"))
    os.kill(pid, signal.SIGHUP)
    ctl.wait(lambda: ctl.status()["uplinks"]["wlan0"]["standby_interval"] == 2.0, 5,
             "the edited policy in force after SIGHUP")
    assert [e["message"] for e in ctl.events(since=seq) if e["kind"] == "policy"][-1] == f"policy {policy} in force"
    ctl.wait(lambda: baseline(ctl.lab), 10, "the SA still on wlan0 carrying traffic")


# --- events ------------------------------------------------------------------------------

class Follower:
    """`mobikectl events --lab LAB --follow --json [--since N]` in the background; its lines
    are read by a thread into a queue."""

    def __init__(self, lab, since: int | None = None) -> None:
        argv = [MOBIKECTL, "events", "--lab", lab.name, "--follow", "--json"]
        argv += ["--since", str(since)] if since is not None else []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, condition, timeout: float) -> bool:
        """Read events until condition(self.seen) holds or the deadline passes."""
        deadline = time.monotonic() + timeout
        while not condition(self.seen):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                line = self.lines.get(timeout=min(left, 0.3))
            except queue.Empty:
                continue  # the condition is asked again (it may act: see its callers)
            if line is None:
                return condition(self.seen)
            self.seen.append(json.loads(line))
        return True

    def stop(self, sig=signal.SIGINT, timeout: float = 10.0) -> subprocess.CompletedProcess:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, "", err)


def failover_sequence(events: list[dict]) -> tuple[int, int, int] | None:
    """Indexes of: wlan0's probe transition to suspect/down, then a decision to move that names
    wlan0, then the move to wwan0."""
    probe = next((i for i, e in enumerate(events) if e["kind"] == "probe" and e["data"].get("uplink") == "wlan0"
                  and e["data"].get("to") in ("suspect", "down")), None)
    if probe is None:
        return None
    decision = next((i for i, e in enumerate(events) if i > probe and e["kind"] == "decision"
                     and "wlan0" in e["message"] and (e["data"].get("to") or {}).get("uplink") == "wwan0"), None)
    if decision is None:
        return None
    move = next((i for i, e in enumerate(events) if i > decision and e["kind"] == "move"
                 and (e["data"].get("to") or {}).get("uplink") == "wwan0"
                 and e["data"].get("outcome") is None), None)
    return None if move is None else (probe, decision, move)


def test_events_follow_during_a_failover(start_daemon, ctl_policy):
    ctl = start_daemon(ctl_policy)
    lab = ctl.lab
    ctl.wait(lambda: baseline(lab), 10, "the SA on wlan0 carrying traffic")
    # --since the last event: nothing is missed whenever the follower's connect lands
    follower = Follower(lab, since=ctl.last_seq())
    try:
        impair(lab, "wlan0", "blackhole")
        ok = follower.until(lambda evs: failover_sequence(evs) is not None, FAILOVER + 5)
        assert ok, f"no probe -> decision -> move sequence in:\n" + "\n".join(
            f"{e['seq']} {e['kind']}: {e['message']}" for e in follower.seen)
    finally:
        done = follower.stop(signal.SIGINT)  # Ctrl-C
    assert done.returncode == 130 and "interrupted" in done.stderr and "Traceback" not in done.stderr, done

    events = follower.seen
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    for e in events:
        assert e["schema"] == 1 and isinstance(e["seq"], int), e
        assert ISO_UTC.match(e["time"]), e["time"]
        assert datetime.fromisoformat(e["time"].replace("Z", "+00:00")).tzinfo == timezone.utc
        assert isinstance(e["kind"], str) and e["kind"] and isinstance(e["message"], str) and e["message"], e
        assert isinstance(e["data"], dict), e
    probe, decision, move = failover_sequence(events)
    print("\n" + "\n".join(f"{events[i]['time']} {events[i]['kind']}: {events[i]['message']}"
                           for i in (probe, decision, move)))

    # a follower without --since gets new events only (a reload makes one: repeated until the
    # follower, connected by then, shows it), and ends with exit 0 when the daemon stops
    last = ctl.last_seq()
    second = Follower(lab)
    try:
        def reload_seen(evs):
            if any(e["kind"] == "policy" for e in evs):
                return True
            cli("reload", "--lab", lab.name)
            return False

        assert second.until(reload_seen, 10), "the follower never showed a reload's event"
        assert second.seen[0]["seq"] > last, "without --since, only new events"
        assert ctl.stop() == 0
        second.proc.wait(10)
    finally:
        done = second.stop()
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr


# --- permissions -------------------------------------------------------------------------

def as_nobody(*args: str, groups: str | None = None) -> subprocess.CompletedProcess:
    argv = NOBODY + ([f"--groups={groups}"] if groups else ["--clear-groups"]) + [MOBIKECTL, *args]
    return subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=30)


def test_a_user_who_is_not_root_is_refused(non_root_runs, start_daemon, ctl_policy):
    ctl = start_daemon(ctl_policy)
    lab = ctl.lab
    for args, needs in ((("status",), "root or the daemon's group"), (("paths", "--json"), "root or the daemon's group"),
                        (("events",), "root or the daemon's group"), (("switch", "wwan0"), "needs root"),
                        (("switch", "--auto"), "needs root"), (("reload",), "needs root")):
        done = as_nobody(*args, "--lab", lab.name)
        assert done.returncode == 77, (args, done.returncode, done.stderr)
        line = one_error_line(done)
        assert "permission denied" in line and needs in line, (args, line)
        assert done.stdout == ""
    assert ctl.status()["override"] is None  # nothing changed


@pytest.fixture
def read_group():
    """A throwaway group for `mobikectl run --group` (not `mobikectl`: other tests' daemons
    would chown their sockets to it); removed at teardown."""
    name = f"mkt{os.getpid() % 100000}"
    done = subprocess.run(["groupadd", name], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot create a group: {done.stderr.strip()}")
    try:
        gid = subprocess.run(["getent", "group", name], capture_output=True, text=True, check=True).stdout
        yield name, gid.split(":")[2]
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


def test_a_member_of_the_read_group_may_read_but_not_change(non_root_runs, start_daemon, ctl_policy, read_group):
    name, gid = read_group
    ctl = start_daemon(ctl_policy, extra=("--group", name))
    lab = ctl.lab
    sock = Path(ctl.socket)
    assert sock.stat().st_gid == int(gid) and oct(sock.stat().st_mode & 0o777) == "0o660"

    done = as_nobody("status", "--lab", lab.name, "--json", groups=gid)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"]["chosen"]["uplink"] == "wlan0"
    assert as_nobody("paths", "--lab", lab.name, groups=gid).returncode == 0
    done = as_nobody("events", "--lab", lab.name, "--json", groups=gid)
    assert done.returncode == 0 and all(json.loads(line)["schema"] == 1 for line in done.stdout.splitlines())

    for args in (("switch", "wwan0"), ("switch", "--auto"), ("reload",)):
        done = as_nobody(*args, "--lab", lab.name, groups=gid)
        assert done.returncode == 77, (args, done.returncode, done.stderr)
        line = one_error_line(done)
        assert "permission denied" in line and "needs root" in line, line
    # and without the group, not even reading
    assert as_nobody("status", "--lab", lab.name).returncode == 77
    st = ctl.status()
    assert st["override"] is None and not st["moves"]


# --- the metered uplink ------------------------------------------------------------------

def test_metered_wwan0_is_the_last_resort(start_daemon, ctl_policy):
    ctl = start_daemon(ctl_policy, uplinks=None)  # eth0, wlan0, wwan0
    lab = ctl.lab
    before = on(ctl, ETH, 10, "the SA on eth0")

    # paths: wwan0 is metered with a budget, its bytes this month counted, its standby slower
    doc = json.loads(cli("paths", "--lab", lab.name, "--json").stdout)
    assert doc["schema"] == 1
    ups = doc["uplinks"]
    assert ups["wwan0"]["metered"] and not ups["wlan0"]["metered"] and not ups["eth0"]["metered"]
    assert ups["wwan0"]["monthly_budget_bytes"] == 15e6
    assert ups["wwan0"]["standby_interval"] > ups["wlan0"]["standby_interval"]
    by_uplink = {p["path"]["uplink"]: p for p in doc["paths"]}
    assert 0 < by_uplink["wwan0"]["probe_bytes_month"] <= 15e6
    assert "/ 15.0 MB" in cli("paths", "--lab", lab.name).stdout

    def sent() -> dict:
        d = json.loads(cli("paths", "--lab", lab.name, "--json").stdout)
        return {p["path"]["uplink"]: (p["role"], p["probes_sent"], p["probe_bytes_month"]) for p in d["paths"]}

    first, t0 = sent(), time.monotonic()
    assert first["wlan0"][0] == first["wwan0"][0] == "standby" and first["eth0"][0] == "active", first
    ctl.wait(lambda: sent()["wlan0"][1] - first["wlan0"][1] >= 4, 10, "four standby probes on wlan0")
    now = sent()
    window = time.monotonic() - t0
    assert now["wwan0"][1] - first["wwan0"][1] <= 1, f"wwan0 standby probed {now['wwan0'][1] - first['wwan0'][1]}" \
        f" times in {window:.1f} s (every {ups['wwan0']['standby_interval']:g} s expected)"
    assert now["wwan0"][2] >= first["wwan0"][2]

    # eth0 blackholed: wlan0, not wwan0 (both are healthy)
    impair(lab, "eth0", "blackhole")
    moved = on(ctl, WLAN, FAILOVER, "the SA on wlan0 after eth0 blackholed")
    assert spis(moved) == spis(before)
    st = ctl.status()
    assert st["uplinks"]["wwan0"]["health"] == "up", "wwan0 must be healthy: it was passed over, not unavailable"
    assert [m["to"]["uplink"] for m in st["moves"]] == ["wlan0"], st["moves"]

    # eth0 and wlan0 blackholed: the last resort
    impair(lab, "wlan0", "blackhole")
    moved = on(ctl, WWAN, FAILOVER, "the SA on wwan0 after eth0 and wlan0 blackholed")
    assert spis(moved) == spis(before)

    # wlan0 recovers (eth0 does not): back to wlan0 after the hold-down
    n_moves = len(ctl.status()["moves"])
    clear(lab, "wlan0")
    cleared_at = time.monotonic()
    back = on(ctl, WLAN, HOLD_DOWN + FAILBACK_SLACK, "the SA back on wlan0 after it recovered")
    back_at = time.monotonic()
    assert back_at - cleared_at >= HOLD_DOWN, f"failback after {back_at - cleared_at:.2f} s: before the hold-down"
    assert spis(back) == spis(before)
    fb = ctl.wait(lambda: last_move_to(ctl, "wlan0", n_moves), 5, "the failback confirmed")
    assert "failback" in fb["reason"] and fb["decided_at"] - cleared_at >= HOLD_DOWN, fb
    assert [m["to"]["uplink"] for m in ctl.status()["moves"]] == ["wlan0", "wwan0", "wlan0"]
    print(f"\nwlan0 recovered: back on it after {back_at - cleared_at:.2f} s (hold-down {HOLD_DOWN:g} s)")
