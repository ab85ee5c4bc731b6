"""Names the engine and the adapters share. A path is a pair: a local uplink (device and
source address) and a gateway address."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NewType

UplinkName = NewType("UplinkName", str)  # a device name: "wlan0"
IkeName = NewType("IkeName", str)  # a charon connection name: "home"


class UplinkClass(str, enum.Enum):
    ETHERNET = "ethernet"
    WLAN = "wlan"
    WWAN = "wwan"


class ProbeKind(str, enum.Enum):
    ECHO = "echo"  # ICMP echo to the gateway address, bound to the uplink's device and source
    IKE = "ike"  # UDP on the IKE/ESP port path (udp/4500) toward the gateway
    DATA = "data"  # through the tunnel: from the virtual IP to a target behind the gateway


class Health(str, enum.Enum):
    UNKNOWN = "unknown"  # no evidence yet
    UP = "up"  # answering
    SUSPECT = "suspect"  # a few misses: confirming burst under way
    DOWN = "down"  # confirmed dead (burst lost, carrier lost, link down, no address)


@dataclass(frozen=True, order=True)
class Path:
    """Where an IKE_SA can sit: local uplink + source address, and the gateway address."""

    uplink: UplinkName
    local: str  # source address on the uplink
    gateway: str  # the gateway's address (today: the SA's current remote address)

    @property
    def id(self) -> str:
        return f"{self.uplink}:{self.local}>{self.gateway}"

    def to_json(self) -> dict:
        return {"uplink": self.uplink, "local": self.local, "gateway": self.gateway}

    @classmethod
    def from_json(cls, doc: dict) -> "Path":
        return cls(UplinkName(doc["uplink"]), doc["local"], doc["gateway"])
