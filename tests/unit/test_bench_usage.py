"""/proc readers and probe byte arithmetic of the benchmark."""

import os

import pytest

from mobikectl.bench import usage

STAT = "1234 (python3 -m (x) y) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 3 0 100 0 0"


def test_parse_stat_ticks_with_parentheses_in_the_name():
    assert usage.parse_stat_ticks(STAT) == 300


def test_parse_status():
    text = "Name:\tpython3\nVmPeak:\t 99 kB\nVmHWM:\t   45000 kB\nVmRSS:\t   40000 kB\n"
    assert usage.parse_status(text) == {"VmHWM": 45000, "VmRSS": 40000}


def test_cpu_between():
    a = usage.ProcSample(7, 10.0, 100, 120, 100)
    b = usage.ProcSample(7, 30.0, 110, 130, 100 + 4 * usage.CLK_TCK)
    r = usage.cpu_between(a, b)
    assert r["cpu_s"] == 4.0 and r["cpu_percent"] == 20.0 and r["rss_kb"] == 110
    assert usage.cpu_between(a, usage.ProcSample(8, 30.0, 1, 1, 1)) is None


def test_proc_sample_of_this_process():
    s = usage.proc_sample(os.getpid())
    assert s is not None and s.rss_kb > 0 and s.cpu_ticks >= 0
    assert usage.proc_sample(None) is None


COUNTERS0 = {"wlan0:a>g": {"uplink": "wlan0", "tx_bytes": 360, "rx_bytes": 360, "tx_packets": 10, "rx_packets": 10},
             "wwan0:b>g": {"uplink": "wwan0", "tx_bytes": 36, "rx_bytes": 36, "tx_packets": 1, "rx_packets": 1}}
COUNTERS1 = {"wlan0:a>g": {"uplink": "wlan0", "tx_bytes": 3960, "rx_bytes": 3960, "tx_packets": 110, "rx_packets": 110},
             "wlan0:a6>g": {"uplink": "wlan0", "tx_bytes": 100, "rx_bytes": 0, "tx_packets": 2, "rx_packets": 0},
             "wwan0:b>g": {"uplink": "wwan0", "tx_bytes": 180, "rx_bytes": 180, "tx_packets": 5, "rx_packets": 5}}


def test_probe_rates_sum_paths_per_uplink():
    r = usage.probe_rates(COUNTERS0, COUNTERS1, 10.0)
    assert r["wlan0"]["tx_bytes"] == 3700 and r["wlan0"]["bytes_per_s"] == 730.0
    assert r["wwan0"]["bytes_per_s"] == 28.8 and r["wwan0"]["tx_packets"] == 4


def test_idle_standby_projection():
    per = usage.bytes_per_probe(COUNTERS1, "wwan0")
    assert per == 72.0
    assert usage.idle_standby_mb_month(per, 30.0) == pytest.approx(6.221, abs=1e-3)
    assert usage.idle_standby_mb_month(None, 30.0) is None
