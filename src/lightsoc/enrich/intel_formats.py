"""IOC file loaders: plain text, CSV, STIX 2.1, MISP JSON, maltrail trails, URLhaus lists.

Every loader turns a file into `Indicator`s of five kinds — `ip`, `cidr`,
`domain`, `url`, `hash` — normalised the way the stream matcher compares them
(`classify`). A line or entry that is not a usable indicator is counted, never
fatal: `junk` for garbage, `skipped` for well-formed entries of a kind
lightsoc does not match (MISP `link`/`text`, STIX `x509` patterns, maltrail
URL-path trails, attributes without `to_ids`). `load_file` picks the format
from the content when asked for `auto`. The STIX and MISP loaders are in
`intel_formats_json`, the ECS rule loader in `intel_ecs`.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lightsoc.enrich.domains import normalise as normalise_host

FORMATS = ("auto", "text", "csv", "stix", "misp", "maltrail", "urlhaus", "ecs")
KINDS = ("ip", "cidr", "domain", "url", "hash")
#: ECS `threat.indicator.type` per kind (STIX cyber-observable names)
ECS_TYPE = {
    "ip": "ipv4-addr",
    "cidr": "ipv4-addr",
    "domain": "domain-name",
    "url": "url",
    "hash": "file",
}
_HEX = re.compile(r"[0-9a-fA-F]+")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_SURICATA_HOST = re.compile(r'http\.host;\s*content:"([^"]+)"')
_SURICATA_URI = re.compile(r'http\.uri;\s*content:"([^"]+)"')
_HASH_LENGTHS = (32, 40, 64, 128)
_SAMPLES = 5
# fast paths for the two shapes that make up nearly all of a big list
_V4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_DOMAIN = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z][a-z0-9-]{0,62}")
_V6_PORT = re.compile(r"\[([0-9a-fA-F:.]+)\](?::\d+)?")


class IntelFormatError(ValueError):
    """A file that is not in the format it was loaded as (the whole file is unusable)."""


@dataclass(frozen=True)
class Indicator:
    kind: str
    value: str
    label: str | None = None  # family / event / indicator name, shown as threat.feed.name
    expires: datetime | None = None  # per-indicator end of validity (STIX valid_until)


@dataclass
class LoadResult:
    """What one file gave: indicators plus junk/skipped counts and a few junk samples."""

    path: str
    format: str
    indicators: list[Indicator] = field(default_factory=list)
    junk: int = 0
    skipped: int = 0
    junk_samples: list[str] = field(default_factory=list)

    def add(self, value: str, label: str | None = None, expires: datetime | None = None) -> bool:
        """Classify `value` and keep it, or count it as junk; True if kept."""
        got = classify(value)
        if got is None:
            self.bad(value)
            return False
        self.indicators.append(Indicator(got[0], got[1], label, expires))
        return True

    def bad(self, value: str) -> None:
        self.junk += 1
        if len(self.junk_samples) < _SAMPLES:
            self.junk_samples.append(value[:120])

    def counts(self) -> dict[str, int]:
        by_kind = dict.fromkeys(KINDS, 0)
        for ind in self.indicators:
            by_kind[ind.kind] += 1
        return by_kind

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "loaded": len(self.indicators),
            "junk": self.junk,
            "skipped": self.skipped,
            "by_kind": self.counts(),
            "junk_samples": self.junk_samples,
        }


# -- normalisation -------------------------------------------------------------


def normalise_ip(text: str) -> str | None:
    """Canonical text of an IP address (IPv4-mapped IPv6 unwrapped); None if not one."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def normalise_url(text: str) -> str | None:
    """`host[:port]/path[?query]` lower-cased host, no scheme/fragment/default port.

    Light on purpose: the same function keys indicators and events, so
    `HTTP://Evil.com:80/a` and `http://evil.com/a` meet; paths stay case-sensitive.
    """
    s = text.strip()
    if not s or any(c.isspace() for c in s):
        return None
    if not _SCHEME.match(s):
        s = "http://" + s
    try:
        parts = urlsplit(s)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host or (normalise_host(host) is None and normalise_ip(host.strip("[]")) is None):
        return None
    if port is not None and port not in (80, 443):
        host = f"{host}:{port}"
    path = parts.path or "/"
    return f"{host}{path}?{parts.query}" if parts.query else f"{host}{path}"


