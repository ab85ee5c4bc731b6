"""The composition root: makes the real adapters, checks what must hold before the daemon
starts, and turns control-socket requests into calls on the run loop. The run loop itself
is in daemon.py; nothing here decides anything."""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

from mobikectl.daemon import Daemon
from mobikectl.errors import DataError, MobikectlError, Unavailable
from mobikectl.policy.model import Policy
from mobikectl.settings import Settings

log = logging.getLogger("mobikectl.daemon")


# --- control requests that change things, executed on the loop thread -----------------------

def submit_handler(daemon: Daemon) -> Callable[[dict], dict]:
    """The control server's `submit`: validated switch/reload requests, answered by the loop."""

    def on_loop(request: dict) -> dict:
        if request["cmd"] == "reload":
            policy = daemon.reload(request.get("policy"))
            return {"ok": True, "message": f"policy {policy.source} in force", "policy": policy.source}
        if request.get("auto"):
            notes = daemon.switch(None, None, False)
        else:
            notes = daemon.switch(request["uplink"], request.get("for"), request.get("force", False))
        refused = [n for n in notes if n.kind == "switch" and n.data.get("refused")]
        rendered = [{"kind": n.kind, "message": n.message} for n in notes]
        if refused:  # the engine says whether force would do; what to type is ours to say
            hint = " (use --force to override)" if refused[0].data.get("forcible") else ""
            return {"ok": False, "error": {"code": 1, "message": refused[0].message + hint}, "notes": rendered}
        message = next((n.message for n in notes if n.kind == "switch"), "ok")
        return {"ok": True, "message": message, "notes": rendered}

    def submit(request: dict) -> dict:
        return daemon.call(lambda: on_loop(request), timeout=10.0)

    return submit


class _Recorder:
    """Writes every fact as one JSON line (`mobikectl policy simulate --inputs`)."""

    def __init__(self, path: str) -> None:
        from mobikectl.engine import codec

        self._codec = codec
        try:
            self._fp = open(path, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise DataError(f"{path}: cannot write the recording: {exc.strerror}") from None

    def __call__(self, now: float, fact: object) -> None:
        self._codec.write_recording(self._fp, now, fact)


class _Routes:
    """routes.py's functions as an object the loop can hold (and a test can replace)."""

    def __init__(self, proto: int) -> None:
        from mobikectl.adapters import routes

        self._r = routes
        self._proto = proto

    def install(self, order: object) -> None:
        self._r.install(order, proto=self._proto)

    def remove(self, gateway: str) -> None:
        self._r.remove(gateway, proto=self._proto)

    def remove_all(self) -> None:
        self._r.remove_all(proto=self._proto)


def build_daemon(settings: Settings, *, keep_routes_on_exit: bool = True, charon_wait: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> Daemon:
    """The composition root: checks what must hold before starting, then makes the real
    adapters. Raises a MobikectlError (one line, exit code) when something is missing."""
    from mobikectl.adapters.charon_conf import check_charon_settings
    from mobikectl.adapters.control import ControlServer
    from mobikectl.adapters.event_hub import EventHub
    from mobikectl.adapters.netlink import NetlinkAdapter
    from mobikectl.adapters.probes import ProbeAdapter
    from mobikectl.adapters.tunnel import TunnelSampler
    from mobikectl.adapters.vici import CharonAdapter
    from mobikectl.engine.engine import Engine
    from mobikectl.policy.load import load_policy

    policy = load_policy(settings.policy_file) if settings.policy_file else Policy()
    if os.path.exists(settings.charon.strongswan_conf):
        for warning in check_charon_settings(settings.charon.strongswan_conf):
            log.warning("%s", warning)
    else:
        log.warning("%s not found: cannot check charon's settings (prefer_best_path must be yes)",
                    settings.charon.strongswan_conf)
    lock = claim_charon(settings.charon.vici_socket)
    _wait_for_charon(settings, charon_wait)

    engine = Engine(policy, clock(), route_proto=settings.route_proto)
    hub = EventHub()
    recorder = _Recorder(settings.record_file) if settings.record_file else None
    daemon_ref: list[Daemon] = []

    def emit(fact: object) -> None:
        daemon_ref[0].emit(fact)

    daemon = Daemon(
        settings=settings, policy=policy, engine=engine,
        charon=CharonAdapter(emit=emit, settings=settings.charon),
        netlink=NetlinkAdapter(emit=emit),
        routes=_Routes(settings.route_proto),
        probes=ProbeAdapter(emit=emit),
        tunnel=TunnelSampler(emit=emit, device=settings.tunnel_device),
        hub=hub, clock=clock, recorder=recorder, policy_loader=load_policy,
        keep_routes_on_exit=keep_routes_on_exit,
    )
    daemon_ref.append(daemon)
    daemon.charon_lock = lock  # held (flock) for the daemon's life
    daemon.control = ControlServer(
        path=settings.control.socket, read_group=settings.control.read_group,
        get_view=lambda: daemon.call(daemon.view), submit=submit_handler(daemon), hub=hub,
    )
    return daemon


LOCK_DIR = "/run/mobikectl"


def claim_charon(vici_socket: str, lock_dir: str = LOCK_DIR) -> int:
    """One controller per charon: an exclusive flock on a file named after charon's VICI
    socket, held until the process ends (the kernel releases it even after a crash).
    Returns the open fd; Unavailable when another daemon holds it."""
    import fcntl
    import hashlib

    from mobikectl.adapters.vici import socket_path

    path = os.path.realpath(socket_path(vici_socket))
    try:
        os.makedirs(lock_dir, mode=0o755, exist_ok=True)
        name = os.path.join(lock_dir, "charon-" + hashlib.sha1(path.encode()).hexdigest()[:16] + ".lock")
        fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise Unavailable(f"cannot create the daemon lock in {lock_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").split()
        os.close(fd)
        pid = holder[0] if holder else "?"
        raise Unavailable(f"a mobikectl daemon (pid {pid}) already manages charon at {path}: "
                          f"stop it first (one controller per charon)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {path}\n".encode(), 0)
    return fd


def _wait_for_charon(settings: Settings, wait: float) -> None:
    """charon must be reachable at start (later losses are reconnected with backoff)."""
    from mobikectl.adapters.vici import connect_session, socket_path

    path = socket_path(settings.charon.vici_socket)
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        try:
            session = connect_session(path, settings.charon.command_timeout)
            session.version()
            try:
                session.transport.socket.close()
            except Exception:
                pass
            return
        except MobikectlError as exc:
            if time.monotonic() >= deadline:
                raise type(exc)(f"{exc} (waited {wait:g}s; is charon running? see --vici)") from None
        except Exception as exc:  # noqa: BLE001 - the vici package's own errors
            if time.monotonic() >= deadline:
                raise Unavailable(f"cannot talk to charon at {path}: {exc} "
                                  f"(waited {wait:g}s; is charon running? see --vici)") from None
        time.sleep(0.2)
