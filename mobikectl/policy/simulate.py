"""`policy simulate`: a recording of facts replayed through the engine with a policy,
offline, and the decisions it takes. The engine and its codec do the work
(`mobikectl.engine.codec.replay`); this only picks out and describes the decisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from mobikectl.errors import DataError
from mobikectl.policy.model import Policy

ACTIONS = ("SteerTo", "RemoveSteering", "Initiate", "Terminate")  # orders that change something
NOTES = ("decision", "move", "probe", "switch", "charon", "policy")  # Note kinds worth showing


@dataclass(frozen=True)
class Decision:
    at: float
    order: str  # SteerTo, RemoveSteering, Initiate, Terminate, or Note
    kind: str  # for a Note, its kind; else ""
    uplink: str | None  # the target uplink of a SteerTo
    target: str  # SteerTo: the path id; RemoveSteering: the gateway; Initiate/Terminate: the IKE_SA
    reason: str

    def to_json(self) -> dict:
        return {"at": round(self.at, 6), "order": self.order, "kind": self.kind, "uplink": self.uplink,
                "target": self.target, "reason": self.reason}


def simulate(policy: Policy, lines: Iterable[str], source: str, *, until: float | None = None) -> list[Decision]:
    """Replay; DataError naming the line for a bad recording."""
    from mobikectl.engine.codec import replay

    try:
        orders = replay(policy, lines, until=until)
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None
    out = []
    for at, order in orders:
        name = type(order).__name__
        if name == "Note" and order.kind in NOTES:
            out.append(Decision(at, name, order.kind, None, "", order.message))
        elif name == "SteerTo":
            out.append(Decision(at, name, "", order.path.uplink, order.path.id, order.reason))
        elif name == "RemoveSteering":
            out.append(Decision(at, name, "", None, order.gateway, order.reason))
        elif name in ("Initiate", "Terminate"):
            out.append(Decision(at, name, "", None, order.ike, order.reason))
    return out


def render(decisions: list[Decision], *, notes: bool) -> str:
    lines = []
    for d in decisions:
        if d.order == "Note":
            if notes:
                lines.append(f"{d.at:10.3f}  {d.kind:<14} {d.reason}")
        else:
            lines.append(f"{d.at:10.3f}  {d.order:<14} {d.target}: {d.reason}")
    return "\n".join(lines) if lines else "no decisions"
