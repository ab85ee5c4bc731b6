"""lab down leaves nothing behind (also after kill -9); up over a crashed lab works."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from mobikectl.lab import topology as t
from mobikectl.lab.api import Lab
from mobikectl.lab.fixtures import unique_lab_name
from mobikectl.lab.netns import list_namespaces, mounts_mentioning, pid_alive

pytestmark = pytest.mark.netns


def leftovers(lab: Lab, pids: list[int]) -> list[str]:
    found = [ns for ns in list_namespaces() if ns.startswith(f"mk-{lab.name}-")]
    found += [f"pid {p}" for p in pids if pid_alive(p)]
    found += mounts_mentioning(f"mk-{lab.name}-")
    if lab.sd.path.exists():
        found.append(str(lab.sd.path))
    return found


def test_down_after_kill9_of_a_charon_leaves_nothing(lab_factory):
    lab = lab_factory(uplinks=["wwan0"])
    pids = list(lab.state.pids.values())
    os.kill(lab.state.pids["rw"], signal.SIGKILL)
    done = subprocess.run(["mobikectl", "lab", "down", "--name", lab.name], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert leftovers(lab, pids) == []
    assert lab.down()["removed_namespaces"] == []  # idempotent


def test_up_over_a_crashed_lab(lab_factory):
    lab = lab_factory(uplinks=["wlan0"])
    old = dict(lab.state.pids)
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)
    assert not lab.healthy()
    done = subprocess.run(["mobikectl", "lab", "up", "--name", lab.name, "--uplinks", "wlan0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "namespaces" in done.stderr and "tunnel" in done.stderr
    assert lab.tunnel_ok()
    assert set(lab.state.pids.values()).isdisjoint(old.values())


def test_down_of_a_half_built_lab(lab_env):
    lab = Lab(unique_lab_name())
    subprocess.run(["ip", "netns", "add", lab.ns(t.RW)], check=True)
    subprocess.run(["ip", "netns", "add", lab.ns(t.CORE)], check=True)
    try:
        assert sorted(lab.down()["removed_namespaces"]) == sorted([lab.ns(t.RW), lab.ns(t.CORE)])
    finally:
        for node in (t.RW, t.CORE):
            subprocess.run(["ip", "netns", "del", lab.ns(node)], capture_output=True)
    assert leftovers(lab, []) == []


def test_two_labs_coexist(lab_factory):
    a = lab_factory(uplinks=["wwan0"])
    b = lab_factory(uplinks=["wwan0"], profile="stock")
    assert a.tunnel_ok() and b.tunnel_ok()
    a.down()
    assert b.tunnel_ok()
    assert "prefer_best_path = no" in (b.node_dir("rw") / "strongswan.conf").read_text()


def test_not_root_exits_77(lab_env, non_root_runs):
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "mobikectl", "lab", "up", "--name", "nobody"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 77, done.stderr
    assert "root" in done.stderr and "Traceback" not in done.stderr


def test_status_of_a_lab_that_is_not_up_exits_1(lab_env):
    done = subprocess.run(["mobikectl", "lab", "status", "--name", "nosuchlab", "--json"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and '"up": false' in done.stdout


@pytest.mark.parametrize("attr, package", [("CHARON", "strongswan-charon"),
                                           ("LIBIPSEC_PLUGIN", "libcharon-extra-plugins")])
def test_missing_strongswan_names_the_package(lab_env, monkeypatch, attr, package):
    from mobikectl.errors import ToolMissing
    from mobikectl.lab import charon

    monkeypatch.setattr(charon, attr, "/nonexistent/" + attr.lower())
    lab = Lab(unique_lab_name())
    with pytest.raises(ToolMissing) as info:
        lab.up()
    assert info.value.package == package and info.value.exit_code == 69
    assert list_namespaces() == [ns for ns in list_namespaces() if not ns.startswith(f"mk-{lab.name}-")]


def test_down_all_removes_every_lab_namespace_and_state(lab_env, tmp_path, monkeypatch):
    """--all takes every mk-* namespace; here it is narrowed to this test's own labs so
    other labs on the machine survive the test."""
    import mobikectl.lab.api as api

    monkeypatch.setenv("MOBIKECTL_LAB_ROOT", str(tmp_path))
    labs = [Lab(unique_lab_name()), Lab(unique_lab_name())]
    try:
        for lab in labs:
            lab.up(uplinks=["wwan0"])
        mine = tuple(f"mk-{lab.name}-" for lab in labs)
        real = api.lab_namespaces
        monkeypatch.setattr(api, "lab_namespaces", lambda: [n for n in real() if n.startswith(mine)])
        pids = [p for lab in labs for p in lab.state.pids.values()]
        result = Lab.down_all()
        assert sorted(result["removed_labs"]) == sorted(lab.name for lab in labs)
        assert all(leftovers(lab, pids) == [] for lab in labs)
        assert list(tmp_path.iterdir()) == []
    finally:
        for lab in labs:
            lab.down()
