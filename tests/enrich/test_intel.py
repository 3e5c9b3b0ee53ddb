"""Intel storage and stream matching: real IOC files, real parsed events, real stores."""

from __future__ import annotations

import functools
import ipaddress
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from lightsoc.config import load_config
from lightsoc.enrich.intel import IntelEnricher
from lightsoc.enrich.intel_formats import Indicator, load_file
from lightsoc.ingest import ingest
from lightsoc.runtime import open_stores
from lightsoc.store.state import StateStore
from lightsoc.store.state_intel import IntelStore
from lightsoc.timeutil import since_range

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
INTEL = DATA / "intel"
SURICATA = DATA / "flows" / "stratosphere" / "test6-malicious.suricata.json"


@pytest.fixture
def state(state_url: str) -> StateStore:
    s = StateStore(state_url)
    yield s
    s.close()


def test_replace_source_is_one_transaction_and_bumps_version(state: StateStore) -> None:
    store = IntelStore(state)
    assert store.version() == 0 and store.sources() == []
    res = load_file(INTEL / "maltrail" / "mass_scanner_cidr.txt")
    n = store.replace_source("scanners", res.format, "Low", res.indicators, files=[res.as_dict()])
    assert n == len({(i.kind, i.value) for i in res.indicators})
    assert store.version() == 1
    [src] = store.sources()
    assert src["name"] == "scanners" and src["indicators"] == n and src["active"] == n
    assert src["by_kind"]["cidr"] == len({i.value for i in res.indicators if i.kind == "cidr"})
    # a reload replaces, never appends
    store.replace_source("scanners", "text", "High", [Indicator("ip", "192.0.2.1")])
    [src] = store.sources()
    assert src["indicators"] == 1 and src["confidence"] == "High"
    assert [(r.kind, r.value) for r in store.active_indicators()] == [("ip", "192.0.2.1")]
    assert store.version() == 2
    with pytest.raises(ValueError, match="confidence"):
        store.replace_source("x", "text", "Huge", [])
    assert store.delete_source("scanners") and store.sources() == []


def test_expiry_at_match_time(state: StateStore) -> None:
    store = IntelStore(state)
    now = time.time()
    store.replace_source("old", "text", "High", [Indicator("ip", "198.51.100.7")], expires=now - 1)
    store.replace_source(
        "new", "text", "Low", [Indicator("ip", "198.51.100.7")], expires=now + 3600
    )
    store.replace_source(
        "stix",
        "stix",
        "Medium",
        # a STIX valid_until in the past: that indicator is inactive, its source is not
        [Indicator("domain", "evil.example", expires=datetime(2000, 1, 1, tzinfo=UTC))],
    )
    assert not any(r.source == "stix" for r in store.active_indicators())
    assert {s["name"]: s["expired"] for s in store.sources()} == {
        "new": False,
        "old": True,
        "stix": False,
    }
    enricher = IntelEnricher({"state": state})
    out = enricher.enrich(pl.DataFrame({"source.ip": ["198.51.100.7"]}))
    # the expired High source is gone; the Low one still matches
    assert out["threat.indicator.provider"].to_list() == ["new"]
    assert out["event.risk_score"].to_list() == [25.0]
    # the next expiry is when the matcher reloads by itself
    assert store.next_expiry(now) == pytest.approx(now + 3600, abs=2)
    enricher._next_expiry = time.time() - 1  # as if that hour had passed
    store.replace_source("new", "text", "Low", [Indicator("ip", "198.51.100.7")], expires=now - 1)
    enricher._version = store.version()  # no version change: the expiry alone forces the reload
    out = enricher.enrich(pl.DataFrame({"source.ip": ["198.51.100.7"]}))
    assert "threat.indicator.provider" not in out.columns


