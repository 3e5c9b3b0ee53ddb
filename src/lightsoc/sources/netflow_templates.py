"""NetFlow v9 / IPFIX templates and flow-record helpers for `netflow_decode`.

A `Template` is one template record compiled to a `struct.Struct` so that a
data set decodes with `iter_unpack`; fields lightsoc does not map are padding
(`x`), integers of reduced size are bytes converted afterwards. A template
with a variable-length field (IPFIX length 65535) has no struct and decodes
record by record (`decode_variable`).

Also here: the Community ID v1 flow hash, TCP flag names and IANA protocol
names (`network.transport`).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
from dataclasses import dataclass, field

VARLEN = 65535

# Information elements lightsoc maps (IPFIX ids; NetFlow v9 uses the same numbers).
OCTETS, PACKETS, PROTO, TCP_FLAGS, SRC_PORT, SRC_V4, IN_IF = 1, 2, 4, 6, 7, 8, 10
DST_PORT, DST_V4, OUT_IF, LAST_UPTIME, FIRST_UPTIME = 11, 12, 14, 21, 22
SRC_V6, DST_V6, ICMP_V4, ICMP_V6 = 27, 28, 32, 139
START_S, END_S, START_MS, END_MS, START_US, END_US, START_NS, END_NS = range(150, 158)
INIT_MS = 160
#: RFC 5103 biflow: reverse IEs are the forward ids under this enterprise number;
#: lightsoc maps reverse octets/packets to `REVERSE + ie`.
REVERSE_PEN, REVERSE = 29305, 1 << 16

ADDR4 = frozenset((SRC_V4, DST_V4))
ADDR6 = frozenset((SRC_V6, DST_V6))
INTS = frozenset(
    (OCTETS, PACKETS, PROTO, TCP_FLAGS, SRC_PORT, IN_IF, DST_PORT, OUT_IF, LAST_UPTIME)
    + (FIRST_UPTIME, ICMP_V4, ICMP_V6, START_S, END_S, START_MS, END_MS, INIT_MS)
    + (START_US, END_US, START_NS, END_NS, REVERSE + OCTETS, REVERSE + PACKETS)
)
_INT_CODE = {1: "B", 2: "H", 4: "I", 8: "Q"}

#: Field kinds: how a field's bytes become a value.
SKIP, INT, BYTES_INT, IP4, IP6 = 0, 1, 2, 3, 4


def field_id(ie: int, enterprise: int) -> int:
    """The id lightsoc keys a field by: the IE, `REVERSE + ie` for biflow reverse
    counters, -1 for other enterprise-specific fields (skipped)."""
    if not enterprise:
        return ie
    if enterprise == REVERSE_PEN and ie in (OCTETS, PACKETS):
        return REVERSE + ie
    return -1


def field_kind(ie: int, length: int) -> int:
    """How lightsoc reads field `ie` (a `field_id`) of `length` bytes (SKIP if unmapped)."""
    if length == VARLEN:
        return SKIP
    if ie in INTS and 1 <= length <= 8:
        return INT if length in _INT_CODE else BYTES_INT
    if ie in ADDR4 and length == 4:
        return IP4
    if ie in ADDR6 and length == 16:
        return IP6
    return SKIP


@dataclass
class Template:
    """One (options) template: its fields and the compiled record layout."""

    fields: tuple[tuple[int, int, int], ...]  # (ie, enterprise, length) as sent
    options: bool = False
    size: int = 0  # record size (minimum size for a variable-length template)
    variable: bool = False
    struct: struct.Struct | None = None
    ies: tuple[int, ...] = ()  # `field_id` of each value `struct` unpacks
    fixups: tuple[tuple[int, int], ...] = ()  # (value index, kind) needing conversion
    kinds: tuple[int, ...] = field(default=())  # per field, for the variable-length path
    ids: tuple[int, ...] = field(default=())  # `field_id` per field

    @classmethod
    def compile(cls, fields: tuple[tuple[int, int, int], ...], options: bool = False) -> Template:
        ids = tuple(field_id(ie, ent) for ie, ent, _ in fields)
        kinds = tuple(field_kind(i, ln) for i, (_, _, ln) in zip(ids, fields, strict=True))
        variable = any(ln == VARLEN for _, _, ln in fields)
        size = sum(1 if ln == VARLEN else ln for _, _, ln in fields)
        t = cls(fields, options, size, variable, kinds=kinds, ids=ids)
        if variable or options:
            return t
        fmt, ies, fixups = ["!"], [], []
        for ie, (_, _, ln), kind in zip(ids, fields, kinds, strict=True):
            if kind == SKIP:
                fmt.append(f"{ln}x")
                continue
            if kind == INT:
                fmt.append(_INT_CODE[ln])
            else:
                fmt.append(f"{ln}s")
                fixups.append((len(ies), kind))
            ies.append(ie)
        t.struct, t.ies, t.fixups = struct.Struct("".join(fmt)), tuple(ies), tuple(fixups)
        return t


def convert(kind: int, raw: bytes) -> int | str:
    """A field's bytes as its value (kinds other than INT's struct codes)."""
    if kind == IP4:
        return socket.inet_ntoa(raw)
    if kind == IP6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return int.from_bytes(raw, "big")


def decode_fixed(t: Template, data: bytes) -> list[dict[int, int | str]]:
    """All records of a data set of a fixed-length template (padding ignored)."""
    assert t.struct is not None
    n = len(data) // t.size
    if not n:
        return []
    ies, fixups = t.ies, t.fixups
    out = []
    for values in t.struct.iter_unpack(data[: n * t.size]):
        if fixups:
            values = list(values)
            for i, kind in fixups:
                values[i] = convert(kind, values[i])
        out.append(dict(zip(ies, values, strict=True)))
    return out


def decode_variable(t: Template, data: bytes) -> list[dict[int, int | str]]:
    """Records of a template with variable-length fields, one at a time.

    Raises ValueError on a record that runs past the end of the set.
    """
    out = []
    pos, end = 0, len(data)
    while end - pos >= t.size:
        rec: dict[int, int | str] = {}
        for ie, (_, _, ln), kind in zip(t.ids, t.fields, t.kinds, strict=True):
            if ln == VARLEN:
                if pos >= end:
                    raise ValueError("truncated variable-length field")
                ln = data[pos]
                pos += 1
                if ln == 255:
                    if pos + 2 > end:
                        raise ValueError("truncated variable-length field")
                    ln = int.from_bytes(data[pos : pos + 2], "big")
                    pos += 2
            if pos + ln > end:
                raise ValueError("record runs past its set")
            if kind != SKIP:
                rec[ie] = convert(kind, data[pos : pos + ln])
            pos += ln
        out.append(rec)
    return out


# --- Community ID v1 (https://github.com/corelight/community-id-spec) --------

_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {
    128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
    130: 131, 131: 130, 139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip
_PORT_PROTOS = frozenset((6, 17, 132))


def community_id(
    saddr: str, daddr: str, proto: int, sport: int | None, dport: int | None, seed: int = 0
) -> str | None:
    """Community ID v1 of a flow tuple; for ICMP `sport`/`dport` are type/code.

    None when an address does not parse.
    """
    try:
        fam = socket.AF_INET6 if ":" in saddr else socket.AF_INET
        src, dst = socket.inet_pton(fam, saddr), socket.inet_pton(fam, daddr)
    except (OSError, TypeError):
        return None
    has_ports = sport is not None and dport is not None
    one_way = False
    if has_ports and proto in (1, 58):
        pairs = _ICMP4_PAIRS if proto == 1 else _ICMP6_PAIRS
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    elif proto not in _PORT_PROTOS:
        has_ports = False
    if not (one_way or (src, sport or 0) < (dst, dport or 0)):
        src, dst, sport, dport = dst, src, dport, sport
    data = struct.pack("!H", seed) + src + dst + struct.pack("!BB", proto, 0)
    if has_ports:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


# --- labels and names ---------------------------------------------------------

_TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
_TRANSPORT = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah"}
_TRANSPORT.update({58: "ipv6-icmp", 132: "sctp"})


def tcp_flags(bits: int) -> str:
    """TCP control bits as names, e.g. 0x12 -> "SYN,ACK"."""
    return ",".join(n for i, n in enumerate(_TCP_FLAG_NAMES) if bits >> i & 1)


def transport(proto: int) -> str:
    """IANA keyword of an IP protocol number (the number as text if unnamed)."""
    return _TRANSPORT.get(proto) or str(proto)
