"""Probe packets, built and parsed without I/O: ICMP echo (IPv4, IPv6) and the IKE probe.

Pure functions so the unit tests can check checksums and matching byte by byte.

The IKE probe (why it looks like this)
--------------------------------------
We want something the gateway's charon answers on udp/4500 without creating state.
charon's receiver (src/libcharon/network/receiver.c, 5.9.8 and later) parses only the
IKE header of every packet on the NAT-T port; a header with an unknown *major version*
(not 1, not 2) is answered on the spot with an unauthenticated INFORMATIONAL carrying an
INVALID_MAJOR_VERSION notify, from the receiver thread: no IKE_SA lookup, no half-open
SA, no cookie accounting. RFC 7296 §2.5 asks every IKEv2 implementation to do the same
("SHOULD send an unauthenticated Notify message of type INVALID_MAJOR_VERSION").
charon copies our initiator SPI and Message ID into the answer, so (SPI, Message ID)
match an answer to its probe, and it prefixes the answer with the non-ESP marker
because neither port is 500.

Limits: charon logs one line per probe at level 1 ("received unsupported IKE version
3.0 from ..., sending INVALID_MAJOR_VERSION"); the probe comes from an ephemeral UDP
port, not charon's own 4500 socket, so through a NAT it tests the udp/4500 path but not
charon's own NAT mapping; it proves the gateway's IKE daemon is alive and reachable,
not that ESP flows (that is the DATA probe's job). Sizes: 60 bytes out, 68 back (IPv4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_TIME_EXCEEDED = 11
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
ICMP6_DEST_UNREACH = 1
ICMP6_PACKET_TOO_BIG = 2
ICMP6_TIME_EXCEEDED = 3

IPV4_HEADER = 20
IPV6_HEADER = 40
UDP_HEADER = 8

NON_ESP_MARKER = b"\x00\x00\x00\x00"
IKE_HEADER_LEN = 28
IKE_PROBE_MAJOR = 3  # a major version charon does not speak: answered, never processed
IKE_INFORMATIONAL = 37
IKE_FLAG_INITIATOR = 0x08
IKE_FLAG_RESPONSE = 0x20
IKE_NOTIFY_PAYLOAD = 41
IKE_INVALID_MAJOR_VERSION = 5

_UNREACH_V4 = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
               3: "port unreachable", 4: "fragmentation needed", 9: "network prohibited",
               10: "host prohibited", 13: "administratively prohibited"}
_UNREACH_V6 = {0: "no route", 1: "administratively prohibited", 3: "address unreachable",
               4: "port unreachable", 5: "source address failed policy", 6: "reject route"}


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes, *, v6: bool = False) -> bytes:
    """An ICMP (or ICMPv6) echo request. For ICMPv6 the kernel fills in the checksum
    (it needs the pseudo-header), so it stays 0 here."""
    kind = ICMP6_ECHO_REQUEST if v6 else ICMP_ECHO_REQUEST
    head = struct.pack("!BBHHH", kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    if v6:
        return head + payload
    csum = checksum(head + payload)
    return struct.pack("!BBHHH", kind, 0, csum, ident & 0xFFFF, seq & 0xFFFF) + payload


@dataclass(frozen=True)
class IcmpAnswer:
    """What a received ICMP packet says about one of our echo requests."""

    ident: int
    seq: int
    source: str  # who sent this ICMP packet (the target, or a router for an error)
    error: str | None = None  # None: an echo reply; else why the request failed
    payload: bytes = b""  # the echo reply's data (to check our token)


def parse_icmp4(packet: bytes, source: str) -> IcmpAnswer | None:
    """Parse what a raw IPv4 ICMP socket returns (IP header included). None: not an
    echo reply or an error about an echo request."""
    if len(packet) < IPV4_HEADER or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8 or checksum(icmp) != 0:
        return None
    kind, code, _, ident, seq = struct.unpack("!BBHHH", icmp[:8])
    if kind == ICMP_ECHO_REPLY:
        return IcmpAnswer(ident, seq, source, None, icmp[8:])
    if kind in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
        inner = icmp[8:]
        if len(inner) < IPV4_HEADER or inner[0] >> 4 != 4 or inner[9] != 1:
            return None
        inner_icmp = inner[(inner[0] & 0x0F) * 4:]
        if len(inner_icmp) < 8 or inner_icmp[0] != ICMP_ECHO_REQUEST:
            return None
        _, _, _, ident, seq = struct.unpack("!BBHHH", inner_icmp[:8])
        if kind == ICMP_TIME_EXCEEDED:
            why = f"time exceeded at {source}"
        else:
            why = f"{_UNREACH_V4.get(code, f'unreachable (code {code})')} from {source}"
        return IcmpAnswer(ident, seq, source, why)
    return None


def parse_icmp6(packet: bytes, source: str) -> IcmpAnswer | None:
    """Parse what a raw ICMPv6 socket returns (no IP header)."""
    if len(packet) < 8:
        return None
    kind, code, _, ident, seq = struct.unpack("!BBHHH", packet[:8])
    if kind == ICMP6_ECHO_REPLY:
        return IcmpAnswer(ident, seq, source, None, packet[8:])
    if kind in (ICMP6_DEST_UNREACH, ICMP6_TIME_EXCEEDED, ICMP6_PACKET_TOO_BIG):
        inner = packet[8:]
        if len(inner) < IPV6_HEADER + 8 or inner[0] >> 4 != 6 or inner[6] != 58:
            return None  # not an ICMPv6 packet directly behind the IPv6 header
        inner_icmp = inner[IPV6_HEADER:]
        if inner_icmp[0] != ICMP6_ECHO_REQUEST:
            return None
        _, _, _, ident, seq = struct.unpack("!BBHHH", inner_icmp[:8])
        if kind == ICMP6_TIME_EXCEEDED:
            why = f"time exceeded at {source}"
        elif kind == ICMP6_PACKET_TOO_BIG:
            why = f"packet too big at {source}"
        else:
            why = f"{_UNREACH_V6.get(code, f'unreachable (code {code})')} from {source}"
        return IcmpAnswer(ident, seq, source, why)
    return None


def ike_probe(spi: int, msgid: int) -> bytes:
    """The udp/4500 probe: non-ESP marker + an IKE header of major version 3 and no
    payloads. `spi` (nonzero, 64 bits) and `msgid` (32 bits) come back in the answer."""
    if not spi:
        raise ValueError("the initiator SPI must not be 0 (charon drops such headers)")
    header = struct.pack(
        "!QQBBBBII", spi, 0, 0, IKE_PROBE_MAJOR << 4, IKE_INFORMATIONAL,
        IKE_FLAG_INITIATOR, msgid & 0xFFFFFFFF, IKE_HEADER_LEN,
    )
    return NON_ESP_MARKER + header


@dataclass(frozen=True)
class IkeAnswer:
    spi: int
    msgid: int
    notify: int | None  # the notify type, INVALID_MAJOR_VERSION (5) normally


def parse_ike_answer(data: bytes) -> IkeAnswer | None:
    """Parse a UDP datagram received from the gateway's port 4500. None if it is not an
    IKEv2 response (non-ESP marker, header, response flag)."""
    if len(data) < 4 + IKE_HEADER_LEN or data[:4] != NON_ESP_MARKER:
        return None
    ike = data[4:]
    spi_i, _spi_r, next_payload, version, _exchange, flags, msgid, length = struct.unpack(
        "!QQBBBBII", ike[:IKE_HEADER_LEN])
    if version >> 4 != 2 or not flags & IKE_FLAG_RESPONSE or length < IKE_HEADER_LEN:
        return None
    notify = None
    body = ike[IKE_HEADER_LEN:]
    if next_payload == IKE_NOTIFY_PAYLOAD and len(body) >= 8:
        # generic payload header (4) + protocol id, spi size, notify type (2)
        notify = struct.unpack("!H", body[6:8])[0]
    return IkeAnswer(spi_i, msgid, notify)
