"""IOC loaders on the real files in ../shared/data/intel; counts checked against the files."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from lightsoc.enrich.intel_formats import (
    IntelFormatError,
    classify,
    detect_format,
    expand_paths,
    load_file,
    normalise_url,
)

INTEL = Path(__file__).resolve().parents[3] / "shared" / "data" / "intel"
URLHAUS = INTEL / "urlhaus"
MALTRAIL = INTEL / "maltrail"
STIX = INTEL / "stix21"
MISP = INTEL / "misp"


def data_lines(path: Path, comments: tuple[str, ...] = ("#",)) -> list[str]:
    """Non-empty, non-comment lines of a file."""
    lines = path.read_text(errors="replace").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith(comments)]


def test_classify_kinds() -> None:
    assert classify("1.2.3.4") == ("ip", "1.2.3.4")
    assert classify("1.2.3.4:8080") == ("ip", "1.2.3.4")
    assert classify("[2001:db8::1]:443") == ("ip", "2001:db8::1")
    assert classify("10.0.0.0/8") == ("cidr", "10.0.0.0/8")
    assert classify("10.1.2.3/32") == ("ip", "10.1.2.3")
    assert classify("2001:db8::/32") == ("cidr", "2001:db8::/32")
    assert classify("Evil.Example.COM") == ("domain", "evil.example.com")
    assert classify("HTTP://Evil.com:80/a/B?x=1#frag") == ("url", "evil.com/a/B?x=1")
    assert classify("evil.com/path") == ("url", "evil.com/path")
    assert classify("D41D8CD98F00B204E9800998ECF8427E") == (
        "hash",
        "d41d8cd98f00b204e9800998ecf8427e",
    )
    for junk in ("", "localhost", "1.2.3", "999.1.1.1", "not a domain", "http://", "a..b"):
        assert classify(junk) is None, junk


def test_normalise_url_meets_event_forms() -> None:
    assert normalise_url("http://x4z9arb.cn/4712/") == normalise_url("HTTP://X4Z9ARB.CN:80/4712/")
    assert normalise_url("https://a.com:8443/x") == "a.com:8443/x"
    assert normalise_url("a.com") == "a.com/"


def test_urlhaus_domain_lists_count_every_line() -> None:
    for name in ("urlhaus-filter-domains.txt", "urlhaus-filter-domains-online.txt"):
        path = URLHAUS / name
        res = load_file(path)
        assert res.format == "urlhaus"
        lines = data_lines(path)
        assert len(res.indicators) == len(lines) and res.junk == 0
        # hosts that are IP addresses become IP indicators, the rest domains
        ips = sum(bool(re.fullmatch(r"[\d.]+", ln)) for ln in lines)
        assert res.counts()["ip"] == ips
        assert res.counts()["domain"] == len(lines) - ips


def test_urlhaus_adblock_csv_and_suricata_agree() -> None:
    """The online list in three syntaxes gives one indicator set."""
    adblock = load_file(URLHAUS / "urlhaus-filter-online.txt")
    splunk = load_file(URLHAUS / "urlhaus-filter-splunk-online.csv")
    suricata = load_file(URLHAUS / "urlhaus-filter-suricata-online.rules")
    assert adblock.format == splunk.format == suricata.format == "urlhaus"
    assert len(adblock.indicators) == len(data_lines(URLHAUS / "urlhaus-filter-online.txt", ("!",)))
    rows = data_lines(URLHAUS / "urlhaus-filter-splunk-online.csv")[1:]  # minus the header
    assert len(splunk.indicators) == len(rows)
    rules = data_lines(URLHAUS / "urlhaus-filter-suricata-online.rules")
    assert len(suricata.indicators) == len(rules)
    assert adblock.junk == splunk.junk == suricata.junk == 0
    sets = [{(i.kind, i.value) for i in r.indicators} for r in (adblock, splunk, suricata)]
    # the adblock list writes one host with a trailing '.'; all else is identical
    assert len(sets[0] ^ sets[1]) <= 2 and sets[1] == sets[2]
    with_path = [
        r
        for r in csv.DictReader(rows_with_header(URLHAUS / "urlhaus-filter-splunk-online.csv"))
        if r["path"]
    ]
    assert splunk.counts()["url"] == len(with_path)


def rows_with_header(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]


def test_urlhaus_csv_as_generic_csv_detects_the_host_column() -> None:
    res = load_file(URLHAUS / "urlhaus-filter-splunk-online.csv", "csv")
    assert res.format == "csv"
    rows = rows_with_header(URLHAUS / "urlhaus-filter-splunk-online.csv")[1:]
    assert len(res.indicators) == len(rows) and res.junk == 0
    by_index = load_file(URLHAUS / "urlhaus-filter-splunk-online.csv", "csv", "0")
    assert [i.value for i in by_index.indicators] == [i.value for i in res.indicators]
    with pytest.raises(IntelFormatError, match="no CSV column"):
        load_file(URLHAUS / "urlhaus-filter-splunk-online.csv", "csv", "nope")


def test_maltrail_trail_files() -> None:
    cidr = load_file(MALTRAIL / "mass_scanner_cidr.txt")
    assert cidr.format == "maltrail"
    lines = data_lines(MALTRAIL / "mass_scanner_cidr.txt")
    assert len(cidr.indicators) == len(lines) and cidr.junk == 0
    assert cidr.counts()["cidr"] == sum(
        "/" in ln.split("#")[0] and not ln.split("#")[0].strip().endswith("/32") for ln in lines
    )
    assert all(i.label == "mass_scanner_cidr" for i in cidr.indicators)
    files = expand_paths([MALTRAIL / "malware"])
    assert len(files) == len(list((MALTRAIL / "malware").glob("*.txt")))
    total = loaded = junk = skipped = 0
    for f in files:
        res = load_file(f)
        assert res.format == "maltrail", f
        total += len(data_lines(f))
        loaded += len(res.indicators)
        junk += res.junk
        skipped += res.skipped
    # every data line is an indicator, a skipped URL-path trail, or counted junk
    assert loaded + junk + skipped == total
    assert loaded > 0.9 * total and junk < 0.001 * total


def stix_comparisons(path: Path) -> tuple[int, int]:
    """(simple `=` comparisons on supported paths, AND-patterns) counted from the raw JSON."""
    simple = anded = 0
    for obj in json.loads(path.read_text())["objects"]:
        if obj["type"] != "indicator":
            continue
        if " AND " in obj["pattern"]:
            anded += 1
            continue
        simple += len(
            re.findall(
                r"(ipv4-addr|ipv6-addr|domain-name|url):value = |file:hashes\.", obj["pattern"]
            )
        )
    return simple, anded


@pytest.mark.parametrize("path", sorted(STIX.glob("*.json")), ids=lambda p: p.name)
def test_stix_bundles(path: Path) -> None:
    res = load_file(path)
    assert res.format == "stix"
    simple, anded = stix_comparisons(path)
    assert len(res.indicators) + res.junk == simple
    assert res.skipped >= anded


def test_stix_details() -> None:
    apt1 = load_file(STIX / "apt1.json")
    assert apt1.counts() == {"ip": 0, "cidr": 4, "domain": 3, "url": 0, "hash": 3}
    assert apt1.skipped == 2  # the two x509 AND patterns
    ivy = load_file(STIX / "poisonivy.json")
    assert ivy.junk == 1 and ivy.junk_samples == ["domain autuo.xicp.net"]  # a typo upstream
    assert ("ip", "113.10.246.30") in {(i.kind, i.value) for i in ivy.indicators}  # from an OR
    sha = load_file(STIX / "malware-indicator-for-file-hash.json")
    assert [(i.kind, i.value[:8]) for i in sha.indicators] == [("hash", "ef537f25")]
    url = load_file(STIX / "indicator-for-malicious-url.json")
    assert [i.value for i in url.indicators] == ["x4z9arb.cn/4712/"]


def misp_expected(path: Path) -> int:
    """to_ids attributes of the network/hash types, composite types split, from the raw JSON."""
    doc = json.loads(path.read_text())
    event = doc.get("Event", doc)
    attrs = list(event.get("Attribute", []))
    for obj in event.get("Object", []) or []:
        attrs.extend(obj.get("Attribute", []))
    wanted = {
        "ip-src",
        "ip-dst",
        "domain",
        "hostname",
        "url",
        "uri",
        "md5",
        "sha1",
        "sha256",
        "sha512",
    }
    return sum(
        sum(t in wanted for t in a["type"].split("|"))
        for a in attrs
        if a.get("to_ids") in (True, 1, "1")
    )


@pytest.mark.parametrize("path", sorted(MISP.glob("*.json")), ids=lambda p: p.name)
def test_misp_events(path: Path) -> None:
    res = load_file(path)
    assert res.format == "misp"
    assert len(res.indicators) + res.junk == misp_expected(path)
    assert res.junk <= 1  # long_event.json has a url attribute "107.183.86"


def test_junk_filled_file_counts_not_fails(tmp_path: Path) -> None:
    good = data_lines(URLHAUS / "urlhaus-filter-domains-online.txt")[:50]
    junk = ["%%%%", "not an ioc at all", "999.999.1.1", "\x00\x01binary", "http://", "a" * 300]
    mixed = []
    for i, line in enumerate(good):
        mixed.append(line)
        mixed.append(junk[i % len(junk)])
    path = tmp_path / "junk.txt"
    path.write_bytes(("\n".join(mixed) + "\n").encode() + b"\xff\xfe bad utf8\n")
    res = load_file(path, "text")
    assert len(res.indicators) == 50
    assert res.junk == 51
    assert len(res.junk_samples) == 5


def test_detect_format_and_bad_json(tmp_path: Path) -> None:
    assert detect_format(STIX / "apt1.json", (STIX / "apt1.json").read_text()) == "stix"
    assert (
        detect_format(MISP / "existing_event.json", (MISP / "existing_event.json").read_text())
        == "misp"
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(IntelFormatError, match="bad.json"):
        load_file(bad)
    with pytest.raises(IntelFormatError, match="not a MISP event"):
        load_file(STIX / "apt1.json", "misp")


def test_elastic_rule_export_ndjson() -> None:
    path = INTEL / "acsc-2020-008-IOCs.ndjson"
    res = load_file(path)
    assert res.format == "ecs"
    rules = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    queries = [r["query"] for r in rules if "query" in r]
    ips = {
        m
        for q in queries
        for m in re.findall(r'(?:source|destination)\.ip:\s*"?([\d.]+)"?', q)
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", m)
    }
    assert {i.value for i in res.indicators if i.kind == "ip"} == ips
    assert {i.value for i in res.indicators if i.kind == "domain"} == {
        "mailguardonline.net",
        "cybersecuritiesinc.net",
    }
    hashes = {
        m.lower() for q in queries for m in re.findall(r'hash\.\w+:\s*"?([0-9a-fA-F]{32,64})', q)
    }
    assert {i.value for i in res.indicators if i.kind == "hash"} == hashes
    assert "127.0.01" in res.junk_samples  # the advisory's own typo, counted not fatal
    assert all(i.label and i.label.startswith("[IOC]") for i in res.indicators)
