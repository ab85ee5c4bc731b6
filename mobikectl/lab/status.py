"""`lab status`: one document (schema 1) about a lab, and its plain-text rendering."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobikectl.errors import Unavailable
from mobikectl.lab import charon
from mobikectl.lab import topology as t
from mobikectl.lab.impair import describe
from mobikectl.lab.netns import ip_json, list_namespaces

if TYPE_CHECKING:  # pragma: no cover
    from mobikectl.lab.api import Lab

SCHEMA = 1


def collect_status(lab: "Lab") -> dict:
    st = lab.sd.load()
    doc: dict = {"schema": SCHEMA, "name": lab.name, "state_dir": str(lab.sd.path), "exists": st is not None,
                 "up": False}
    if st is None:
        doc["problem"] = "not up (no state)"
        return doc
    doc.update({"profile": st.profile, "uplinks": st.uplinks, "created": st.created})
    existing = set(list_namespaces())
    nodes = {}
    for node in sorted(st.namespaces, key=lambda n: t.NODES.index(n) if n in t.NODES else 99):
        ns = st.namespaces[node]
        entry = {"namespace": ns, "exists": ns in existing, "interfaces": {}}
        if entry["exists"]:
            for link in ip_json(ns, "addr", "show"):
                if link.get("ifname") == "lo":
                    continue
                entry["interfaces"][link["ifname"]] = {
                    "state": link.get("operstate"),
                    "flags": link.get("flags", []),
                    "mtu": link.get("mtu"),
                    "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                                  if a.get("scope") != "link"],
                }
        nodes[node] = entry
    doc["nodes"] = nodes

    charons, sas = {}, {}
    for node in (t.RW, t.GW):
        pid = st.pids.get(node)
        paths = charon.node_paths(lab.node_dir(node))
        alive = charon.is_charon(pid)
        charons[node] = {"pid": pid, "alive": alive, "vici": str(paths["vici"]),
                         "strongswan_conf": str(paths["strongswan_conf"]), "log": str(paths["log"])}
        if alive:
            try:
                sas[node] = lab.list_sas(node)
            except Unavailable as exc:
                charons[node]["vici_error"] = exc.message
                sas[node] = []
        else:
            sas[node] = []
    doc["charons"] = charons
    doc["sas"] = sas
    vip = next((sa["local_vips"][0] for sa in sas.get(t.RW, []) if sa["local_vips"]), None)
    established = any(sa["state"] == "ESTABLISHED" for sa in sas.get(t.RW, []))
    reachable = bool(vip) and all(n["exists"] for n in nodes.values()) and lab.tunnel_ok()
    doc["tunnel"] = {"established": established, "vip": vip, "to": t.SRV_ADDR, "reachable": reachable}
    from mobikectl.lab.api import nat_ports_of

    doc["impairments"] = {u: [describe(r) for r in recs] for u, recs in st.impairments.items()}
    doc["nat_ports"] = {u: nat_ports_of(st, u) for u in st.uplinks if t.UPLINKS[u].nat}
    doc["up"] = reachable and all(c["alive"] for c in charons.values())
    if not doc["up"]:
        missing = [n for n, e in nodes.items() if not e["exists"]]
        dead = [n for n, c in charons.items() if not c["alive"]]
        doc["problem"] = ("namespaces missing: " + ",".join(missing)) if missing else (
            ("charon not running: " + ",".join(dead)) if dead else "tunnel carries no traffic")
    return doc


def render_text(doc: dict) -> str:
    if not doc.get("exists"):
        return f"lab {doc['name']}: not up"
    lines = [f"lab {doc['name']}: {'UP' if doc['up'] else 'DOWN (' + doc.get('problem', '?') + ')'}"
             f"  profile={doc['profile']} uplinks={','.join(doc['uplinks'])}  state={doc['state_dir']}"]
    lines.append("nodes:")
    for node, entry in doc["nodes"].items():
        if not entry["exists"]:
            lines.append(f"  {node:5} {entry['namespace']}  MISSING")
            continue
        ifs = "  ".join(f"{name}[{','.join(i['addresses']) or '-'}]{'' if i['state'] in ('UP', 'UNKNOWN') else ' ' + str(i['state'])}"
                        for name, i in entry["interfaces"].items())
        lines.append(f"  {node:5} {entry['namespace']:<18} {ifs}")
    lines.append("charons:")
    for node, c in doc["charons"].items():
        lines.append(f"  {node:5} pid {c['pid']} {'alive' if c['alive'] else 'NOT RUNNING'}  vici unix://{c['vici']}")
    lines.append("SAs:")
    for node, sas in doc["sas"].items():
        if not sas:
            lines.append(f"  {node:5} (none)")
        for sa in sas:
            lines.append(f"  {node:5} {sa['name']} #{sa['uniqueid']} {sa['state']}  "
                         f"{sa['local_host']}:{sa['local_port']} -> {sa['remote_host']}:{sa['remote_port']}  "
                         f"IKE SPIs {sa['initiator_spi']}_i {sa['responder_spi']}_r"
                         + (f"  vip {','.join(sa['local_vips'])}" if sa['local_vips'] else "")
                         + (f"  vip {','.join(sa['remote_vips'])} (peer)" if sa['remote_vips'] else ""))
            for ch in sa["children"]:
                lines.append(f"        child {ch['name']} #{ch['uniqueid']} {ch['state']}  SPIs {ch['spi_in']}_i {ch['spi_out']}_o")
    tun = doc["tunnel"]
    lines.append(f"tunnel: {tun['vip'] or '-'} -> {tun['to']}: {'reachable' if tun['reachable'] else 'NOT reachable'}")
    if doc["impairments"]:
        lines.append("impairments: " + "; ".join(f"{u}: {', '.join(r)}" for u, r in doc["impairments"].items()))
    if doc.get("nat_ports"):
        lines.append("NAT port ranges: " + ", ".join(f"{u} {p}" for u, p in doc["nat_ports"].items()))
    return "\n".join(lines)
