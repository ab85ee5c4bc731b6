"""Probe packets byte by byte, and the adapter's matching without a network."""

from __future__ import annotations

import socket
import struct

import pytest

from mobikectl.adapters import probe_packets as pk
from mobikectl.adapters.probes import ProbeAdapter, _SockKey, _icmp4_filter, _icmp6_filter
from mobikectl.engine.actions import SendProbe
from mobikectl.engine.ids import Path, ProbeKind, UplinkName
from mobikectl.engine.inputs import ProbeLost, ProbeReplied


def ipv4(src: str, dst: str, payload: bytes, proto: int = 1) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))
    head = head[:10] + struct.pack("!H", pk.checksum(head)) + head[12:]
    return head + payload


def test_checksum_known_vector():
    # RFC 1071's example words: 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2, checksum 0x220d
    assert pk.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert pk.checksum(b"\x01") == ~0x0100 & 0xFFFF  # odd length is padded with a zero byte


def test_echo_request_v4_checksums_to_zero():
    packet = pk.echo_request(0x1234, 0xBEEF, b"token123")
    assert packet[:2] == b"\x08\x00" and packet[4:8] == b"\x12\x34\xbe\xef"
    assert pk.checksum(packet) == 0


def test_echo_request_v6_leaves_checksum_to_the_kernel():
    packet = pk.echo_request(7, 65536 + 3, b"")
    assert pk.echo_request(7, 3, b"", v6=True)[:4] == b"\x80\x00\x00\x00"
    assert packet[6:8] == b"\x00\x03"  # seq wraps at 16 bits


def echo_reply_v4(ident: int, seq: int, payload: bytes, src: str = "192.0.2.1") -> bytes:
    icmp = bytearray(pk.echo_request(ident, seq, payload))
    icmp[0] = 0
    icmp[2:4] = b"\x00\x00"
    icmp[2:4] = struct.pack("!H", pk.checksum(bytes(icmp)))
    return ipv4(src, "198.51.100.2", bytes(icmp))


def test_parse_echo_reply_v4():
    answer = pk.parse_icmp4(echo_reply_v4(0x1234, 9, b"tok"), "192.0.2.1")
    assert answer == pk.IcmpAnswer(0x1234, 9, "192.0.2.1", None, b"tok")


def test_parse_rejects_bad_checksum_and_requests():
    packet = bytearray(echo_reply_v4(1, 1, b"x"))
    packet[-1] ^= 0xFF
    assert pk.parse_icmp4(bytes(packet), "192.0.2.1") is None
    assert pk.parse_icmp4(ipv4("192.0.2.1", "198.51.100.2", pk.echo_request(1, 1, b"")), "192.0.2.1") is None


def test_parse_unreachable_v4_names_the_probe_and_the_router():
    original = ipv4("198.51.100.2", "192.0.2.1", pk.echo_request(0x1234, 77, b"tok"))
    err = bytearray(struct.pack("!BBHI", 3, 1, 0, 0) + original[:28])
    err[2:4] = struct.pack("!H", pk.checksum(bytes(err)))
    answer = pk.parse_icmp4(ipv4("203.0.113.9", "198.51.100.2", bytes(err)), "203.0.113.9")
    assert (answer.ident, answer.seq) == (0x1234, 77)
    assert answer.error == "host unreachable from 203.0.113.9"


def test_parse_v6_reply_and_error():
    reply = struct.pack("!BBHHH", 129, 0, 0, 5, 6) + b"tok"
    assert pk.parse_icmp6(reply, "2001:db8::1") == pk.IcmpAnswer(5, 6, "2001:db8::1", None, b"tok")
    inner = struct.pack("!IHBB16s16s", 6 << 28, 8, 58, 64, b"\x00" * 16, b"\x00" * 16)
    err = struct.pack("!BBHI", 1, 3, 0, 0) + inner + struct.pack("!BBHHH", 128, 0, 0, 5, 7)
    answer = pk.parse_icmp6(err, "2001:db8::ff")
    assert (answer.seq, answer.error) == (7, "address unreachable from 2001:db8::ff")


def test_ike_probe_layout():
    data = pk.ike_probe(0x0102030405060708, 42)
    assert len(data) == 32 and data[:4] == pk.NON_ESP_MARKER
    spi_i, spi_r, nxt, version, exchange, flags, msgid, length = struct.unpack("!QQBBBBII", data[4:])
    assert (spi_i, spi_r, nxt, version, exchange, flags, msgid, length) == (
        0x0102030405060708, 0, 0, 0x30, 37, 0x08, 42, 28)
    with pytest.raises(ValueError):
        pk.ike_probe(0, 1)


def charon_answer(spi: int, msgid: int) -> bytes:
    """What charon 5.9.8 sends back (seen in the netns test): IKEv2 INFORMATIONAL response,
    our SPI and Message ID, one notify INVALID_MAJOR_VERSION."""
    notify = struct.pack("!BBHBBH", 0, 0, 8, 0, 0, pk.IKE_INVALID_MAJOR_VERSION)
    header = struct.pack("!QQBBBBII", spi, 0, 41, 0x20, 37, 0x20, msgid, 36)
    return pk.NON_ESP_MARKER + header + notify


