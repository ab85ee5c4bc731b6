"""Daemon settings (where things are), apart from the policy (what to decide).
Grouped dataclasses with defaults; the CLI fills them from options and env."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ROUTE_PROTO = 73  # our route protocol number: `ip route show proto 73` lists our steering routes
DEFAULT_CONTROL_SOCKET = "/run/mobikectl/mobikectl.sock"
DEFAULT_VICI_SOCKET = "/var/run/charon.vici"


@dataclass(frozen=True)
class CharonSettings:
    vici_socket: str = field(default_factory=lambda: os.environ.get("MOBIKECTL_VICI", DEFAULT_VICI_SOCKET))
    command_timeout: float = 10.0  # every VICI command has a timeout
    initiate_timeout: float = 20.0
    strongswan_conf: str = field(default_factory=lambda: os.environ.get("STRONGSWAN_CONF", "/etc/strongswan.conf"))


@dataclass(frozen=True)
class ControlSettings:
    socket: str = field(default_factory=lambda: os.environ.get("MOBIKECTL_SOCKET", DEFAULT_CONTROL_SOCKET))
    read_group: str = "mobikectl"  # members may read (status, paths, events); root may change


@dataclass(frozen=True)
class Settings:
    charon: CharonSettings = field(default_factory=CharonSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    policy_file: str | None = None  # None = built-in defaults
    tunnel_device: str = "ipsec0"  # kernel-libipsec's TUN; never an uplink
    route_proto: int = ROUTE_PROTO
    record_file: str | None = None  # write every fact (JSON lines) for replay
