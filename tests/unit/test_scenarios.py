"""The golden scenarios (tests/scenarios/<name>/): a policy, recorded facts, and the
decisions the engine must take. One parametrized test walks every folder; see
tests/scenarios/README.md. The replay is the one `mobikectl policy simulate` runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobikectl.policy.load import load_policy
from mobikectl.policy.simulate import ACTIONS, simulate

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p for p in (ROOT / "tests" / "scenarios").iterdir() if (p / "expected.json").exists())


def policy_of(folder: Path):
    if (folder / "policy.toml").exists():
        return load_policy(folder / "policy.toml")
    return load_policy(ROOT / (folder / "policy.ref").read_text().strip())


def test_there_are_scenarios():
    assert len(SCENARIOS) >= 3


@pytest.mark.parametrize("folder", SCENARIOS, ids=lambda p: p.name)
def test_scenario(folder: Path):
    expected = json.loads((folder / "expected.json").read_text())
    lines = (folder / "inputs.jsonl").read_text().splitlines()
    decisions = [d for d in simulate(policy_of(folder), lines, str(folder / "inputs.jsonl"),
                                     until=expected.get("until")) if d.order in ACTIONS]
    got = [(d.order, d.uplink, round(d.at, 3)) for d in decisions]
    want = expected["decisions"]
    assert len(got) == len(want), f"{folder.name}: expected {want}, got {got}"
    for (order, uplink, at), exp in zip(got, want):
        tolerance = exp.get("tolerance", expected.get("tolerance", 0.5))
        assert order == exp["order"], f"{folder.name}: expected {want}, got {got}"
        if "uplink" in exp:
            assert uplink == exp["uplink"], f"{folder.name}: expected {want}, got {got}"
        assert abs(at - exp["at"]) <= tolerance, f"{folder.name}: {order} to {uplink} at {at}, expected " \
                                                  f"{exp['at']} +- {tolerance}"
