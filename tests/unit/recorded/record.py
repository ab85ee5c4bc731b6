"""Record real VICI and netlink messages for the translators' unit tests.

Run as root (it builds a MiniLab, see minilab.py, and removes it at the end):

    .venv/bin/python tests/unit/recorded/record.py

VICI messages are stored as JSON with bytes values decoded to str (the tests encode them
back); netlink messages as the kernel's bytes in hex, one message each, so the tests
rebuild real pyroute2 message objects with pyroute2's own parser.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import vici

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from minilab import GW_ADDR, MiniLab  # noqa: E402

EVENTS = ["ike-updown", "ike-update", "child-updown", "ike-rekey", "child-rekey"]


def plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def vici_session(path: str, timeout: float | None = 10) -> vici.Session:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    sock.connect(path)
    return vici.Session(sock)


class EventTape(threading.Thread):
    def __init__(self, path: str) -> None:
        super().__init__(name="record-vici", daemon=True)
        self.session = vici_session(path, None)
        self.events: list[tuple[float, str, dict]] = []
        self.stopping = False

    def run(self) -> None:
        for name, msg in self.session.listen(EVENTS, timeout=0.2):
            if self.stopping:
                break
            if name is not None:
                self.events.append((time.monotonic(), name.decode(), plain(msg)))

    def wait_for(self, name: str, after: int, deadline_s: float = 15) -> int:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for i, (_, n, _) in enumerate(self.events[after:], after):
                if n == name:
                    return i
            time.sleep(0.02)
        raise TimeoutError(f"no {name} event")

    def save(self, i: int, file: str, note: str) -> None:
        _, name, msg = self.events[i]
        (HERE / "vici" / file).write_text(json.dumps({"note": note, "event": name, "message": msg}, indent=1) + "\n")


def record_vici(lab: MiniLab) -> None:
    tape = EventTape(lab.vici_path("rw"))
    tape.start()
    time.sleep(0.5)
    cmd = vici_session(lab.vici_path("rw"))
    out = HERE / "vici"
    (out / "version.json").write_text(json.dumps({"note": "version response", "message": plain(cmd.version())}, indent=1) + "\n")

    n = len(tape.events)
    lab.initiate()
    tape.save(tape.wait_for("ike-updown", n), "ike-updown-up.json", "swanctl --initiate --ike home --child net")
    tape.save(tape.wait_for("child-updown", n), "child-updown-up.json", "swanctl --initiate --ike home --child net")

    sas = [plain(m) for m in cmd.list_sas({"noblock": "yes"})]
    conns = [plain(m) for m in cmd.list_conns()]
    stats = plain(cmd.stats())
    (out / "list-sas.json").write_text(json.dumps({"note": "list-sas noblock, one ESTABLISHED SA", "events": sas,
                                                   "conns": conns, "stats": stats}, indent=1) + "\n")

    # a MOBIKE move charon makes by itself: the active uplink goes admin down
    n = len(tape.events)
    lab.exec("rw", "ip", "link", "set", "wlan0", "down")
    i = tape.wait_for("ike-update", n)
    tape.save(i, "ike-update-link-down.json", "ip link set wlan0 down: charon moves to wwan0 (MOBIKE)")
    tape.save(tape.wait_for("child-rekey", i), "child-rekey-after-move.json",
              "kernel-libipsec: the CHILD_SA is rekeyed after the MOBIKE move")
    time.sleep(1.0)

    # wlan0 back up with its default route: prefer_best_path moves the SA back to wlan0
    n = len(tape.events)
    lab.exec("rw", "ip", "link", "set", "wlan0", "up")
    lab.exec("rw", "ip", "route", "replace", "default", "via", "10.1.0.1", "dev", "wlan0", "metric", "100")
    i = tape.wait_for("ike-update", n)
    tape.save(i, "ike-update-failback.json", "wlan0 up + its default route back: prefer_best_path moves back")
    time.sleep(1.0)
    # a move we steer: our host route to the gateway via wwan0
    n = len(tape.events)
    t0 = time.monotonic()
    lab.exec("rw", "ip", "route", "replace", f"{GW_ADDR}/32", "via", "10.2.0.1", "dev", "wwan0",
             "src", "10.2.0.2", "proto", "73")
    i = tape.wait_for("ike-update", n)
    print(f"steering route -> ike-update: {1000 * (tape.events[i][0] - t0):.0f} ms")
    tape.save(i, "ike-update-steered.json", "ip route replace GW/32 via 10.2.0.1 dev wwan0 src 10.2.0.2 proto 73")
    time.sleep(1.0)
    sas = [plain(m) for m in cmd.list_sas({"noblock": "yes"})]
    (out / "list-sas-after-move.json").write_text(json.dumps({"note": "list-sas noblock after the steered move",
                                                              "events": sas}, indent=1) + "\n")

    n = len(tape.events)
    cmd.rekey({"ike": "home"})
    tape.save(tape.wait_for("ike-rekey", n), "ike-rekey.json", "vici rekey ike=home")
    time.sleep(0.5)
    n = len(tape.events)
    cmd.rekey({"child": "net"})
    tape.save(tape.wait_for("child-rekey", n), "child-rekey.json", "vici rekey child=net")
    time.sleep(0.5)

    n = len(tape.events)
    for _ in cmd.terminate({"ike": "home", "timeout": 5000}):
        pass
    tape.save(tape.wait_for("child-updown", n), "child-updown-down.json", "vici terminate ike=home")
    tape.save(tape.wait_for("ike-updown", n), "ike-updown-down.json", "vici terminate ike=home")
    tape.stopping = True
    tape.join(2)


# --- netlink ----------------------------------------------------------------------------

NL_RECORDER = r'''
import json, socket, struct, sys, time
groups = 0x1 | 0x10 | 0x40 | 0x100 | 0x400   # LINK, IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, groups))
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
out = []
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        data = s.recv(65536)
    except socket.timeout:
        continue
    off = 0
    while off + 16 <= len(data):
        length, = struct.unpack_from("I", data, off)
        out.append(data[off:off + length].hex())
        off += (length + 3) & ~3
print(json.dumps(out), flush=True)
'''


def record_netlink_case(lab: MiniLab, file: str, note: str, commands: list[tuple[str, ...]],
                        setup: list[tuple[str, ...]] = (), undo: list[tuple[str, ...]] = ()) -> None:
    for node, *argv in setup:
        lab.exec(node, *argv)
    time.sleep(0.3)
    proc = subprocess.Popen(["ip", "netns", "exec", lab.ns("rw"), sys.executable, "-c", NL_RECORDER, "0.2", "2.5"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    for node, *argv in commands:
        lab.exec(node, *argv)
    messages = json.loads(proc.stdout.readline())
    proc.wait()
    for node, *argv in undo:
        lab.exec(node, *argv, check=False)
    (HERE / "netlink" / file).write_text(json.dumps({"note": note, "commands": [" ".join(c) for c in commands],
                                                     "messages": messages}, indent=1) + "\n")


NL_DUMP = r'''
import json, socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
out = {}
for name, kind, body in (("links", 18, struct.pack("BxHiII", 0, 0, 0, 0, 0)),
                         ("addrs", 22, struct.pack("BBBBI", 0, 0, 0, 0, 0)),
                         ("routes", 26, struct.pack("BBBBBBBBI", 0, 0, 0, 0, 0, 0, 0, 0, 0))):
    s.send(struct.pack("IHHII", 16 + len(body), kind, 0x301, 1, 0) + body)
    msgs, done = [], False
    while not done:
        data = s.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, mtype = struct.unpack_from("IH", data, off)
            if mtype == 3:
                done = True
                break
            msgs.append(data[off:off + length].hex())
            off += (length + 3) & ~3
    out[name] = msgs
print(json.dumps(out))
'''


NL_LATE = r'''
import json, socket, struct, sys, time
sub = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
sub.bind((0, 0x1))  # RTMGRP_LINK
sub.settimeout(0.1)
req = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
req.bind((0, 0))
print("ready", flush=True)
sys.stdin.readline()  # the carrier was just lost
t0 = time.monotonic()
body = struct.pack("BxHiII", 0, 0, 0, 0, 0) + struct.pack("HHI", 8, 29, 8)  # IFLA_EXT_MASK: skip stats
req.send(struct.pack("IHHII", 16 + len(body), 18, 0x301, 1, 0) + body)
poll, done = [], False
while not done:
    data = req.recv(65536)
    off = 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("IH", data, off)
        if mtype == 3:
            done = True
            break
        poll.append(data[off:off + length].hex())
        off += (length + 3) & ~3
polled_after = time.monotonic() - t0
messages = []
while time.monotonic() < t0 + 2.0:
    try:
        data = sub.recv(65536)
    except socket.timeout:
        continue
    messages.append({"after_s": round(time.monotonic() - t0, 3), "message": data.hex()})
print(json.dumps({"poll": poll, "polled_after_s": round(polled_after, 3), "messages": [m["message"] for m in messages],
                  "after_s": [m["after_s"] for m in messages]}), flush=True)
'''


def record_carrier_late(lab: MiniLab, tries: int = 10) -> None:
    """The kernel's linkwatch runs the events of a non-urgent device (ifindex == its peer's)
    at most once a second: a carrier loss right after another link event is announced late,
    while a RTM_GETLINK dump shows it at once. Another link event in core first (a veth
    pair there set down and up), then c2 down; kept when the notification came >= 0.3 s late."""
    lab.exec("core", "ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    lab.exec("core", "ip", "link", "set", "p1", "up")
    try:
        for _ in range(tries):
            time.sleep(1.5)
            proc = subprocess.Popen(["ip", "netns", "exec", lab.ns("rw"), sys.executable, "-c", NL_LATE],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline().strip() == "ready"
            lab.exec("core", "ip", "link", "set", "p0", "up")
            lab.exec("core", "ip", "link", "set", "p0", "down")
            time.sleep(0.1)
            lab.exec("core", "ip", "link", "set", "c2", "down")
            proc.stdin.write("go\n")
            proc.stdin.flush()
            doc = json.loads(proc.stdout.readline())
            proc.wait()
            lab.exec("core", "ip", "link", "set", "c2", "up")
            first = doc["after_s"][0] if doc["after_s"] else 0.0
            if first >= 0.3:
                note = ("carrier loss on wwan0 (its peer c2 set down in core) 0.1 s after another link event "
                        f"(p0 in core): RTM_NEWLINK {first} s late; the RTM_GETLINK dump "
                        f"{doc['polled_after_s']} s after already shows it")
                (HERE / "netlink" / "link-carrier-loss-late.json").write_text(json.dumps(
                    {"note": note, "commands": ["core ip link set p0 up", "core ip link set p0 down", "sleep 0.1",
                                                "core ip link set c2 down"], **doc}, indent=1) + "\n")
                return
        raise RuntimeError(f"no late carrier notification in {tries} tries")
    finally:
        lab.exec("core", "ip", "link", "del", "p0", check=False)


def record_netlink(lab: MiniLab) -> None:
    out = lab.exec("rw", sys.executable, "-c", NL_DUMP).stdout
    (HERE / "netlink" / "dump-rw.json").write_text(json.dumps({"note": "dump of links, addresses, routes in rw "
                                                                "with an IKE_SA up (table 220, ipsec0)",
                                                                **json.loads(out)}, indent=1) + "\n")
    record_netlink_case(lab, "link-admin-down.json", "ip link set wwan0 down (routes via wwan0 are flushed)",
                        [("rw", "ip", "link", "set", "wwan0", "down")],
                        undo=[("rw", "ip", "link", "set", "wwan0", "up"),
                              ("rw", "ip", "route", "replace", "default", "via", "10.2.0.1", "dev", "wwan0", "metric", "200")])
    record_netlink_case(lab, "link-carrier-loss.json", "carrier loss on wwan0: its peer c2 set down in core",
                        [("core", "ip", "link", "set", "c2", "down")],
                        undo=[("core", "ip", "link", "set", "c2", "up")])
    record_netlink_case(lab, "addr-ipv6.json",
                        "IPv6 address added (tentative during DAD, then not), then preferred_lft 0 (deprecated), "
                        "then deleted; IPv4 address added and deleted",
                        [("rw", "ip", "-6", "addr", "add", "2001:db8:2::2/64", "dev", "wwan0"),
                         ("rw", "sleep", "1.5"),
                         ("rw", "ip", "-6", "addr", "change", "2001:db8:2::2/64", "dev", "wwan0", "preferred_lft", "0"),
                         ("rw", "ip", "-6", "addr", "del", "2001:db8:2::2/64", "dev", "wwan0"),
                         ("rw", "ip", "addr", "add", "10.2.0.9/24", "dev", "wwan0"),
                         ("rw", "ip", "addr", "del", "10.2.0.9/24", "dev", "wwan0")],
                        setup=[("rw", "sysctl", "-qw", "net.ipv6.conf.wwan0.disable_ipv6=0")])
    record_netlink_case(lab, "route-steering.json",
                        "our steering route (proto 73) added, replaced to the other uplink, deleted; a plain route "
                        "added and deleted",
                        [("rw", "ip", "route", "replace", f"{GW_ADDR}/32", "via", "10.2.0.1", "dev", "wwan0",
                          "src", "10.2.0.2", "proto", "73"),
                         ("rw", "ip", "route", "replace", f"{GW_ADDR}/32", "via", "10.1.0.1", "dev", "wlan0",
                          "src", "10.1.0.2", "proto", "73"),
                         ("rw", "ip", "route", "del", f"{GW_ADDR}/32", "proto", "73"),
                         ("rw", "ip", "route", "add", "198.51.100.0/24", "via", "10.2.0.1", "dev", "wwan0", "metric", "5"),
                         ("rw", "ip", "route", "del", "198.51.100.0/24")])


def main() -> None:
    lab = MiniLab("rec")
    if sys.argv[1:] == ["carrier-late"]:  # only this recording (no charon needed)
        try:
            lab.up(start_charons=False)
            record_carrier_late(lab)
        finally:
            lab.down()
        return
    try:
        lab.up()
        record_vici(lab)
        lab.exec("rw", "ip", "route", "del", f"{GW_ADDR}/32", check=False)
        lab.initiate()  # an SA up so the dump shows ipsec0 and table 220
        record_netlink(lab)
        record_carrier_late(lab)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
