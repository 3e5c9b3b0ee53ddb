"""A realistic, deterministic day of logs for ``lightsoc demo``.

``generate(out_dir)`` writes::

    web1/access.log   nginx combined (UTC, +0000)     shop node 1
    web2/access.log   nginx combined (UTC, +0000)     shop node 2
    web3/access.log   apache combined (local, +0800)  corporate / docs site
    auth.log          RFC 3164 syslog (UTC, no year)  sshd, sudo, su, CRON on host web1
    mail.log          RFC 3164 syslog                 postfix + dovecot on host mail1
    flows.csv         ``nfdump -o csv``               office NetFlow (UTC)
    dns.pcap          libpcap, Ethernet/IPv4/UDP      DNS at the resolver 10.20.0.53

with benign browsing, crawlers and an uptime monitor (``demo_web``), injected
web attacks (``demo_web_attacks``), an SSH brute force that succeeds
(``demo_sshd``), an IMAP password-guessing run (``demo_mail``), a port scan,
a beacon and a SYN flood (``demo_flows``), and a DGA host, a DNS tunnel and a
known-bad domain lookup (``demo_dns``). Same ``seed`` and ``end`` (and payload lists) give
byte-identical files. The returned ``DemoFiles`` is the ground truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lightsoc.demo_dns import DnsTruth, default_bad_domain_file, dns_pcap
from lightsoc.demo_flows import FlowTruth, flows_csv
from lightsoc.demo_mail import MailTruth, mail_log
from lightsoc.demo_sshd import auth_log
from lightsoc.demo_web import Hit, benign
from lightsoc.demo_web_attacks import attacks, default_payload_dir, load_payloads

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEB_FILES = {"web1": "web1/access.log", "web2": "web2/access.log", "web3": "web3/access.log"}
AUTH_FILE = "auth.log"
MAIL_FILE = "mail.log"
FLOWS_FILE = "flows.csv"
DNS_FILE = "dns.pcap"
FORMATS = {
    "web1/access.log": "nginx_combined",
    "web2/access.log": "nginx_combined",
    "web3/access.log": "apache_combined",
    AUTH_FILE: "syslog",
    MAIL_FILE: "syslog",
    FLOWS_FILE: "nfdump_csv",
    DNS_FILE: "auto",  # a capture: recognised by its magic number
}
UTC_OFFSET_H = {"web1": 0, "web2": 0, "web3": 8}
APACHE = {"web3"}
GBK_UA = (
    b"Mozilla/5.0 (Linux; U; Android 9; zh-cn; \xbb\xaa\xce\xaa Mate 20 Build/HUAWEIHMA) "
    b"AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/57.0.2987.132 "
    b"MQQBrowser/8.9 Mobile Safari/537.36"
)
TLS_HELLO = r"\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03\xA7\x1B\x8E\x0F\xD2\x94|\x9A"


@dataclass(frozen=True)
class Injected:
    """Ground truth for one attack kind: who, how many log lines, where."""

    kind: str
    ips: tuple[str, ...]
    lines: int
    files: tuple[str, ...]


@dataclass(frozen=True)
class BruteForce:
    """The SSH brute force: failures from ``ip`` then a password login as ``user``."""

    ip: str
    user: str
    failures: int
    first_failure: datetime
    success: datetime
    sudo_commands: tuple[str, ...]


@dataclass(frozen=True)
class Messy:
    """A deliberately awkward line: ``kind`` at 1-based ``line`` of ``file``."""

    kind: str  # invalid_utf8 | long_url | crlf | tls_garbage
    file: str
    line: int


@dataclass(frozen=True)
class DemoFiles:
    """What ``generate`` wrote: paths, formats, line counts and the injected attacks.

    ``lines`` counts the lines of the text files; ``dns.pcap`` holds
    ``2 * len(dns.queries)`` packets (each query and its response).
    """

    root: Path
    start: datetime
    end: datetime
    seed: int
    files: tuple[Path, ...]
    formats: dict[str, str]
    lines: dict[str, int]
    attacks: dict[str, Injected]
    brute_force: BruteForce
    messy: tuple[Messy, ...]
    ssh_noise_ips: tuple[str, ...]
    payload_source: str
    mail: MailTruth
    flows: FlowTruth
    dns: DnsTruth
    benign_ips: tuple[str, ...] = field(default=())

    @property
    def total_lines(self) -> int:
        return sum(self.lines.values())

    def summary(self) -> str:
        """A few human-readable lines describing the data set."""
        out = [
            f"{self.total_lines} lines, {self.start:%Y-%m-%d %H:%M} .. "
            f"{self.end:%Y-%m-%d %H:%M} UTC, in {self.root}"
        ]
        out += [
            f"  {name:<16} {self.lines[name]:>7} lines  ({fmt})"
            if name in self.lines
            else f"  {name:<16} {2 * len(self.dns.queries):>7} packets ({fmt})"
            for name, fmt in self.formats.items()
        ]
        out += [
            f"  attack {a.kind:<16} {a.lines:>5} lines from {', '.join(a.ips)}"
            for a in self.attacks.values()
        ]
        bf = self.brute_force
        out.append(
            f"  ssh brute force from {bf.ip}: {bf.failures} failed passwords, then "
            f"login as {bf.user!r} at {bf.success:%H:%M:%S} UTC"
        )
        m, f, d = self.mail, self.flows, self.dns
        out += [
            f"  imap password guessing from {m.guesser_ip}: {m.attempts} failed passwords "
            f"against {', '.join(m.mailboxes)}",
            f"  port scan from {f.scanner}: {f.scan_ports} ports on {', '.join(f.scan_targets)}",
            f"  beacon from {f.beacon_host} to {f.beacon_ip}:{f.beacon_port} every "
            f"~{f.beacon_period:.0f} s ({f.beacons} flows)",
            f"  syn flood on {f.ddos_target}:{f.ddos_port} from {len(f.ddos_sources)} addresses "
            f"at {datetime.fromtimestamp(int(f.ddos_start), UTC):%H:%M} UTC",
            f"  dga host {d.dga_host}: {len(d.dga_domains)} generated names, "
            f"{sum(q.rcode == 3 for q in d.queries if q.client == d.dga_host)} NXDOMAIN",
            f"  dns tunnel from {d.tunnel_host} via {d.tunnel_domain}: {d.tunnel_queries} queries",
            f"  known-bad domain {d.bad_domain} ({d.bad_domain_source}) looked up by "
            f"{d.bad_host} {d.bad_lookups} times",
        ]
        return "\n".join(out)


def _time_local(ts: float, offset_h: int) -> str:
    d = datetime.fromtimestamp(int(ts) + offset_h * 3600, UTC)
    return (
        f"{d.day:02d}/{MONTHS[d.month - 1]}/{d.year}:{d.hour:02d}:{d.minute:02d}:"
        f"{d.second:02d} {'+' if offset_h >= 0 else '-'}{abs(offset_h):02d}00"
    )


def _esc(s: str, apache: bool) -> str:
    """Escape ``"`` and ``\\`` the way nginx (``\\xHH``) or apache (backslash) log them."""
    if "\\" not in s and '"' not in s:
        return s
    if apache:
        return s.replace("\\", "\\\\").replace('"', '\\"')
    return s.replace("\\", "\\x5C").replace('"', "\\x22")


