"""Load the messages recorded off charon and the kernel (tests/unit/recorded/)."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

RECORDED = Path(__file__).parent


def as_vici(value):
    """JSON form → what the vici package yields: str keys, bytes values, OrderedDicts."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return OrderedDict((k, as_vici(v)) for k, v in value.items())
    if isinstance(value, list):
        return [as_vici(v) for v in value]
    return value


def vici_event(name: str) -> tuple[str, OrderedDict]:
    doc = json.loads((RECORDED / "vici" / f"{name}.json").read_text())
    return doc["event"], as_vici(doc["message"])


def vici_doc(name: str) -> dict:
    return json.loads((RECORDED / "vici" / f"{name}.json").read_text())


def netlink_messages(name: str, key: str = "messages") -> list:
    """Recorded rtnetlink messages rebuilt as pyroute2 message objects."""
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    doc = json.loads((RECORDED / "netlink" / f"{name}.json").read_text())
    out = []
    for hexed in doc[key]:
        out.extend(MarshalRtnl().parse(bytes.fromhex(hexed)))
    return out


def netlink_raw(name: str, key: str = "messages") -> list[bytes]:
    doc = json.loads((RECORDED / "netlink" / f"{name}.json").read_text())
    return [bytes.fromhex(h) for h in doc[key]]
