"""The probe adapter on a real kernel: two namespaces joined by two veth pairs.

    mk-pr-a  a1 10.91.1.1/24 fd91:1::1/64 ---- b1 10.91.1.2/24 fd91:1::2/64  mk-pr-b
             a2 10.91.2.1/24              ---- b2 10.91.2.2/24
                                                lo 10.91.0.1/32 (the "gateway")
A reaches the gateway address over both uplinks (metric 100 via a1, 200 via a2).
The adapter's sockets are opened by the test thread while it sits in mk-pr-a (setns);
the receiver thread only polls them. A charon in mk-pr-b answers the IKE probe when
strongSwan is installed.
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager

import pytest

from mobikectl.adapters.probes import ProbeAdapter
from mobikectl.engine.actions import SendProbe
from mobikectl.engine.ids import Path, ProbeKind, UplinkName
from mobikectl.engine.inputs import ProbeLost, ProbeReplied

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, raw sockets)"),
]

NS_A, NS_B = "mk-pr-a", "mk-pr-b"
GW = "10.91.0.1"
CHARON = "/usr/lib/ipsec/charon"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@contextmanager
def in_netns(name: str):
    """Move the calling thread into namespace `name` for the block (setns(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        libc.setns(own, 0x40000000)
        os.close(own)
        os.close(target)


def wait_for(check, timeout: float = 3.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(step)
    return check()


@pytest.fixture
def two_uplinks():
    """Name: two_uplinks. Scope: function. Builds mk-pr-a/mk-pr-b, removes them after."""
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    try:
        sh("ip", "netns", "add", NS_A)
        sh("ip", "netns", "add", NS_B)
        for n in (1, 2):
            sh("ip", "link", "add", f"a{n}", "netns", NS_A, "type", "veth", "peer", "name", f"b{n}", "netns", NS_B)
            sh("ip", "-n", NS_A, "addr", "add", f"10.91.{n}.1/24", "dev", f"a{n}")
            sh("ip", "-n", NS_B, "addr", "add", f"10.91.{n}.2/24", "dev", f"b{n}")
            sh("ip", "-n", NS_A, "link", "set", f"a{n}", "up")
            sh("ip", "-n", NS_B, "link", "set", f"b{n}", "up")
            sh("ip", "-n", NS_A, "route", "add", f"{GW}/32", "via", f"10.91.{n}.2", "dev", f"a{n}", "metric", str(100 * n))
        sh("ip", "-n", NS_A, "addr", "add", "fd91:1::1/64", "dev", "a1", "nodad")
        sh("ip", "-n", NS_B, "addr", "add", "fd91:1::2/64", "dev", "b1", "nodad")
        for ns in (NS_A, NS_B):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", NS_B, "addr", "add", f"{GW}/32", "dev", "lo")
        yield
    finally:
        for ns in (NS_A, NS_B):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def adapter():
    facts: queue.Queue = queue.Queue()
    probes = ProbeAdapter(emit=facts.put)
    probes.start()
    yield probes, facts
    probes.stop()


def path(n: int, gw: str = GW) -> Path:
    return Path(UplinkName(f"a{n}"), f"10.91.{n}.1", gw)


def probe(probes: ProbeAdapter, p: Path, seq: int, kind: ProbeKind = ProbeKind.ECHO, **kw) -> None:
    with in_netns(NS_A):
        probes.send(SendProbe(p, kind, seq, timeout=1.0, reason="test", **kw))


def collect(facts: queue.Queue, want: int, timeout: float = 2.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            got.append(facts.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return got


def test_echo_on_each_uplink_gets_its_own_reply(two_uplinks, adapter):
    probes, facts = adapter
    probe(probes, path(1), 1)
    probe(probes, path(2), 2)
    got = collect(facts, 2)
    assert {(f.path.uplink, f.seq) for f in got if isinstance(f, ProbeReplied)} == {("a1", 1), ("a2", 2)}
    assert all(0 < f.rtt < 0.5 for f in got)
    counters = probes.counters()
    assert counters[path(1).id]["tx_bytes"] == 36 and counters[path(1).id]["rx_bytes"] == 36


def test_far_side_link_down_silences_only_that_uplink(two_uplinks, adapter):
    probes, facts = adapter
    sh("ip", "-n", NS_B, "link", "set", "b1", "down")
    probe(probes, path(1), 10)
    probe(probes, path(2), 11)
    got = collect(facts, 2, timeout=1.5)
    replied = {f.path.uplink for f in got if isinstance(f, ProbeReplied)}
    assert replied == {"a2"}  # a1 either raised ProbeLost at once or stayed silent
    sh("ip", "-n", NS_B, "link", "set", "b1", "up")
    assert wait_for(lambda: _answers(probes, facts, path(1)), timeout=5.0)


def _answers(probes: ProbeAdapter, facts: queue.Queue, p: Path) -> bool:
    probe(probes, p, 99)
    return any(isinstance(f, ProbeReplied) and f.path == p for f in collect(facts, 1, timeout=0.3))


def test_echo_ipv6(two_uplinks, adapter):
    probes, facts = adapter
    p = Path(UplinkName("a1"), "fd91:1::1", "fd91:1::2")
    probe(probes, p, 5)
    (fact,) = collect(facts, 1)
    assert isinstance(fact, ProbeReplied) and fact.seq == 5


def test_unbindable_source_is_lost_at_once(two_uplinks, adapter):
    probes, facts = adapter
    probe(probes, Path(UplinkName("a1"), "10.91.9.9", GW), 7)
    probe(probes, Path(UplinkName("nosuch0"), "10.91.1.1", GW), 8)
    got = collect(facts, 2, timeout=0.5)
    assert [type(f) for f in got] == [ProbeLost, ProbeLost]
    assert "EADDRNOTAVAIL" in got[0].why and "ENODEV" in got[1].why


def test_data_probe_without_device_binding(two_uplinks, adapter):
    """DATA: from a source address (here a1's, standing in for the virtual IP) to a
    target, routed by the kernel rather than bound to a device."""
    probes, facts = adapter
    probe(probes, path(1), 20, ProbeKind.DATA, src="10.91.2.1", dst=GW)
    (fact,) = collect(facts, 1)
    assert isinstance(fact, ProbeReplied) and fact.kind is ProbeKind.DATA


@pytest.fixture
def charon_b(two_uplinks):
    """Name: charon_b. Scope: function. Depends: two_uplinks. A bare charon in mk-pr-b."""
    if not os.path.exists(CHARON):
        pytest.skip("strongSwan's charon is not installed (apt-get install strongswan-charon)")
    tmp = tempfile.mkdtemp(prefix="mk-pr-charon-")
    conf = os.path.join(tmp, "strongswan.conf")
    with open(conf, "w") as f:
        f.write("charon {\n  load = random nonce openssl pem pkcs1 socket-default kernel-netlink\n"
                "  filelog {\n    log {\n      path = %s/charon.log\n      default = 1\n    }\n  }\n}\n" % tmp)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS_B, "sh", "-c", f"mount -t tmpfs none /run && exec {CHARON}"],
        env={**os.environ, "STRONGSWAN_CONF": conf}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listening = wait_for(lambda: b":4500" in subprocess.run(
            ["ip", "netns", "exec", NS_B, "ss", "-uln"], capture_output=True).stdout, timeout=10)
        assert listening, "charon did not open udp/4500"
        yield tmp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_ike_probe_answered_by_charon(charon_b, adapter):
    probes, facts = adapter
    probe(probes, path(1), 30, ProbeKind.IKE)
    probe(probes, path(2), 31, ProbeKind.IKE)
    got = collect(facts, 2)
    assert {(f.path.uplink, f.seq) for f in got if isinstance(f, ProbeReplied)} == {("a1", 30), ("a2", 31)}
    assert probes.counters()[path(1).id]["by_kind"]["ike"] == {
        "tx_bytes": 60, "rx_bytes": 68, "tx_packets": 1, "rx_packets": 1}


def test_ike_probe_without_ike_daemon_is_refused(two_uplinks, adapter):
    probes, facts = adapter
    probe(probes, path(1), 40, ProbeKind.IKE)
    (fact,) = collect(facts, 1)
    assert isinstance(fact, ProbeLost) and "port unreachable" in fact.why
