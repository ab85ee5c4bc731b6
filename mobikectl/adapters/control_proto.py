"""The control protocol's pieces that server and client share: request validation,
reply envelopes, peer credentials. The protocol itself is described in docs/control.md."""

from __future__ import annotations

import json
import math
import os
import pwd
import socket
import struct
from dataclasses import dataclass, field

SCHEMA = 1
READ = ("status", "paths", "state", "events")  # root and members of the read group
CHANGE = ("switch", "reload")  # root only
COMMANDS = READ + CHANGE


class ControlError(Exception):
    """A request the server answers with an error reply (code = an exit code)."""

    def __init__(self, code: int, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = problems if problems and len(problems) > 1 else None


def encode(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str).encode() + b"\n"


def error_reply(code: int, message: str, problems: list[str] | None = None) -> dict:
    """An error reply; `problems` (every error of a bad policy file) only when > 1."""
    error: dict = {"code": code, "message": message}
    if problems and len(problems) > 1:
        error["problems"] = list(problems)
    return {"schema": SCHEMA, "ok": False, "error": error}


def _bad(message: str) -> ControlError:
    return ControlError(65, f"malformed request: {message}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_request(line: bytes | str) -> dict:
    """One request line -> a validated, normalised request dict (every key present), or
    ControlError(65). Unknown keys are errors: a typo must not pass silently."""
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _bad(f"expected a JSON object, got {type(doc).__name__}")
    cmd = doc.get("cmd")
    if cmd not in COMMANDS:
        raise _bad(f"cmd: expected one of {', '.join(COMMANDS)}, got {json.dumps(cmd)}")

    def keys(*allowed: str) -> None:
        extra = sorted(set(doc) - {"cmd", "schema", *allowed})
        if extra:
            raise _bad(f"{cmd}: unknown key {extra[0]!r} (allowed: {', '.join(allowed) or 'none'})")

    def flag(key: str) -> bool:
        value = doc.get(key, False)
        if not isinstance(value, bool):
            raise _bad(f"{cmd}.{key}: expected true or false, got {json.dumps(value)}")
        return value

    if cmd in ("status", "paths", "state"):
        keys()
        return {"cmd": cmd}
    if cmd == "events":
        keys("follow", "since")
        since = doc.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            raise _bad(f"events.since: expected an integer >= 0 or null, got {json.dumps(since)}")
        return {"cmd": cmd, "follow": flag("follow"), "since": since}
    if cmd == "reload":
        keys("policy")
        policy = doc.get("policy")
        if policy is not None and (not isinstance(policy, str) or not policy):
            raise _bad(f"reload.policy: expected a file path or null, got {json.dumps(policy)}")
        return {"cmd": cmd, "policy": policy}
    # switch
    keys("uplink", "for", "force", "auto")
    if flag("auto"):
        if doc.get("uplink") is not None or doc.get("for") is not None or doc.get("force"):
            raise _bad("switch: auto ends the override; give it without uplink, for or force")
        return {"cmd": cmd, "auto": True}
    uplink = doc.get("uplink")
    if not isinstance(uplink, str) or not uplink:
        raise _bad(f"switch.uplink: expected an uplink name (or auto: true), got {json.dumps(uplink)}")
    duration = doc.get("for")
    if duration is not None and (not _is_number(duration) or duration <= 0):
        raise _bad(f"switch.for: expected seconds > 0 or null, got {json.dumps(duration)}")
    return {"cmd": cmd, "auto": False, "uplink": uplink,
            "for": None if duration is None else float(duration), "force": flag("force")}


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a unix socket."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = field(default_factory=frozenset)  # gid and supplementary groups


def peer_credentials(conn: socket.socket) -> Peer:
    """SO_PEERCRED, plus the peer's supplementary groups (from /proc/PID/status, or the
    group database when /proc is not ours)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid, frozenset({gid, *_groups_of(pid, uid, gid)}))


def _groups_of(pid: int, uid: int, gid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        if status.get("Uid", "").split()[:1] == [str(uid)]:
            return [int(g) for g in status.get("Groups", "").split()]
    except (OSError, ValueError):
        pass
    try:
        return os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except (KeyError, OSError):
        return []
