"""The tunnel sampler: a fact only when the inbound counter advanced."""

from __future__ import annotations

import queue

from mobikectl.adapters.tunnel import TunnelSampler, parse_rx_packets, read_rx_packets
from mobikectl.engine.inputs import TunnelInbound

PROC = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
ipsec0:   84000     1000    0    0    0     0          0         0    42000     500    0    0    0     0       0          0
""".splitlines(keepends=True)


def test_parse_proc_net_dev():
    assert parse_rx_packets(PROC, "ipsec0") == 1000
    assert parse_rx_packets(PROC, "lo") == 12
    assert parse_rx_packets(PROC, "ipsec") is None


def test_reads_this_process_namespace():
    assert read_rx_packets("lo") is not None
    assert read_rx_packets("nosuchdev0") is None


def test_emits_only_when_the_counter_advances():
    readings = iter([None, 5, 5, 7, None, 3, 4])
    sampler = TunnelSampler(emit=print, read=lambda dev: next(readings))
    got = [sampler.sample() for _ in range(7)]
    # absent, baseline, same, advanced, gone, new baseline, advanced
    assert got == [None, None, None, TunnelInbound(7), None, None, TunnelInbound(4)]


def test_thread_emits():
    facts: queue.Queue = queue.Queue()
    counter = iter(range(100, 10_000))
    sampler = TunnelSampler(emit=facts.put, interval=0.01, read=lambda dev: next(counter))
    sampler.start()
    try:
        fact = facts.get(timeout=2)
    finally:
        sampler.stop()
    assert isinstance(fact, TunnelInbound) and fact.packets > 100
