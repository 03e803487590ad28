"""The PROXY protocol parser alone: bytes in, a client address or a reason out."""

from __future__ import annotations

import struct

import pytest

from control_plane import proxyproto
from control_plane.proxyproto import SIGNATURE_V2, Header, HeaderError, encode_v2, parse

SSH = b"SSH-2.0-OpenSSH_9.2\r\n"


def v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIGNATURE_V2 + bytes([ver_cmd, fam]) + struct.pack("!H", len(body)) + body


# ---------------------------------------------------------------------- v2


def test_v2_tcp4_gives_the_client_address_and_what_follows_is_untouched():
    header = encode_v2(("192.0.2.7", 51234), ("10.0.0.5", 8022))
    got = parse(header + SSH)
    assert got == Header(version=2, length=28, source=("192.0.2.7", 51234), destination=("10.0.0.5", 8022))
    assert (header + SSH)[got.length:] == SSH


def test_v2_tcp6_and_tlvs_are_skipped():
    tlv = bytes([0x05, 0x00, 0x04]) + b"abcd"  # PP2_TYPE_UNIQUE_ID
    header = encode_v2(("2001:db8::7", 443), ("2001:db8::1", 8022), tlvs=tlv)
    got = parse(header + SSH)
    assert got.source == ("2001:db8::7", 443) and got.destination == ("2001:db8::1", 8022)
    assert got.length == 16 + 36 + len(tlv)


def test_v2_local_and_unspec_name_no_client():
    """A health check (LOCAL) or an unknown family: the connection's own address is used."""
    assert parse(encode_v2(None) + SSH) == Header(version=2, length=16)
    # LOCAL may still carry addresses: they are ignored.
    local = v2(0x20, 0x11, bytes(12))
    assert parse(local) == Header(version=2, length=28)
    assert parse(v2(0x21, 0x00, b"")) == Header(version=2, length=16)
    unix = v2(0x21, 0x31, bytes(216))
    assert parse(unix) == Header(version=2, length=16 + 216)


@pytest.mark.parametrize("cut", range(0, 28))
def test_v2_over_several_reads_waits_for_the_whole_header(cut):
    """The signature, the fixed part or the addresses split anywhere: not yet, not an error."""
    header = encode_v2(("192.0.2.7", 51234), ("10.0.0.5", 8022))
    assert parse(header[:cut]) is None
    assert parse(header).source == ("192.0.2.7", 51234)


@pytest.mark.parametrize("data, reason", [
    (v2(0x11, 0x11, bytes(12)), "version 1"),
    (v2(0x22, 0x11, bytes(12)), "unknown command 2"),
    (v2(0x21, 0x41, bytes(12)), "unknown address family 4"),
    (v2(0x21, 0x12, bytes(12)), "datagram"),
    (v2(0x21, 0x11, bytes(8)), "too short for its addresses (8 < 12"),
    (v2(0x21, 0x21, bytes(12)), "too short for its addresses (12 < 36"),
])
def test_v2_malformed_headers_are_refused_with_a_reason(data, reason):
    with pytest.raises(HeaderError, match=reason.replace("(", r"\(")):
        parse(data)


def test_v2_oversized_is_refused_from_the_fixed_part_alone():
    """A length past the bound is refused at once, before any of the body is read."""
    fixed = SIGNATURE_V2 + bytes([0x21, 0x11]) + struct.pack("!H", 65535)
    with pytest.raises(HeaderError, match="65535 bytes"):
        parse(fixed)
    at_bound = v2(0x21, 0x11, bytes(proxyproto.MAX_V2_BODY))
    assert parse(at_bound).length == 16 + proxyproto.MAX_V2_BODY


# ---------------------------------------------------------------------- v1


def test_v1_tcp4_tcp6_and_unknown():
    line = b"PROXY TCP4 192.0.2.7 10.0.0.5 51234 8022\r\n"
    assert parse(line + SSH) == Header(version=1, length=len(line), source=("192.0.2.7", 51234),
                                       destination=("10.0.0.5", 8022))
    line6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n"
    assert parse(line6).source == ("2001:db8::7", 1)
    unknown = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"
    assert parse(unknown + SSH) == Header(version=1, length=len(unknown))


