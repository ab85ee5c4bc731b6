"""The control socket's client (the CLI side). Protocol: docs/control.md.

    request(path, {"cmd": "status"}) -> the reply dict ({"schema": 1, "ok": true, ...})
    events(path, follow=True, since=None) -> iterator of event dicts

Every failure is a MobikectlError with the right exit code, never a socket error:
no daemon at the path -> Unavailable (69); the socket's permissions or the daemon
refused -> PermissionDenied (77); a malformed reply -> DataError (65); an error reply ->
the error class of its code.
"""

from __future__ import annotations

import json
import socket
from typing import Iterator

from mobikectl.adapters.control_proto import SCHEMA, encode
from mobikectl.errors import (
    DataError, InternalError, MobikectlError, NotOk, PermissionDenied, Unavailable, UsageError,
)

DEFAULT_TIMEOUT = 10.0
_BY_CODE = {1: NotOk, 2: UsageError, 65: DataError, 69: Unavailable, 77: PermissionDenied}


def error_for(code: object, message: str, problems: list | None = None) -> MobikectlError:
    """The error a reply's {"code", "message", "problems"} stands for."""
    cls = _BY_CODE.get(code, InternalError) if isinstance(code, int) else InternalError
    if cls is DataError and isinstance(problems, list) and problems:
        return DataError(message, [str(p) for p in problems])
    return cls(message)


class _Connection:
    def __init__(self, path: str, timeout: float | None) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except PermissionError:
            self.sock.close()
            raise PermissionDenied(
                f"cannot connect to the mobikectl daemon at {path}: permission denied "
                "(reading needs root or the daemon's group, see `mobikectl run --group`)") from None
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            self.sock.close()
            raise Unavailable(f"cannot reach the mobikectl daemon at {path}: is `mobikectl run` running?") from None
        except OSError as exc:
            self.sock.close()
            raise Unavailable(f"cannot reach the mobikectl daemon at {path}: {exc.strerror or exc}") from None
        self.reader = self.sock.makefile("rb")

    def send(self, doc: dict) -> None:
        try:
            self.sock.sendall(encode(doc))
        except OSError as exc:
            raise Unavailable(f"the mobikectl daemon at {self.path} went away: {exc.strerror or exc}") from None

    def receive(self, *, eof: str) -> dict | None:
        """The next line as a dict; None at EOF (when `eof` is ""), else Unavailable(eof)."""
        try:
            line = self.reader.readline()
        except TimeoutError:
            raise Unavailable(f"the mobikectl daemon at {self.path} did not answer in time") from None
        except OSError as exc:
            raise Unavailable(f"the mobikectl daemon at {self.path} went away: {exc.strerror or exc}") from None
        if not line:
            if eof:
                raise Unavailable(eof)
            return None
        try:
            doc = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise DataError(f"the mobikectl daemon at {self.path} sent a malformed reply: {line[:200]!r}") from None
        if not isinstance(doc, dict):
            raise DataError(f"the mobikectl daemon at {self.path} sent a malformed reply: {line[:200]!r}")
        if doc.get("schema") != SCHEMA:
            raise DataError(f"the mobikectl daemon at {self.path} speaks schema {doc.get('schema')!r}; "
                            f"this mobikectl reads schema {SCHEMA} (versions differ?)")
        if doc.get("ok") is False:
            error = doc.get("error") if isinstance(doc.get("error"), dict) else {}
            raise error_for(error.get("code"), str(error.get("message", "the daemon refused without a reason")),
                            error.get("problems"))
        return doc

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def request(path: str, req: dict, *, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Send one request, return its (ok) reply."""
    conn = _Connection(path, timeout)
    try:
        conn.send(req)
        reply = conn.receive(eof=f"the mobikectl daemon at {path} closed the connection without answering")
        assert reply is not None
        if reply.get("ok") is not True:
            raise DataError(f"the mobikectl daemon at {path} sent a reply without \"ok\": {reply!r:.200}")
        return reply
    finally:
        conn.close()


def events(path: str, *, follow: bool = False, since: int | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> Iterator[dict]:
    """The daemon's events, one dict each. Without `follow`: the kept ones, then the
    iterator ends. With `follow`: then new ones as they come, until the daemon stops
    (the iterator ends) or goes away (Unavailable)."""
    conn = _Connection(path, timeout)
    try:
        conn.send({"cmd": "events", "follow": follow, "since": since})
        conn.receive(eof=f"the mobikectl daemon at {path} closed the connection without answering")
        if follow:
            conn.sock.settimeout(None)  # events come when they come
        while True:
            doc = conn.receive(eof=f"the mobikectl daemon at {path} closed the event stream (did it stop?)")
            assert doc is not None
            if "end" in doc:
                return
            if "seq" in doc:
                yield doc
    finally:
        conn.close()
