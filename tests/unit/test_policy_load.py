"""The policy loader: TOML schema 1 -> the typed Policy, or every problem of the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mobikectl.engine.ids import UplinkClass
from mobikectl.errors import EX_DATAERR, DataError
from mobikectl.policy.load import load_policy, parse_policy
from mobikectl.policy.model import Policy
from mobikectl.policy.values import parse_duration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "policies").glob("*.toml"))
SRC = "policies/x.toml"


def problems(text: str) -> list[str]:
    with pytest.raises(DataError) as caught:
        parse_policy(text, SRC)
    assert caught.value.exit_code == EX_DATAERR
    return caught.value.problems


def only_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# --- shipped policies ------------------------------------------------------------------------

def test_at_least_three_policies_are_shipped():
    names = {p.name for p in SHIPPED}
    assert "default.toml" in names and len(names) >= 3


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_loads(path):
    policy = load_policy(path)
    assert policy.source == str(path)
    assert policy.description
    assert set(policy.prefer) == {rule.label for rule in policy.uplinks}
    # cellular is metered and last in every shipped policy
    assert policy.metered(policy_device(policy, "cell"))
    assert policy.prefer[-1] == "cell"


def policy_device(policy: Policy, label: str) -> str:
    rule = next(r for r in policy.uplinks if r.label == label)
    return rule.match[0].replace("*", "0")


def test_default_toml_spells_out_the_model_defaults():
    policy = load_policy(ROOT / "policies" / "default.toml")
    assert dataclasses.replace(policy, source="<defaults>", description="") == Policy()


def test_shipped_policies_differ_from_the_default_where_they_say():
    wifi_first = load_policy(ROOT / "policies" / "wifi-first.toml")
    assert wifi_first.prefer == ("wifi", "dock", "cell")
    saver = load_policy(ROOT / "policies" / "metered-saver.toml")
    cell = saver.classes[UplinkClass.WWAN]
    assert cell.probe.standby_interval == 300.0 and cell.monthly_budget_mb == 5.0
    assert saver.failback.hold_down == 120.0
    fast = load_policy(ROOT / "policies" / "fast-failover.toml")
    assert fast.classes[UplinkClass.ETHERNET].probe.interval == 0.05
    assert fast.classes[UplinkClass.WWAN] == Policy().classes[UplinkClass.WWAN]  # untouched class


# --- values ----------------------------------------------------------------------------------

def test_minimal_file_is_the_defaults():
    policy = parse_policy("schema = 1\n", SRC)
    assert dataclasses.replace(policy, source="<defaults>") == Policy()
    assert policy.source == SRC


@pytest.mark.parametrize("spec, seconds", [
    ("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0), ("1m30s", 90.0), ("1.5s", 1.5), (3, 3.0), (0.25, 0.25),
])
def test_durations(spec, seconds):
    assert parse_duration(spec) == pytest.approx(seconds)


@pytest.mark.parametrize("spec", ["30", "s", "2 sec", "-1s", "1s 2", "", "1d", True])
def test_bad_durations(spec):
    with pytest.raises(ValueError):
        parse_duration(spec)


def test_units_for_sizes_percentages_durations():
    policy = parse_policy('schema = 1\n[classes.wwan]\nmonthly_budget = "500kB"\n'
                          '[classes.wwan.probe]\nstandby_interval = "30m"\n'
                          '[classes.wwan.limits]\nmax_loss = "20%"\nmax_rtt = 2\n'
                          '[classes.wlan.limits]\nmax_loss = 0.1\n'
                          '[failback]\nhold_down = "1m30s"\nmin_dwell = 0\n', SRC)
    cell = policy.classes[UplinkClass.WWAN]
    assert cell.monthly_budget_mb == pytest.approx(0.5)
    assert cell.limits.max_loss == pytest.approx(0.2) and cell.limits.max_rtt == 2.0
    assert policy.classes[UplinkClass.WLAN].limits.max_loss == pytest.approx(0.1)
    assert policy.failback.hold_down == 90.0 and policy.failback.min_dwell == 0.0


def test_class_section_merges_over_that_class_default():
    policy = parse_policy("schema = 1\n[classes.wwan.probe]\nfall = 5\n", SRC)
    cell, default = policy.classes[UplinkClass.WWAN], Policy().classes[UplinkClass.WWAN]
    assert cell.probe.fall == 5
    assert cell.probe.interval == default.probe.interval == 0.2  # the class default, not the generic one
    assert cell.metered and cell.monthly_budget_mb == 15.0


def test_uplinks_replace_the_defaults_and_order_defaults_to_file_order():
    policy = parse_policy('schema = 1\n[uplinks.usb]\nmatch = ["usb*"]\nclass = "ethernet"\n'
                          '[uplinks.air]\nmatch = ["wlp*"]\nclass = "wlan"\nmetered = true\n', SRC)
    assert [r.label for r in policy.uplinks] == ["usb", "air"]
    assert policy.prefer == ("usb", "air")
    assert policy.rank("wlp2s0") == 1 and policy.metered("wlp2s0") and policy.rule_for("eth0") is None


def test_connections_probes_addresses():
    policy = parse_policy('schema = 1\nconnections = ["home", "work"]\n[probes]\nkinds = ["ike"]\n'
                          'data_target = "10.200.0.10"\ngateways = ["192.0.2.1", "2001:db8::1"]\n', SRC)
    assert policy.connections == ("home", "work")
    assert policy.probes.kinds == ("ike",)
    assert policy.probes.data_target == "10.200.0.10"
    assert policy.probes.gateways == ("192.0.2.1", "2001:db8::1")


# --- errors: one each ------------------------------------------------------------------------

def test_the_message_form_from_the_issue():
    assert only_problem("schema = 1\n[classes.wwan.probe]\nfall = 0\n") == \
        "policies/x.toml: classes.wwan.probe.fall: expected an integer >= 1, got 0"


def test_unknown_key_lists_the_known_ones():
    assert only_problem('schema = 1\n[failback]\nhold_dwon = "30s"\n') == \
        "policies/x.toml: failback.hold_dwon: unknown key (expected one of: hold_down, min_dwell)"


@pytest.mark.parametrize("text, where, expected", [
    ('schema = 1\nfoo = 1\n', "foo", "unknown key (expected one of: schema, description"),
    ('schema = 1\ndescription = 3\n', "description", "expected a string, got 3"),
    ('schema = 1\n[classes.wwan.probe]\ninterval = "200"\n', "classes.wwan.probe.interval",
     'expected a duration > 0 such as "500ms", "2s", "1m" or a number of seconds, got "200"'),
    ('schema = 1\n[classes.wwan.probe]\ninterval = 0\n', "classes.wwan.probe.interval", "expected a duration > 0"),
    ('schema = 1\n[classes.wwan.probe]\nconfirm = 2.0\n', "classes.wwan.probe.confirm",
     "expected an integer >= 1, got 2.0"),
    ('schema = 1\n[classes.wwan.probe]\nrise = true\n', "classes.wwan.probe.rise", "expected an integer >= 1, got true"),
    ('schema = 1\n[classes.wwan]\nmonthly_budget = 15\n', "classes.wwan.monthly_budget",
     'expected a size with a unit such as "15MB"'),
    ('schema = 1\n[classes.wwan]\nmetered = "yes"\n', "classes.wwan.metered", 'expected true or false, got "yes"'),
    ('schema = 1\n[classes.wlan.limits]\nmax_loss = "120%"\n', "classes.wlan.limits.max_loss",
     'expected a percentage'),
    ('schema = 1\n[classes.wlan.limits]\nmax_loss = 20\n', "classes.wlan.limits.max_loss", "got 20"),
    ('schema = 1\n[classes.lte]\nmetered = true\n', "classes.lte",
     "unknown key (expected one of: ethernet, wlan, wwan)"),
    ('schema = 1\n[classes.wwan.probe]\ntimeout_min = "5s"\n', "classes.wwan.probe.timeout_min",
     'expected at most timeout_max ("4s"), got "5s"'),
    ('schema = 1\n[moves]\nretries = -1\n', "moves.retries", "expected an integer >= 0, got -1"),
    ('schema = 1\n[moves]\nconfirm_timeout = "0s"\n', "moves.confirm_timeout", "expected a duration > 0"),
    ('schema = 1\n[probes]\ndata_target = "10.200.0"\n', "probes.data_target",
     'expected an IP address such as "10.200.0.10" or "" (off), got "10.200.0"'),
    ('schema = 1\n[probes]\nkinds = ["echo", "icmp"]\n', "probes.kinds[1]",
     'expected one of "echo", "ike", "data", got "icmp"'),
    ('schema = 1\n[probes]\nkinds = []\n', "probes.kinds", "expected a non-empty list of probe kinds, got []"),
    ('schema = 1\n[probes]\ngateways = ["x"]\n', "probes.gateways[0]", 'expected an IP address'),
    ('schema = 1\nconnections = "home"\n', "connections", 'expected a list of charon connection names, got "home"'),
    ('schema = 1\n[order]\nprefer = ["dokc", "wifi", "cell"]\n', "order.prefer[0]",
     'expected an uplink label defined under [uplinks] (dock, wifi, cell), got "dokc"'),
    ('schema = 1\n[order]\nprefer = ["dock", "wifi"]\n', "order.prefer", 'uplink "cell" is defined but not in the order'),
    ('schema = 1\n[order]\nprefer = ["dock", "wifi", "cell", "wifi"]\n', "order.prefer[3]",
     'expected each entry once, got "wifi" again'),
    ('schema = 1\norder = ["dock"]\n', "order", 'expected a table, got ["dock"]'),
    ('schema = 1\n[uplinks.dock]\nmatch = ["eth*"]\n', "uplinks.dock.class", "missing key"),
    ('schema = 1\n[uplinks.dock]\nclass = "ethernet"\nmatch = "eth*"\n', "uplinks.dock.match",
     'expected a non-empty list of device name patterns such as "wlan*", got "eth*"'),
    ('schema = 1\n[uplinks.dock]\nclass = "ether"\nmatch = ["eth*"]\n', "uplinks.dock.class",
     'expected one of "ethernet", "wlan", "wwan", got "ether"'),
    ('schema = 1\n[uplinks.a]\nclass = "wlan"\nmatch = ["wl*"]\n[uplinks.b]\nclass = "wlan"\nmatch = ["wl*"]\n',
     "uplinks.b.match[0]", 'pattern "wl*" is already in uplinks.a.match'),
    ('schema = 1\n[classes.wwan.probe]\nstandby_interval = "1s"\n', "classes.wwan.probe.standby_interval",
     "on a metered class with a monthly_budget of 15 MB"),
])
def test_each_kind_of_error(text, where, expected):
    problem = only_problem(text)
    assert problem.startswith(f"{SRC}: {where}: "), problem
    assert expected in problem, problem


def test_schema_missing_wrong_newer():
    assert "schema: missing key (expected schema = 1" in only_problem('description = "x"\n')
    assert only_problem('schema = "1"\n') == f'{SRC}: schema: expected the integer 1, got "1"'
    newer = only_problem("schema = 2\n[newthing]\nx = 1\n")  # nothing about the keys it does not know
    assert newer.startswith(f"{SRC}: schema: expected 1, got 2: this mobikectl reads policy schema 1 only")
    assert "upgrade mobikectl" in newer


@pytest.mark.parametrize("text, place", [
    ('schema = 1\n[failback]\nhold_down = 30s\n', "line 3, column 15"),
    ('schema = 1\n[order\n', "line 2, column 7"),
    ('schema = 1\nschema = 1\n', "line 2"),
    ('schema = 1\n[order]\nprefer = ["dock",\n', "end of file"),
])
def test_syntax_errors_give_line_and_column(text, place):
    problem = only_problem(text)
    assert problem.startswith(f"{SRC}: {place}"), problem
    assert "TOML syntax error" in problem


def test_every_problem_of_a_file_at_once():
    text = """schema = 1
