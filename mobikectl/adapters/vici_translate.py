"""Pure translation of charon's VICI messages into engine facts.

A VICI message, as the `vici` package hands it over, is an OrderedDict with str keys and
bytes values (lists of bytes, nested OrderedDicts). Bytes are decoded here, once; nothing
else in mobikectl sees them. No I/O, no clock: a message in, a fact (or None) out.

Event shapes (strongSwan 5.9.8, recorded in tests/unit/recorded/vici/):
  ike-updown    {up: yes?, <ike-name>: {IKE fields}}           `up` absent when down
  ike-update    {local-host, local-port, remote-host, remote-port (the NEW endpoints),
                 <ike-name>: {IKE fields with the OLD endpoints}}
  child-updown  {up: yes?, <ike-name>: {IKE fields, child-sas: {<child>-<id>: {...}}}}
  ike-rekey     {<ike-name>: {old: {IKE fields}, new: {IKE fields}}}
  child-rekey   {<ike-name>: {IKE fields, child-sas: {<child>: {old: {...}, new: {...}}}}}
  list-sa       {<ike-name>: {IKE fields, child-sas: {<child>-<id>: {...}}}}
In ike-updown and ike-update the SA's section sits next to top-level keys: the SA is the
one value that is a section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mobikectl.engine.ids import IkeName
from mobikectl.engine.inputs import (
    ChildInfo,
    ChildRekeyed,
    IkeDown,
    IkeRekeyed,
    IkeUp,
    IkeUpdated,
    SaInfo,
    SaSnapshot,
)
from mobikectl.errors import DataError

EVENTS = ("ike-updown", "ike-update", "child-updown", "ike-rekey", "child-rekey")

Fact = IkeUp | IkeDown | IkeUpdated | IkeRekeyed | ChildRekeyed


def text(value: Any, default: str = "") -> str:
    """A VICI value as str: bytes decoded, None as `default`."""
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def number(value: Any, default: int = 0) -> int:
    try:
        return int(text(value, str(default)))
    except ValueError:
        return default


def texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(text(v) for v in value)
    return (text(value),)


def sa_section(msg: Mapping[str, Any]) -> tuple[IkeName, Mapping[str, Any]]:
    """The one IKE_SA section of an event: (connection name, fields). Top-level scalar keys
    (`up`, `local-host`, ...) are skipped."""
    for key, value in msg.items():
        if isinstance(value, Mapping):
            return IkeName(key), value
    raise DataError(f"VICI message without an IKE_SA section: keys {list(msg)}")


def child_info(fields: Mapping[str, Any]) -> ChildInfo:
    return ChildInfo(
        name=text(fields.get("name")),
        uniqueid=text(fields.get("uniqueid")),
        state=text(fields.get("state")),
        spi_in=text(fields.get("spi-in")),
        spi_out=text(fields.get("spi-out")),
    )


def sa_info(name: str, fields: Mapping[str, Any]) -> SaInfo:
    """An IKE_SA block (list-sa, or embedded in an event) as SaInfo."""
    children = fields.get("child-sas") or {}
    return SaInfo(
        name=IkeName(name),
        uniqueid=text(fields.get("uniqueid")),
        state=text(fields.get("state")),
        local_host=text(fields.get("local-host")),
        local_port=number(fields.get("local-port")),
        remote_host=text(fields.get("remote-host")),
        remote_port=number(fields.get("remote-port")),
        spi_i=text(fields.get("initiator-spi")),
        spi_r=text(fields.get("responder-spi")),
        vips=texts(fields.get("local-vips")),
        children=tuple(child_info(c) for c in children.values() if isinstance(c, Mapping)
                       and "old" not in c),
        busy=texts(fields.get("tasks-active")),
    )


def translate(event: str | bytes, msg: Mapping[str, Any]) -> Fact | None:
    """One VICI event → one fact, or None for an event that carries nothing for the engine
    (child-updown: the CHILD_SA set changed; the adapter answers it with a fresh SaSnapshot).
    Raises DataError on a malformed message."""
    event = text(event)
    if event not in EVENTS:
        return None
    name, sa = sa_section(msg)
    if event == "ike-updown":
        if text(msg.get("up")) == "yes":
            return IkeUp(sa_info(name, sa))
        return IkeDown(name, text(sa.get("initiator-spi")), text(sa.get("responder-spi")))
    if event == "ike-update":
        return IkeUpdated(
            name=name,
            spi_i=text(sa.get("initiator-spi")),
            spi_r=text(sa.get("responder-spi")),
            old_local=text(sa.get("local-host")),
            old_remote=text(sa.get("remote-host")),
            new_local=text(msg.get("local-host")),
            new_remote=text(msg.get("remote-host")),
            new_local_port=number(msg.get("local-port")),
            new_remote_port=number(msg.get("remote-port")),
        )
    if event == "ike-rekey":
        old, new = sa.get("old"), sa.get("new")
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            raise DataError(f"ike-rekey for {name} without old/new sections")
        return IkeRekeyed(name, (text(old.get("initiator-spi")), text(old.get("responder-spi"))),
                          sa_info(name, new))
    if event == "child-rekey":
        for child, pair in (sa.get("child-sas") or {}).items():
            if isinstance(pair, Mapping) and isinstance(pair.get("old"), Mapping):
                return ChildRekeyed(
                    name=name,
                    spi_i=text(sa.get("initiator-spi")),
                    spi_r=text(sa.get("responder-spi")),
                    child=text(pair["old"].get("name"), child),
                    old_spi_in=text(pair["old"].get("spi-in")),
                    new_spi_in=text((pair.get("new") or {}).get("spi-in")),
                )
        raise DataError(f"child-rekey for {name} without a child section")
    return None  # child-updown


def child_updown(msg: Mapping[str, Any]) -> tuple[bool, SaInfo]:
    """A child-updown event as (up, the IKE_SA with the CHILD_SAs it names)."""
    name, sa = sa_section(msg)
    return text(msg.get("up")) == "yes", sa_info(name, sa)


def snapshot(list_sa: Iterable[Mapping[str, Any]], list_conn: Iterable[Mapping[str, Any]] = (),
             *, total: int | None = None) -> SaSnapshot:
    """The streamed `list-sa` and `list-conn` items of a list-sas (noblock) and list-conns
    as an SaSnapshot. `total` is charon's own count of IKE_SAs (`stats` ikesas.total): when
    the listing holds fewer, noblock skipped busy SAs and the snapshot is not complete."""
    sas = []
    for item in list_sa:
        for name, fields in item.items():
            if isinstance(fields, Mapping):
                sas.append(sa_info(name, fields))
    conns = [IkeName(name) for item in list_conn for name, v in item.items() if isinstance(v, Mapping)]
    complete = total is None or len(sas) >= total
    return SaSnapshot(sas=tuple(sas), complete=complete, conns=tuple(conns))


def conn_children(list_conn: Iterable[Mapping[str, Any]], ike: str) -> tuple[str, ...]:
    """The CHILD_SA config names of connection `ike` in list-conns items."""
    for item in list_conn:
        conn = item.get(ike)
        if isinstance(conn, Mapping):
            return tuple((conn.get("children") or {}).keys())
    return ()


def ikesas_total(stats: Mapping[str, Any]) -> int | None:
    """charon's count of IKE_SAs from a `stats` response (None if absent)."""
    ikesas = stats.get("ikesas")
    if isinstance(ikesas, Mapping) and ikesas.get("total") is not None:
        return number(ikesas.get("total"))
    return None


def version(msg: Mapping[str, Any]) -> str:
    """A `version` response as one line: "charon 5.9.8 (Linux 6.1.0, x86_64)"."""
    return (f"{text(msg.get('daemon'), 'charon')} {text(msg.get('version'), '?')} "
            f"({text(msg.get('sysname'))} {text(msg.get('release'))}, {text(msg.get('machine'))})")
