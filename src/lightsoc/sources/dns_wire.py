"""DNS wire format (RFC 1035): names with compression, questions, answer records.

Everything here is attacker-controlled input: every read is bounds-checked and
any problem is a `Malformed(reason)` (reasons: `truncated`, `bad_pointer`,
`pointer_loop`, `bad_label`, `name_too_long`), never another exception.

Names are returned in presentation form without the trailing dot; bytes that
are not printable ASCII, and `.` or `\\` inside a label, are escaped as
`\\DDD` / `\\.` (RFC 4343), so a label can never smuggle a dot, a control
character or invalid UTF-8 into an event. Compression pointers must point
strictly before every position already visited for the name, which makes
loops impossible without a hop counter.

Answer records are formatted like `dig`'s answer section, one string each:
`example.com. 300 IN A 1.2.3.4` (owner, TTL, class, type, RDATA); RDATA of
A, AAAA, CNAME, NS, PTR, DNAME, MX, TXT, SOA and SRV is decoded, other types
are `\\# <len> <hex>` (RFC 3597) and unknown types/classes `TYPE<n>`/`CLASS<n>`.
"""

from __future__ import annotations

import re
import socket
import struct

HEADER = struct.Struct("!HHHHHH")
_QTAIL = struct.Struct("!HH")
_RR = struct.Struct("!HHIH")
_H = struct.Struct("!H")
_SOA = struct.Struct("!IIIII")
_SRV = struct.Struct("!HHH")
_MAX_NAME = 255
MAX_QNAMES = 100_000  # question names cached by `parse_message`'s caller

TYPES: dict[int, str] = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    10: "NULL",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    17: "RP",
    28: "AAAA",
    29: "LOC",
    33: "SRV",
    35: "NAPTR",
    37: "CERT",
    39: "DNAME",
    41: "OPT",
    43: "DS",
    44: "SSHFP",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    255: "ANY",
    256: "URI",
    257: "CAA",
}
RCODES: dict[int, str] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    11: "DSOTYPENI",
}
OPCODES: dict[int, str] = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO"}
CLASSES: dict[int, str] = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}

_TYPE_NAMES = [TYPES.get(i) or f"TYPE{i}" for i in range(65536)]
RCODE_NAMES = [RCODES.get(i) or f"RCODE{i}" for i in range(16)]  # by the header's 4 bits
# Anything but letters, digits and the usual host-name punctuation takes the slow path.
_UNSAFE = re.compile(rb"[^A-Za-z0-9_\-*/.]")
_SAFE_BYTE = [chr(b) if 0x21 <= b <= 0x7E and b not in b".\\" else f"\\{b:03d}" for b in range(256)]
_SAFE_BYTE[ord(".")] = "\\."
_SAFE_BYTE[ord("\\")] = "\\\\"
_TXT_BYTE = [chr(b) if 0x20 <= b <= 0x7E and b not in b'"\\' else f"\\{b:03d}" for b in range(256)]
_TXT_BYTE[ord('"')] = '\\"'
_TXT_BYTE[ord("\\")] = "\\\\"


