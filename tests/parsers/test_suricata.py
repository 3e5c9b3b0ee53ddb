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


# fileinfo with file hashing and libmagic on, as Suricata writes it (a real sensor's line of
# an HTTP PDF download, published with its hashes)
FILEINFO_HASHED = (
    '{"timestamp":"2016-10-10T13:17:47.073303-0500","flow_id":607337898656215,'
    '"event_type":"fileinfo","vlan":95,"src_ip":"141.211.32.32","src_port":80,'
    '"dest_ip":"192.168.1.1","dest_port":51716,"proto":"TCP","http":{"hostname":'
    '"www.isr.umich.edu","url":"\\/cps\\/M-ABLE\\/materials\\/EEWE\\/Business%20Plan%20'
    'Template.pdf","http_user_agent":"Mozilla\\/5.0 (Windows NT 6.1; Win64; x64; rv:49.0) '
    'Gecko\\/20100101 Firefox\\/49.0","http_content_type":"application\\/pdf","http_refer":'
    '"https:\\/\\/www.google.com\\/","http_method":"GET","protocol":"HTTP\\/1.1","status":200,'
    '"length":748225},"app_proto":"http","fileinfo":{"filename":"\\/cps\\/M-ABLE\\/materials'
    '\\/EEWE\\/Business Plan Template.pdf","magic":"PDF document, version 1.3","state":"CLOSED",'
    '"md5":"0e26bfdecba382074c4b14d048ccd516","sha1":"e70f41a89c5389e97e489fbcb5818d6f17cb15ce",'
    '"sha256":"acdebd0906bbe479fd70be0cbe2c08067562d5590afff6aa88140f029465a67d",'
    '"stored":false,"size":982,"tx_id":0}}'
)


def test_fileinfo_with_hashes() -> None:
    row = run([FILEINFO_HASHED]).row(0, named=True)
    assert row[OK] and row["event.dataset"] == "suricata.fileinfo"
    assert (row["event.category"], row["event.type"], row["event.kind"]) == (
        "file",
        "info",
        "event",
    )
    assert row["file.path"] == "/cps/M-ABLE/materials/EEWE/Business Plan Template.pdf"
    assert row["file.name"] == "Business Plan Template.pdf"
    assert row["file.size"] == 982
    assert row["file.hash.md5"] == "0e26bfdecba382074c4b14d048ccd516"
    assert row["file.hash.sha1"] == "e70f41a89c5389e97e489fbcb5818d6f17cb15ce"
    assert row["file.hash.sha256"] == (
        "acdebd0906bbe479fd70be0cbe2c08067562d5590afff6aa88140f029465a67d"
    )
    assert "file.mime_type" not in row  # libmagic's text is no MIME type: it goes to labels
    assert json.loads(row["labels"]) == {
        "suricata.flow_id": "607337898656215",
        "suricata.file_magic": "PDF document, version 1.3",
        "suricata.file_state": "CLOSED",
    }
    # the flow and the HTTP transaction the file came with
    assert (row["source.ip"], row["source.port"], row["destination.ip"]) == (
        "141.211.32.32",
        80,
        "192.168.1.1",
    )
    assert row["url.domain"] == "www.isr.umich.edu"
    assert row["url.original"] == "/cps/M-ABLE/materials/EEWE/Business%20Plan%20Template.pdf"
    assert row["http.response.status_code"] == 200 and row["network.protocol"] == "http"


def test_fileinfo_real_lines_without_hashes() -> None:
    """The capture's fileinfo records: HTTP bodies, hashing off; sizes and paths still mapped."""
    lines = [ln for ln in eve_lines() if '"event_type":"fileinfo"' in ln]
    out = run(lines)
    assert out[OK].all() and out.height == 3
    assert out["file.path"].to_list() == ["/", "/", "/HNAP1/"]
    assert out["file.name"].to_list() == [None] * 3  # a path ending in "/" names no file
    assert out["file.size"].to_list() == [47, 47, 535]
    for col in ("file.hash.md5", "file.hash.sha1", "file.hash.sha256"):
        assert out[col].null_count() == 3
    assert out["labels"].str.contains('"suricata.file_state":"TRUNCATED"').to_list() == [
        False,
        False,
        True,
    ]
    # no other event type gets file fields
    others = run([ln for ln in eve_lines()[:500] if '"fileinfo"' not in ln])
    assert others["file.path"].null_count() == others.height
    assert others.filter(pl.col("event.category") == "file").height == 0
