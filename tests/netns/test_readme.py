"""The README's command examples work as written (issue 4: "all from the README's examples").

Every command line of the README's ```sh blocks is either run here (offline, or against a
lab daemon with `--lab NAME` / `--name NAME` added, since a test cannot use the lab
`default`) or listed in NOT_RUN with the reason; `test_every_readme_command_is_covered`
fails when the README gains a command this file does not know. Each test asserts the
lines it runs are still in the README, and the exit status the README documents.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from controller import MOBIKECTL, REPO, WLAN, WWAN, Controller, baseline, cli, cli_env, settled_sa, spis, \
    steering_routes
from mobikectl.lab import topology as t

pytestmark = pytest.mark.netns

README = (REPO / "README.md").read_text()
SCENARIOS = sorted(p for p in (REPO / "tests" / "scenarios").iterdir() if (p / "inputs.jsonl").exists())

# README command line -> the test that runs it
RUN = {
    "mobikectl policy check policies/default.toml": "test_policy_check_examples",
    "mobikectl policy check policies/*.toml": "test_policy_check_examples",
    "mobikectl run --policy policies/default.toml": "test_daemon_examples_against_a_lab",
    "mobikectl status": "test_daemon_examples_against_a_lab",
    "mobikectl paths --json": "test_daemon_examples_against_a_lab",
    "mobikectl events --follow": "test_daemon_examples_against_a_lab",
    "mobikectl switch wwan0 --for 10m": "test_daemon_examples_against_a_lab",
    "mobikectl switch --auto": "test_daemon_examples_against_a_lab",
    "mobikectl reload": "test_daemon_examples_against_a_lab",
    "mobikectl policy explain --policy policies/default.toml --state state.json":
        "test_daemon_examples_against_a_lab, test_policy_explain_with_the_documented_state_file",
    "mobikectl run --record run.jsonl ...": "test_daemon_examples_against_a_lab",
    "mobikectl policy simulate policies/default.toml --inputs run.jsonl":
        "test_daemon_examples_against_a_lab, test_policy_simulate_the_scenario_recordings",
    "mobikectl lab status [--json]": "test_daemon_examples_against_a_lab",
    "mobikectl lab impair wlan0 blackhole": "test_daemon_examples_against_a_lab",
    "mobikectl lab clear [wlan0]": "test_daemon_examples_against_a_lab",
    "mobikectl lab exec rw -- mobikectl run --socket /var/lib/mobikectl/labs/default/rw/mobikectl.sock":
        "test_daemon_examples_against_a_lab (Controller: lab exec ... rw -- mobikectl run --socket ...)",
    "mobikectl status --lab default": "test_daemon_examples_against_a_lab",
}
NOT_RUN = {
    "./setup.sh demo": "installs Debian packages; tests/netns/test_demo.py runs the demo",
    "./setup.sh test": "installs Debian packages and runs this suite",
    "mobikectl lab up [--name NAME] [--uplinks wlan0,wwan0] [--profile controller|stock]":
        "a synopsis; every lab test builds its lab (tests/netns/test_lab_basics.py runs `lab up`)",
    "mobikectl lab restart-charon rw": "tests/netns/test_lab_basics.py",
    "mobikectl lab down [--all]": "tests/netns/test_lab_basics.py; lab_factory tears down",
}


def readme_commands() -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def in_readme(*lines: str) -> None:
    commands = readme_commands()
    for line in lines:
        assert line in commands, f"the README no longer shows `{line}`: update tests/netns/test_readme.py"


def run(*args: str, cwd: Path = REPO, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([MOBIKECTL, *args], cwd=cwd, capture_output=True, text=True, env=cli_env(),
                          timeout=timeout)


def ok(done: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert done.returncode == code, f"{' '.join(done.args)} -> {done.returncode}, not {code}:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done


def test_every_readme_command_is_covered():
    commands = readme_commands()
    assert commands, "no ```sh block found in the README"
    unknown = [c for c in commands if c not in RUN and c not in NOT_RUN]
    assert not unknown, f"README commands this file neither runs nor excuses: {unknown}"
    gone = [c for c in list(RUN) + list(NOT_RUN) if c not in commands]
    assert not gone, f"no longer in the README (remove them here): {gone}"


# --- offline -------------------------------------------------------------------------------

def test_policy_check_examples(tmp_path):
    in_readme("mobikectl policy check policies/default.toml", "mobikectl policy check policies/*.toml")
    done = ok(run("policy", "check", "policies/default.toml"))
    assert done.stdout.strip() == "policies/default.toml: ok (3 uplinks, prefer dock > wifi > cell)"
    files = sorted(glob.glob("policies/*.toml", root_dir=REPO))  # what the shell expands
    done = ok(run("policy", "check", *files))
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == files
    assert all(line.endswith(")") and ": ok (" in line for line in done.stdout.splitlines()), done.stdout
    # the README's table lists every shipped policy, and only those
    table = set(re.findall(r"^\| `(policies/[^`]+\.toml)` \|", README, re.M))
    assert table == set(files), f"README table {sorted(table)} vs policies/: {files}"
    # "exit 65 on errors, all listed"
    bad = tmp_path / "x.toml"
    bad.write_text('schema = 1\n[failback]\nhold_dwon = "5s"\nmin_dwell = 0\n[order]\nprefer = ["dokc"]\n')
    done = ok(run("policy", "check", str(bad)), 65)
    problems = done.stdout.strip().splitlines()
    assert len(problems) >= 2 and all(p.startswith(f"{bad}: ") for p in problems), done.stdout
    assert any("failback.hold_dwon: unknown key" in p for p in problems)
    assert any('order.prefer[0]: expected' in p and 'got "dokc"' in p for p in problems)
    doc = json.loads(ok(run("policy", "check", "--json", "policies/default.toml")).stdout)
    assert doc["schema"] == 1 and doc["files"][0]["ok"] is True


def test_policy_explain_with_the_documented_state_file(tmp_path):
    """docs/policy.md's state file example, as the README's `--state state.json`."""
    in_readme("mobikectl policy explain --policy policies/default.toml --state state.json")
    doc = re.search(r"#### The state file.*?```json\n(.*?)```", (REPO / "docs" / "policy.md").read_text(), re.S)
    assert doc, "docs/policy.md has no state file example"
    (tmp_path / "state.json").write_text(doc.group(1))
    done = ok(run("policy", "explain", "--policy", str(REPO / "policies/default.toml"), "--state", "state.json",
                  cwd=tmp_path))
    assert re.search(r"^pick: stay on wlan0", done.stdout, re.M), done.stdout
    doc = json.loads(ok(run("policy", "explain", "--policy", "policies/default.toml", "--state",
                            str(tmp_path / "state.json"), "--json")).stdout)
    assert doc["schema"] == 1


def test_policy_simulate_the_scenario_recordings():
    """`policy simulate FILE --inputs RECORDING` on every golden scenario (its own policy), and
    the README's form (policies/default.toml) on one recording."""
    in_readme("mobikectl policy simulate policies/default.toml --inputs run.jsonl")
    assert SCENARIOS
    for scenario in SCENARIOS:
        ref = scenario / "policy.ref"
        policy = ref.read_text().strip() if ref.exists() else str(scenario / "policy.toml")
        inputs = str((scenario / "inputs.jsonl").relative_to(REPO))
        done = ok(run("policy", "simulate", policy, "--inputs", inputs, "--json"))
        doc = json.loads(done.stdout)
        assert doc["schema"] == 1 and any(d["order"] == "SteerTo" for d in doc["decisions"]), scenario.name
    done = ok(run("policy", "simulate", "policies/default.toml", "--inputs",
                  "tests/scenarios/blackhole-failover/inputs.jsonl"))
    assert "SteerTo" in done.stdout


