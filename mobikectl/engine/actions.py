"""Orders: what the engine wants done, in the imperative. Every order carries a human
`reason`. The run loop hands each to the adapter that owns it and fails loudly on an
order it does not know. A failed order comes back to the engine as `ActionFailed`."""

from __future__ import annotations

from dataclasses import dataclass, field

from mobikectl.engine.ids import IkeName, Path, ProbeKind


@dataclass(frozen=True)
class SendProbe:
    """Send one probe on `path`. The engine times it out itself after `timeout`.

    `src`/`dst` override the addresses (default: path.local and path.gateway). A DATA
    probe needs both: src = the SA's virtual IP, dst = the target behind the gateway; it
    is sent without a device binding so it goes through the tunnel."""

    path: Path
    kind: ProbeKind
    seq: int
    timeout: float
    reason: str = ""
    src: str | None = None
    dst: str | None = None


@dataclass(frozen=True)
class SteerTo:
    """Make charon's route lookup pick `path`: a host route to path.gateway via `nexthop`
    (None on a point-to-point link) on path.uplink with src path.local, tagged with the
    project's route protocol. With prefer_best_path charon then runs a MOBIKE update."""

    path: Path
    nexthop: str | None
    reason: str


@dataclass(frozen=True)
class RemoveSteering:
    """Remove our host route to `gateway`: charon follows the plain routing metrics again."""

    gateway: str
    reason: str


@dataclass(frozen=True)
class Initiate:
    """Fallback: bring up a new IKE_SA (and its CHILD_SAs) over the currently steered path."""

    ike: IkeName
    reason: str


@dataclass(frozen=True)
class Terminate:
    """Close an IKE_SA, named by its SPIs."""

    ike: IkeName
    spi_i: str
    spi_r: str
    reason: str


@dataclass(frozen=True)
class Resync:
    """Ask charon for a fresh SaSnapshot (list-sas, list-conns)."""

    reason: str


@dataclass(frozen=True)
class Note:
    """Something worth an event: shown by `mobikectl events`, logged, kept for `status`.
    kind: "probe" (health transition), "decision", "move", "charon", "policy", "switch"."""

    kind: str
    message: str
    data: dict = field(default_factory=dict, compare=False)


ORDERS = (SendProbe, SteerTo, RemoveSteering, Initiate, Terminate, Resync, Note)
