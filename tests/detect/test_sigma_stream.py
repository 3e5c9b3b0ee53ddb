"""Rules in the stream: a real Pipeline into DuckDB, and `lightsoc ingest` + `search`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightsoc.detect import RuleSet
from lightsoc.enrich.chain import build_enrichers
from lightsoc.pipeline import Pipeline, Processor, SourceSpec
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.cli_helpers import in_process
from tests.test_pipeline import ListSource, raw_batch, wait_until

REPO_RULES = Path(__file__).resolve().parents[2] / "rules"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
LINES = [
    f'198.51.100.7 - - [29/Nov/2026:10:00:00 +0000] "GET /p?id=1%20union%20select%201,2 HTTP/1.1" 200 5 "-" "{BROWSER}"',
    '198.51.100.7 - - [29/Nov/2026:10:00:01 +0000] "GET /../../etc/passwd HTTP/1.1" 404 5 "-" "sqlmap/1.7"',
    f'198.51.100.8 - - [29/Nov/2026:10:00:02 +0000] "GET /index.html HTTP/1.1" 200 5 "-" "{BROWSER}"',
]


@pytest.fixture
def store(tmp_path):
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    yield s
    s.close()


def test_pipeline_stores_flagged_events(store):
    rules = RuleSet.load([REPO_RULES])
    src = ListSource("web", [raw_batch("web", LINES, 0)])
    specs = {"web": SourceSpec("web", "file", format="nginx_combined")}
    p = Pipeline(store, [src], specs, build_enrichers({}), detectors=[rules])
    p.start()
    wait_until(lambda: store.count() == 3, what="3 events")
    p.stop()
    rows = store.search(
        "_exists_:rule.name", fields=["url.original", "rule.name", "rule.id", "event.risk_score"]
    ).to_pylist()
    by_url = {r["url.original"]: r for r in rows}
    assert set(by_url) == {"/p?id=1%20union%20select%201,2", "/../../etc/passwd"}
    sqli = by_url["/p?id=1%20union%20select%201,2"]
    assert sqli["rule.name"] == ["SQL Injection Keywords In Request"]
    assert sqli["event.risk_score"] == 75.0
    both = by_url["/../../etc/passwd"]
    assert sorted(both["rule.name"]) == [
        "Path Traversal Or Local File Inclusion Attempt",
        "Web Vulnerability Scanner User Agent",
    ]
    assert len(both["rule.id"]) == 2 and both["event.risk_score"] == 75.0
    assert "detect" in p.metrics()["stages"]


def test_processor_without_detectors_is_unchanged():
    raw = raw_batch("web", LINES, 0)
    specs = {"web": SourceSpec("web", "file", format="nginx_combined")}
    plain = Processor(specs, []).process(raw).events
    flagged = Processor(specs, [], [RuleSet.load([REPO_RULES])]).process(raw).events
    assert plain["rule.name"].null_count() == 3
    assert flagged["rule.name"].null_count() == 1
    assert plain.drop("rule.name", "rule.id", "event.risk_score", "event.ingested").equals(
        flagged.drop("rule.name", "rule.id", "event.risk_score", "event.ingested")
    )
    assert "detect" not in Processor(specs, []).stages


def test_ingest_then_search_finds_flagged_events(tmp_path, capsys):
    log = tmp_path / "access.log"
    log.write_text("\n".join(LINES) + "\n")
    data = tmp_path / "data"
    code, _, err = in_process(capsys, "ingest", log, "--data-dir", data, "--json")
    assert code == 0, err
    code, out, err = in_process(
        capsys,
        "search",
        "_exists_:rule.name",
        "--data-dir",
        data,
        "--format",
        "json",
        "--since",
        "3650d",
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 2
    assert all(e["rule.name"] and e["event.risk_score"] >= 50 for e in events)


def test_imported_and_simple_rules_reach_the_stream(tmp_path, capsys):
    """`rules import` + `rules add` are loaded by `ingest` (runtime.build_pipeline)."""
    data = tmp_path / "data"
    rule_dir = tmp_path / "mine"
    rule_dir.mkdir()
    (rule_dir / "probe.yml").write_text(
        "title: Index Probe\nlogsource: {category: webserver}\n"
        "detection: {s: {cs-uri-stem: /index.html}, condition: s}\nlevel: critical\n"
    )
    assert in_process(capsys, "rules", "import", rule_dir, "--data-dir", data)[0] == 0
    code, _, err = in_process(
        capsys,
        "rules",
        "add",
        "--name",
        "from 198.51.100.7",
        "--field",
        "source.ip",
        "--equals",
        "198.51.100.7",
        "--severity",
        "low",
        "--data-dir",
        data,
    )
    assert code == 0, err
    code, _, err = in_process(
        capsys,
        "rules",
        "except",
        "from 198.51.100.7",
        "--field",
        "url.path",
        "--value",
        "/../../etc/passwd",
        "--data-dir",
        data,
    )
    assert code == 0, err
    log = tmp_path / "access.log"
    log.write_text("\n".join(LINES) + "\n")
    assert in_process(capsys, "ingest", log, "--data-dir", data, "--json")[0] == 0
    code, out, _ = in_process(
        capsys,
        "search",
        "_exists_:rule.name",
        "--data-dir",
        data,
        "--format",
        "json",
        "--since",
        "3650d",
        "--fields",
        "url.path,rule.name,event.risk_score",
    )
    got = {e["url.path"]: e for e in map(json.loads, out.splitlines())}
    assert got["/index.html"]["rule.name"] == ["Index Probe"]
    assert got["/index.html"]["event.risk_score"] == 90.0
    assert "from 198.51.100.7" in got["/p"]["rule.name"]
    assert "from 198.51.100.7" not in got["/../../etc/passwd"]["rule.name"]  # the exception


def test_a_failing_detector_keeps_the_batch_parsed():
    class Broken:
        def detect(self, df):  # noqa: ANN001, ANN202
            raise RuntimeError("rule bug")

    specs = {"web": SourceSpec("web", "file", format="nginx_combined")}
    proc = Processor(specs, [], [Broken(), RuleSet.load([REPO_RULES])])
    done = proc.process(raw_batch("web", LINES, 0))
    assert done.counters.parse_failures == 0
    assert done.events["rule.name"].null_count() == 1  # the next detector still ran
    assert proc.detect_errors == 1
