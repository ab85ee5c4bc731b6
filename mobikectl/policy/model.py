"""The policy, schema version 1, as typed settings. The TOML loader (`policy/load.py`)
validates a file into these; the engine reads only these. Defaults are the shipped
defaults (`policies/default.toml` spells them out). Durations are seconds (floats).

Theory of detection (see docs/interfaces.md): the active path is probed every
`interval`; `fall` consecutive misses make it SUSPECT, which starts a confirming burst of
`confirm` probes `confirm_interval` apart, and probes every standby path at once; if the
whole burst is lost the path is DOWN and the engine moves. A SUSPECT path that answers is
UP again. A DOWN path needs `rise` consecutive answers to be UP; a preferred path must
stay UP for `failback.hold_down` before the engine fails back to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mobikectl.engine.ids import UplinkClass

SCHEMA = 1


@dataclass(frozen=True)
class ProbeTiming:
    interval: float = 0.1  # active path, when the tunnel is quiet
    standby_interval: float = 5.0  # idle standby paths
    timeout_min: float = 0.15  # per-probe timeout bounds; within them it follows the RTT
    timeout_max: float = 2.0
    fall: int = 2  # consecutive misses -> SUSPECT
    confirm: int = 3  # confirming burst size; all lost -> DOWN
    confirm_interval: float = 0.05
    rise: int = 3  # consecutive answers -> UP (from DOWN or UNKNOWN)


@dataclass(frozen=True)
class Limits:
    """What makes an answering path unhealthy anyway (0 = no limit)."""

    max_loss: float = 0.0  # fraction of the last `window` probes lost
    max_rtt: float = 0.0  # seconds, smoothed RTT
    window: int = 20


@dataclass(frozen=True)
class ClassSettings:
    cls: UplinkClass
    metered: bool = False
    probe: ProbeTiming = field(default_factory=ProbeTiming)
    limits: Limits = field(default_factory=Limits)
    monthly_budget_mb: float = 0.0  # probe budget on a metered class (0 = none)


@dataclass(frozen=True)
class UplinkRule:
    """Which devices are managed uplinks: fnmatch patterns on the name, or a device kind."""

    label: str  # the policy's name for this group ("dock", "wifi", "cell")
    cls: UplinkClass
    match: tuple[str, ...] = ()  # name patterns, e.g. ("wlan*", "wlp*")
    metered: bool | None = None  # overrides the class's setting


def _default_classes() -> dict[UplinkClass, ClassSettings]:
    cell = ProbeTiming(interval=0.2, standby_interval=30.0, timeout_min=0.5, timeout_max=4.0,
                       fall=3, confirm=4, confirm_interval=0.1)
    return {
        UplinkClass.ETHERNET: ClassSettings(UplinkClass.ETHERNET),
        UplinkClass.WLAN: ClassSettings(UplinkClass.WLAN),
        UplinkClass.WWAN: ClassSettings(UplinkClass.WWAN, metered=True, probe=cell, monthly_budget_mb=15.0),
    }


def _default_uplinks() -> tuple[UplinkRule, ...]:
    return (
        UplinkRule("dock", UplinkClass.ETHERNET, ("eth*", "en*")),
        UplinkRule("wifi", UplinkClass.WLAN, ("wlan*", "wl*")),
        UplinkRule("cell", UplinkClass.WWAN, ("wwan*", "ww*")),
    )


@dataclass(frozen=True)
class Failback:
    hold_down: float = 30.0  # a preferred path must be UP this long before we fail back
    min_dwell: float = 30.0  # at most one move per this period unless the current path is DOWN


@dataclass(frozen=True)
class Moves:
    confirm_timeout: float = 5.0  # ike-update + list-sas must confirm a SteerTo within this
    retries: int = 1  # SteerTo retries before the fallback (a new SA over the chosen path)


@dataclass(frozen=True)
class Probes:
    kinds: tuple[str, ...] = ("echo", "data")  # "echo", "ike", "data"
    data_target: str = ""  # an address behind the gateway for the data-plane probe ("" = off)
    gateways: tuple[str, ...] = ()  # extra gateway addresses to probe (default: the SA's remote)


@dataclass(frozen=True)
class Policy:
    schema: int = SCHEMA
    description: str = ""
    source: str = "<defaults>"  # the file it came from, for messages
    uplinks: tuple[UplinkRule, ...] = field(default_factory=_default_uplinks)
    prefer: tuple[str, ...] = ("dock", "wifi", "cell")  # uplink labels, best first
    classes: dict[UplinkClass, ClassSettings] = field(default_factory=_default_classes)
    failback: Failback = field(default_factory=Failback)
    moves: Moves = field(default_factory=Moves)
    probes: Probes = field(default_factory=Probes)
    connections: tuple[str, ...] = ()  # charon connections to manage; () = all

    def rule_for(self, ifname: str) -> UplinkRule | None:
        from fnmatch import fnmatchcase

        for rule in self.uplinks:
            if any(fnmatchcase(ifname, pat) for pat in rule.match):
                return rule
        return None

    def rank(self, ifname: str) -> int | None:
        """Preference rank of a device (0 = best), None if it is not a managed uplink."""
        rule = self.rule_for(ifname)
        if rule is None:
            return None
        return self.prefer.index(rule.label) if rule.label in self.prefer else len(self.prefer)

    def class_of(self, ifname: str) -> ClassSettings | None:
        rule = self.rule_for(ifname)
        return None if rule is None else self.classes[rule.cls]

    def metered(self, ifname: str) -> bool:
        rule = self.rule_for(ifname)
        if rule is None:
            return False
        return rule.metered if rule.metered is not None else self.classes[rule.cls].metered
