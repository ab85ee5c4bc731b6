"""The lab as a Python API: `Lab(name).up()`, `.status()`, `.impair(...)`, `.down()`.

Used by `mobikectl lab ...`, the demo, the tests (through fixtures.py) and the benchmark.
Waits poll a condition against a deadline (time.monotonic()); nothing sleeps blindly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from mobikectl.errors import MobikectlError, NotOk, Unavailable, UsageError
from mobikectl.lab import charon, impair as imp
from mobikectl.lab import topology as t
from mobikectl.lab.build import build, nat_ports
from mobikectl.lab.netns import (
    delete_namespace, lab_namespaces, list_namespaces, ns_argv, ping,
    require_root, require_tool,
)
from mobikectl.lab.sas import list_sas
from mobikectl.lab.state import LabState, StateDir, lab_root
from mobikectl.lab.status import collect_status

Progress = Callable[[str, float], None]
CHARON_NODES = (t.GW, t.RW)


class Lab:
    def __init__(self, name: str = "default", root: str | os.PathLike | None = None) -> None:
        self.sd = StateDir(name, root)
        self.name = self.sd.name

    # --- names and paths -------------------------------------------------------------
    def ns(self, node: str) -> str:
        return t.ns_name(self.name, node)

    def node_dir(self, node: str) -> Path:
        return self.sd.node_dir(node)

    def vici_path(self, node: str) -> Path:
        return charon.node_paths(self.node_dir(node))["vici"]

    def env(self, node: str) -> dict[str, str]:
        """Environment for a process in `node`: for rw and gw, how to find that charon."""
        env = {"MOBIKECTL_LAB": self.name, "MOBIKECTL_LAB_NODE": node}
        if node in CHARON_NODES:
            env.update(charon.env_for(self.node_dir(node)))
        return env

    @property
    def state(self) -> LabState | None:
        return self.sd.load()

    def _state(self) -> LabState:
        st = self.sd.load()
        if st is None:
            raise NotOk(f"lab {self.name!r} is not up (no {self.sd.state_file}): run mobikectl lab up --name {self.name}")
        return st

    # --- lifecycle -------------------------------------------------------------------
    def up(self, uplinks: list[str] | tuple[str, ...] | None = None, profile: str | None = None,
           progress: Progress | None = None, timeout: float = 20.0) -> dict:
        """Build the lab and wait until the tunnel carries traffic. Idempotent."""
        require_root("mobikectl lab up")
        for tool in ("ip", "nft", "ping", "sysctl"):
            require_tool(tool)
        charon.require_strongswan()
        uplinks = list(uplinks) if uplinks else None
        for u in uplinks or ():
            if u not in t.UPLINKS:
                raise UsageError(f"unknown uplink {u!r}: use a subset of {','.join(t.ALL_UPLINKS)}")
        if uplinks is not None and not uplinks:
            raise UsageError("--uplinks: give at least one uplink")
        if profile is not None and profile not in charon.PROFILES:
            raise UsageError(f"unknown profile {profile!r}: use {' or '.join(charon.PROFILES)}")

        old = self.sd.load()
        if old is not None and self.healthy(old):
            want_up = sorted(uplinks or old.uplinks, key=t.ALL_UPLINKS.index)
            if want_up != old.uplinks or (profile or old.profile) != old.profile:
                raise UsageError(
                    f"lab {self.name!r} is up with uplinks {','.join(old.uplinks)} and profile {old.profile}: "
                    f"run mobikectl lab down --name {self.name} first to change them")
            return {"already_up": True, "name": self.name, "timings": {}}

        uplinks = sorted(uplinks or list(t.ALL_UPLINKS), key=t.ALL_UPLINKS.index)
        profile = profile or "controller"
        timings: dict[str, float] = {}
        self._teardown(old)  # leftovers of a crashed or half-built lab
        try:
            t0 = time.monotonic()
            st = LabState(name=self.name, profile=profile, uplinks=uplinks,
                          namespaces={n: self.ns(n) for n in t.nodes_for(uplinks)},
                          created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            self.sd.save(st)
            build(self.name, uplinks)
            st.addresses = addresses_doc(uplinks)
            self.sd.save(st)
            timings["namespaces"] = time.monotonic() - t0
            _report(progress, "namespaces", timings["namespaces"])

            t1 = time.monotonic()
            for node in CHARON_NODES:
                charon.render(node, self.node_dir(node), profile)
                st.pids[node] = charon.start(self.ns(node), self.node_dir(node))
            self.sd.save(st)
            deadline = time.monotonic() + timeout
            for node in CHARON_NODES:
                charon.wait_ready(st.pids[node], self.node_dir(node), deadline=deadline)
                charon.load_all(self.node_dir(node))
            timings["charons"] = time.monotonic() - t1
            _report(progress, "charons", timings["charons"])

            t2 = time.monotonic()
            self._initiate_until_up(deadline)
            timings["tunnel"] = time.monotonic() - t2
            _report(progress, "tunnel", timings["tunnel"])
        except MobikectlError as exc:
            exc.message += f" (the half-built lab is left for inspection in {self.sd.path}; mobikectl lab down --name {self.name} removes it)"
            raise
        st.addresses["vip"] = self.vip()
        self.sd.save(st)
        return {"already_up": False, "name": self.name, "timings": timings, "uplinks": uplinks,
                "profile": profile, "vip": st.addresses["vip"], "state_dir": str(self.sd.path)}

    def _initiate_until_up(self, deadline: float) -> None:
        rw = self.node_dir(t.RW)
        last = ""
        while time.monotonic() < deadline:
            left = max(1, int(deadline - time.monotonic()))
            proc = charon.initiate(rw, timeout_s=min(5, left), check=False)
            if proc.returncode == 0 and self.wait_tunnel(min(deadline, time.monotonic() + 3)):
                return
            last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["tunnel carries no traffic"]
            last = last[0]
        raise Unavailable(f"tunnel of lab {self.name!r} did not come up: {last} (see {charon.node_paths(rw)['log']})")

    def healthy(self, st: LabState | None = None) -> bool:
        st = st or self.sd.load()
        if st is None:
            return False
        existing = set(list_namespaces())
        if not all(ns in existing for ns in st.namespaces.values()):
            return False
        if not all(charon.is_charon(st.pids.get(n)) for n in CHARON_NODES):
            return False
        return self.tunnel_ok()

    def down(self) -> dict:
        """Remove everything of this lab. Idempotent, also over a crashed or half-built lab."""
        require_root("mobikectl lab down")
        removed = self._teardown(self.sd.load())
        self.sd.remove()
        return {"name": self.name, "removed_namespaces": removed}

    def _teardown(self, st: LabState | None) -> list[str]:
        if st is not None:
            for node in (t.RW, t.GW):  # the charons first, gracefully
                charon.stop(st.pids.get(node))
        mine = {self.ns(n) for n in t.NODES} | set(st.namespaces.values() if st else ())
        removed = []
        for ns in list_namespaces():
            if ns in mine:
                delete_namespace(ns)
                removed.append(ns)
        return removed

    @staticmethod
    def down_all(root: str | os.PathLike | None = None) -> dict:
        """Remove every mobikectl lab: all `mk-*` namespaces and all state directories."""
        require_root("mobikectl lab down --all")
        base = lab_root(root)
        names = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        for name in names:
            try:
                lab = Lab(name, root)
            except UsageError:
                continue
            st = lab.sd.load()
            for node in (t.RW, t.GW):
                charon.stop(st.pids.get(node) if st else None)
        removed = []
        for ns in lab_namespaces():
            delete_namespace(ns)
            removed.append(ns)
        for name in names:  # by path: a directory name may not be a valid lab name
            shutil.rmtree(base / name, ignore_errors=True)
        return {"removed_namespaces": removed, "removed_labs": names}

    def restart_charon(self, node: str, timeout: float = 15.0) -> dict:
        """Restart a charon as a service manager would: stop, start fresh, load configs;
        on rw also initiate again (a restarted client has no SA until initiated)."""
        require_root("mobikectl lab restart-charon")
        if node not in CHARON_NODES:
            raise UsageError(f"restart-charon: node must be rw or gw, got {node!r}")
        st = self._state()
        t0 = time.monotonic()
        charon.stop(st.pids.get(node))
        st.pids[node] = charon.start(self.ns(node), self.node_dir(node))
        self.sd.save(st)
        deadline = time.monotonic() + timeout
        charon.wait_ready(st.pids[node], self.node_dir(node), deadline=deadline)
        charon.load_all(self.node_dir(node))
        result = {"node": node, "pid": st.pids[node]}
        if node == t.RW:
            self._initiate_until_up(deadline)
            result["tunnel"] = True
        else:
            # gw deletes its SAs (and tells rw) when it stops: rw has none until initiated.
            result["tunnel"] = self.tunnel_ok(count=1)
        result["seconds"] = round(time.monotonic() - t0, 3)
        return result

    # --- impairments -----------------------------------------------------------------
    def impair(self, uplink: str, kind: str, arg=None) -> dict:
        require_root("mobikectl lab impair")
        st = self._state()
        value = imp.parse_arg(kind, arg)
        if uplink not in st.uplinks:
            raise UsageError(f"uplink {uplink!r} is not in lab {self.name!r} (uplinks: {','.join(st.uplinks)})")
        records = st.impairments.setdefault(uplink, [])
        record = imp.apply(self.name, uplink, kind, value, st.nat_generation.get(uplink, 0))
        if kind == "up":
            records[:] = [r for r in records if r["kind"] != "down"]
        else:
            if kind == "nat-remap":
                st.nat_generation[uplink] = record["generation"]
                records[:] = [r for r in records if r["kind"] != "nat-remap"]
            records.append(record)
        if not records:
            st.impairments.pop(uplink, None)
        self.sd.save(st)
        return record

    def clear(self, uplink: str | None = None) -> list[str]:
        require_root("mobikectl lab clear")
        st = self._state()
        if uplink is not None and uplink not in st.uplinks:
            raise UsageError(f"uplink {uplink!r} is not in lab {self.name!r} (uplinks: {','.join(st.uplinks)})")
        targets = [uplink] if uplink else list(st.uplinks)
        for u in targets:
            imp.clear(self.name, u, st.impairments.get(u, []), st.nat_generation.get(u, 0))
            st.impairments.pop(u, None)
            st.nat_generation.pop(u, None)
        self.sd.save(st)
        return targets

    # --- running things inside ---------------------------------------------------------
    def _argv_env(self, node: str, argv: list[str], env: dict | None) -> tuple[list[str], dict]:
        if node not in t.NODES:
            raise UsageError(f"unknown node {node!r}: use one of {', '.join(t.NODES)}")
        return ns_argv(self.ns(node), list(argv)), {**os.environ, **self.env(node), **(env or {})}

    def exec(self, node: str, argv: list[str], *, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        full, full_env = self._argv_env(node, argv, env)
        return subprocess.run(full, env=full_env, **kw)

    def popen(self, node: str, argv: list[str], *, env: dict | None = None, **kw) -> subprocess.Popen:
        full, full_env = self._argv_env(node, argv, env)
        return subprocess.Popen(full, env=full_env, **kw)

    # --- probes ------------------------------------------------------------------------
    def list_sas(self, node: str = t.RW) -> list[dict]:
        return list_sas(self.vici_path(node))

    def vip(self) -> str | None:
        try:
            for sa in self.list_sas(t.RW):
                if sa["local_vips"]:
                    return sa["local_vips"][0]
        except Unavailable:
            pass
        st = self.sd.load()
        return (st.addresses.get("vip") if st else None)

    def tunnel_ok(self, count: int = 3) -> bool:
        """Does a ping from the virtual IP reach the protected host (any of `count`)?"""
        vip = self.vip()
        if not vip:
            return False
        return ping(self.ns(t.RW), t.SRV_ADDR, src=vip, count=count, wait=0.5, interval=0.05) > 0

    def wait_tunnel(self, deadline: float) -> bool:
        """Poll until the tunnel carries a ping (True) or `deadline` (monotonic) passes."""
        while True:
            if self.tunnel_ok(count=1):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def uplink_reaches_gateway(self, uplink: str, count: int = 1, wait: float = 0.5) -> bool:
        """A ping bound to that device from rw to the gateway's first address."""
        return ping(self.ns(t.RW), t.GW_ADDR, dev=uplink, count=count, wait=wait, interval=0.05) > 0

    def status(self) -> dict:
        return collect_status(self)


def addresses_doc(uplinks: list[str]) -> dict:
    doc = {"uplinks": {}, "gw": list(t.GW_ADDRS) + [t.GW_ADDR6], "srv": t.SRV_ADDR,
           "protected_net": t.PROTECTED_NET, "vip_pool": t.VIP_POOL}
    for name in uplinks:
        u = t.UPLINKS[name]
        doc["uplinks"][name] = {"router": u.router, "nat": u.nat, "metric": u.metric, "address": u.rw_addr,
                                "address6": u.rw_addr6, "gateway": u.router_addr, "public": u.wan_addr}
    return doc


def nat_ports_of(st: LabState, uplink: str) -> str | None:
    if not t.UPLINKS[uplink].nat:
        return None
    return "%d-%d" % nat_ports(st.nat_generation.get(uplink, 0))


def _report(progress: Progress | None, step: str, seconds: float) -> None:
    if progress:
        progress(step, seconds)

