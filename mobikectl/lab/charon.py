"""The lab's charons: config rendering, start/stop by PID, swanctl load and initiate.

Each charon runs in its node's namespace with
  - its own strongswan.conf through STRONGSWAN_CONF (no Debian strongswan.d),
  - a private tmpfs on /run (`ip netns exec` already gives a private mount namespace, so
    the tmpfs dies with charon and nothing is left mounted on the host),
  - its VICI socket and filelog in the lab's state directory, outside /run.
The process is tracked by its PID: `ip netns exec` and `sh` both exec, so the PID of the
spawned process is charon's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path
from string import Template

from mobikectl.errors import InternalError, ToolMissing, Unavailable
from mobikectl.lab import topology as t
from mobikectl.lab.netns import kill_pids, pid_alive, run

CHARON = "/usr/lib/ipsec/charon"
LIBIPSEC_PLUGIN = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"
PROFILES = ("stock", "controller")
PSK = "mobikectl-lab-only-not-a-secret"

_children: dict[int, subprocess.Popen] = {}  # keeps Popen objects alive (no warnings, reaping)


def require_strongswan() -> None:
    if not os.access(CHARON, os.X_OK):
        raise ToolMissing(CHARON, "strongswan-charon")
    if not os.path.exists(LIBIPSEC_PLUGIN):
        raise ToolMissing(f"charon plugin kernel-libipsec ({LIBIPSEC_PLUGIN})", "libcharon-extra-plugins")
    from mobikectl.lab.netns import require_tool

    require_tool("swanctl")


def _template(name: str) -> Template:
    return Template(resources.files("mobikectl.lab").joinpath("configs", name).read_text())


def node_paths(node_dir: Path) -> dict[str, Path]:
    return {
        "dir": node_dir,
        "strongswan_conf": node_dir / "strongswan.conf",
        "swanctl_conf": node_dir / "swanctl.conf",
        "vici": node_dir / "charon.vici",
        "log": node_dir / "charon.log",
        "out": node_dir / "charon.out",
    }


def render(node: str, node_dir: Path, profile: str = "controller") -> dict[str, Path]:
    """Write strongswan.conf and swanctl.conf of a charon node (rw or gw) into its dir."""
    if profile not in PROFILES:
        raise InternalError(f"unknown charon profile {profile!r}")
    paths = node_paths(node_dir)
    node_dir.mkdir(parents=True, exist_ok=True)
    values = {
        "log": str(paths["log"]),
        "vici": str(paths["vici"]),
        "fwmark": hex(t.CHARON_FWMARK),
        "conn": t.CONN,
        "child": t.CHILD,
        "gw_addr": t.GW_ADDR,
        "rw_id": t.RW_ID,
        "gw_id": t.GW_ID,
        "protected_net": t.PROTECTED_NET,
        "vip_pool": t.VIP_POOL,
        "psk": f'"{PSK}"',
    }
    ss_name = "strongswan-gw.conf" if node == t.GW else f"strongswan-rw-{profile}.conf"
    paths["strongswan_conf"].write_text(_template(ss_name).substitute(values))
    paths["swanctl_conf"].write_text(_template(f"swanctl-{node}.conf").substitute(values))
    return paths


def env_for(node_dir: Path) -> dict[str, str]:
    """The environment a process in a charon node needs to find that charon."""
    paths = node_paths(node_dir)
    return {
        "STRONGSWAN_CONF": str(paths["strongswan_conf"]),
        "MOBIKECTL_LAB_DIR": str(node_dir),
        "MOBIKECTL_VICI": f"unix://{paths['vici']}",
    }


def start(ns: str, node_dir: Path) -> int:
    """Start charon in a namespace with a private /run; returns its PID (not waited for)."""
    paths = node_paths(node_dir)
    for stale in (paths["vici"],):
        try:
            stale.unlink()
        except FileNotFoundError:
            pass
    env = {**os.environ, **env_for(node_dir)}
    script = f"mount -t tmpfs -o mode=0755 mk-run /run && exec {CHARON}"
    with open(paths["out"], "ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "sh", "-c", script],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def stop(pid: int | None, *, deadline_s: float = 3.0) -> None:
    if pid and is_charon(pid):
        kill_pids([pid], deadline_s=deadline_s)
    if pid in _children:
        _children.pop(pid).poll()


def is_charon(pid: int | None) -> bool:
    """PID alive and still a charon (not a recycled PID)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return b"charon" in cmd


def vici_ready(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_ready(pid: int, node_dir: Path, *, deadline: float) -> None:
    """Poll until charon's VICI socket accepts connections (or charon died / time is up)."""
    paths = node_paths(node_dir)
    while time.monotonic() < deadline:
        if vici_ready(paths["vici"]):
            return
        if not pid_alive(pid):
            raise Unavailable(f"charon in {node_dir.name} exited at start: {tail(paths['out']) or tail(paths['log'])}")
        time.sleep(0.02)
    raise Unavailable(f"charon in {node_dir.name} did not open {paths['vici']} in time (see {paths['log']})")


def tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def swanctl(node_dir: Path, *args: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
    paths = node_paths(node_dir)
    argv = ["swanctl", *args, "--uri", f"unix://{paths['vici']}"]
    return run(argv, check=check, timeout=timeout)


def load_all(node_dir: Path) -> None:
    """What a service manager does after starting charon: load connections and secrets."""
    paths = node_paths(node_dir)
    swanctl(node_dir, "--load-all", "--noprompt", "--file", str(paths["swanctl_conf"]))


def initiate(node_dir: Path, *, timeout_s: int = 10, check: bool = True) -> subprocess.CompletedProcess:
    return swanctl(node_dir, "--initiate", "--ike", t.CONN, "--child", t.CHILD,
                   "--timeout", str(timeout_s), timeout=timeout_s + 5, check=check)