@pytest.mark.parametrize("cut", [1, 5, 6, 20, 40, 41])
def test_v1_over_several_reads(cut):
    line = b"PROXY TCP4 192.0.2.7 10.0.0.5 51234 8022\r\n"
    assert parse(line[:cut]) is None


@pytest.mark.parametrize("line, reason", [
    (b"PROXY TCP4 192.0.2.7 10.0.0.5 51234\r\n", "expected 'PROXY TCP4"),
    (b"PROXY UDP4 192.0.2.7 10.0.0.5 1 2\r\n", "expected 'PROXY TCP4"),
    (b"PROXY TCP4 2001:db8::7 10.0.0.5 1 2\r\n", "is not an IPv4 address"),
    (b"PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n", "is not an IPv6 address"),
    (b"PROXY TCP4 192.0.2.700 10.0.0.5 1 2\r\n", "is not an IPv4 address"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.5 65536 2\r\n", "'65536' is not a port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.5 -1 2\r\n", "'-1' is not a port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.5 \xd9\xa1 2\r\n", "not ASCII"),
    (b"PROXY TCP4 192.0.2.7  10.0.0.5 1 2\r\n", "expected 'PROXY TCP4"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.5 1 2\n", "without CRLF"),
    (b"PROXY TCP4 " + b"1" * 200, "without CRLF within 107 bytes"),
])
def test_v1_malformed_lines_are_refused(line, reason):
    with pytest.raises(HeaderError, match=reason):
        parse(line)


# ---------------------------------------------------------------------- neither


@pytest.mark.parametrize("data, reason", [
    (SSH, "SSH client connected directly"),
    (b"GET / HTTP/1.1\r\n", "no PROXY protocol header"),
    (b"\r\n\r\n\x00\r\nQUIX\n" + bytes(8), "no PROXY protocol header"),
    (b"\x00" * 64, "no PROXY protocol header"),
    (b"PROXX TCP4", "no PROXY protocol header"),
])
def test_garbage_is_refused(data, reason):
    with pytest.raises(HeaderError, match=reason):
        parse(data)


def test_starts_like_header_tells_early():
    assert proxyproto.starts_like_header(b"") is None
    assert proxyproto.starts_like_header(b"\r\n\r\n") is None
    assert proxyproto.starts_like_header(b"PRO") is None
    assert proxyproto.starts_like_header(SIGNATURE_V2) is True
    assert proxyproto.starts_like_header(b"PROXY TCP4 ") is True
    assert proxyproto.starts_like_header(b"S") is False
    assert proxyproto.starts_like_header(SSH) is False


# ---------------------------------------------------------------------- trusted networks


def test_networks_and_trust():
    nets = proxyproto.networks(["10.0.0.5", "10.1.0.0/16", "2001:db8::/32"])
    assert proxyproto.trusted("10.0.0.5", nets) and not proxyproto.trusted("10.0.0.6", nets)
    assert proxyproto.trusted("10.1.200.3", nets)
    assert proxyproto.trusted("::ffff:10.0.0.5", nets)  # a dual-stack listener's IPv4 peer
    assert proxyproto.trusted("2001:db8::9", nets) and not proxyproto.trusted("2001:db9::9", nets)
    assert not proxyproto.trusted("?", nets)
    assert not proxyproto.trusted("10.0.0.5", ())


@pytest.mark.parametrize("item, reason", [
    ("10.0.0.5/24", "host bits set: write 10.0.0.0/24"),
    ("haproxy", "'haproxy' is not an IP address or network"),
    ("10.0.0.0/33", "is not an IP address or network"),
])
def test_networks_refuse_what_is_not_one(item, reason):
    with pytest.raises(ValueError, match=reason):
        proxyproto.networks([item])
