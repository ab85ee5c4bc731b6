"""A tiny UDP echo for probing uplinks: the server answers each datagram with the sender's
address as it saw it ("IP:PORT"), so a client behind a NAT learns its public mapping.

    python -m mobikectl.lab.udpecho serve --port 5555             (in gw)
    python -m mobikectl.lab.udpecho ask --dev wlan0 --sport 4600 203.0.113.10 5555   (in rw)

`ask` prints the answer and exits 0, or exits 1 when nothing came back in time.
"""

from __future__ import annotations

import argparse
import socket
import sys

DEFAULT_PORT = 5555


def serve(port: int, bind: str = "0.0.0.0") -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    print("ready", file=sys.stderr, flush=True)
    while True:
        _, (ip, sport) = sock.recvfrom(2048)
        sock.sendto(f"{ip}:{sport}".encode(), (ip, sport))


def ask(host: str, port: int, *, dev: str | None = None, sport: int = 0, timeout: float = 0.5,
        tries: int = 3) -> str | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if dev:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    sock.bind(("0.0.0.0", sport))
    sock.settimeout(timeout)
    try:
        for _ in range(tries):
            sock.sendto(b"?", (host, port))
            try:
                data, _ = sock.recvfrom(2048)
                return data.decode()
            except socket.timeout:
                continue
        return None
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobikectl.lab.udpecho")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    a = sub.add_parser("ask")
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--dev")
    a.add_argument("--sport", type=int, default=0)
    a.add_argument("--timeout", type=float, default=0.5)
    a.add_argument("--tries", type=int, default=3)
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve(args.port)
        return 0
    answer = ask(args.host, args.port, dev=args.dev, sport=args.sport, timeout=args.timeout, tries=args.tries)
    if answer is None:
        return 1
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