connections = ["home", ""]
[uplinks.dock]
match = ["eth*"]
class = "ether"
[order]
prefer = ["dokc", "dock"]
[classes.wwan.probe]
fall = 0
timeout_min = "9s"
[failback]
hold_dwon = "30s"
[probes]
data_target = "nowhere"
"""
    with pytest.raises(DataError) as caught:
        parse_policy(text, SRC)
    found = caught.value.problems
    assert caught.value.message == f"{SRC}: 7 problems in the policy"
    wheres = [p.split(": ")[1] for p in found]
    assert wheres == ["connections[1]", "uplinks.dock.class", "order.prefer[0]", "classes.wwan.probe.fall",
                      "failback.hold_dwon", "probes.data_target", "classes.wwan.probe.timeout_min"]
    assert all(p.startswith(f"{SRC}: ") for p in found)


def test_a_file_that_cannot_be_read(tmp_path):
    with pytest.raises(DataError) as caught:
        load_policy(tmp_path / "missing.toml")
    assert caught.value.message == f"{tmp_path / 'missing.toml'}: cannot read: No such file or directory " \
                                   "(check the path and its permissions)"
    with pytest.raises(DataError, match="cannot read: Is a directory"):
        load_policy(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"schema = 1\n\xff\xfe")
    with pytest.raises(DataError, match="not UTF-8"):
        load_policy(binary)


def test_a_bad_file_never_yields_a_partial_policy(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('schema = 1\n[failback]\nhold_down = "10s"\nmin_dwell = "x"\n')
    with pytest.raises(DataError):
        load_policy(bad)  # nothing returned: the caller keeps the policy it had
