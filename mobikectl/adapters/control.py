"""The control socket's server: `mobikectl status`, `events`, `switch`, ... talk to it.

    ControlServer(path=..., read_group="mobikectl", get_view=..., submit=..., hub=...)
        .start()    binds the socket, starts the "control-accept" thread
        .stop()     closes it, ends event streams, removes the socket file

The protocol (one JSON object a line, both ways) is in docs/control.md. The server never
touches the engine: `get_view()` returns the snapshot the run loop publishes, `submit()`
hands a validated switch/reload request to the run loop and returns its reply dict
({"ok": true, ...} or {"ok": false, "error": {"code", "message"}}; it may also raise a
MobikectlError, whose exit code becomes the error code), and `hub` is the EventHub.
Each connection gets its own "control-conn-N" thread; requests on one connection are
answered in order. Peer credentials (SO_PEERCRED) decide what a client may do: reading
for root and members of `read_group`, changing for root only.
"""

from __future__ import annotations

import grp
import itertools
import logging
import os
import select
import socket
import stat
import threading
from typing import Callable

from mobikectl.adapters.control_proto import (
    CHANGE, READ, SCHEMA, ControlError, Peer, encode, error_reply, parse_request, peer_credentials,
)
from mobikectl.adapters.event_hub import EventHub, HubClosed, Overrun
from mobikectl.errors import EX_SOFTWARE, EX_UNAVAILABLE, MobikectlError, Unavailable

__all__ = ["ControlServer", "EventHub"]

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
MAX_CLIENTS = 64
IDLE_TIMEOUT = 60.0