def test_matching_fields_and_precedence(state: StateStore) -> None:
    store = IntelStore(state)
    urlhaus = load_file(INTEL / "urlhaus" / "urlhaus-filter-online.txt")
    store.replace_source("urlhaus", urlhaus.format, "High", urlhaus.indicators)
    cidr = load_file(INTEL / "maltrail" / "mass_scanner_cidr.txt")
    store.replace_source("scanners", cidr.format, "Low", cidr.indicators)
    store.replace_source(
        "v6", "text", "Medium", [Indicator("cidr", "2001:db8::/32"), Indicator("ip", "2001:db8::5")]
    )
    domains = [i.value for i in urlhaus.indicators if i.kind == "domain"]
    ips = [i.value for i in urlhaus.indicators if i.kind == "ip"]
    urls = [i.value for i in urlhaus.indicators if i.kind == "url" and "?" not in i.value]
    scanner_net = next(
        i.value for i in cidr.indicators if i.kind == "cidr" and i.value.endswith("/24")
    )
    inside = str(ipaddress.ip_network(scanner_net).network_address + 77)
    host, _, path = urls[0].partition("/")
    df = pl.DataFrame(
        {
            "source.ip": [
                inside,
                "10.0.0.1",
                "10.0.0.2",
                "10.0.0.3",
                "2001:db8::9",
                "10.0.0.4",
                None,
            ],
            "destination.ip": ["10.9.9.9", ips[0], None, None, "2001:db8::5", None, None],
            "dns.question.name": [
                None,
                None,
                f"deep.sub.{domains[0]}.",
                domains[1].upper(),
                None,
                None,
                "example.org",
            ],
            "url.domain": [None, None, None, None, None, host, None],
            "url.original": [None, None, None, None, None, f"/{path}", None],
            "rule.name": [None, ["sigma:x"], None, None, None, None, None],
            "event.risk_score": [None, 90.0, None, None, None, None, None],
        },
        schema_overrides={"rule.name": pl.List(pl.String)},
    )
    e = IntelEnricher({"state": state})
    out = e.enrich(df)
    assert out.height == df.height
    assert out["threat.enrichments.matched.field"].to_list() == [
        "source.ip",
        "destination.ip",
        "dns.question.name",
        "dns.question.name",
        "destination.ip",  # the exact IPv6 beats the /32 around it
        "url.original",
        None,
    ]
    assert out["threat.indicator.name"].to_list()[:4] == [
        scanner_net,
        ips[0],
        domains[0],
        domains[1],
    ]
    assert out["threat.indicator.type"].to_list()[:5] == [
        "ipv4-addr",
        "ipv4-addr",
        "domain-name",
        "domain-name",
        "ipv6-addr",
    ]
    assert out["threat.enrichments.matched.atomic"][2] == f"deep.sub.{domains[0]}."
    assert out["threat.indicator.confidence"].to_list()[:3] == ["Low", "High", "High"]
    assert out["threat.feed.name"][0] == "mass_scanner_cidr"
    assert out["rule.name"].to_list() == [
        ["intel:scanners"],
        ["sigma:x", "intel:urlhaus"],
        ["intel:urlhaus"],
        ["intel:urlhaus"],
        ["intel:v6"],
        ["intel:urlhaus"],
        None,
    ]
    assert out["event.risk_score"].to_list() == [25.0, 90.0, 75.0, 75.0, 50.0, 75.0, None]
    # a second batch with the same values costs no lookups
    before = e.lookups
    e.enrich(df)
    assert e.lookups == before


def test_reload_is_picked_up(state: StateStore) -> None:
    store = IntelStore(state)
    e = IntelEnricher({"state": state, "reload_seconds": 0})
    batch = pl.DataFrame({"dns.question.name": ["a.evil.example", "b.good.example"]})
    assert e.enrich(batch).columns == batch.columns  # nothing loaded: untouched
    store.replace_source("feed", "text", "Medium", [Indicator("domain", "evil.example")])
    assert e.enrich(batch)["rule.name"].to_list() == [["intel:feed"], None]
    store.replace_source("feed", "text", "Medium", [Indicator("domain", "good.example")])
    assert e.enrich(batch)["rule.name"].to_list() == [None, ["intel:feed"]]
    # with the default poll interval a change is seen at the next poll, not before
    slow = IntelEnricher({"state": state, "reload_seconds": 3600})
    slow.enrich(batch)
    store.replace_source("feed", "text", "Medium", [Indicator("domain", "evil.example")])
    assert slow.enrich(batch)["rule.name"].to_list() == [None, ["intel:feed"]]
    slow._checked = 0.0
    assert slow.enrich(batch)["rule.name"].to_list() == [["intel:feed"], None]


def test_allowed_rows_are_not_looked_up(state: StateStore) -> None:
    IntelStore(state).replace_source("feed", "text", "High", [Indicator("ip", "203.0.113.9")])
    e = IntelEnricher({"state": state})
    df = pl.DataFrame({"source.ip": ["203.0.113.9", "203.0.113.9"], "_allowed": [True, False]})
    out = e.enrich(df)
    assert out["rule.name"].to_list() == [None, ["intel:feed"]]


# -- through the real pipeline and DuckDB store ----------------------------------------


def _suricata_ips(limit: int | None = None) -> list[tuple[str, str | None, str | None, str | None]]:
    rows = []
    for line in SURICATA.read_text().splitlines()[:limit]:
        ev = json.loads(line)
        rows.append(
            (ev["event_type"], ev.get("src_ip"), ev.get("dest_ip"), ev.get("dns", {}).get("rrname"))
        )
    return rows