def format_hit(h: Hit) -> bytes:
    """One combined-format line: nginx prints ``0`` bytes, apache ``-``."""
    apache = h.server in APACHE
    # a raw ``request`` is already escaped as the server logged it
    req = h.request if h.request is not None else _esc(f"{h.method} {h.target} {h.proto}", apache)
    size = "-" if apache and h.size == 0 else str(h.size)
    ua = h.ua if isinstance(h.ua, bytes) else _esc(h.ua, apache).encode()
    head = (
        f'{h.ip} - - [{_time_local(h.ts, UTC_OFFSET_H[h.server])}] "{req}" '
        f'{h.status} {size} "{_esc(h.ref, apache)}" "'
    ).encode()
    return head + ua + (b'"\r\n' if h.crlf else b'"\n')


def _messy(rng: random.Random, start: float, end: float) -> list[Hit]:
    span = end - start
    token = "".join(
        rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for _ in range(7_900)
    )
    long_target = (
        f"/search?q=wireless+earbuds&utm_source=newsletter&utm_medium=email&utm_content={token}"
    )
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36"
    )
    return [
        Hit(
            start + span * 0.41,
            "web2",
            "117.136.38.201",
            "GET",
            "/products/1024",
            200,
            31_877,
            "-",
            GBK_UA,
            messy="invalid_utf8",
        ),
        Hit(
            start + span * 0.52,
            "web1",
            "73.162.41.9",
            "GET",
            long_target,
            200,
            28_410,
            "https://mail.google.com/",
            chrome,
            "HTTP/2.0",
            messy="long_url",
        ),
        Hit(
            start + span * 0.33,
            "web3",
            "86.150.77.12",
            "GET",
            "/docs/installation",
            200,
            17_214,
            "https://www.google.com/",
            chrome,
            messy="crlf",
            crlf=True,
        ),
        Hit(
            start + span * 0.61,
            "web1",
            "45.79.18.110",
            "-",
            "-",
            400,
            157,
            "-",
            "-",
            request=TLS_HELLO,
            messy="tls_garbage",
        ),
    ]