def test_parse_ike_answer():
    assert pk.parse_ike_answer(charon_answer(99, 5)) == pk.IkeAnswer(99, 5, pk.IKE_INVALID_MAJOR_VERSION)
    assert pk.parse_ike_answer(charon_answer(99, 5)[4:]) is None  # no non-ESP marker: ESP
    assert pk.parse_ike_answer(pk.ike_probe(99, 5)) is None  # our own request is not an answer


def test_the_engines_probe_sizes_are_what_the_adapter_sends():
    """The engine counts (and budgets) each probe at the size the adapter puts on the wire,
    IP headers included: out and back."""
    from mobikectl.engine.probing import probe_bytes

    adapter = ProbeAdapter(emit=lambda fact: None)
    token = adapter.token
    adapter.stop()
    echo = len(pk.echo_request(1, 1, token))
    assert probe_bytes(ProbeKind.ECHO, "192.0.2.1") == (pk.IPV4_HEADER + echo,) * 2 == (36, 36)
    assert probe_bytes(ProbeKind.ECHO, "2001:db8::1") == (pk.IPV6_HEADER + echo,) * 2 == (56, 56)
    out, back = len(pk.ike_probe(1, 1)) + pk.UDP_HEADER, len(charon_answer(1, 1)) + pk.UDP_HEADER
    assert probe_bytes(ProbeKind.IKE, "192.0.2.1") == (pk.IPV4_HEADER + out, pk.IPV4_HEADER + back) == (60, 68)
    assert probe_bytes(ProbeKind.IKE, "2001:db8::1") == (pk.IPV6_HEADER + out, pk.IPV6_HEADER + back)
    # the inner echo in ESP-in-UDP (aes128-sha256): IP, UDP 8, SPI+seq 8, IV 16, the echo padded
    # with its 2 trailer bytes to 16, ICV 16
    assert probe_bytes(ProbeKind.DATA, "192.0.2.1") == (20 + 8 + 8 + 16 + 48 + 16,) * 2
    assert probe_bytes(ProbeKind.DATA, "2001:db8::1") == (40 + 8 + 8 + 16 + 64 + 16,) * 2


def test_icmp_filters_let_replies_and_errors_through():
    blocked = _icmp4_filter()
    assert not blocked & 1 and not blocked & (1 << 3) and blocked & (1 << 8)
    words = struct.unpack("8I", _icmp6_filter())
    assert not words[129 >> 5] & (1 << (129 & 31)) and words[128 >> 5] & (1 << (128 & 31))


# --- the adapter's matching, fed by hand (no sockets) ------------------------------------

PATH = Path(UplinkName("wlan0"), "198.51.100.2", "192.0.2.1")


def pending_adapter(facts: list) -> tuple[ProbeAdapter, _SockKey]:
    clock = iter([10.0, 10.25]).__next__
    adapter = ProbeAdapter(emit=facts.append, clock=clock)
    key = _SockKey("icmp", socket.AF_INET, "wlan0", PATH.local)
    from mobikectl.adapters.probes import _Pending

    order = SendProbe(PATH, ProbeKind.ECHO, 501, timeout=1.0)
    adapter._pending[("icmp", 3)] = _Pending(order, key, PATH.gateway, clock(), 99.0)
    return adapter, key


@pytest.mark.parametrize("ident_delta, seq, token_ok, src, matched", [
    (0, 3, True, "192.0.2.1", True),
    (1, 3, True, "192.0.2.1", False),       # another pinger's identifier
    (0, 4, True, "192.0.2.1", False),       # not a sequence number we sent
    (0, 3, False, "192.0.2.1", False),      # our id and seq, but not our token
    (0, 3, True, "192.0.2.99", False),      # a reply from somebody else
])
def test_reply_matching(ident_delta, seq, token_ok, src, matched):
    facts: list = []
    adapter, key = pending_adapter(facts)
    payload = adapter.token if token_ok else b"\x00" * len(adapter.token)
    adapter._received(key, echo_reply_v4((adapter.ident + ident_delta) & 0xFFFF, seq, payload, src), src, 10.25)
    if matched:
        assert facts == [ProbeReplied(PATH, ProbeKind.ECHO, 501, 0.25)]
        assert adapter.counters()[PATH.id]["rx_bytes"] == 20 + 8 + len(adapter.token)
    else:
        assert facts == []
    adapter.stop()


def test_data_probe_without_addresses_is_lost_at_once():
    facts: list = []
    adapter = ProbeAdapter(emit=facts.append)
    adapter.send(SendProbe(PATH, ProbeKind.DATA, 1, timeout=1.0))
    assert isinstance(facts[0], ProbeLost) and "virtual IP" in facts[0].why
    adapter.send(SendProbe(PATH, ProbeKind.ECHO, 2, timeout=1.0, src="2001:db8::1"))
    assert "address family" in facts[1].why
    adapter.stop()