def classify(token: str) -> tuple[str, str] | None:
    """(kind, normalised value) of one IOC string, or None for junk."""
    s = token.strip().strip("\"'")
    if not s:
        return None
    if _V4.fullmatch(s):
        return ("ip", s)
    low = s.lower()
    if _DOMAIN.fullmatch(low) and len(low) <= 253:
        return ("domain", low)
    m = _V6_PORT.fullmatch(s)
    if m:
        ip = normalise_ip(m.group(1))
        return ("ip", ip) if ip else None
    if _SCHEME.match(s):
        url = normalise_url(s)
        return ("url", url) if url else None
    ip = normalise_ip(s)
    if ip is not None:
        return ("ip", ip)
    if "/" in s:
        head = s.split("/", 1)[0]
        if normalise_ip(head) is not None and s.split("/", 1)[1].isdigit():
            try:
                net = ipaddress.ip_network(s, strict=False)
            except ValueError:
                return None
            if net.num_addresses == 1:
                return ("ip", str(net.network_address))
            return ("cidr", str(net))
        url = normalise_url(s)  # host/path without a scheme
        return ("url", url) if url else None
    if len(s) in _HASH_LENGTHS and _HEX.fullmatch(s):
        return ("hash", s.lower())
    if s.count(":") == 1:  # ip:port (maltrail) — the port does not narrow an IP match
        host, port = s.split(":")
        if port.isdigit():
            ip = normalise_ip(host)
            if ip is not None:
                return ("ip", ip)
    host = normalise_host(s)
    if host is None or "." not in host:
        return None
    return ("domain", host)


# -- line formats --------------------------------------------------------------


def _lines(text: str) -> Iterator[str]:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "!", ";", "//")):
            yield line


def load_text(text: str, path: str = "") -> LoadResult:
    """One IOC per line: IP, CIDR, domain, URL or hash; `#` comments, inline too."""
    res = LoadResult(path, "text")
    for line in _lines(text):
        value = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        res.add(value.split()[0] if value else line)
    return res


def load_maltrail(text: str, path: str = "") -> LoadResult:
    """Maltrail trails: IP, IP:port, CIDR, domain, URL; `/path` trails are skipped."""
    res = LoadResult(path, "maltrail")
    label = Path(path).stem or None
    for line in _lines(text):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        if value.startswith("/"):  # URL-path trails need the HTTP matcher maltrail has
            res.skipped += 1
            continue
        res.add(value, label)
    return res


def load_urlhaus(text: str, path: str = "") -> LoadResult:
    """urlhaus-filter lists: hosts, adblock `||host/path^$all`, Splunk CSV, Suricata rules."""
    if text.lstrip("#! \n").startswith('"host"') or '"host","path"' in text[:2000]:
        return _urlhaus_csv(text, path)
    res = LoadResult(path, "urlhaus")
    for line in _lines(text):
        value = line
        if value.startswith("alert "):  # the Suricata ruleset: host (+ uri) per rule
            host = _SURICATA_HOST.search(value)
            uri = _SURICATA_URI.search(value)
            if host is None:
                res.bad(value)
            else:
                res.add(host.group(1) + (uri.group(1) if uri else ""))
            continue
        if value.startswith("||"):
            value = value[2:].split("^", 1)[0]
        elif value.startswith(("@@", "[")):  # exceptions / section headers
            res.skipped += 1
            continue
        res.add(value)
    return res


def _urlhaus_csv(text: str, path: str) -> LoadResult:
    res = LoadResult(path, "urlhaus")
    body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    for row in csv.DictReader(io.StringIO(body)):
        host = (row.get("host") or "").strip()
        sub = (row.get("path") or "").strip()
        if not host:
            res.bad(str(row))
            continue
        res.add(host + sub if sub else host)
    return res


