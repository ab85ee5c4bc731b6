"""NetlinkAdapter with recorded kernel messages at the seam: snapshot first, then deltas,
a re-dump after an overrun (ENOBUFS) and after a link goes admin-down, a prompt stop."""

from __future__ import annotations

import errno
import socket
import time

from recorded.messages import netlink_messages, netlink_raw

from mobikectl.adapters.netlink import NetlinkAdapter, link_state
from mobikectl.engine.inputs import LinkChanged, NetSnapshot, RouteChanged


class FakeSubscription:
    """A socket the adapter can select() on; recv() replays datagrams or fails with ENOBUFS."""

    def __init__(self):
        self.r, self.w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.overrun = False

    def fileno(self):
        return self.r.fileno()

    def feed(self, data: bytes, overrun: bool = False):
        self.overrun = overrun
        self.w.send(data)

    def recv(self, size):
        data = self.r.recv(size)
        if self.overrun:
            self.overrun = False
            raise OSError(errno.ENOBUFS, "No buffer space available")
        return data

    def close(self):
        self.r.close()
        self.w.close()


def wait(facts, kind, count=1, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [f for f in facts if isinstance(f, kind)]
        if len(found) >= count:
            return found
        time.sleep(0.005)
    raise AssertionError(f"no {count} x {kind.__name__}: {[type(f).__name__ for f in facts]}")


class FakePoll:
    """The link poll: the links as `links` holds them now (the kernel's bytes); may fail."""

    def __init__(self):
        self.links = netlink_raw("dump-rw", "links")
        self.calls = 0
        self.error: OSError | None = None

    def __call__(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.links)


def make(poll: FakePoll | None = None):
    """The adapter on a fake subscription and dump; with `poll`, the link poll too."""
    facts, sub = [], FakeSubscription()
    dumps = []

    def dumper():
        dumps.append(1)
        return (netlink_messages("dump-rw", "links") + netlink_messages("dump-rw", "addrs")
                + netlink_messages("dump-rw", "routes"))

    adapter = NetlinkAdapter(emit=facts.append, subscriber=lambda: sub, dumper=dumper, tick_s=0.05,
                             poller=None if poll is None else (lambda: poll), poll_s=0.01)
    return adapter, facts, sub, dumps


def test_start_sends_one_snapshot_of_the_dump_before_any_delta():
    adapter, facts, sub, dumps = make()
    adapter.start()
    try:
        (snap,) = facts
        assert isinstance(snap, NetSnapshot)
        assert [link.ifname for link in snap.links] == ["lo", "wlan0", "wwan0", "ipsec0"]
        assert {a.address for a in snap.addresses} >= {"10.1.0.2", "10.2.0.2", "10.99.0.1"}
        assert {r.table for r in snap.routes} == {254}
    finally:
        adapter.stop()


def test_deltas_follow_and_a_steering_route_is_reported():
    adapter, facts, sub, dumps = make()
    adapter.start()
    try:
        for raw in netlink_raw("route-steering")[:1]:
            sub.feed(raw)
        (route,) = wait(facts, RouteChanged)
        assert (route.dst, route.ifname, route.proto) == ("203.0.113.10/32", "wwan0", 73)
    finally:
        adapter.stop()


def test_carrier_loss_is_a_link_fact_without_a_redump():
    adapter, facts, sub, dumps = make()
    adapter.start()
    try:
        for raw in netlink_raw("link-carrier-loss"):
            sub.feed(raw)
        (link,) = wait(facts, LinkChanged)
        assert (link.ifname, link.admin_up, link.carrier) == ("wwan0", True, False)
        time.sleep(0.1)
        assert len(dumps) == 1
    finally:
        adapter.stop()


def test_a_carrier_loss_announced_late_is_seen_by_the_link_poll():
    """The kernel announced this carrier loss 1 s late (linkwatch); the poll's dump showed it
    at once: one LinkChanged from the poll, none again when the notification comes."""
    poll = FakePoll()
    adapter, facts, sub, dumps = make(poll)
    adapter.start()
    try:
        wait_calls(poll, 3)
        assert [type(f) for f in facts] == [NetSnapshot]  # nothing changed: nothing sent
        late = {link_state(m)[0]: m for m in netlink_raw("link-carrier-loss-late", "poll")}
        poll.links = [late.get(link_state(m)[0], m) if link_state(m)[0] == 3 else m for m in poll.links]
        (link,) = wait(facts, LinkChanged)
        assert (link.ifname, link.admin_up, link.carrier) == ("wwan0", True, False)
        assert adapter.polled == 1
        for raw in netlink_raw("link-carrier-loss-late"):
            sub.feed(raw)
        wait_calls(poll, poll.calls + 3)
        assert len([f for f in facts if isinstance(f, LinkChanged)]) == 1 and len(dumps) == 1
    finally:
        adapter.stop()


def test_a_failing_link_poll_does_not_stop_the_watcher():
    poll = FakePoll()
    poll.error = OSError(errno.EBUSY, "busy")
    adapter, facts, sub, dumps = make(poll)
    adapter.start()
    try:
        wait_calls(poll, 3)
        for raw in netlink_raw("link-carrier-loss"):
            sub.feed(raw)
        (link,) = wait(facts, LinkChanged)
        assert (link.ifname, link.carrier) == ("wwan0", False)
    finally:
        adapter.stop()


def wait_calls(poll, n, timeout=3.0):
    deadline = time.monotonic() + timeout
    while poll.calls < n:
        assert time.monotonic() < deadline, f"the link poll ran {poll.calls} times, not {n}"
        time.sleep(0.005)


def test_admin_down_is_followed_by_a_fresh_snapshot():
    adapter, facts, sub, dumps = make()
    adapter.start()
    try:
        sub.feed(netlink_raw("link-admin-down")[0])
        wait(facts, NetSnapshot, 2)
        link = [f for f in facts if isinstance(f, LinkChanged)]
        assert [(f.ifname, f.admin_up) for f in link] == [("wwan0", False)]
        assert facts.index(link[0]) < len(facts) - 1  # the snapshot comes after the link fact
    finally:
        adapter.stop()


def test_an_overrun_gives_a_new_snapshot():
    adapter, facts, sub, dumps = make()
    adapter.start()
    try:
        sub.feed(netlink_raw("route-steering")[0], overrun=True)
        wait(facts, NetSnapshot, 2)
        assert adapter.snapshots == 2 and len(dumps) == 2
    finally:
        adapter.stop()


def test_repeated_identical_facts_are_sent_once():
    adapter, facts, sub, dumps = make()
    adapter.start()
    try:
        raw = netlink_raw("link-carrier-loss")[0]
        sub.feed(raw)
        sub.feed(raw)
        wait(facts, LinkChanged)
        time.sleep(0.1)
        assert len([f for f in facts if isinstance(f, LinkChanged)]) == 1
    finally:
        adapter.stop()


def test_a_route_replaced_back_and_forth_is_reported_each_time():
    """`ip route replace` moves our steering route between uplinks with one RTM_NEWROUTE
    and no RTM_DELROUTE for the route it replaced: the move back to the first uplink was
    taken for a repeat of the first fact and not sent (route_set_at stayed null)."""
    adapter, facts, sub, dumps = make()
    adapter.start()
    try:
        to_wwan, to_wlan = netlink_raw("route-steering")[:2]
        for raw in (to_wwan, to_wlan, to_wwan):
            sub.feed(raw)
        routes = wait(facts, RouteChanged, 3)
        assert [r.ifname for r in routes] == ["wwan0", "wlan0", "wwan0"]
    finally:
        adapter.stop()


def test_stop_is_prompt():
    adapter, facts, sub, dumps = make()
    adapter.tick_s = 5.0
    adapter.start()
    t0 = time.monotonic()
    adapter.stop()
    assert time.monotonic() - t0 < 1.0 and not adapter._thread.is_alive()