def test_pipeline_stores_threat_fields_on_real_events(tmp_path: Path) -> None:
    """Suricata eve.json of a real capture against maltrail's real scanner lists."""
    config = load_config(None, data_dir_override=tmp_path)
    stores = open_stores(tmp_path, config)
    try:
        intel = IntelStore(stores.state)
        exact = load_file(INTEL / "maltrail" / "mass_scanner.txt")
        nets = load_file(INTEL / "maltrail" / "mass_scanner_cidr.txt")
        intel.replace_source("maltrail", "maltrail", "Medium", exact.indicators + nets.indicators)
        # a domain list: the parent of names the capture resolved
        intel.replace_source("dyndns", "text", "High", [Indicator("domain", "myedimax.com")])
        summary = ingest(config, stores, [SURICATA])
        assert summary.events == len(SURICATA.read_text().splitlines())
        # built-in stream rules flag events too: take those intel matched
        flagged = stores.events.search(
            "_exists_:threat.indicator.provider", since_range("all"), limit=100_000
        ).to_pylist()
    finally:
        stores.close()
    # what should match, computed here from the files with ipaddress
    ips = {i.value for i in exact.indicators if i.kind == "ip"}
    cidrs = [ipaddress.ip_network(i.value) for i in nets.indicators if i.kind == "cidr"]
    ips |= {i.value for i in nets.indicators if i.kind == "ip"}

    @functools.cache
    def bad(ip: str | None) -> bool:
        if not ip:
            return False
        return ip in ips or any(ipaddress.ip_address(ip) in n for n in cidrs if n.version == 4)

    expected_ip = sum(bad(s) or bad(d) for _, s, d, _ in _suricata_ips())
    expected_dns = sum(bool(q) and q.endswith(".myedimax.com") for *_, q in _suricata_ips())
    assert expected_ip > 50 and expected_dns > 100
    by_provider: dict[str, int] = {}
    for ev in flagged:
        by_provider[ev["threat.indicator.provider"]] = (
            by_provider.get(ev["threat.indicator.provider"], 0) + 1
        )
        assert f"intel:{ev['threat.indicator.provider']}" in ev["rule.name"]
        assert ev["event.risk_score"] >= (
            75.0 if ev["threat.indicator.provider"] == "dyndns" else 50.0
        )
        assert ev["threat.enrichments.matched.atomic"]
    assert by_provider == {"maltrail": expected_ip, "dyndns": expected_dns}
    dns = [ev for ev in flagged if ev["threat.indicator.provider"] == "dyndns"]
    assert {ev["threat.enrichments.matched.field"] for ev in dns} == {"dns.question.name"}
    assert {ev["threat.indicator.name"] for ev in dns} == {"myedimax.com"}


@pytest.mark.parametrize("allow", [False, True], ids=["plain", "allow-listed"])
def test_pipeline_dns_names_from_urlhaus(tmp_path: Path, allow: bool) -> None:
    """DNS events (Suricata eve lines) asking for URLhaus domains and their subdomains.

    With allow lists (one name from lightsoc.yml `detect.allow`, one from the
    state store) those rows are neither matched nor looked up.
    """
    online = INTEL / "urlhaus" / "urlhaus-filter-domains-online.txt"
    res = load_file(online)
    domains = [i.value for i in res.indicators if i.kind == "domain"][:20]
    names = [*domains[:10], *(f"cdn{i}.{d}" for i, d in enumerate(domains[10:])), "www.example.com"]
    lines = [
        json.dumps(
            {
                "timestamp": "2024-05-01T10:00:00.000000+0000",
                "event_type": "dns",
                "src_ip": "192.168.1.20",
                "src_port": 40000 + i,
                "dest_ip": "192.168.1.1",
                "dest_port": 53,
                "proto": "UDP",
                "dns": {"type": "query", "id": i, "rrname": name, "rrtype": "A"},
            }
        )
        for i, name in enumerate(names)
    ]
    eve = tmp_path / "eve.json"
    eve.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    cfg = tmp_path / "lightsoc.yml"
    cfg.write_text(
        f"data_dir: {data}\n"
        + (f"detect:\n  allow:\n    dns.question.name: ['{domains[0]}']\n" if allow else "")
    )
    config = load_config(cfg)
    stores = open_stores(data, config)
    try:
        intel = IntelStore(stores.state)
        intel.replace_source("urlhaus", res.format, "High", res.indicators)
        if allow:
            intel.add_allow("dns.question.registered_domain", domains[11])
        ingest(config, stores, [eve])
        flagged = stores.events.search(
            "_exists_:threat.indicator.name", since_range("all"), limit=100
        ).to_pylist()
    finally:
        stores.close()
    expected = [n for i, n in enumerate(names[:20]) if not (allow and i in (0, 11))]
    assert sorted(ev["dns.question.name"] for ev in flagged) == sorted(expected)
    assert {ev["threat.indicator.name"] for ev in flagged} == {
        d for i, d in enumerate(domains) if not (allow and i in (0, 11))
    }


def test_background_reload_keeps_matching_with_the_old_index(state: StateStore) -> None:
    store = IntelStore(state)
    store.replace_source("feed", "text", "Medium", [Indicator("domain", "evil.example")])
    e = IntelEnricher({"state": state, "reload_seconds": 0, "background": True})
    batch = pl.DataFrame({"dns.question.name": ["a.evil.example", "b.good.example"]})
    assert e.enrich(batch)["rule.name"].to_list() == [["intel:feed"], None]  # first load: waited
    store.replace_source("feed", "text", "Medium", [Indicator("domain", "good.example")])
    out = e.enrich(batch)  # starts the rebuild; this batch may see either index, never a mix
    assert out["rule.name"].to_list() in ([["intel:feed"], None], [None, ["intel:feed"]])
    assert e._building is not None
    e._building.join(60)
    assert e.enrich(batch)["rule.name"].to_list() == [None, ["intel:feed"]]
