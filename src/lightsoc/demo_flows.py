"""``flows.csv`` for ``lightsoc demo``: what ``nfdump -r ... -o csv`` (1.7) prints.

Unidirectional NetFlow records exported by the office core router
(10.20.0.1): office clients (10.20.0.0/16) talking to the web, DNS, mail and
file servers and to the internet, each TCP/UDP session as a request and a
reply flow. Injected: a SYN port scan from one internal host against a few
servers (closed ports answer with RST), a host beaconing to one external IP
every ~300 s with near-constant sizes, and a short SYN flood from many
internet addresses against the web server. Times are printed in UTC (nfdump
run with ``TZ=UTC``), ordered by flow start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from lightsoc.demo_web import ip_from_prefix, public_ip

HEADER = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,"
    "nh,nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,"
    "mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
)
EXPORTER = "10.20.0.1"
MAC0 = "00:00:00:00:00:00"
_MPLS = ",".join(["0-0-0"] * 10)
_LAT = "    0.000"  # nfdump prints client/server/application latency as %9.3f
WEB, DNS, MAIL, FILES = "10.20.0.80", "10.20.0.53", "10.20.0.25", "10.20.0.10"
SERVERS = (WEB, DNS, MAIL, FILES)
# (server, port, protocol, weight): where office clients go inside the network
INTERNAL = (
    (DNS, 53, "UDP", 6),
    (WEB, 443, "TCP", 2),
    (MAIL, 993, "TCP", 2),
    (FILES, 445, "TCP", 2),
)
OPEN = {WEB: {22, 80, 443}, DNS: {22, 53}, MAIL: {22, 25, 587, 993, 995}, FILES: {22, 139, 445}}
INTERNET = (  # (first octets of a CDN / SaaS range, weight)
    ((142, 250, 251), 5),
    ((151, 101, 101), 3),
    ((104, 16, 19), 4),
    ((13, 107, 107), 3),
    ((52, 96, 97), 3),
    ((140, 82, 82), 1),
    ((17, 253, 253), 1),
)
SCAN_PORTS = 1024


@dataclass(frozen=True)
class FlowTruth:
    """The injected patterns in flows.csv."""

    flows: int
    scanner: str
    scan_targets: tuple[str, ...]
    scan_ports: int  # distinct destination ports probed
    beacon_host: str
    beacon_ip: str
    beacon_port: int
    beacon_period: float
    beacons: int
    ddos_target: str
    ddos_port: int
    ddos_sources: tuple[str, ...]
    ddos_start: float
    ddos_end: float
    clients: tuple[str, ...]


# (start, duration, sa, da, sp, dp, proto, flags, packets, bytes): seconds while generating,
# whole milliseconds (as NetFlow carries them) in a ``Record``
Flow = tuple[float, float, str, str, int, int, str, str, int, int]
Record = tuple[int, int, str, str, int, int, str, str, int, int]


@lru_cache(maxsize=4096)
def _ts(sec: int) -> str:
    return f"{datetime.fromtimestamp(sec, UTC):%Y-%m-%d %H:%M:%S}"


def interfaces(sa: str) -> tuple[int, int]:
    """SNMP input/output interface of the router: 2 faces the office, 1 the uplink."""
    return (2, 1) if sa.startswith("10.20.") else (1, 2)


def format_flow(r: Record) -> str:
    """One CSV line as nfdump 1.7.1 prints a NetFlow record (no AS, MAC, MPLS data)."""
    start, dur, sa, da, sp, dp, pr, flg, pkts, byts = r
    end = start + dur
    i, o = interfaces(sa)
    tr = end + 1_250  # the collector received it a moment after the flow ended
    return (
        f"{_ts(start // 1000)},{_ts(end // 1000)},{dur // 1000}.{dur % 1000:03d},{sa},{da},"
        f"{sp},{dp},{pr},{flg},0,0,{pkts},{byts},0,0,{i},{o},0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0,"
        f"{MAC0},{MAC0},{MAC0},{MAC0},{_MPLS},{_LAT},{_LAT},{_LAT},{EXPORTER},0/0,1,"
        f"{_ts(tr // 1000)}.{tr % 1000:03d}"
    )


def summary_lines(flows: list[Record]) -> list[str]:
    """nfdump's trailing summary: totals and averages over the time span."""
    byts = sum(f[9] for f in flows)
    pkts = sum(f[8] for f in flows)
    span_ms = max(f[0] + f[1] for f in flows) - min(f[0] for f in flows) if flows else 0
    span = span_ms / 1000 or 1.0
    bpp = byts // pkts if pkts else 0
    return [
        "Summary",
        "flows,bytes,packets,avg_bps,avg_pps,avg_bpp",
        f"{len(flows)},{byts},{pkts},{int(byts * 8 / span)},{int(pkts / span)},{bpp}",
    ]


