"""The composition root and the one run loop.

Theory of operation: every adapter runs in its own named thread and turns what it sees
into facts (`mobikectl.engine.inputs`) put on one inbox. The loop is the only thread that
touches the engine: it takes a fact (or wakes at the engine's next deadline), hands the
engine the fact and `now`, and executes the orders it gets back:

    SendProbe       -> probes.send (non-blocking; answers come back as facts)
    SteerTo         -> routes.install (one netlink request)
    RemoveSteering  -> routes.remove
    Initiate, Terminate, Resync -> the charon worker (one thread: VICI commands serialised)
    Note            -> the event hub (mobikectl events) and the log

An order that fails comes back to the engine as `ActionFailed`; the engine decides what
to do. Control-socket requests (status, switch, reload) are executed on the loop thread
too, so the engine never needs a lock. The clock is injectable; the engine never reads it.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from mobikectl import SCHEMA_VERSION
from mobikectl.engine import actions as A
from mobikectl.engine import inputs as F
from mobikectl.errors import DataError, InternalError, MobikectlError, Unavailable
from mobikectl.policy.model import Policy
from mobikectl.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Call:
    """A function to run on the loop thread; its result (or exception) goes to `reply`."""

    fn: Callable[[], Any]
    reply: "queue.Queue[tuple[bool, Any]]" = field(default_factory=lambda: queue.Queue(maxsize=1))


class _Stop:
    pass


def iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


class CharonWorker:
    """Runs VICI commands one at a time in its own thread (5.9.8 deadlocks on concurrent
    initiate/terminate); results and failures come back as facts."""

    def __init__(self, *, charon: Any, emit: Callable[[object], None]) -> None:
        self._charon = charon
        self._emit = emit
        self._jobs: "queue.Queue[object | None]" = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="charon-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, order: object) -> None:
        self._jobs.put(order)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def _work(self) -> None:
        while (order := self._jobs.get()) is not None:
            try:
                if isinstance(order, A.Resync):
                    self._emit(self._charon.snapshot())
                else:
                    self._charon.execute(order)
            except MobikectlError as exc:
                self._emit(F.ActionFailed(order, str(exc)))
            except Exception as exc:  # an adapter bug must not kill the worker
                log.exception("charon command failed: %r", order)
                self._emit(F.ActionFailed(order, f"{type(exc).__name__}: {exc}"))


class Daemon:
    """Wires the engine to the adapters. Collaborators are keyword-only and injectable;
    `build()` makes the real ones."""

    def __init__(self, *, settings: Settings, policy: Policy, engine: Any, charon: Any, netlink: Any,
                 routes: Any, probes: Any, tunnel: Any | None = None, control: Any | None = None,
                 hub: Any | None = None, clock: Callable[[], float] = time.monotonic,
                 recorder: Any | None = None, policy_loader: Callable[[str], Policy] | None = None,
                 keep_routes_on_exit: bool = True) -> None:
        self.settings = settings
        self.policy = policy
        self.engine = engine
        self.charon = charon
        self.netlink = netlink
        self.routes = routes
        self.probes = probes
        self.tunnel = tunnel
        self.control = control
        self.hub = hub
        self.clock = clock
        self.recorder = recorder
        self.policy_loader = policy_loader
        self.keep_routes_on_exit = keep_routes_on_exit
        self.inbox: "queue.Queue[object]" = queue.Queue()
        self.worker = CharonWorker(charon=charon, emit=self.emit)
        self.started_wall = iso_now()
        self.charon_up = False
        self._stopping = threading.Event()

    # --- called from any thread ---------------------------------------------------------
    def emit(self, fact: object) -> None:
        self.inbox.put(fact)

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run `fn` on the loop thread and return its result (control-socket requests)."""
        c = _Call(fn)
        self.inbox.put(c)
        try:
            ok, value = c.reply.get(timeout=timeout)
        except queue.Empty:
            raise Unavailable("the daemon's run loop did not answer in time (busy or stuck)") from None
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        self._stopping.set()
        self.inbox.put(_Stop())

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        for adapter in (self.netlink, self.charon, self.probes, self.tunnel):
            if adapter is not None:
                adapter.start()
        self.worker.start()
        if self.control is not None:
            self.control.start()
        log.info("mobikectl running: policy %s, charon at %s", self.policy.source, self.settings.charon.vici_socket)
        try:
            self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            deadline = self.engine.next_deadline()
            now = self.clock()
            timeout = None if deadline is None else max(0.0, deadline - now)
            try:
                item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                self._execute(self.engine.handle_timer(self.clock()))
                continue
            if isinstance(item, _Stop):
                break
            if isinstance(item, _Call):
                try:
                    item.reply.put((True, item.fn()))
                except Exception as exc:  # reported to the caller, the loop goes on
                    item.reply.put((False, exc))
                continue
            self._feed(item)

    def _feed(self, fact: object) -> None:
        now = self.clock()
        if self.recorder is not None:
            self.recorder(now, fact)
        if isinstance(fact, F.CharonConnected):
            self.charon_up = True
        elif isinstance(fact, F.CharonLost):
            self.charon_up = False
        self._execute(self.engine.handle(fact, now))
        # deadlines that passed while we were busy
        deadline = self.engine.next_deadline()
        if deadline is not None and deadline <= self.clock():
            self._execute(self.engine.handle_timer(self.clock()))

    def _execute(self, orders: list) -> None:
        for order in orders:
            try:
                self._dispatch(order)
            except MobikectlError as exc:
                log.warning("%s failed: %s", type(order).__name__, exc)
                self.emit(F.ActionFailed(order, str(exc)))

    def _dispatch(self, order: object) -> None:
        if isinstance(order, A.SendProbe):
            self.probes.send(order)
        elif isinstance(order, A.SteerTo):
            log.info("steer to %s: %s", order.path.id, order.reason)
            self.routes.install(order)
        elif isinstance(order, A.RemoveSteering):
            log.info("remove steering route to %s: %s", order.gateway, order.reason)
            self.routes.remove(order.gateway)
        elif isinstance(order, (A.Initiate, A.Terminate, A.Resync)):
            log.info("%s: %s", type(order).__name__, order.reason)
            self.worker.submit(order)
        elif isinstance(order, A.Note):
            self._note(order)
        else:
            raise InternalError(f"the run loop got an order it does not know: {order!r}")

    def _note(self, note: A.Note) -> None:
        level = logging.DEBUG if note.kind == "probe-detail" else logging.INFO
        log.log(level, "%s: %s", note.kind, note.message)
        if self.hub is not None:
            self.hub.publish({"schema": SCHEMA_VERSION, "time": iso_now(), "kind": note.kind,
                              "message": note.message, "data": _jsonable(note.data)})

    def _shutdown(self) -> None:
        if self.control is not None:
            self.control.stop()
        for adapter in (self.tunnel, self.probes, self.charon, self.netlink):
            if adapter is not None:
                try:
                    adapter.stop()
                except Exception:  # keep tearing down
                    log.exception("stopping %s", type(adapter).__name__)
        self.worker.stop()
        if not self.keep_routes_on_exit:
            try:
                self.routes.remove_all()
                log.info("removed our steering routes (charon follows the routing metrics again)")
            except MobikectlError as exc:
                log.warning("could not remove our steering routes: %s", exc)
        else:
            log.info("left the steering route in place: the SA stays where it is (see `mobikectl run --help`)")

    # --- control requests (run on the loop thread through `call`) ---------------------------
    def view(self) -> dict:
        doc = dict(self.engine.view())
        doc["schema"] = SCHEMA_VERSION
        doc["daemon"] = {
            "pid": os.getpid(),
            "started": self.started_wall,
            "policy": self.policy.source,
            "charon": {"socket": self.settings.charon.vici_socket, "connected": self.charon_up},
        }
        try:
            doc["probe_counters"] = self.probes.counters()
        except Exception:
            pass
        return doc

    def switch(self, uplink: str | None, until_in: float | None, force: bool) -> list:
        now = self.clock()
        until = None if until_in is None else now + until_in
        fact = F.SwitchRequested(uplink, until, force)
        if self.recorder is not None:  # a replay (`policy simulate`) must see the user's switch too
            self.recorder(now, fact)
        orders = self.engine.handle(fact, now)
        self._execute(orders)
        return [o for o in orders if isinstance(o, A.Note)]

    def reload(self, path: str | None) -> Policy:
        """All or nothing: a bad file raises DataError and the running policy stays."""
        source = path or self.settings.policy_file
        if source is None:
            policy = Policy()
        else:
            if self.policy_loader is None:
                raise DataError("cannot load policies: no loader")
            try:
                policy = self.policy_loader(source)
            except DataError as exc:
                self._reload_refused(source, exc)
                raise
        self.policy = policy
        self._execute(self.engine.handle(F.PolicyLoaded(policy), self.clock()))
        log.info("policy %s loaded", policy.source)
        return policy

    def _reload_refused(self, source: str, exc: DataError) -> None:
        """Say why in the log (every problem: SIGHUP has no one else to tell) and as an event."""
        log.error("reload of %s refused, the running policy %s stays:", source, self.policy.source)
        for problem in exc.problems:
            log.error("  %s", problem)
        self._note(A.Note("policy", f"reload of {source} refused ({len(exc.problems)} problem"
                          f"{'s' if len(exc.problems) != 1 else ''}): policy {self.policy.source} stays",
                          {"source": source, "refused": True, "problems": list(exc.problems),
                           "in_force": self.policy.source}))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "to_json"):
        return value.to_json()
    return str(value)


def install_signal_handlers(daemon: Daemon) -> None:
    def _term(signum, frame):  # noqa: ARG001
        log.info("signal %d: stopping", signum)
        daemon.stop()

    def _hup(signum, frame):  # noqa: ARG001
        def reload_in_loop():
            try:
                daemon.reload(None)
            except DataError:
                pass  # reload() logged every problem
            except MobikectlError as exc:
                log.error("reload refused, the running policy stays: %s", exc)

        daemon.inbox.put(_Call(reload_in_loop))

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    signal.signal(signal.SIGHUP, _hup)