def _resolve_end(end: datetime | None) -> datetime:
    if end is None:
        return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)


def generate(
    out_dir: Path,
    *,
    hours: int = 24,
    seed: int = 7,
    end: datetime | None = None,
    payload_dir: Path | None = None,
    intel_file: Path | None = None,
) -> DemoFiles:
    """Write the demo logs under ``out_dir`` and return the ground truth.

    ``end`` defaults to the current hour (UTC, rounded down); naive datetimes are
    UTC. ``payload_dir`` defaults to the shared payload lists when found, else a
    built-in list is used (``DemoFiles.payload_source`` says which).
    ``intel_file`` (a URLhaus domain list) likewise gives the known-bad domain.
    """
    if hours < 1:
        raise ValueError("hours must be >= 1")
    end_dt = _resolve_end(end)
    start_dt = end_dt - timedelta(hours=hours)
    t0, t1 = start_dt.timestamp(), end_dt.timestamp()
    rng = random.Random(seed)
    payloads = load_payloads(rng, payload_dir if payload_dir is not None else default_payload_dir())
    hits = benign(rng, t0, t1)
    benign_ips = tuple(dict.fromkeys(h.ip for h in hits))
    hits += attacks(rng, t0, t1, payloads)
    hits += _messy(rng, t0, t1)
    auth_records, ssh = auth_log(rng, t0, t1)

    out_dir = Path(out_dir)
    per_file: dict[str, list[Hit]] = {rel: [] for rel in WEB_FILES.values()}
    for h in hits:
        if t0 <= h.ts < t1:
            per_file[WEB_FILES[h.server]].append(h)
    lines: dict[str, int] = {}
    found: dict[str, tuple[dict[str, None], int, dict[str, None]]] = {}
    messy: list[Messy] = []
    paths: list[Path] = []
    for rel, file_hits in per_file.items():
        file_hits.sort(key=lambda h: h.ts)
        for n, h in enumerate(file_hits, 1):
            if h.kind:
                ips, count, files = found.setdefault(h.kind, ({}, 0, {}))
                ips[h.ip] = None
                files[rel] = None
                found[h.kind] = (ips, count + 1, files)
            if h.messy:
                messy.append(Messy(h.messy, rel, n))
        paths.append(_write(out_dir / rel, [format_hit(h) for h in file_hits]))
        lines[rel] = len(file_hits)

    records = sorted((r for r in auth_records if t0 <= r[0] < t1), key=lambda r: r[0])
    failed = [r[0] for r in records if r[2] and b"Failed password" in r[1]]
    bf_lines = sum(1 for r in records if r[2])
    if bf_lines:
        found["ssh_brute_force"] = ({ssh.attacker_ip: None}, bf_lines, {AUTH_FILE: None})
    paths.append(_write(out_dir / AUTH_FILE, [r[1] for r in records]))
    lines[AUTH_FILE] = len(records)

    # each generator has its own stream, so adding one leaves the others' bytes alone
    mail_lines, mail = mail_log(random.Random(f"{seed}:mail"), t0, t1)
    flow_lines, flows = flows_csv(random.Random(f"{seed}:flows"), t0, t1)
    bad_file = intel_file if intel_file is not None else default_bad_domain_file()
    pcap, dns = dns_pcap(random.Random(f"{seed}:dns"), t0, t1, bad_file)
    for rel, body in ((MAIL_FILE, mail_lines), (FLOWS_FILE, flow_lines)):
        paths.append(_write(out_dir / rel, body))
        lines[rel] = len(body)
    (out_dir / DNS_FILE).write_bytes(pcap)
    paths.append(out_dir / DNS_FILE)

    return DemoFiles(
        root=out_dir,
        start=start_dt,
        end=end_dt,
        seed=seed,
        files=tuple(paths),
        formats=dict(FORMATS),
        lines=lines,
        attacks={k: Injected(k, tuple(v[0]), v[1], tuple(v[2])) for k, v in found.items()},
        brute_force=BruteForce(
            ssh.attacker_ip,
            ssh.user,
            len(failed),
            datetime.fromtimestamp(int(failed[0] if failed else 0), UTC),
            datetime.fromtimestamp(int(ssh.success), UTC),
            ssh.sudo_commands,
        ),
        messy=tuple(messy),
        ssh_noise_ips=ssh.noise_ips,
        payload_source=payloads.source,
        mail=mail,
        flows=flows,
        dns=dns,
        benign_ips=benign_ips,
    )


def _write(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return path
