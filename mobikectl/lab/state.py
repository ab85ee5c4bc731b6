"""A lab's state directory and its state.json.

    $MOBIKECTL_LAB_ROOT (default /var/lib/mobikectl/labs)/<name>/
        state.json              namespaces, charon PIDs, profile, uplinks, impairments
        rw/ gw/                 per charon: strongswan.conf, swanctl.conf, charon.vici,
                                charon.log (filelog), charon.out (stdout/stderr)

Kept outside /run on purpose: each charon gets a private tmpfs on /run, and the host, the
controller and the user must all reach the VICI sockets and logs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobikectl.errors import UsageError

DEFAULT_ROOT = "/var/lib/mobikectl/labs"
SCHEMA = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,19}$")


def lab_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("MOBIKECTL_LAB_ROOT") or DEFAULT_ROOT)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"lab name {name!r}: use 1-20 characters a-z, 0-9 and _ (it becomes part of namespace names mk-<name>-<node>)"
        )
    return name


@dataclass
class LabState:
    name: str
    profile: str
    uplinks: list[str]
    namespaces: dict[str, str]                            # node -> namespace
    pids: dict[str, int] = field(default_factory=dict)    # node -> charon PID
    impairments: dict[str, list[dict]] = field(default_factory=dict)  # uplink -> [{kind, arg}]
    nat_generation: dict[str, int] = field(default_factory=dict)      # uplink -> port-range generation
    addresses: dict = field(default_factory=dict)
    created: str = ""
    schema: int = SCHEMA

    @classmethod
    def from_dict(cls, doc: dict) -> "LabState":
        known = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)


class StateDir:
    def __init__(self, name: str, root: str | os.PathLike | None = None) -> None:
        self.name = check_name(name)
        self.path = lab_root(root) / name

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def node_dir(self, node: str) -> Path:
        return self.path / node

    def load(self) -> LabState | None:
        try:
            doc = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return LabState.from_dict(doc)

    def save(self, state: LabState) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