class ControlServer:
    def __init__(self, *, path: str, read_group: str | None, get_view: Callable[[], dict],
                 submit: Callable[[dict], dict], hub: EventHub,
                 credentials: Callable[[socket.socket], Peer] = peer_credentials,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.path = path
        self.read_group = read_group
        self._get_view = get_view
        self._submit = submit
        self._hub = hub
        self._credentials = credentials
        self._idle = idle_timeout
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._stopping = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._subs: set = set()  # the followers' subscriptions
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._accept: threading.Thread | None = None

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._listener = self._bind()
        self._accept = threading.Thread(target=self._accept_loop, name="control-accept", daemon=True)
        self._accept.start()
        log.info("control socket at %s", self.path)

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            following = list(self._subs)
        for sub in following:
            sub.close()  # wakes the followers: they send "end" and hang up
        if self._accept is not None:
            self._accept.join(timeout=2)
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=2)
        try:
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    def _bind(self) -> socket.socket:
        parent = os.path.dirname(self.path) or "."
        if not os.path.isdir(parent):
            try:
                os.makedirs(parent, exist_ok=True)
                os.chmod(parent, 0o755)
            except OSError as exc:
                raise Unavailable(f"control socket {self.path}: cannot create {parent}: {exc.strerror}") from None
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o660)
            gid = _group_id(self.read_group)
            if gid is not None:
                os.chown(self.path, -1, gid)
            else:
                log.info("control socket: %s: only root may use it",
                         f"group {self.read_group!r} does not exist" if self.read_group else "no read group")
            sock.listen(16)
            sock.settimeout(0.5)
        except OSError as exc:
            sock.close()
            raise Unavailable(f"control socket {self.path}: cannot listen: {exc.strerror or exc}") from None
        self._inode = os.stat(self.path).st_ino
        return sock

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise Unavailable(f"control socket {self.path}: the path exists and is not a socket: "
                              "remove it or choose another --socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)  # nobody listens: left over from a daemon that died
            return
        finally:
            probe.close()
        raise Unavailable(f"control socket {self.path}: another mobikectl daemon is listening there")

    # --- connections ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            with self._lock:
                busy = len(self._threads) >= MAX_CLIENTS
            if busy:
                self._send(conn, error_reply(EX_UNAVAILABLE, f"too many clients (at most {MAX_CLIENTS})"))
                conn.close()
                continue
            t = threading.Thread(target=self._serve, args=(conn,), name=f"control-conn-{next(self._numbers)}",
                                 daemon=True)
            with self._lock:
                self._threads.add(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        reader = None
        try:
            conn.settimeout(self._idle)
            peer = self._credentials(conn)
            reader = conn.makefile("rb")
            while not self._stopping.is_set():
                line = reader.readline(MAX_LINE + 1)
                if not line:
                    return
                if len(line) > MAX_LINE:
                    self._send(conn, error_reply(65, f"request longer than {MAX_LINE} bytes"))
                    return
                if not line.strip():
                    continue
                if not self._handle(conn, peer, line):
                    return
        except (OSError, ValueError):
            pass  # the client went away or idled out
        except Exception:
            log.exception("control connection failed")
        finally:
            if reader is not None:
                reader.close()  # the fd stays open while the file object lives
            conn.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handle(self, conn: socket.socket, peer: Peer, line: bytes) -> bool:
        """Answer one request line. False: the connection is done."""
        try:
            request = parse_request(line)
            self._authorize(peer, request["cmd"])
        except ControlError as exc:
            return self._send(conn, error_reply(exc.code, exc.message))
        cmd = request["cmd"]
        if cmd == "events":
            self._events(conn, request)
            return False
        try:
            reply = self._read(cmd) if cmd in READ else self._change(request)
        except ControlError as exc:
            reply = error_reply(exc.code, exc.message, exc.problems)
        return self._send(conn, reply)

    def _authorize(self, peer: Peer, cmd: str) -> None:
        if peer.uid == 0:
            return
        if cmd in CHANGE:
            raise ControlError(77, f"permission denied: `{cmd}` changes the controller and needs root "
                                   f"(you are uid {peer.uid})")
        gid = _group_id(self.read_group)
        if gid is None:
            raise ControlError(77, f"permission denied: reading the daemon's state needs root (group "
                                   f"{self.read_group!r} does not exist on this host; uid {peer.uid})")
        if gid not in peer.groups:
            raise ControlError(77, f"permission denied: reading the daemon's state needs root or "
                                   f"membership in group {self.read_group!r} (uid {peer.uid})")

    def _read(self, cmd: str) -> dict:
        try:
            view = self._get_view()
        except MobikectlError as exc:
            raise ControlError(exc.exit_code, f"cannot read the daemon's state: {exc}") from None
        except Exception as exc:
            log.exception("get_view failed")
            raise ControlError(EX_SOFTWARE, f"cannot read the daemon's state: {type(exc).__name__}: {exc}") from None
        if cmd == "paths":
            body = {"now": view.get("now"), "paths": view.get("paths", []), "uplinks": view.get("uplinks", {}),
                    "probe_counters": view.get("probe_counters", {})}
        else:
            body = {cmd: view}
        return {"schema": SCHEMA, "ok": True, **body}

    def _change(self, request: dict) -> dict:
        log.info("control: %s", request)
        try:
            reply = self._submit(request)
        except MobikectlError as exc:
            raise ControlError(exc.exit_code, str(exc), getattr(exc, "problems", None)) from None
        except TimeoutError:
            raise ControlError(EX_UNAVAILABLE, "the daemon's run loop did not answer in time") from None
        except Exception as exc:
            log.exception("control request %s failed", request)
            raise ControlError(EX_SOFTWARE, f"{type(exc).__name__}: {exc}") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise ControlError(EX_SOFTWARE, f"the run loop gave a malformed answer: {reply!r}")
        return {**reply, "schema": SCHEMA}

    def _events(self, conn: socket.socket, request: dict) -> None:
        since, follow = request["since"], request["follow"]
        if not follow:
            events = self._hub.recent(since)
            self._send(conn, {"schema": SCHEMA, "ok": True, "follow": False, "last_seq": self._hub.last_seq,
                              "first_seq": self._hub.first_seq})
            for event in events:
                if not self._send(conn, event):
                    return
            self._send(conn, {"schema": SCHEMA, "ok": True, "end": "no more events"})
            return
        sub = self._hub.subscribe(since)
        with self._lock:
            self._subs.add(sub)
        try:
            if not self._send(conn, {"schema": SCHEMA, "ok": True, "follow": True, "last_seq": self._hub.last_seq,
                                     "first_seq": self._hub.first_seq}):
                return
            conn.settimeout(5.0)  # a client that does not read for 5 s is dropped
            while not self._stopping.is_set():
                try:
                    event = sub.get(timeout=0.5)
                except Overrun as exc:
                    self._send(conn, error_reply(EX_UNAVAILABLE, f"event stream: this client {exc}: "
                                                                 f"reconnect with since={exc.last_seq}"))
                    return
                except HubClosed:
                    break
                if event is not None and not self._send(conn, event):
                    return
                if event is None and _hung_up(conn):
                    return
            self._send(conn, {"schema": SCHEMA, "ok": True, "end": "daemon stopping"})
        finally:
            sub.close()
            with self._lock:
                self._subs.discard(sub)

    @staticmethod
    def _send(conn: socket.socket, doc: dict) -> bool:
        try:
            conn.sendall(encode(doc))
            return True
        except OSError:
            return False


def _hung_up(conn: socket.socket) -> bool:
    """True when a following client closed its end (it sends nothing while following)."""
    poller = select.poll()
    poller.register(conn, select.POLLIN | select.POLLHUP)
    if not poller.poll(0):
        return False
    try:
        return conn.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _group_id(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
