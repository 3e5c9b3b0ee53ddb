"""``dns.pcap`` for ``lightsoc demo``: DNS seen at the office resolver, as a libpcap file.

Ethernet / IPv4 / UDP port 53 packets between office clients (10.20.0.0/16)
and the resolver 10.20.0.53, each query followed by its response, built with
``struct``. Normal browsing (popular names, A/AAAA, CNAME chains) plus:
a DGA-infected host (hash-generated names, mostly NXDOMAIN), a DNS tunnel
(long base32 labels under one domain, TXT/NULL/CNAME, iodine style) and a
host looking up a known-bad domain (from the shared URLhaus list when found).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RESOLVER = "10.20.0.53"
RESOLVER_MAC = bytes.fromhex("525400000035")
A, CNAME, SOA, NULL, TXT, AAAA = 1, 5, 6, 10, 16, 28
TYPE_NAMES = {A: "A", CNAME: "CNAME", NULL: "NULL", TXT: "TXT", AAAA: "AAAA"}
NOERROR, NXDOMAIN = 0, 3
POPULAR = (
    "www.google.com",
    "www.gstatic.com",
    "fonts.googleapis.com",
    "www.youtube.com",
    "outlook.office365.com",
    "login.microsoftonline.com",
    "teams.microsoft.com",
    "www.microsoft.com",
    "github.com",
    "api.github.com",
    "slack.com",
    "wss-primary.slack.com",
    "www.linkedin.com",
    "www.wikipedia.org",
    "en.wikipedia.org",
    "zoom.us",
    "update.googleapis.com",
    "clients4.google.com",
    "www.amazon.com",
    "s3.amazonaws.com",
    "cdn.jsdelivr.net",
    "ocsp.digicert.com",
    "www.bing.com",
    "docs.python.org",
)
# names answered with a CNAME chain (alias -> canonical), as CDNs do
CHAINS = {
    "www.microsoft.com": ("www.microsoft.com-c-3.edgekey.net", "e13678.dscb.akamaiedge.net"),
    "www.linkedin.com": ("www-linkedin-com.l-0005.l-msedge.net", "l-0005.l-msedge.net"),
    "www.amazon.com": ("tp.47cf2c8c9-frontier.amazon.com", "d3ag4hukkh62yn.cloudfront.net"),
    "cdn.jsdelivr.net": ("cdn.jsdelivr.net.cdn.cloudflare.net",),
    "ocsp.digicert.com": ("ocsp.edge.digicert.com", "fp2e7a.wpc.phicdn.net"),
    "www.wikipedia.org": ("dyna.wikimedia.org",),
    "en.wikipedia.org": ("dyna.wikimedia.org",),
}
DGA_TLDS = ("com", "net", "org", "info", "biz", "ru")
FALLBACK_BAD = "update-flashplayer-secure.top"
_SIMPLE_DOMAIN = re.compile(r"^[a-z][a-z0-9-]{3,30}\.(?:com|net|org|info|xyz|top|ru|site)$")


@dataclass(frozen=True)
class DnsQuery:
    """One query and how the resolver answered it."""

    ts: float
    client: str
    name: str
    qtype: str
    rcode: int


@dataclass(frozen=True)
class DnsTruth:
    """The injected patterns in dns.pcap and every query, in packet order."""

    resolver: str
    dga_host: str
    dga_domains: tuple[str, ...]
    dga_resolved: tuple[str, ...]
    tunnel_host: str
    tunnel_domain: str
    tunnel_queries: int
    bad_domain: str
    bad_domain_source: str  # the intel file it came from, or "builtin"
    bad_host: str
    bad_lookups: int
    queries: tuple[DnsQuery, ...]


def default_bad_domain_file() -> Path | None:
    """``$LIGHTSOC_INTEL``/urlhaus or ``../shared/data/intel/urlhaus`` next to the checkout."""
    env = os.environ.get("LIGHTSOC_INTEL")
    roots = [Path(env)] if env else []
    roots += [
        Path(__file__).resolve().parents[3] / "shared/data/intel",
        Path.cwd().parent / "shared/data/intel",
    ]
    for r in roots:
        f = r / "urlhaus" / "urlhaus-filter-domains-online.txt"
        if f.is_file():
            return f
    return None


def pick_bad_domain(rng: random.Random, path: Path | None) -> tuple[str, str]:
    """A plain registered domain from a URLhaus domain list, else the built-in one."""
    if path is not None and path.is_file():
        names = [
            x.strip()
            for x in path.read_text(errors="replace").splitlines()
            if _SIMPLE_DOMAIN.match(x.strip())
        ]
        if names:
            return rng.choice(sorted(names)), path.name
    return FALLBACK_BAD, "builtin"


def dga_domains(day: datetime, count: int, seed: int = 0x5EED) -> list[str]:
    """The day's domains of a toy hash-based DGA (seeded by date, like real families)."""
    out: list[str] = []
    for i in range(count):
        h = hashlib.sha256(f"{seed}:{day:%Y-%m-%d}:{i}".encode()).digest()
        n = 10 + h[0] % 9
        label = "".join(chr(97 + b % 26) for b in h[2 : 2 + n])
        out.append(f"{label}.{DGA_TLDS[h[1] % len(DGA_TLDS)]}")
    return out


