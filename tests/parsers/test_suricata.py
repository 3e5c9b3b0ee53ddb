"""Suricata eve.json: real lines from the Stratosphere test6 capture, counts, bad lines."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import get_parser
from lightsoc.parsers.base import OK
from lightsoc.parsers.suricata import SuricataEveParser
from lightsoc.schema import polars_type

EVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "flows" / "stratosphere"
EVE = EVE / "test6-malicious.suricata.json"


def eve_lines() -> list[str]:
    if not EVE.exists():
        pytest.fail(f"test data missing: {EVE}")
    return EVE.read_text().splitlines()


def run(lines: list[str]) -> pl.DataFrame:
    return SuricataEveParser().parse(pl.Series(lines, dtype=pl.String))


def first(lines: list[str], text: str) -> str:
    return next(line for line in lines if text in line)


def test_registered() -> None:
    assert registry.get("parsers", "suricata_eve") is SuricataEveParser


def test_counts_per_event_type_match_grep() -> None:
    lines = eve_lines()
    out = run(lines)
    assert out.height == len(lines) == 5000 and out[OK].all()
    got = dict(out.group_by("event.dataset").len().rows())
    for etype in ("flow", "dns", "http", "alert", "fileinfo", "anomaly", "tls"):
        grep = subprocess.run(
            ["grep", "-c", f'"event_type":"{etype}"', str(EVE)], capture_output=True, text=True
        )
        assert got[f"suricata.{etype}"] == int(grep.stdout), etype
    assert sum(got.values()) == 5000
    assert out.filter(pl.col("event.kind") == "alert").height == got["suricata.alert"] == 745
    for name, dtype in out.schema.items():
        if name != OK:
            assert dtype == polars_type(name), name


def test_flow() -> None:
    row = run([first(eve_lines(), '"event_type":"flow"')]).row(0, named=True)
    assert {k: v for k, v in row.items() if v is not None} == {
        "@timestamp": datetime(2021, 6, 6, 13, 57, 37, 272281, tzinfo=UTC),
        "source.ip": "192.168.1.132",
        "source.port": 1900,
        "destination.ip": "192.168.1.129",
        "destination.port": 44232,
        "network.transport": "udp",
        "observer.name": "stratosphere.org",
        "source.bytes": 4056,
        "destination.bytes": 0,
        "source.packets": 12,
        "destination.packets": 0,
        "network.bytes": 4056,
        "network.packets": 12,
        "event.start": datetime(2021, 6, 6, 14, 38, 55, 855844, tzinfo=UTC),
        "event.end": datetime(2021, 6, 6, 14, 38, 56, 963027, tzinfo=UTC),
        "event.duration": 1_107_183_000,
        "event.category": "network",
        "event.type": "connection",
        "event.kind": "event",
        "labels": '{"suricata.flow_id":"445348883402532"}',
        "event.dataset": "suricata.flow",
        "event.module": "suricata",
        OK: True,
    }


def test_dns_query_and_answer() -> None:
    lines = eve_lines()
    out = run(
        [
            first(lines, '"event_type":"dns","src_ip":"192.168.1.129","src_port":35790'),
            first(lines, '"rrname":"www.myedimax.com","rrtype":"A","rcode":"NOERROR"'),
        ]
    )
    q, a = out.rows(named=True)
    assert (q["dns.type"], q["dns.id"], q["dns.question.name"], q["dns.question.type"]) == (
        "query",
        2,
        "www.google.com",
        "A",
    )
    assert q["dns.answers"] is None and q["dns.response_code"] is None
    assert a["dns.type"] == "answer" and a["dns.response_code"] == "NOERROR"
    assert a["dns.answers"] == ["ddns.myedimax.com", "ns.myedimax.com", "122.248.252.67"]
    assert a["dns.resolved_ip"] == ["122.248.252.67"]
    assert a["event.dataset"] == "suricata.dns" and a["destination.port"] == 53


def test_http() -> None:
    line = first(eve_lines(), '"http_user_agent":"Mozilla/5.0 (compatible; CensysInspect/1.1')
    row = run([line]).row(0, named=True)
    assert row["@timestamp"] == datetime(2021, 6, 7, 7, 25, 25, 742943, tzinfo=UTC)
    assert row["url.domain"] == "147.32.82.197"
    assert (row["url.original"], row["url.path"], row["url.query"]) == ("/", "/", None)
    assert row["http.request.method"] == "GET"
    assert row["http.response.status_code"] == 404
    assert row["user_agent.original"].startswith("Mozilla/5.0 (compatible; CensysInspect/1.1")
    assert row["http.version"] == "1.1" and row["http.response.body.bytes"] == 47
    assert row["event.category"] == "web" and row["event.dataset"] == "suricata.http"


def test_alert() -> None:
    lines = eve_lines()
    row = run([first(lines, '"event_type":"alert"')]).row(0, named=True)
    assert row["event.kind"] == "alert" and row["event.dataset"] == "suricata.alert"
    assert row["message"] == "ET CINS Active Threat Intelligence Poor Reputation IP group 89"
    assert row["event.severity"] == 2 and row["event.action"] == "allowed"
    assert json.loads(row["labels"]) == {
        "suricata.flow_id": "1374195536821504",
        "suricata.signature_id": "2403388",
        "suricata.signature_gid": "1",
        "suricata.signature_rev": "66418",
        "suricata.category": "Misc Attack",
        "suricata.severity": "2",
    }
    assert (row["source.ip"], row["destination.port"], row["source.bytes"]) == (
        "78.36.196.213",
        445,
        60,
    )
    web = run([first(lines, "ET EXPLOIT Netgear DGN")]).row(0, named=True)
    assert web["url.path"] == "/setup.cgi" and web["network.protocol"] == "http"
    assert web["http.request.method"] == "GET" and web["event.kind"] == "alert"


def test_other_event_types_keep_common_fields() -> None:
    row = run([first(eve_lines(), '"event_type":"tls"')]).row(0, named=True)
    assert row[OK] and row["event.dataset"] == "suricata.tls"
    assert row["source.ip"] and row["destination.port"] and row["@timestamp"]


def test_malformed_lines_in_a_batch() -> None:
    lines = eve_lines()[:3]
    bad = [
        "",
        "garbage",
        '{"timestamp":"2021-06-06T15:57:37+0200","src_ip":"1.2.3.4"}',  # no event_type
        '{"timestamp":"tomorrow","event_type":"flow","src_ip":"1.2.3.4"}',
        '{"timestamp":"2021-06-06T15:57:37+0200","event_type":"flow","src_ip":',
    ]
    out = run([lines[0], *bad, lines[1], lines[2]])
    assert out[OK].to_list() == [True] + [False] * 5 + [True, True]
    assert out["source.ip"].to_list()[-2:] == run(lines[1:3])["source.ip"].to_list()
    assert out.filter(~pl.col(OK))["source.ip"].null_count() == 5


def test_auto_detects_eve() -> None:
    lines = eve_lines()[:50]
    out = get_parser("auto").parse(pl.Series(lines))
    assert out[OK].all()
    assert out["event.dataset"].str.starts_with("suricata.").all()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=80),
            st.dictionaries(
                st.sampled_from(["timestamp", "event_type", "src_ip", "flow", "dns", "alert"]),
                st.one_of(
                    st.none(),
                    st.integers(),
                    st.text(),
                    st.dictionaries(
                        st.sampled_from(["answers", "rdata", "start", "signature", "severity"]),
                        st.one_of(st.text(), st.integers(), st.lists(st.text(), max_size=3)),
                    ),
                ),
            ).map(json.dumps),
        ),
        max_size=12,
    )
)
def test_arbitrary_lines_never_raise(lines: list[str]) -> None:
    out = run(lines)
    assert out.height == len(lines)
