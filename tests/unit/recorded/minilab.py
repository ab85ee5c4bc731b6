"""A tiny namespace lab for recording VICI and netlink messages and for the adapters' own
netns tests when the project's lab (`mobikectl.lab`) is not there.

    mk-ad-<n>-rw ──wlan0 (10.1.0.2, metric 100)── mk-ad-<n>-core ── mk-ad-<n>-gw (203.0.113.10)
                 ──wwan0 (10.2.0.2, metric 200)──┘

Two charons (rw initiator with prefer_best_path = yes, gw responder with a VIP pool),
kernel-libipsec, PSK, `encap = yes`. Needs root. Everything it starts is stopped by
`down()`: namespaces by name, charons by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CHARON = "/usr/lib/ipsec/charon"
GW_ADDR = "203.0.113.10"
UPLINKS = {"wlan0": ("10.1.0.2", "10.1.0.1", 100, "c1"), "wwan0": ("10.2.0.2", "10.2.0.1", 200, "c2")}
LOAD = ("random nonce openssl aes sha1 sha2 hmac kdf drbg gmp pem pkcs1 pubkey x509 "
        "kernel-libipsec kernel-netlink socket-default vici")

STRONGSWAN_CONF = """charon {{
    load = {load}
    {extra}
    retransmit_timeout = 2
    retransmit_base = 1.5
    retransmit_limit = 6
    retransmit_tries = 8
    filelog {{
        f {{
            path = {dir}/charon.log
            time_add_ms = yes
            default = 1
            ike = 2
            flush_line = yes
        }}
    }}
    plugins {{
        vici {{
            socket = unix://{dir}/charon.vici
        }}
    }}
}}
"""

SWANCTL_RW = """connections {
    home {
        remote_addrs = %s
        proposals = aes128-sha256-modp2048
        mobike = yes
        encap = yes
        vips = 0.0.0.0
        keyingtries = 1
        local {
            auth = psk
            id = rw@mk-ad
        }
        remote {
            auth = psk
            id = gw.mk-ad
        }
        children {
            net {
                remote_ts = 10.200.0.0/24
                esp_proposals = aes128-sha256
                start_action = none
            }
        }
    }
}
secrets {
    ike-1 {
        id-rw = rw@mk-ad
        id-gw = gw.mk-ad
        secret = mk-ad-test-only
    }
}
""" % GW_ADDR

SWANCTL_GW = """connections {
    rw {
        local_addrs = %s
        proposals = aes128-sha256-modp2048
        mobike = yes
        encap = yes
        pools = vip
        local {
            auth = psk
            id = gw.mk-ad
        }
        remote {
            auth = psk
            id = rw@mk-ad
        }
        children {
            net {
                local_ts = 10.200.0.0/24
                esp_proposals = aes128-sha256
            }
        }
    }
}
pools {
    vip {
        addrs = 10.99.0.0/24
    }
}
secrets {
    ike-1 {
        id-rw = rw@mk-ad
        id-gw = gw.mk-ad
        secret = mk-ad-test-only
    }
}
""" % GW_ADDR


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, timeout=timeout, capture_output=True, text=True)


@dataclass
class MiniLab:
    name: str = "x"
    root: Path = field(default_factory=lambda: Path("/tmp/mk-ad"))
    pids: dict[str, int] = field(default_factory=dict)

    def ns(self, node: str) -> str:
        return f"mk-ad-{self.name}-{node}"

    def dir(self, node: str) -> Path:
        return self.root / self.name / node

    def vici_path(self, node: str) -> str:
        return str(self.dir(node) / "charon.vici")

    def strongswan_conf(self, node: str) -> str:
        return str(self.dir(node) / "strongswan.conf")

    def exec(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns(node), *argv, check=check)

    def up(self, *, start_charons: bool = True) -> "MiniLab":
        self.down()
        for node in ("rw", "core", "gw"):
            sh("ip", "netns", "add", self.ns(node))
            self.exec(node, "ip", "link", "set", "lo", "up")
        self.exec("core", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for dev, (addr, router, metric, cdev) in UPLINKS.items():
            sh("ip", "link", "add", dev, "netns", self.ns("rw"), "type", "veth",
               "peer", "name", cdev, "netns", self.ns("core"))
            self.exec("rw", "ip", "addr", "add", f"{addr}/24", "dev", dev)
            self.exec("rw", "ip", "link", "set", dev, "up")
            self.exec("core", "ip", "addr", "add", f"{router}/24", "dev", cdev)
            self.exec("core", "ip", "link", "set", cdev, "up")
            self.exec("rw", "ip", "route", "add", "default", "via", router, "dev", dev, "metric", str(metric))
        sh("ip", "link", "add", "gw", "netns", self.ns("core"), "type", "veth",
           "peer", "name", "wan", "netns", self.ns("gw"))
        self.exec("core", "ip", "addr", "add", "203.0.113.1/24", "dev", "gw")
        self.exec("core", "ip", "link", "set", "gw", "up")
        self.exec("gw", "ip", "addr", "add", f"{GW_ADDR}/24", "dev", "wan")
        self.exec("gw", "ip", "link", "set", "wan", "up")
        self.exec("gw", "ip", "route", "add", "default", "via", "203.0.113.1")
        self.exec("gw", "ip", "link", "add", "lan", "type", "veth", "peer", "name", "lanp")
        self.exec("gw", "ip", "addr", "add", "10.200.0.1/24", "dev", "lan")
        self.exec("gw", "ip", "link", "set", "lan", "up")
        self.exec("gw", "ip", "link", "set", "lanp", "up")
        if start_charons:
            for node in ("gw", "rw"):
                self.start_charon(node)
            self.load("gw")
            self.load("rw")
        return self

    def write_configs(self, node: str) -> None:
        d = self.dir(node)
        d.mkdir(parents=True, exist_ok=True)
        extra = "prefer_best_path = yes\n    interfaces_use = wlan0,wwan0" if node == "rw" else ""
        (d / "strongswan.conf").write_text(STRONGSWAN_CONF.format(load=LOAD, extra=extra, dir=d))
        (d / "swanctl.conf").write_text(SWANCTL_RW if node == "rw" else SWANCTL_GW)

    def start_charon(self, node: str, *, deadline_s: float = 10) -> int:
        self.write_configs(node)
        vici = Path(self.vici_path(node))
        if vici.exists():
            vici.unlink()
        env = {**os.environ, "STRONGSWAN_CONF": self.strongswan_conf(node)}
        out = open(self.dir(node) / "charon.out", "ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(node), "sh", "-c",
             f"mount -t tmpfs none /run && exec {CHARON}"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        out.close()
        self.pids[node] = proc.pid
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if vici.exists() and self.swanctl(node, "--version", check=False).returncode == 0:
                return proc.pid
            time.sleep(0.05)
        raise RuntimeError(f"charon in {self.ns(node)} did not start")

    def stop_charon(self, node: str) -> None:
        pid = self.pids.pop(node, None)
        if not pid:
            return
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                if not Path(f"/proc/{pid}").exists():
                    return
            time.sleep(0.05)
        os.kill(pid, 9)

    def swanctl(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("swanctl", *args, "--uri", f"unix://{self.vici_path(node)}", check=check)

    def load(self, node: str) -> None:
        self.swanctl(node, "--load-all", "--noprompt", "--file", str(self.dir(node) / "swanctl.conf"))

    def initiate(self) -> None:
        self.swanctl("rw", "--initiate", "--ike", "home", "--child", "net", "--timeout", "10")

    def restart_charon(self, node: str) -> None:
        self.stop_charon(node)
        self.start_charon(node)
        self.load(node)

    def down(self) -> None:
        for node in list(self.pids):
            self.stop_charon(node)
        for node in ("rw", "core", "gw"):
            sh("ip", "netns", "del", self.ns(node), check=False)
        shutil.rmtree(self.root / self.name, ignore_errors=True)
