"""The VICI adapter: follows charon and carries out the engine's charon orders.

Theory of operation
- Two sessions, never shared (the `vici` package is blocking and not thread-safe):
  * the **event session** lives in the thread "vici-events". It registers ike-updown,
    ike-update, child-updown, ike-rekey, child-rekey (never `alert`: 5.9.8 does not know it
    and the failed registration spoils the session), listens with a short timeout (so
    stop() and the watchdog run), translates each event (vici_translate) and calls
    `emit(fact)`. A child-updown is answered with a fresh SaSnapshot.
  * the **command session** is used under one lock by whoever calls snapshot(),
    initiate(), terminate(), reload_settings(), version(): the run loop, and the event
    thread when it (re)connects. Commands are therefore serialised (concurrent
    initiate/terminate can deadlock charon 5.9.8), and every one has a timeout: the
    socket's (first byte of each frame) plus an overall deadline for streamed commands.
    After a timeout or a broken frame the session is dropped and opened afresh.
- (Re)connection, in the event thread, with tenacity: exponential backoff from 50 ms,
  capped at 2 s, forever until stop(). Once connected: register, then `CharonConnected`,
  then one `SaSnapshot` (subscribe first, then list, then stream: events that arrive
  meanwhile follow the snapshot). When charon goes away (EOF, broken pipe, or the watchdog's
  `version` ping unanswered after `watchdog_s` of silence): `CharonLost(why)`, once per
  outage, and the loop starts again. A charon that is not there at start is reported
  once the same way.
- Nothing of the `vici` package escapes: its exceptions and OSError become
  CharonUnavailable / CharonTimeout (exit 69) or CharonRefused (exit 1).

SaSnapshot.complete: `list-sas noblock` skips IKE_SAs that are checked out (busy, e.g. a
MOBIKE exchange in progress). The adapter asks `stats` for charon's own count of IKE_SAs
first: when the listing holds fewer, `complete` is False.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from tenacity import RetryError, Retrying, retry_if_exception_type, wait_exponential

from mobikectl.adapters import vici_translate as vt
from mobikectl.adapters.charon_conf import check_charon_settings  # noqa: F401 (start-up check)
from mobikectl.engine.actions import Initiate, Resync, Terminate
from mobikectl.engine.inputs import CharonConnected, CharonLost, SaSnapshot
from mobikectl.errors import InternalError, MobikectlError, NotOk, Unavailable
from mobikectl.settings import CharonSettings

log = logging.getLogger(__name__)

Emit = Callable[[object], None]


class CharonUnavailable(Unavailable):
    """charon's VICI socket cannot be reached, or the session broke."""


class CharonTimeout(CharonUnavailable):
    """charon did not answer a command in time."""


class CharonRefused(NotOk):
    """charon answered a command with success = no (its errmsg is in the message)."""


def socket_path(uri: str) -> str:
    """`unix:///run/charon.vici` or a plain path → the path."""
    return uri[len("unix://"):] if uri.startswith("unix://") else uri


def connect_session(path: str, timeout: float | None) -> Any:
    """The real session factory: a vici.Session on a unix socket with `timeout` set."""
    import vici

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout if timeout is not None else 5.0)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    sock.settimeout(timeout)
    return vici.Session(sock)