# -- wire format ---------------------------------------------------------------


def _name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def _ip4(ip: str) -> bytes:
    return bytes(int(x) for x in ip.split("."))


def _fake_addr(name: str, family: int) -> bytes:
    """A stable address for a name (the same name always resolves the same)."""
    h = hashlib.blake2b(name.encode(), digest_size=16).digest()
    if family == A:
        return bytes((151 if h[0] % 2 else 104, 16 + h[1] % 16, h[2], 1 + h[3] % 254))
    return bytes.fromhex("2a001450") + h[4:16]


def _rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def dns_message(
    qid: int, name: str, qtype: int, answers: list[tuple[str, int, bytes]] | None, rcode: int = 0
) -> bytes:
    """A query (``answers`` None) or a response with ``(owner, type, rdata)`` answers."""
    question = _name(name) + struct.pack("!HH", qtype, 1)
    if answers is None:
        return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question
    body = b"".join(
        # the owner of the first answer is the question name: point at it, as servers do
        _rr(b"\xc0\x0c" if owner == name else _name(owner), t, 300, rdata)
        for owner, t, rdata in answers
    )
    auth = b""
    if rcode == NXDOMAIN:  # the zone's SOA, so the client may cache the negative answer
        zone = name.rsplit(".", 1)[-1]
        soa = _name(f"a.nic.{zone}") + _name(f"hostmaster.nic.{zone}")
        soa += struct.pack("!IIIII", 2024051401, 1800, 900, 604800, 900)
        auth = _rr(_name(zone), SOA, 900, soa)
    head = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(answers), 1 if auth else 0, 0)
    return head + question + body + auth


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _mac(ip: str) -> bytes:
    return b"\x52\x54\x00" + _ip4(ip)[1:]


def frame(src: str, dst: str, sport: int, dport: int, payload: bytes, ip_id: int) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload``, with valid checksums."""
    s, d = _ip4(src), _ip4(dst)
    ulen = 8 + len(payload)
    pseudo = s + d + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, ip_id, 0, 64, 17, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    smac = RESOLVER_MAC if src == RESOLVER else _mac(src)
    dmac = RESOLVER_MAC if dst == RESOLVER else _mac(dst)
    return dmac + smac + b"\x08\x00" + ip + udp


def pcap_bytes(packets: list[tuple[int, bytes]]) -> bytes:
    """Classic libpcap (microseconds, little-endian, Ethernet) from ``(unix_us, frame)``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, f in packets:
        out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(f), len(f)) + f)
    return b"".join(out)


# -- traffic ---------------------------------------------------------------------


class Capture:
    """Collects query/response packet pairs and the ground-truth query list."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.packets: list[tuple[int, int, bytes]] = []  # (unix_us, order, frame)
        self.queries: list[DnsQuery] = []

    def ask(
        self,
        t: float,
        client: str,
        name: str,
        qtype: int,
        answers: list[tuple[str, int, bytes]],
        rcode: int = NOERROR,
        latency: float | None = None,
    ) -> None:
        rng = self.rng
        # ports from 33535 up: Wireshark takes 33434-33534 for traceroute
        qid, sport = rng.randint(0, 0xFFFF), rng.randint(33_535, 60_999)
        t_us = int(t * 1_000_000)
        lat = latency if latency is not None else rng.choice((0.0003, 0.0008, 0.02, 0.045))
        q = frame(
            client, RESOLVER, sport, 53, dns_message(qid, name, qtype, None), rng.getrandbits(16)
        )
        r = frame(
            RESOLVER,
            client,
            53,
            sport,
            dns_message(qid, name, qtype, answers, rcode),
            rng.getrandbits(16),
        )
        n = len(self.packets)
        self.packets += [(t_us, n, q), (t_us + max(100, int(lat * 1_000_000)), n + 1, r)]
        self.queries.append(DnsQuery(t_us / 1_000_000, client, name, TYPE_NAMES[qtype], rcode))

    def resolve(self, t: float, client: str, name: str, qtype: int) -> None:
        """A normal lookup: CNAME chain (if any) then addresses of the canonical name."""
        chain = CHAINS.get(name, ())
        answers: list[tuple[str, int, bytes]] = []
        owner = name
        for alias in chain:
            answers.append((owner, CNAME, _name(alias)))
            owner = alias
        for i in range(1 if qtype == AAAA else 1 + self.rng.randint(0, 2)):
            answers.append((owner, qtype, _fake_addr(f"{owner}#{i}", qtype)))
        self.ask(t, client, name, qtype, answers)


def _busy(t: float) -> bool:
    return 9 <= int((t // 3600 + 8) % 24) < 19  # the office is on UTC+8


def _browsing(c: Capture, start: float, end: float, clients: list[str]) -> None:
    rng = c.rng
    t = start
    while True:
        t += rng.expovariate(600 / 3600 if _busy(t) else 80 / 3600)
        if t >= end:
            return
        c.resolve(t, rng.choice(clients), rng.choice(POPULAR), AAAA if rng.random() < 0.3 else A)


def _dga(c: Capture, start: float, end: float, host: str) -> tuple[list[str], list[str]]:
    """Every 30 min the bot walks 25 of the day's names; two of them are registered."""
    rng = c.rng
    names = dga_domains(datetime.fromtimestamp(start, UTC), 400)
    live = {names[137], names[301]}
    asked: dict[str, None] = {}
    t, i = start + rng.uniform(60, 600), 0
    while t < end:
        for _ in range(25):
            name = names[i % len(names)]
            i += 1
            t += rng.uniform(0.05, 0.4)
            if name in live:
                c.ask(t, host, name, A, [(name, A, _fake_addr(name, A))])
            else:
                c.ask(t, host, name, A, [], NXDOMAIN, latency=rng.uniform(0.02, 0.09))
            asked[name] = None
        t += 1800 + rng.uniform(-60, 60)
    return list(asked), sorted(live & set(asked))