def test_run_refuses_without_prefer_best_path(tmp_path):
    """README: `mobikectl run` refuses to run without prefer_best_path = yes (exit 65, naming the file)."""
    conf = tmp_path / "strongswan.conf"
    conf.write_text("charon {\n    load_modular = yes\n}\n")
    done = ok(run("run", "--strongswan-conf", str(conf), "--socket", str(tmp_path / "s.sock"),
                  "--vici", str(tmp_path / "vici"), "--charon-wait", "0"), 65)
    assert str(conf) in done.stderr and "prefer_best_path" in done.stderr, done.stderr


def test_documented_exit_codes_offline(tmp_path):
    """The README's exit code table, for what needs no daemon: 2 usage, 65 bad data, 69 unreachable."""
    ok(run("switch"), 2)
    ok(run("switch", "wwan0", "--for", "soon"), 2)
    ok(run("status", "--socket", "x", "--lab", "y"), 2)
    ok(run("policy", "check", str(tmp_path / "missing.toml")), 65)
    done = ok(run("status", "--socket", str(tmp_path / "none.sock")), 69)
    assert "is `mobikectl run` running?" in done.stderr


# --- against a lab daemon ------------------------------------------------------------------

def test_daemon_examples_against_a_lab(lab_factory, tmp_path):
    lab = lab_factory(uplinks=["wlan0", "wwan0"])
    name = lab.name
    sock = f"/var/lib/mobikectl/labs/{name}/rw/mobikectl.sock"
    record = tmp_path / "run.jsonl"
    in_readme("mobikectl run --policy policies/default.toml", "mobikectl run --record run.jsonl ...",
              "mobikectl lab exec rw -- mobikectl run --socket /var/lib/mobikectl/labs/default/rw/mobikectl.sock")
    ctl = Controller(lab, REPO / "policies" / "default.toml", tmp_path)
    assert ctl.socket == sock
    follower = None
    try:
        ctl.start("--record", str(record))
        before = ctl.wait(lambda: baseline(lab), 10, "the SA on wlan0 carrying traffic")
        # "`ip route show proto 73` lists it"
        route = f"{t.GW_ADDR} via {WLAN.router_addr} dev wlan0 src {WLAN.rw_addr}"
        ctl.wait(lambda: route in " ".join(steering_routes(lab)), 5, "the steering route (proto 73) via wlan0")

        in_readme("mobikectl status", "mobikectl status --lab default", "mobikectl paths --json",
                  "mobikectl events --follow")
        text = ok(run("status", "--lab", name)).stdout
        for word in ("chosen: wlan0", "why:", "HEALTH", "RTT", "LOSS", "ESTABLISHED", "wwan metered"):
            assert word in text, (word, text)
        status = json.loads(ok(run("status", "--lab", name, "--json")).stdout)
        assert status["schema"] == 1 and status["status"]["daemon"]["policy"].endswith("policies/default.toml")
        (tmp_path / "state.json").write_text(json.dumps(status))
        paths = json.loads(ok(run("paths", "--lab", name, "--json")).stdout)
        assert paths["schema"] == 1 and {p["path"]["uplink"] for p in paths["paths"]} == {"wlan0", "wwan0"}
        for p in paths["paths"]:
            for key in ("health", "srtt", "loss", "last_probe", "probe_bytes_month"):
                assert key in p, (key, p)
        assert "BYTES THIS MONTH" in ok(run("paths", "--lab", name)).stdout
        assert "decision" in ok(run("events", "--lab", name)).stdout
        follower = subprocess.Popen([MOBIKECTL, "events", "--lab", name, "--follow"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=cli_env())
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)
        reader.start()

        # `reload` ("mobikectl reload") makes an event: repeated until the follower, connected by
        # then, shows one (it prints new events only)
        in_readme("mobikectl switch wwan0 --for 10m", "mobikectl switch --auto", "mobikectl reload")

        def reload_shown():
            if any(" policy: policy " in line for line in lines):
                return True
            done = ok(run("reload", "--lab", name))
            assert done.stdout.strip() == f"policy {REPO / 'policies' / 'default.toml'} in force", done.stdout
            return False

        ctl.wait(reload_shown, 10, "`events --follow` showing a reload", interval=0.3)

        # switch and back to automatic
        assert ok(run("switch", "--lab", name, "wwan0", "--for", "10m")).stdout.strip() == \
            "manual switch to wwan0 for 600 s"
        ctl.wait(lambda: settled_sa(lab, local=WWAN.rw_addr), 10, "the SA on wwan0 after the switch")
        assert spis(settled_sa(lab, local=WWAN.rw_addr)) == spis(before)
        assert ctl.status()["override"]["uplink"] == "wwan0"
        assert "ended" in ok(run("switch", "--lab", name, "--auto")).stdout
        assert ctl.status()["override"] is None
        # "or SIGHUP"
        seq = ctl.last_seq()
        os.kill(ctl.status()["daemon"]["pid"], signal.SIGHUP)
        ctl.wait(lambda: any(e["kind"] == "policy" and "in force" in e["message"] for e in ctl.events(since=seq)),
                 5, "the policy event of the SIGHUP reload")

        # the follower saw it all as text lines, and Ctrl-C ends it
        follower.send_signal(signal.SIGINT)
        follower.wait(10)
        reader.join(5)
        out, err = "".join(lines), follower.stderr.read()
        assert follower.returncode == 130 and "Traceback" not in err, (follower.returncode, err)
        assert re.search(r"^\S+Z #\d+ switch: manual switch to wwan0 for 600 s$", out, re.M), out
        assert re.search(r"^\S+Z #\d+ move: moved to wwan0:", out, re.M), out

        # policy explain: from the state file `status --json` wrote, and from the running daemon
        done = ok(run("policy", "explain", "--policy", str(REPO / "policies/default.toml"), "--state", "state.json",
                      cwd=tmp_path))
        assert re.search(r"^pick: stay on wlan0", done.stdout, re.M), done.stdout
        done = ok(run("policy", "explain", "--policy", "policies/default.toml", "--socket", sock))
        assert re.search(r"^pick: stay on wwan0", done.stdout, re.M), done.stdout  # min_dwell: 30 s

        # the lab's own commands
        in_readme("mobikectl lab status [--json]", "mobikectl lab impair wlan0 blackhole", "mobikectl lab clear [wlan0]")
        doc = json.loads(ok(run("lab", "status", "--name", name, "--json")).stdout)
        assert doc["schema"] == 1
        assert "wlan0: blackhole" in ok(run("lab", "impair", "--name", name, "wlan0", "blackhole")).stderr
        assert "wlan0: blackhole" in ok(run("lab", "status", "--name", name)).stdout
        assert "cleared wlan0" in ok(run("lab", "clear", "--name", name, "wlan0")).stderr
        assert "blackhole" not in ok(run("lab", "status", "--name", name)).stdout

        # "On stop (SIGTERM), the steering route stays by default"
        routes = steering_routes(lab)
        assert ctl.stop() is not None
        assert steering_routes(lab) == routes and routes
        ok(run("status", "--lab", name), 69)  # "69: the daemon ... unreachable"
    finally:
        if follower is not None:
            if follower.poll() is None:
                follower.kill()
                follower.wait(5)
            follower.stdout.close()
            follower.stderr.close()
        ctl.stop_all()
        print(f"\n{ctl.log_tail()}")

    # mobikectl policy simulate policies/default.toml --inputs run.jsonl (the lab's own recording)
    recorded = [json.loads(line)["fact"]["type"] for line in record.read_text().splitlines()]
    assert recorded.count("SwitchRequested") == 2, "the switch and the switch --auto must be recorded"
    done = ok(run("policy", "simulate", str(REPO / "policies/default.toml"), "--inputs", "run.jsonl",
                  "--json", cwd=tmp_path, timeout=20))
    decisions = json.loads(done.stdout)["decisions"]
    steer = [(d["uplink"], d["reason"]) for d in decisions if d["order"] == "SteerTo"]
    assert steer[0][0] == "wlan0" and ("wwan0", "manual switch to wwan0") in steer, steer

