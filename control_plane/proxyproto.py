"""The PROXY protocol header a load balancer puts before a connection's bytes: pure parsing.

Behind HAProxy in TCP mode every connection comes from HAProxy's address;
with ``send-proxy-v2`` it first writes a header naming the client's real
address (HAProxy's ``doc/proxy-protocol.txt``). The control plane reads it
from trusted proxies only (``proxy_protocol_from``), before its SSH greeting
(``proxylisten.py`` does the I/O), so per-source admission and the logs see
the client, not the balancer.

Both versions:

* v1, text: ``PROXY TCP4 192.0.2.7 10.0.0.5 51234 8022\\r\\n`` (or ``TCP6``, or
  ``UNKNOWN ...``), at most 107 bytes;
* v2, binary: a 12-byte signature, version/command, family/protocol, a
  16-bit length, then the addresses and optional TLVs (skipped). ``LOCAL``
  (the proxy's own connection, e.g. a health check) and ``UNSPEC`` or
  ``UNIX`` families carry no client address: the connection's own is used.

``parse(data)`` answers the header, ``None`` when more bytes are needed (a
header may arrive over several reads), or raises ``HeaderError`` with a
reason fit for a log line. No sockets here.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Iterable, Union

#: The v2 signature (``\\r\\n\\r\\n\\0\\r\\nQUIT\\n``) and the v1 prefix.
SIGNATURE_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_V1 = b"PROXY "
#: The longest v1 line the specification allows, CRLF included.
MAX_V1 = 107
#: The largest v2 body (addresses and TLVs) accepted. The format allows 65535;
#: HAProxy sends 12 or 36 bytes plus a few TLVs, cloud balancers a few dozen more.
MAX_V2_BODY = 2048

_V2_FIXED = 16
_V2_ADDRESS_BYTES = {0x1: 12, 0x2: 36, 0x3: 216}  # INET, INET6, UNIX

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class HeaderError(ValueError):
    """A header that is not one: ``str(exc)`` says why."""


@dataclass(frozen=True)
class Header:
    #: 1 or 2.
    version: int
    #: Bytes the header took (what follows is the client's own data).
    length: int
    #: The client's (address, port); None when the header names none (LOCAL, UNKNOWN, UNIX).
    source: tuple[str, int] | None = None
    #: The address the client connected to, on the proxy.
    destination: tuple[str, int] | None = None


def parse(data: bytes) -> Header | None:
    """The header at the start of ``data``; None: not all of it has arrived yet."""
    if data.startswith(SIGNATURE_V2):
        return _parse_v2(data)
    if data.startswith(PREFIX_V1):
        return _parse_v1(data)
    if SIGNATURE_V2.startswith(data[:12]) or PREFIX_V1.startswith(data[:6]):
        return None  # a prefix of one of them: wait for more
    if data.startswith(b"SSH-"):
        raise HeaderError("an SSH client connected directly, without a PROXY protocol header "
                          "(connections from this address must come through the load balancer)")
    raise HeaderError("no PROXY protocol header (neither v1 nor v2) at the start of the connection")


def starts_like_header(data: bytes) -> bool | None:
    """Do these first bytes look like a PROXY header? None: too few bytes to tell."""
    if data.startswith((SIGNATURE_V2, PREFIX_V1)):
        return True
    if SIGNATURE_V2.startswith(data[:12]) or PREFIX_V1.startswith(data[:6]):
        return None
    return False


# ---------------------------------------------------------------------- v1


def _parse_v1(data: bytes) -> Header | None:
    end = data.find(b"\r\n", 0, MAX_V1)
    if end < 0:
        if len(data) >= MAX_V1 or b"\n" in data[:MAX_V1]:
            raise HeaderError(f"PROXY v1 header without CRLF within {MAX_V1} bytes")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError("PROXY v1 header is not ASCII") from None
    words = line.split(" ")
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return Header(version=1, length=end + 2)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise HeaderError(f"malformed PROXY v1 header {line[:MAX_V1]!r}: expected "
                          "'PROXY TCP4|TCP6 SRC DST SPORT DPORT' or 'PROXY UNKNOWN'")
    family = ipaddress.IPv4Address if words[1] == "TCP4" else ipaddress.IPv6Address
    src, dst = _v1_address(words[2], family), _v1_address(words[3], family)
    sport, dport = _v1_port(words[4]), _v1_port(words[5])
    return Header(version=1, length=end + 2, source=(src, sport), destination=(dst, dport))


def _v1_address(text: str, family) -> str:
    try:
        return str(family(text))
    except ValueError:
        raise HeaderError(f"malformed PROXY v1 header: {text[:48]!r} is not an "
                          f"{'IPv4' if family is ipaddress.IPv4Address else 'IPv6'} address") from None


def _v1_port(text: str) -> int:
    if not (text.isdigit() and text.isascii() and len(text) <= 5 and int(text) <= 65535):
        raise HeaderError(f"malformed PROXY v1 header: {text[:16]!r} is not a port")
    return int(text)


# ---------------------------------------------------------------------- v2


def _parse_v2(data: bytes) -> Header | None:
    if len(data) < _V2_FIXED:
        return None
    ver_cmd, fam, body = data[12], data[13], struct.unpack_from("!H", data, 14)[0]
    if ver_cmd >> 4 != 2:
        raise HeaderError(f"PROXY v2 header with version {ver_cmd >> 4} (expected 2)")
    command = ver_cmd & 0xF
    if command not in (0x0, 0x1):
        raise HeaderError(f"PROXY v2 header with unknown command {command}")
    if body > MAX_V2_BODY:
        raise HeaderError(f"PROXY v2 header of {body} bytes (at most {MAX_V2_BODY} accepted)")
    if len(data) < _V2_FIXED + body:
        return None
    length = _V2_FIXED + body
    if command == 0x0:  # LOCAL: the proxy's own connection (a health check); addresses ignored
        return Header(version=2, length=length)
    family, protocol = fam >> 4, fam & 0xF
    if family == 0x0:  # UNSPEC: the proxy does not know the client's address
        return Header(version=2, length=length)
    if family not in _V2_ADDRESS_BYTES:
        raise HeaderError(f"PROXY v2 header with unknown address family {family}")
    if protocol != 0x1:
        raise HeaderError("PROXY v2 header for a datagram or unknown protocol (expected a stream)")
    need = _V2_ADDRESS_BYTES[family]
    if body < need:
        raise HeaderError(f"PROXY v2 header too short for its addresses ({body} < {need} bytes)")
    at = _V2_FIXED
    if family == 0x3:  # UNIX sockets: no address to limit by
        return Header(version=2, length=length)
    size = 4 if family == 0x1 else 16
    make = ipaddress.IPv4Address if family == 0x1 else ipaddress.IPv6Address
    src = str(make(data[at:at + size]))
    dst = str(make(data[at + size:at + 2 * size]))
    sport, dport = struct.unpack_from("!HH", data, at + 2 * size)
    return Header(version=2, length=length, source=(src, sport), destination=(dst, dport))


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None = None,
              tlvs: bytes = b"") -> bytes:
    """A v2 header (PROXY over TCP; LOCAL when ``source`` is None): for tests and tools."""
    if source is None:
        return SIGNATURE_V2 + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address((destination or ("0.0.0.0" if src.version == 4 else "::", 0))[0])
    family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", source[1], (destination or ("", 0))[1]) + tlvs
    return SIGNATURE_V2 + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


# ---------------------------------------------------------------------- who may send one


def networks(items: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.5", "10.1.0.0/16"]`` as networks (an address alone is /32 or /128).

    Raises ``ValueError`` with a reason for an item that is no address or
    network, or a network with host bits set (``10.0.0.5/24``: meant ``10.0.0.0/24``?).
    """
    out = []
    for item in items:
        item = item.strip()
        try:
            out.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            try:
                loose = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") \
                    from None
            raise ValueError(f"{item!r} has host bits set: write {loose} (or the address alone)") from None
    return tuple(out)


def trusted(address: str, nets: tuple[Network, ...]) -> bool:
    """Is ``address`` (as the socket gives it) in one of ``nets``? IPv4-mapped IPv6 counts as IPv4."""
    if not nets:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in nets)
