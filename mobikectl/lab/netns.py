"""Namespace, veth, route and nftables helpers: thin wrappers around `ip`, `nft`, `sysctl`.

Everything here acts inside network namespaces named by the caller (always ``mk-...``);
nothing touches the host's interfaces or routes: links are created directly inside their
namespaces (``ip -n NS link add ... peer ... netns OTHER``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

from mobikectl.errors import InternalError, NotRoot, ToolMissing
from mobikectl.lab.topology import PREFIX

TOOLS = {
    "ip": "iproute2",
    "nft": "nftables",
    "ping": "iputils-ping",
    "sysctl": "procps",
    "conntrack": "conntrack",
    "swanctl": "strongswan-swanctl",
}


def require_root(what: str = "the lab") -> None:
    if os.geteuid() != 0:
        raise NotRoot(what)


def require_tool(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        raise ToolMissing(tool, TOOLS.get(tool, tool))
    return path


def run(argv: list[str], *, check: bool = True, input: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a tool; a failure becomes InternalError with the tool's own message."""
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ToolMissing(argv[0], TOOLS.get(os.path.basename(argv[0]), argv[0])) from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().replace("\n", "; ")
        msg = msg if len(msg) < 300 else msg[:300] + "..."
        raise InternalError(f"{' '.join(argv)[:200]}: {msg or f'exit {proc.returncode}'}")
    return proc


def ns_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def list_namespaces() -> list[str]:
    proc = run(["ip", "-j", "netns", "list"], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return [entry["name"] for entry in json.loads(proc.stdout)]


def lab_namespaces(prefix: str = PREFIX) -> list[str]:
    return [n for n in list_namespaces() if n.startswith(prefix)]


def add_namespace(ns: str) -> None:
    run(["ip", "netns", "add", ns])


def ns_pids(ns: str) -> list[int]:
    proc = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def kill_pids(pids: list[int], *, deadline_s: float = 3.0) -> None:
    """SIGTERM, wait (polling) until they are gone or the deadline passes, then SIGKILL."""
    pids = [p for p in pids if pid_alive(p)]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + deadline_s
    while pids and time.monotonic() < end:
        for p in pids:
            reap(p)
        pids = [p for p in pids if pid_alive(p)]
        if pids:
            time.sleep(0.02)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 2.0
    while pids and time.monotonic() < end:
        for p in pids:
            reap(p)
        pids = [p for p in pids if pid_alive(p)]
        if pids:
            time.sleep(0.02)


def delete_namespace(ns: str) -> None:
    """Kill every process living in the namespace, then delete it. Idempotent."""
    kill_pids(ns_pids(ns))
    run(["ip", "netns", "del", ns], check=False)


def ip_batch(ns: str, lines: list[str]) -> None:
    """Run many `ip` commands in one namespace with one process (`ip -n NS -batch -`)."""
    if lines:
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")


def ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", "-n", ns, *args], check=check)


def ip_json(ns: str, *args: str) -> list[dict]:
    proc = run(["ip", "-n", ns, "-j", *args], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def sysctls(ns: str, settings: dict[str, str | int]) -> None:
    args = [f"{k}={v}" for k, v in settings.items()]
    run(ns_argv(ns, ["sysctl", "-q", "-w", *args]))


def nft(ns: str, script: str, *, check: bool = True) -> subprocess.CompletedProcess:
    return run(ns_argv(ns, ["nft", "-f", "-"]), input=script, check=check)


def link_flags(ns: str, dev: str) -> list[str]:
    info = ip_json(ns, "link", "show", "dev", dev)
    return info[0].get("flags", []) if info else []


def ping(ns: str, dst: str, *, src: str | None = None, dev: str | None = None, count: int = 1,
         wait: float = 0.5, interval: float = 0.05, size: int | None = None, df: bool = False,
         timeout: float = 10) -> int:
    """Ping from a namespace; returns the number of replies (0 when none or on error)."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-W", str(wait)]
    if count > 1:
        argv += ["-i", str(interval)]
    if src or dev:
        argv += ["-I", src or dev]
    if size is not None:
        argv += ["-s", str(size)]
    if df:
        argv += ["-M", "do"]
    if ":" in dst:
        argv.insert(1, "-6")
    argv.append(dst)
    proc = run(ns_argv(ns, argv), check=False, timeout=timeout)
    for line in proc.stdout.splitlines():
        if "received" in line:
            try:
                return int(line.split(",")[1].split()[0])
            except (IndexError, ValueError):
                return 0
    return 0


def mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.strip() for line in f if text in line]