class Malformed(Exception):
    """A DNS message that cannot be decoded; `reason` is a short counter name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def type_name(qtype: int) -> str:
    return _TYPE_NAMES[qtype]


def rcode_name(rcode: int) -> str:
    return RCODE_NAMES[rcode & 15]


def _escape(labels: list[bytes]) -> str:
    table = _SAFE_BYTE
    return ".".join("".join([table[b] for b in label]) for label in labels)


def read_name(msg: bytes, off: int, cache: dict[int, str] | None = None) -> tuple[str, int]:
    """(name without trailing dot, offset just after the name as written at `off`).

    `cache` maps offsets of names already read in this message to their text,
    so a pointer to one (the usual `c00c`) costs a dict lookup; names read
    are added to it.
    """
    n = len(msg)
    start = off
    labels: list[bytes] = []
    end = -1
    limit = off  # a pointer must go strictly below every position visited
    total = 0
    suffix = None
    while True:
        if off >= n:
            raise Malformed("truncated")
        ln = msg[off]
        if ln == 0:
            off += 1
            break
        if ln < 64:
            stop = off + 1 + ln
            if stop > n:
                raise Malformed("truncated")
            total += ln + 1
            if total > _MAX_NAME:
                raise Malformed("name_too_long")
            labels.append(msg[off + 1 : stop])
            off = stop
        elif ln >= 0xC0:
            if off + 1 >= n:
                raise Malformed("truncated")
            ptr = ((ln & 0x3F) << 8) | msg[off + 1]
            if end < 0:
                end = off + 2
            if cache is not None and ptr < limit:
                suffix = cache.get(ptr)  # names in the cache are complete: no loop possible
                if suffix is not None:
                    break
            if ptr >= n:
                raise Malformed("bad_pointer")
            if ptr >= limit:
                raise Malformed("pointer_loop")
            limit = off = ptr
        else:
            raise Malformed("bad_label")  # 0x40/0x80: extended / obsolete label types
    if end < 0:
        end = off
    raw = b".".join(labels)
    if _UNSAFE.search(raw) is None and raw.count(b".") == len(labels) - 1:
        text = raw.decode("ascii")
    else:
        text = _escape(labels)
    if suffix:
        if total + len(suffix) >= _MAX_NAME:
            raise Malformed("name_too_long")
        text = f"{text}.{suffix}" if text else suffix
    if cache is not None:
        cache[start] = text
    return text, end


def read_question(msg: bytes, off: int) -> tuple[str, int, int, int]:
    """(name, qtype, qclass, offset after the question)."""
    name, off = read_name(msg, off)
    if off + 4 > len(msg):
        raise Malformed("truncated")
    qtype, qclass = _QTAIL.unpack_from(msg, off)
    return name, qtype, qclass, off + 4


def _fqdn(name: str) -> str:
    return name + "." if name else "."


def _txt(rdata: bytes) -> str:
    parts = []
    i, n = 0, len(rdata)
    table = _TXT_BYTE
    while i < n:
        ln = rdata[i]
        if i + 1 + ln > n:
            raise Malformed("truncated")
        parts.append('"' + "".join([table[b] for b in rdata[i + 1 : i + 1 + ln]]) + '"')
        i += 1 + ln
    return " ".join(parts)


def _rdata(msg: bytes, rtype: int, start: int, end: int, cache: dict[int, str]) -> str:
    """RDATA of one record in presentation form (names may use compression)."""
    if rtype in (2, 5, 12, 39):  # NS, CNAME, PTR, DNAME
        return _fqdn(read_name(msg, start, cache)[0])
    if rtype == 15:  # MX
        if end - start < 3:
            raise Malformed("truncated")
        return f"{_H.unpack_from(msg, start)[0]} {_fqdn(read_name(msg, start + 2, cache)[0])}"
    if rtype == 16 or rtype == 99:  # TXT, SPF
        return _txt(msg[start:end])
    if rtype == 6:  # SOA
        mname, off = read_name(msg, start, cache)
        rname, off = read_name(msg, off, cache)
        if off + 20 > end:
            raise Malformed("truncated")
        nums = " ".join(map(str, _SOA.unpack_from(msg, off)))
        return f"{_fqdn(mname)} {_fqdn(rname)} {nums}"
    if rtype == 33:  # SRV
        if end - start < 7:
            raise Malformed("truncated")
        prio, weight, port = _SRV.unpack_from(msg, start)
        return f"{prio} {weight} {port} {_fqdn(read_name(msg, start + 6, cache)[0])}"
    return f"\\# {end - start} {msg[start:end].hex()}" if end > start else "\\# 0"


def read_answers(
    msg: bytes, off: int, count: int, cache: dict[int, str] | None = None
) -> tuple[list[str], list[str]]:
    """The answer section: (formatted records, addresses of its A/AAAA records).

    `cache` is the message's name cache (see `read_name`), usually holding the
    question name at offset 12.
    """
    answers: list[str] = []
    ips: list[str] = []
    n = len(msg)
    if cache is None:
        cache = {}
    rr = _RR.unpack_from
    ntoa = socket.inet_ntoa
    types = _TYPE_NAMES
    add, add_ip = answers.append, ips.append
    for _ in range(count):
        b = msg[off] if off < n else 0
        owner = None
        if b >= 0xC0 and off + 1 < n:  # the usual compressed owner: a cache hit
            ptr = ((b & 0x3F) << 8) | msg[off + 1]
            owner = cache.get(ptr) if ptr < off else None
            if owner is not None:
                off += 2
        if owner is None:
            owner, off = read_name(msg, off, cache)
        if off + 10 > n:
            raise Malformed("truncated")
        rtype, rclass, ttl, rdlen = rr(msg, off)
        start = off + 10
        off = start + rdlen
        if off > n:
            raise Malformed("truncated")
        if rtype == 1 and rdlen == 4:
            value = ntoa(msg[start:off])
            add_ip(value)
        elif rtype == 28 and rdlen == 16:
            value = socket.inet_ntop(socket.AF_INET6, msg[start:off])
            add_ip(value)
        elif rtype == 5:
            value = read_name(msg, start, cache)[0] + "."
        else:
            value = _rdata(msg, rtype, start, off, cache)
        # mDNS: the class's top bit is the cache-flush flag
        if rclass == 1:
            add(f"{owner}. {ttl} IN {types[rtype]} {value}")
        else:
            cls = CLASSES.get(rclass & 0x7FFF) or f"CLASS{rclass}"
            add(f"{owner}. {ttl} {cls} {types[rtype]} {value}")
    return answers, ips


def looks_like_dns(msg: bytes) -> bool:
    """A strict guess for traffic on ports not known to carry DNS."""
    if len(msg) < 17:
        return False
    _, flags, qd, an, ns, ar = HEADER.unpack_from(msg)
    if qd != 1 or flags & 0x7840 or an > 256 or ns > 256 or ar > 256:
        return False  # one question, opcode QUERY, Z bit clear
    if not flags & 0x8000 and an:
        return False
    try:
        _, qtype, qclass, off = read_question(msg, 12)
    except Malformed:
        return False
    return qclass & 0x7FFF in CLASSES and qtype != 0 and (an or ns or ar or off == len(msg))


def joined(items: list[str]) -> str:
    """A list of strings in one string, each item after a NUL (`[]` is `""`).

    Events carry lists this way: one object, split into a list column by
    polars (`dns_events`). Answers and addresses are escaped text: no NUL.
    """
    return "\0" + "\0".join(items) if items else ""


def parse_message(msg: bytes, qnames: dict[bytes, tuple[str, str]]) -> tuple:
    """(id, flags, question name, question type, answers, addresses); raises `Malformed`.

    `qnames` caches question names by wire form (name, lower-cased name).
    The answers and addresses are lists in one string each (`joined`).
    """
    n = len(msg)
    if n < 12:
        raise Malformed("truncated")
    mid, flags, qd, an, _, _ = HEADER.unpack_from(msg)
    names: dict[int, str] = {}
    if qd:
        # question names repeat: look the wire form up before decoding it
        z = msg.find(0, 12)
        key = msg[12 : z + 1]
        hit = qnames.get(key) if z > 0 else None
        if hit is not None:
            qraw, qname = hit
            off = z + 1
        else:
            qraw, off = read_name(msg, 12)
            qname = qraw.lower()
            if off == z + 1:
                if len(qnames) >= MAX_QNAMES:
                    qnames.clear()
                qnames[key] = (qraw, qname)
        if off + 4 > n:
            raise Malformed("truncated")
        qtype_s: str | None = _TYPE_NAMES[(msg[off] << 8) | msg[off + 1]]
        off += 4
        names[12] = qraw
    else:
        qname, qtype_s, off = None, None, 12
    if flags & 0x8000 and an:
        alist, iplist = read_answers(msg, off, an, names)
        answers, ips = joined(alist), joined(iplist)
    else:
        answers = ips = None
    return mid, flags, qname, qtype_s, answers, ips