def _tunnel(c: Capture, start: float, end: float, host: str, domain: str) -> int:
    """45 minutes of iodine-style traffic: data in base32 labels, replies in the answers."""
    rng = c.rng
    t = start + (end - start) * 0.45
    stop, n, seq = min(end - 5, t + 45 * 60), 0, rng.randint(0, 0xFFFF)
    while t < stop:
        data = rng.randbytes(rng.randint(70, 110))
        enc = base64.b32encode(seq.to_bytes(2, "big") + data).decode().rstrip("=").lower()
        labels = [enc[i : i + 63] for i in range(0, len(enc), 63)]
        name = ".".join([*labels, domain])
        seq = (seq + 1) & 0xFFFF
        kind = rng.choices((TXT, NULL, CNAME), (7, 2, 1))[0]
        reply = rng.randbytes(rng.randint(40, 120))
        if kind == TXT:
            txt = base64.b32encode(reply).decode().rstrip("=").lower().encode()
            rdata = bytes([len(txt)]) + txt
        elif kind == NULL:
            rdata = reply
        else:
            rdata = _name(f"{base64.b32encode(reply[:30]).decode().rstrip('=').lower()}.{domain}")
        c.ask(t, host, name, kind, [(name, kind, rdata)], latency=rng.uniform(0.03, 0.12))
        n += 1
        t += rng.uniform(0.3, 1.5)
    return n


def dns_pcap(
    rng: random.Random, start: float, end: float, bad_file: Path | None
) -> tuple[bytes, DnsTruth]:
    """The pcap file's bytes for queries in ``[start, end)`` and the ground truth."""
    clients = sorted({f"10.20.{rng.randint(1, 9)}.{rng.randint(10, 250)}" for _ in range(120)})
    dga_host = f"10.20.6.{rng.randint(200, 240)}"
    tunnel_host = f"10.20.8.{rng.randint(200, 240)}"
    tunnel_domain = f"t{rng.randint(1, 9)}.cdn-telemetry-sync.net"
    bad_domain, bad_source = pick_bad_domain(rng, bad_file)
    clients = [x for x in clients if x not in (dga_host, tunnel_host)]
    bad_host = rng.choice(clients)
    c = Capture(rng)
    _browsing(c, start, end, clients)
    _, dga_live = _dga(c, start, end, dga_host)
    _tunnel(c, start, end, tunnel_host, tunnel_domain)
    t = start + (end - start) * 0.7
    lookups = rng.randint(3, 6)
    for _ in range(lookups):
        c.ask(t, bad_host, bad_domain, A, [(bad_domain, A, _fake_addr(bad_domain, A))])
        t += rng.uniform(20, 90)
    # keep whole exchanges inside the window, in time order (query before its answer)
    end_us = int(end * 1_000_000)
    # (packet n // 2 is query number n // 2; an answer after the end drops its query too)
    complete = {p[1] // 2 for p in c.packets if p[1] % 2 and p[0] < end_us}
    pairs = sorted(p for p in c.packets if p[1] // 2 in complete)
    kept = sorted((c.queries[i] for i in sorted(complete)), key=lambda q: q.ts)
    dga_asked = tuple(dict.fromkeys(q.name for q in kept if q.client == dga_host))
    truth = DnsTruth(
        resolver=RESOLVER,
        dga_host=dga_host,
        dga_domains=dga_asked,
        dga_resolved=tuple(n for n in dga_live if n in dga_asked),
        tunnel_host=tunnel_host,
        tunnel_domain=tunnel_domain,
        tunnel_queries=sum(1 for q in kept if q.name.endswith("." + tunnel_domain)),
        bad_domain=bad_domain,
        bad_domain_source=bad_source,
        bad_host=bad_host,
        bad_lookups=sum(1 for q in kept if q.name == bad_domain),
        queries=tuple(kept),
    )
    return pcap_bytes([(ts, f) for ts, _, f in pairs]), truth
