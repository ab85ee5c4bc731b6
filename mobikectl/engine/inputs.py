"""Facts: what happened, in the past tense. Adapters make them; the engine consumes them.

Every fact is a frozen dataclass; `codec.py` turns them into JSON objects
(`{"type": "ProbeReplied", ...}`) and back, to record a run and replay it.
Times are the run loop's monotonic seconds (`now`), never wall-clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mobikectl.engine.ids import IkeName, Path, ProbeKind, UplinkName


# --- the laptop (netlink) ---------------------------------------------------------------

@dataclass(frozen=True)
class LinkChanged:
    """A link appeared, changed or disappeared (RTM_NEWLINK / RTM_DELLINK)."""

    ifname: UplinkName
    index: int
    admin_up: bool  # IFF_UP
    carrier: bool  # IFF_LOWER_UP / IFF_RUNNING
    present: bool = True  # False: the device was deleted
    kind: str = ""  # IFLA_INFO_KIND ("veth", "tun", "wireguard", ...); "" for plain hardware
    flags: tuple[str, ...] = ()  # "pointopoint", "loopback", ...


@dataclass(frozen=True)
class AddressChanged:
    """An address appeared, changed flags, or disappeared (RTM_NEWADDR / RTM_DELADDR)."""

    ifname: UplinkName
    address: str
    prefixlen: int
    present: bool = True
    tentative: bool = False
    deprecated: bool = False
    dadfailed: bool = False
    temporary: bool = False
    peer: str = ""  # point-to-point peer address, if any


@dataclass(frozen=True)
class RouteChanged:
    """A route in the main table (or another non-charon table) changed."""

    dst: str  # "default" or "192.0.2.1/32"
    ifname: UplinkName | None
    nexthop: str | None  # gateway ("via"); None for a device route (point-to-point)
    src: str | None = None  # prefsrc
    metric: int = 0
    table: int = 254
    proto: int = 0
    present: bool = True


@dataclass(frozen=True)
class NetSnapshot:
    """The whole netlink state, sent once after (re)subscribing or after an overrun."""

    links: tuple[LinkChanged, ...] = ()
    addresses: tuple[AddressChanged, ...] = ()
    routes: tuple[RouteChanged, ...] = ()


# --- probes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeReplied:
    """The answer to a SendProbe arrived (rtt in seconds)."""

    path: Path
    kind: ProbeKind
    seq: int
    rtt: float


@dataclass(frozen=True)
class ProbeLost:
    """A probe could not be sent (no route, device gone) or was answered with an error.
    Probes that simply get no answer are timed out by the engine itself."""

    path: Path
    kind: ProbeKind
    seq: int
    why: str


@dataclass(frozen=True)
class TunnelInbound:
    """Packets arrived through the tunnel: the inbound counter advanced to `packets`.
    Proof of life for the SA's current path."""

    packets: int


# --- charon (VICI) ------------------------------------------------------------------------

@dataclass(frozen=True)
class ChildInfo:
    name: str
    uniqueid: str
    state: str
    spi_in: str = ""
    spi_out: str = ""


@dataclass(frozen=True)
class SaInfo:
    """One IKE_SA as charon lists it. Compare SAs by SPIs (`spis`), never by uniqueid."""

    name: IkeName
    uniqueid: str
    state: str  # ESTABLISHED, CONNECTING, REKEYING, ...
    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    spi_i: str
    spi_r: str
    vips: tuple[str, ...] = ()
    children: tuple[ChildInfo, ...] = ()
    busy: tuple[str, ...] = ()  # tasks-active, e.g. ("IKE_MOBIKE",)

    @property
    def spis(self) -> tuple[str, str]:
        return (self.spi_i, self.spi_r)


@dataclass(frozen=True)
class SaSnapshot:
    """All IKE_SAs from `list-sas`. `complete` is False when a noblock listing may have
    skipped busy SAs: then a missing SA does not mean it is gone."""

    sas: tuple[SaInfo, ...] = ()
    complete: bool = True
    conns: tuple[IkeName, ...] = ()  # connections loaded in charon (list-conns)


@dataclass(frozen=True)
class IkeUp:
    sa: SaInfo


@dataclass(frozen=True)
class IkeDown:
    name: IkeName
    spi_i: str
    spi_r: str


@dataclass(frozen=True)
class IkeUpdated:
    """charon moved (or started moving) an IKE_SA to new endpoints (`ike-update`)."""

    name: IkeName
    spi_i: str
    spi_r: str
    old_local: str
    old_remote: str
    new_local: str
    new_remote: str
    new_local_port: int = 0
    new_remote_port: int = 0


@dataclass(frozen=True)
class IkeRekeyed:
    name: IkeName
    old_spis: tuple[str, str]
    new: SaInfo


@dataclass(frozen=True)
class ChildRekeyed:
    name: IkeName  # the IKE_SA's connection name
    spi_i: str
    spi_r: str
    child: str
    old_spi_in: str
    new_spi_in: str


@dataclass(frozen=True)
class CharonConnected:
    version: str


@dataclass(frozen=True)
class CharonLost:
    why: str


# --- results of orders and requests from the user ---------------------------------------------

@dataclass(frozen=True)
class ActionFailed:
    """An order could not be carried out. `order` is the order itself."""

    order: object
    error: str


@dataclass(frozen=True)
class SwitchRequested:
    """The user asked for an uplink (`mobikectl switch`). `until` None = until `--auto`."""

    uplink: UplinkName | None  # None = back to automatic
    until: float | None = None
    force: bool = False


@dataclass(frozen=True)
class PolicyLoaded:
    """A new, already validated policy is in force from now on."""

    policy: object = field(compare=False)


FACTS = (
    LinkChanged, AddressChanged, RouteChanged, NetSnapshot,
    ProbeReplied, ProbeLost, TunnelInbound,
    SaSnapshot, IkeUp, IkeDown, IkeUpdated, IkeRekeyed, ChildRekeyed, CharonConnected, CharonLost,
    ActionFailed, SwitchRequested, PolicyLoaded,
)