_CSV_NAMES = ("indicator", "ioc", "value", "observable", "host", "domain", "ip", "url")


def load_csv(text: str, path: str = "", column: str | int | None = None) -> LoadResult:
    """A CSV with one IOC column: `column` (name or 0-based index) or detected.

    Detection: a header cell named like an IOC column, else the column whose
    values classify as indicators most often in the first 200 rows.
    """
    res = LoadResult(path, "csv")
    body = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not body:
        return res
    try:
        dialect: Any = csv.Sniffer().sniff(body[0], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(body, dialect))
    header = [c.strip().lower() for c in rows[0]]
    has_header = sum(classify(c) is not None for c in rows[0]) == 0
    data = rows[1:] if has_header else rows
    idx: int | None = None
    if isinstance(column, int) or (isinstance(column, str) and column.isdigit()):
        idx = int(column)
    elif column:
        if column.lower() not in header:
            raise IntelFormatError(f"{path}: no CSV column named {column!r} (have {header})")
        idx = header.index(column.lower())
    elif has_header:
        idx = next((header.index(n) for n in _CSV_NAMES if n in header), None)
    if idx is None:
        width = max(len(r) for r in data[:200]) if data else 0
        hits = [
            sum(len(r) > i and classify(r[i]) is not None for r in data[:200]) for i in range(width)
        ]
        idx = max(range(width), key=hits.__getitem__) if width else 0
    for row in data:
        if len(row) <= idx:
            res.bad(",".join(row))
        else:
            res.add(row[idx])
    return res


# -- dispatch --------------------------------------------------------------------


def detect_format(path: Path, text: str) -> str:
    """Guess a file's format from its name and first bytes."""
    head = text[:4096]
    stripped = head.lstrip()
    if stripped.startswith(("{", "[")):
        from lightsoc.enrich.intel_ecs import looks_like_ecs_rules

        if looks_like_ecs_rules(head):
            return "ecs"
        try:
            doc = json.loads(text)
        except ValueError:
            raise IntelFormatError(f"{path}: looks like JSON but does not parse") from None
        if isinstance(doc, dict) and (doc.get("type") == "bundle" or "objects" in doc):
            return "stix"
        return "misp"
    low = head.lower()
    if "maltrail" in low:  # the copyright header of every trail file
        return "maltrail"
    if "urlhaus" in low or any(ln.startswith("||") for ln in head.splitlines()):
        return "urlhaus"
    if path.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    return "text"


def load_text_as(fmt: str, text: str, path: Path, csv_column: str | None = None) -> LoadResult:
    """Load `text` (the content of `path`) as format `fmt` (`auto` detects)."""
    if fmt not in FORMATS:
        raise IntelFormatError(f"unknown intel format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "auto":
        fmt = detect_format(path, text)
    name = str(path)
    if fmt in ("stix", "misp"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise IntelFormatError(f"{name}: invalid JSON: {exc}") from None
        from lightsoc.enrich.intel_formats_json import load_misp, load_stix

        return load_stix(doc, name) if fmt == "stix" else load_misp(doc, name)
    if fmt == "ecs":
        from lightsoc.enrich.intel_ecs import load_ecs_rules

        return load_ecs_rules(text, name)
    if fmt == "csv":
        return load_csv(text, name, csv_column)
    if fmt == "maltrail":
        return load_maltrail(text, name)
    if fmt == "urlhaus":
        return load_urlhaus(text, name)
    return load_text(text, name)


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories (maltrail `trails/`) give their files, sorted, recursively."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file() and not f.name.startswith(("LICENSE", "."))
                )
            )
        else:
            out.append(p)
    return out


def load_file(path: Path, fmt: str = "auto", csv_column: str | None = None) -> LoadResult:
    """Read and parse one IOC file; undecodable bytes are replaced (and then count as junk)."""
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    return load_text_as(fmt, text, Path(path), csv_column)
