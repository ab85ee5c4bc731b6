"""VICI queries the lab needs (list-sas, events), with vici's bytes turned into str.

The `vici` package is blocking and not thread-safe: one Session per use here, never shared.
Nothing above this module sees a vici type.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

from mobikectl.errors import Unavailable


def _decode(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {k.decode() if isinstance(k, bytes) else k: _decode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decode(v) for v in value]
    return value


def session(vici_path: Path | str, timeout: float = 5.0):
    import vici

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(vici_path))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"charon's VICI socket {vici_path}: {exc.strerror or exc}: is the lab up? (mobikectl lab status)") from None
    return vici.Session(sock=sock)


def list_sas(vici_path: Path | str, *, timeout: float = 5.0) -> list[dict]:
    """One dict per IKE_SA: name, state, endpoints, SPIs, virtual IPs, children."""
    import vici

    sess = session(vici_path, timeout)
    try:
        raw = [_decode(entry) for entry in sess.list_sas()]
    except (vici.exception.SessionException, vici.exception.CommandException, OSError) as exc:
        raise Unavailable(f"list-sas over {vici_path}: {exc}") from None
    finally:
        sess.transport.socket.close()
    out = []
    for entry in raw:
        for name, sa in entry.items():
            out.append(summarize(name, sa))
    return out


def summarize(name: str, sa: dict) -> dict:
    children = []
    for child_key, child in (sa.get("child-sas") or {}).items():
        children.append({
            "name": child.get("name", child_key),
            "uniqueid": child.get("uniqueid"),
            "state": child.get("state"),
            "spi_in": child.get("spi-in"),
            "spi_out": child.get("spi-out"),
            "local_ts": child.get("local-ts", []),
            "remote_ts": child.get("remote-ts", []),
            "encap": child.get("encap") == "yes",
        })
    return {
        "name": name,
        "uniqueid": sa.get("uniqueid"),
        "state": sa.get("state"),
        "local_host": sa.get("local-host"),
        "local_port": _int(sa.get("local-port")),
        "remote_host": sa.get("remote-host"),
        "remote_port": _int(sa.get("remote-port")),
        "local_id": sa.get("local-id"),
        "remote_id": sa.get("remote-id"),
        "initiator_spi": sa.get("initiator-spi"),
        "responder_spi": sa.get("responder-spi"),
        "nat_local": sa.get("nat-local") == "yes",
        "nat_remote": sa.get("nat-remote") == "yes",
        "local_vips": sa.get("local-vips", []),
        "remote_vips": sa.get("remote-vips", []),
        "tasks_active": sa.get("tasks-active", []),
        "children": children,
    }


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


class EventListener:
    """Listens for VICI events on its own session; `events(deadline)` yields (name, msg, t).

    Register before causing what you want to observe (the session is registered in
    __init__ by priming the generator).
    """

    def __init__(self, vici_path: Path | str, names: tuple[str, ...] = ("ike-update", "child-rekey", "ike-updown")) -> None:
        self._sess = session(vici_path, timeout=5.0)
        self._gen = self._sess.listen(list(names), timeout=0.1)
        # Drive the generator up to its first poll: registration happens before it yields.
        first = next(self._gen)
        self._pending = [] if first == (None, None) else [(first, time.monotonic())]

    def events(self, deadline: float) -> Iterator[tuple[str, dict, float]]:
        while self._pending:
            (name, msg), at = self._pending.pop(0)
            yield name.decode(), _decode(msg), at
        while time.monotonic() < deadline:
            name, msg = next(self._gen)
            if name is None:
                continue
            yield name.decode(), _decode(msg), time.monotonic()

    def wait_for(self, name: str, deadline: float) -> tuple[dict, float] | None:
        for ev_name, msg, at in self.events(deadline):
            if ev_name == name:
                return msg, at
        return None

    def close(self) -> None:
        try:
            self._gen.close()
        except Exception:  # the session may already be broken; closing is best effort
            pass
        try:
            self._sess.transport.socket.close()
        except OSError:
            pass

    def __enter__(self) -> "EventListener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
