"""charon's IKE_SAs as the engine knows them, keyed by their SPIs (never by uniqueid:
charon reuses unique ids across restarts, and a rekeyed SA keeps its name but not its SPIs).

Only managed connections count (`policy.connections`; empty = all). A snapshot marked
incomplete (`list-sas` with noblock skips SAs busy with a MOBIKE update) only adds and
updates: it never makes the engine forget an SA it does not list.
"""

from __future__ import annotations

from dataclasses import replace

from mobikectl.engine.inputs import IkeRekeyed, IkeUpdated, SaInfo, SaSnapshot
from mobikectl.policy.model import Policy

UNSETTLED = frozenset({"CREATED", "CONNECTING", "DELETING", "DESTROYING"})

Spis = tuple[str, str]


class SaTable:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.sas: dict[Spis, SaInfo] = {}
        self.retiring: set[Spis] = set()  # being replaced by a new SA (the fallback): not counted

    def managed(self, name: str) -> bool:
        return not self.policy.connections or name in self.policy.connections

    def snapshot(self, snap: SaSnapshot) -> None:
        listed = {sa.spis: sa for sa in snap.sas if self.managed(sa.name)}
        if snap.complete:
            self.sas = listed
            self.retiring &= set(listed)
        else:
            self.sas.update(listed)

    def up(self, sa: SaInfo) -> bool:
        if not self.managed(sa.name):
            return False
        self.sas[sa.spis] = sa
        return True

    def down(self, spis: Spis) -> SaInfo | None:
        self.retiring.discard(spis)
        return self.sas.pop(spis, None)

    def updated(self, fact: IkeUpdated) -> SaInfo | None:
        """Apply an ike-update; None if the SA is not known (the caller resyncs)."""
        old = self.sas.get((fact.spi_i, fact.spi_r))
        if old is None:
            return None
        new = replace(old, local_host=fact.new_local, remote_host=fact.new_remote,
                      local_port=fact.new_local_port or old.local_port,
                      remote_port=fact.new_remote_port or old.remote_port)
        self.sas[new.spis] = new
        return new

    def rekeyed(self, fact: IkeRekeyed) -> bool:
        if not self.managed(fact.name):
            return False
        self.sas.pop(tuple(fact.old_spis), None)  # type: ignore[arg-type]
        self.sas[fact.new.spis] = fact.new
        return True

    def settled(self) -> list[SaInfo]:
        """SAs with real endpoints, in a fixed order."""
        return [sa for spis, sa in sorted(self.sas.items())
                if spis not in self.retiring and sa.state.upper() not in UNSETTLED and sa.local_host and sa.remote_host
                and not sa.local_host.startswith("%")]

    def on_gateway(self, gateway: str) -> list[SaInfo]:
        return [sa for sa in self.settled() if sa.remote_host == gateway]

    def gateways(self) -> list[str]:
        return sorted({sa.remote_host for sa in self.settled()})