def _busy(t: float) -> bool:
    return 9 <= int((t // 3600 + 8) % 24) < 19  # the office is on UTC+8


def _session(
    rng: random.Random, t: float, client: str, server: str, dport: int, proto: str
) -> list[Flow]:
    """A request flow and its reply, sizes typical of the service."""
    sport = rng.randint(32_768, 60_999)
    if proto == "UDP":
        dur = rng.uniform(0.001, 0.05)
        q = rng.randint(60, 90)
        return [
            (t, 0.0, client, server, sport, dport, "UDP", "........", 1, q),
            (
                t + dur,
                0.0,
                server,
                client,
                dport,
                sport,
                "UDP",
                "........",
                1,
                q + rng.randint(16, 180),
            ),
        ]
    dur = rng.uniform(0.05, 120)
    up = rng.randint(6, 40)
    down = int(up * rng.uniform(1, 12))
    return [
        (t, dur, client, server, sport, dport, "TCP", "...AP.SF", up, up * rng.randint(60, 220)),
        (
            t + 0.01,
            dur,
            server,
            client,
            dport,
            sport,
            "TCP",
            "...AP.SF",
            down,
            down * rng.randint(400, 1400),
        ),
    ]


def _office(rng: random.Random, start: float, end: float, clients: list[str]) -> list[Flow]:
    """Normal traffic: ~900 sessions an hour in office hours, ~100 at night."""
    flows: list[Flow] = []
    internal_w = [w for *_, w in INTERNAL]
    net_w = [w for _, w in INTERNET]
    sites = [
        ip_from_prefix(rng, *rng.choices([p for p, _ in INTERNET], net_w)[0]) for _ in range(300)
    ]
    t = start
    while t < end:
        t += rng.expovariate(900 / 3600 if _busy(t) else 100 / 3600)
        client = rng.choice(clients)
        if rng.random() < 0.5:
            server, port, proto, _ = rng.choices(INTERNAL, internal_w)[0]
            flows += _session(rng, t, client, server, port, proto)
        else:
            flows += _session(
                rng, t, client, rng.choice(sites), rng.choice((443, 443, 443, 80)), "TCP"
            )
    return flows


def _scan(
    rng: random.Random, start: float, end: float, scanner: str
) -> tuple[list[Flow], tuple[str, ...]]:
    """SYN probes to ports 1..1024 of three servers, RST from closed ports."""
    targets = (WEB, MAIL, FILES)
    t = start + (end - start) * 0.55
    flows: list[Flow] = []
    for target in targets:
        ports = list(range(1, SCAN_PORTS + 1))
        rng.shuffle(ports)  # nmap randomises the port order
        sport = rng.randint(40_000, 60_000)
        for p in ports:
            t += rng.uniform(0.002, 0.03)
            flows.append((t, 0.0, scanner, target, sport, p, "TCP", "......S.", 1, 44))
            if p in OPEN[target]:
                flows.append((t + 0.0004, 0.0, target, scanner, p, sport, "TCP", "...A..S.", 1, 44))
            else:
                flows.append((t + 0.0004, 0.0, target, scanner, p, sport, "TCP", "...A.R..", 1, 40))
    return flows, targets


def _beacon(rng: random.Random, start: float, end: float, host: str, c2: str) -> list[Flow]:
    """HTTPS check-ins every 300 s +- 10 %, near-constant sizes both ways."""
    flows: list[Flow] = []
    t = start + rng.uniform(5, 300)
    while t < end:
        sport = rng.randint(49_152, 65_000)
        dur = rng.uniform(0.18, 0.35)
        flows.append(
            (t, dur, host, c2, sport, 443, "TCP", "...AP.SF", 9, 1_180 + rng.randint(-4, 4))
        )
        flows.append(
            (t + 0.03, dur, c2, host, 443, sport, "TCP", "...AP.SF", 7, 3_912 + rng.randint(-4, 4))
        )
        t += 300 * rng.uniform(0.9, 1.1)
    return flows


def _ddos(
    rng: random.Random, start: float, end: float
) -> tuple[list[Flow], tuple[str, ...], float, float]:
    """A four-minute SYN flood from ~600 addresses against the web server's 443."""
    t0 = start + (end - start) * 0.8
    t1 = min(end - 1, t0 + 240)
    sources = tuple(dict.fromkeys(public_ip(rng) for _ in range(600)))
    flows: list[Flow] = []
    for ip in sources:
        for _ in range(rng.randint(2, 4)):
            t = rng.uniform(t0, t1 - 10)
            pkts = rng.randint(40, 400)
            flows.append(
                (
                    t,
                    rng.uniform(1, 10),
                    ip,
                    WEB,
                    rng.randint(1_024, 65_535),
                    443,
                    "TCP",
                    "......S.",
                    pkts,
                    pkts * 40,
                )
            )
    return flows, sources, t0, t1


def flows_csv(rng: random.Random, start: float, end: float) -> tuple[list[bytes], FlowTruth]:
    """The lines of flows.csv for flows starting in ``[start, end)`` and the ground truth."""
    records, truth = flow_records(rng, start, end)
    lines = [HEADER, *(format_flow(r) for r in records), *summary_lines(records)]
    return [(line + "\n").encode() for line in lines], truth


def flow_records(rng: random.Random, start: float, end: float) -> tuple[list[Record], FlowTruth]:
    """The flow records starting in ``[start, end)``, by start time, and the ground truth."""
    clients = sorted({f"10.20.{rng.randint(1, 9)}.{rng.randint(10, 250)}" for _ in range(160)})
    scanner = f"10.20.7.{rng.randint(100, 199)}"
    beacon_host = f"10.20.4.{rng.randint(30, 90)}"
    c2 = f"185.117.{rng.randint(72, 75)}.{rng.randint(2, 250)}"
    clients = [c for c in clients if c not in (scanner, beacon_host)]
    flows = _office(rng, start, end, clients)
    scan, targets = _scan(rng, start, end, scanner)
    beacon = _beacon(rng, start, end, beacon_host, c2)
    ddos, sources, d0, d1 = _ddos(rng, start, end)
    flows += scan + beacon + ddos
    flows = sorted((f for f in flows if start <= f[0] < end), key=lambda f: f[0])
    records: list[Record] = [(round(f[0] * 1000), round(f[1] * 1000), *f[2:]) for f in flows]
    beacons = sum(1 for f in flows if f[2] == beacon_host and f[3] == c2)
    ports = len({f[5] for f in flows if f[2] == scanner})
    truth = FlowTruth(
        len(flows),
        scanner,
        targets,
        ports,
        beacon_host,
        c2,
        443,
        300.0,
        beacons,
        WEB,
        443,
        sources,
        d0,
        d1,
        tuple(clients),
    )
    return records, truth
