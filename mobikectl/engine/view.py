"""The engine's state as one JSON-able dict, for `mobikectl status` and `paths`.
Times are the engine's monotonic seconds; the CLI turns them into ages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mobikectl.engine.probing import MONTH

if TYPE_CHECKING:
    from mobikectl.engine.engine import Engine


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def render(engine: "Engine") -> dict[str, Any]:
    policy, now = engine.policy, engine.now
    paths = []
    for pp in engine._sorted_paths():
        h = pp.health
        paths.append({
            "path": pp.path.to_json() if pp.path else {"uplink": pp.uplink, "local": None, "gateway": pp.gateway},
            "id": pp.path.id if pp.path else f"{pp.uplink}>{pp.gateway}",
            "role": "active" if pp.key in engine.active else "standby",
            "health": h.state.value,
            "since": _r(h.since),
            "up_since": _r(h.up_since),
            "down_reason": pp.down_reason,
            "rtt": _r(h.last_rtt, 6), "srtt": _r(h.srtt, 6), "rttvar": _r(h.rttvar, 6),
            "timeout": _r(h.timeout(), 6),
            "loss": round(h.loss(), 4),
            "last_probe": _r(pp.last_sent), "last_answer": _r(h.last_answer),
            "probes_sent": pp.probes_sent, "in_flight": len(pp.inflight),
            "probe_bytes_sent": pp.bytes_out, "probe_bytes_received": pp.bytes_in,
            "probe_bytes_month": pp.month_bytes,
        })
    uplinks: dict[str, Any] = {}
    for up in engine.uplinks.managed():
        rule = policy.rule_for(up.ifname)
        mine = [p for p in paths if p["path"]["uplink"] == up.ifname]
        first = mine[0] if mine else {}
        budget = engine.budgets.get(up.ifname)
        cls = policy.class_of(up.ifname)
        uplinks[up.ifname] = {
            "label": rule.label if rule else None,
            "class": rule.cls.value if rule else None,
            "metered": policy.metered(up.ifname),
            "rank": policy.rank(up.ifname),
            "admin_up": up.admin_up, "carrier": up.carrier,
            "addresses": up.usable_addresses(),
            "nexthop": {"4": up.nexthop(4), "6": up.nexthop(6)},
            "health": first.get("health", "unknown"),
            "rtt": first.get("srtt"), "loss": first.get("loss"),
            "last_probe": max((p["last_probe"] for p in mine if p["last_probe"] is not None), default=None),
            "probe_bytes_sent": sum(p["probe_bytes_sent"] for p in mine),
            "probe_bytes_received": sum(p["probe_bytes_received"] for p in mine),
            "probe_bytes_month": sum(p["probe_bytes_month"] for p in mine),
            "monthly_budget_bytes": budget.monthly if budget else None,
            "month_seconds": MONTH,
            "probe_interval": cls.probe.interval if cls else None,
            "standby_interval": cls.probe.standby_interval if cls else None,
        }
    sas = []
    for sa in engine.sas.settled():
        owner = engine.uplinks.owner_of(sa.local_host)
        sas.append({"name": sa.name, "uniqueid": sa.uniqueid, "state": sa.state,
                    "local": sa.local_host, "local_port": sa.local_port,
                    "remote": sa.remote_host, "remote_port": sa.remote_port,
                    "spis": [sa.spi_i, sa.spi_r], "uplink": owner.ifname if owner else None,
                    "vips": list(sa.vips), "children": [c.name for c in sa.children]})
    gateways = {g: engine.gateways[g].view() for g in sorted(engine.gateways)}
    first_gw = next(iter(gateways.values()), None)
    ov = engine.override
    return {
        "now": now,
        "started_at": engine.started_at,
        "policy": policy.source,
        "charon": {"connected": engine.charon_up, "awaiting_snapshot": engine.awaiting_snapshot},
        "uplinks": uplinks,
        "paths": paths,
        "sas": sas,
        "gateways": gateways,
        "chosen": first_gw["chosen"] if first_gw else None,
        "why": first_gw["why"] if first_gw else "no managed IKE_SA yet",
        "override": None if ov is None else {"uplink": ov.uplink, "until": ov.until, "force": ov.force,
                                             "since": ov.since},
        "moves": [m.view() for m in engine.moves],
        "tunnel_inbound_at": engine.inbound_at,
    }