def _foreign(exc: BaseException) -> bool:
    """An exception from the vici package or the socket layer."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith("vici")


def _translate_error(exc: BaseException, what: str) -> Exception:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return CharonTimeout(f"charon did not answer {what} in time")
    if isinstance(exc, OSError) and str(exc) == "Connection closed":
        return CharonUnavailable(f"charon closed its VICI connection during {what} (stopped or restarted?)")
    if type(exc).__name__ == "CommandException":
        return CharonRefused(f"charon refused {what}: {str(exc).removeprefix('Command failed: ')}")
    return CharonUnavailable(f"charon {what} failed: {exc or type(exc).__name__}")


def _close(session: Any) -> None:
    try:
        session.transport.close()
    except Exception:  # noqa: BLE001 - closing a broken session must not raise
        pass


class CharonAdapter:
    def __init__(self, *, emit: Emit, settings: CharonSettings | None = None,
                 session_factory: Callable[[str, float | None], Any] = connect_session,
                 tick_s: float = 0.5, watchdog_s: float = 30.0, backoff_max_s: float = 2.0) -> None:
        self.emit = emit
        self.settings = settings or CharonSettings()
        self.path = socket_path(self.settings.vici_socket)
        self.factory = session_factory
        self.tick_s = tick_s
        self.watchdog_s = watchdog_s
        self.backoff_max_s = backoff_max_s
        self.events = list(vt.EVENTS)
        self._lock = threading.RLock()
        self._cmd: Any = None
        self._evs: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vici-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        evs = self._evs
        if evs is not None:  # wake the listener now rather than at its next tick
            try:
                evs.transport.socket.shutdown(socket.SHUT_RDWR)
            except Exception:  # noqa: BLE001
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            self._drop_cmd()

    def _run(self) -> None:
        lost_reported = False
        pause = 0.0

        def unreachable(err: CharonUnavailable) -> None:
            nonlocal lost_reported
            if not lost_reported:
                self.emit(CharonLost(str(err)))
                lost_reported = True

        while not self._stop.wait(pause):
            try:
                session = self._connect_events(unreachable)
            except RetryError:
                return  # stopped while waiting
            try:
                self._serve(session)
                why = "charon's event session ended"
            except Exception as exc:  # noqa: BLE001 - every failure ends the session
                if type(exc).__name__ == "EventUnknownException":
                    self._drop_unknown_event(str(exc))
                    why = ""
                elif isinstance(exc, MobikectlError):
                    why = str(exc)
                elif _foreign(exc):
                    why = str(_translate_error(exc, "event session"))
                else:
                    log.exception("vici event thread: unexpected error")
                    why = f"internal error in the VICI adapter: {exc!r}"
            finally:
                self._evs = None
                _close(session)
                with self._lock:
                    self._drop_cmd()
            if self._stop.is_set():
                return
            was_connected = self.connected.is_set()
            self.connected.clear()
            if was_connected:
                lost_reported = False
            if why:
                unreachable(CharonUnavailable(why))
            # reconnect at once after a working session; back off when it failed at once
            pause = 0.0 if was_connected else min(max(pause * 2, 0.05), self.backoff_max_s)

    def _connect_events(self, on_first_failure: Callable[[CharonUnavailable], None]) -> Any:
        """Open the event session, retrying with backoff (tenacity) until it works or stop();
        the first failure is reported through `on_first_failure`."""
        failures = 0

        def attempt() -> Any:
            nonlocal failures
            try:
                return self.factory(self.path, None)
            except Exception as exc:  # noqa: BLE001
                failures += 1
                err = CharonUnavailable(f"cannot reach charon at {self.path}: {exc}")
                if failures == 1:
                    on_first_failure(err)
                raise err from None

        retrying = Retrying(
            wait=wait_exponential(multiplier=0.05, min=0.05, max=self.backoff_max_s),
            retry=retry_if_exception_type(CharonUnavailable),
            stop=lambda state: self._stop.is_set(),
            sleep=self._stop.wait,
            reraise=False,
        )
        return retrying(attempt)

    def _drop_unknown_event(self, message: str) -> None:
        for name in list(self.events):
            if f"'{name}'" in message:
                log.warning("charon does not know the VICI event %s (older than 5.9.2?): "
                            "listening without it", name)
                self.events.remove(name)
                return
        raise InternalError(f"charon refused an event registration: {message}")

    def _serve(self, session: Any) -> None:
        self._evs = session
        stream = session.listen(list(self.events), timeout=self.tick_s)
        first = next(stream)  # registers every event (EventUnknownException raised here)
        with self._lock:
            version = self.version()
            snap = self._snapshot()
        self.connected.set()
        self.emit(CharonConnected(version))
        self.emit(snap)
        quiet = 0.0
        try:
            for name, msg in self._chain(first, stream):
                if self._stop.is_set():
                    return
                if name is None:
                    quiet += self.tick_s
                    if quiet >= self.watchdog_s:
                        quiet = 0.0
                        self.version()  # raises when charon hangs
                    continue
                quiet = 0.0
                self._on_event(name, msg)
        finally:
            try:
                stream.close()  # unregisters; on a dead socket that fails, which is fine
            except Exception:  # noqa: BLE001
                pass

    @staticmethod
    def _chain(first: tuple, rest: Iterable[tuple]) -> Iterable[tuple]:
        yield first
        yield from rest

    def _on_event(self, name: bytes | str, msg: Any) -> None:
        event = vt.text(name)
        try:
            fact = vt.translate(event, msg)
        except Exception as exc:  # noqa: BLE001 - a malformed event must not end the session
            log.warning("vici %s event not understood: %s", event, exc)
            return
        if fact is not None:
            self.emit(fact)
        elif event == "child-updown":
            try:
                self.emit(self.snapshot())
            except MobikectlError as exc:  # charon going away: the event session will see it
                log.info("no snapshot after child-updown: %s", exc)

    # --- commands (serialised, with timeouts) ---------------------------------------------

    def _session(self, timeout: float) -> Any:
        if self._cmd is None:
            try:
                self._cmd = self.factory(self.path, timeout)
            except Exception as exc:  # noqa: BLE001
                raise CharonUnavailable(f"cannot reach charon at {self.path}: {exc}") from None
        try:
            self._cmd.transport.socket.settimeout(timeout)
        except AttributeError:
            pass  # a fake session at the seam
        return self._cmd

    def _drop_cmd(self) -> None:
        if self._cmd is not None:
            _close(self._cmd)
            self._cmd = None

    def _call(self, what: str, fn: Callable[[Any], Any], timeout: float | None = None) -> Any:
        timeout = timeout or self.settings.command_timeout
        with self._lock:
            session = self._session(timeout)
            try:
                return fn(session)
            except CharonTimeout:
                self._drop_cmd()
                raise
            except Exception as exc:
                if not _foreign(exc):
                    raise
                err = _translate_error(exc, what)
                if not isinstance(err, CharonRefused):
                    self._drop_cmd()  # the session may be out of step: start afresh
                raise err from None

    def _drain(self, items: Iterable[Any], deadline: float, what: str) -> list:
        out = []
        for item in items:
            out.append(item)
            if time.monotonic() > deadline:
                raise CharonTimeout(f"charon did not finish {what} in time")
        return out

    def version(self) -> str:
        return self._call("version", lambda s: vt.version(s.version()))

    def reload_settings(self) -> None:
        self._call("reload-settings", lambda s: s.reload_settings())

    def snapshot(self) -> SaSnapshot:
        """All IKE_SAs (list-sas noblock) and loaded connections (list-conns)."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> SaSnapshot:
        deadline = time.monotonic() + self.settings.command_timeout

        def run(s: Any) -> SaSnapshot:
            total = vt.ikesas_total(s.stats())
            sas = self._drain(s.list_sas({"noblock": "yes"}), deadline, "list-sas")
            conns = self._drain(s.list_conns(), deadline, "list-conns")
            return vt.snapshot(sas, conns, total=total)

        return self._call("list-sas", run)

    def initiate(self, ike: str, child: str | None = None, timeout: float | None = None) -> None:
        """Bring up `ike` with `child` (default: every child of the connection). An existing
        IKE_SA of that connection is reused by charon; terminate it first for a new one."""
        timeout = timeout or self.settings.initiate_timeout
        children = [child] if child else self._children(ike)
        if not children:
            raise CharonRefused(f"charon has no connection {ike!r} with children: load it (swanctl --load-all)")
        for name in children:
            deadline = time.monotonic() + timeout + 2
            request = {"ike": ike, "child": name, "timeout": int(timeout * 1000), "init-limits": "no"}
            self._call(f"initiate {ike}/{name}",
                       lambda s: self._drain(s.initiate(request), deadline, f"initiate {ike}/{name}"),
                       timeout + 2)

    def _children(self, ike: str) -> tuple[str, ...]:
        deadline = time.monotonic() + self.settings.command_timeout
        conns = self._call("list-conns", lambda s: self._drain(s.list_conns({"ike": ike}), deadline, "list-conns"))
        return vt.conn_children(conns, ike)

    def terminate(self, ike: str, spi_i: str = "", spi_r: str = "", *, unique_id: str = "",
                  timeout: float | None = None) -> bool:
        """Close the IKE_SA of `ike` with these SPIs (or this unique id), forcing it after
        `timeout`. Returns False when no such SA exists (already gone)."""
        timeout = timeout or self.settings.command_timeout
        if not unique_id:
            deadline = time.monotonic() + self.settings.command_timeout
            items = self._call("list-sas", lambda s: self._drain(s.list_sas({"ike": ike}), deadline, "list-sas"))
            for sa in vt.snapshot(items).sas:
                if sa.name == ike and (sa.spi_i, sa.spi_r) == (spi_i, spi_r):
                    unique_id = sa.uniqueid
            if not unique_id:
                log.info("terminate %s %s_i %s_r: no such IKE_SA (already gone)", ike, spi_i, spi_r)
                return False
        deadline = time.monotonic() + timeout + 2
        request = {"ike-id": unique_id, "force": "yes", "timeout": int(timeout * 1000)}
        self._call(f"terminate {ike}#{unique_id}",
                   lambda s: self._drain(s.terminate(request), deadline, f"terminate {ike}"), timeout + 2)
        return True

    def execute(self, order: object) -> None:
        """Carry out a charon order; raises a mobikectl error when it fails."""
        if isinstance(order, Initiate):
            self.initiate(order.ike)
        elif isinstance(order, Terminate):
            self.terminate(order.ike, order.spi_i, order.spi_r)
        elif isinstance(order, Resync):
            self.emit(self.snapshot())
        else:
            raise InternalError(f"the VICI adapter cannot carry out {type(order).__name__}")
