"""Zeek conn/dns/http logs, TSV and JSON: real Stratosphere conn logs, documented dns/http lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import get_parser
from lightsoc.parsers.base import OK
from lightsoc.parsers.zeek import (
    DEFAULT_FIELDS,
    ZeekConnParser,
    ZeekDnsParser,
    ZeekHttpParser,
)
from lightsoc.schema import polars_type

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "flows" / "stratosphere"
TSV_CONN = DATA / "001-zeek-scenario-malicious" / "conn.log"
JSON_CONN = DATA / "002-zeek-scenario-port-scanning" / "conn.log"
SSH_JSON = DATA / "004-zeek-scenario-ssh" / "ssh.log"

# The data set has no dns.log/http.log: these lines follow Zeek's default field order.
DNS_TSV = "\t".join(
    [
        "1300475168.853778", "C4J4Th3PJpwUYZZ6gc", "141.142.220.118", "43927", "141.142.2.2",
        "53", "udp", "33282", "0.000267", "www.bro-ids.org", "1", "C_INTERNET", "1", "A", "0",
        "NOERROR", "F", "F", "T", "T", "0", "bro-ids.org,192.150.187.43,2001:db8::1",
        "3600.000000,3600.000000,60.000000", "F",
    ]
)  # fmt: skip
DNS_QUERY_ONLY = "\t".join(
    [
        "1258565309.806483", "CHhAvVGS1DHFjwGM9", "192.168.1.103", "137", "192.168.1.255",
        "137", "udp", "33008", "-", "HPLAPTOP", "1", "C_INTERNET", "32", "NB", "-", "-", "F",
        "F", "T", "F", "1", "-", "-", "F",
    ]
)  # fmt: skip
HTTP_TSV = "\t".join(
    [
        "1320279566.452687", "CwFs1P2UcUdlSxD2La", "192.168.2.76", "52026", "132.235.215.119",
        "80", "1", "GET", "www.reddit.com", "/r/programming/?limit=5", "http://www.reddit.com/",
        "1.1", "Mozilla/5.0 (Windows NT 6.1)", "-", "0", "109978", "200", "OK", "-", "-",
        "(empty)", "-", "-", "-", "-", "-", "-", "FhxbMk2wD6T2WDzBW6", "-", "text/html",
    ]
)  # fmt: skip
DNS_JSON = json.dumps(
    {
        "ts": 1664462456.755299, "uid": "CfjND92SltUQpPxK5", "id.orig_h": "172.16.1.11",
        "id.orig_p": 42647, "id.resp_h": "8.8.8.8", "id.resp_p": 53, "proto": "udp",
        "trans_id": 4660, "rtt": 0.01, "query": "example.com", "qclass": 1,
        "qclass_name": "C_INTERNET", "qtype": 28, "qtype_name": "AAAA", "rcode": 0,
        "rcode_name": "NOERROR", "answers": ["2606:2800:220:1:248:1893:25c8:1946"],
        "TTLs": [300.0], "rejected": False,
    }
)  # fmt: skip
HTTP_JSON = json.dumps(
    {
        "_path": "http", "ts": "2022-09-29T14:40:56.755299Z", "uid": "CX3dDG38eCxdUR4mn4",
        "id.orig_h": "10.0.0.5", "id.orig_p": 50000, "id.resp_h": "93.184.216.34",
        "id.resp_p": 80, "trans_depth": 1, "method": "POST", "host": "example.com",
        "uri": "/login.php?u=a", "version": "1.1", "user_agent": "curl/8.0",
        "status_code": 403, "response_body_len": 12,
    }
)  # fmt: skip


def lines_of(path: Path) -> list[str]:
    if not path.exists():
        pytest.fail(f"test data missing: {path}")
    return path.read_text().splitlines()


def run(parser: type, lines: list[str], **options: object) -> pl.DataFrame:
    return parser(dict(options)).parse(pl.Series(lines, dtype=pl.String))


def test_registered() -> None:
    assert registry.get("parsers", "zeek_conn") is ZeekConnParser
    assert registry.get("parsers", "zeek_dns") is ZeekDnsParser
    assert registry.get("parsers", "zeek_http") is ZeekHttpParser
    assert [len(DEFAULT_FIELDS[k]) for k in ("conn", "dns", "http")] == [21, 24, 30]


def test_conn_tsv_real_file() -> None:
    lines = lines_of(TSV_CONN)
    out = run(ZeekConnParser, lines)
    assert out.height == 1000 and out[OK].all()
    # grep -c '^#' = 8 header lines, the other 992 are connections
    counts = dict(out.group_by("event.dataset").len().rows())
    assert counts == {"zeek.header": 8, "zeek.conn": 992}
    head = out.row(6, named=True)
    assert head["event.kind"] == "event" and head["message"] == lines[6]
    assert head["message"].startswith("#fields\tts\tuid")
    row = out.row(11, named=True)  # 32.990991 CdxDgd3Eys2BUDQyC5 192.168.1.114 ...
    assert {k: v for k, v in row.items() if v is not None} == {
        "@timestamp": datetime(1970, 1, 1, 0, 0, 32, 990991, tzinfo=UTC),
        "source.ip": "192.168.1.114",
        "source.port": 60549,
        "destination.ip": "224.0.0.252",
        "destination.port": 5355,
        "network.transport": "udp",
        "network.protocol": "dns",
        "event.duration": 123_763_000,
        "source.bytes": 100,
        "destination.bytes": 0,
        "source.packets": 2,
        "destination.packets": 0,
        "network.bytes": 100,
        "network.packets": 2,
        "event.category": "network",
        "event.type": "connection",
        "event.kind": "event",
        "labels": '{"zeek.uid":"CdxDgd3Eys2BUDQyC5","zeek.conn_state":"S0","zeek.history":"D"}',
        "event.dataset": "zeek.conn",
        "event.module": "zeek",
        OK: True,
    }
    for name, dtype in out.schema.items():
        if name != OK:
            assert dtype == polars_type(name), name


def test_conn_json_real_file() -> None:
    lines = lines_of(JSON_CONN)
    out = run(ZeekConnParser, lines)
    assert out.height == 4504 and out[OK].all()  # grep -c . = 4504 JSON lines
    assert out["event.dataset"].unique().to_list() == ["zeek.conn"]
    row = out.row(0, named=True)
    assert row["@timestamp"] == datetime(2022, 9, 29, 14, 40, 56, 755299, tzinfo=UTC)
    assert (row["source.ip"], row["source.port"]) == ("172.16.1.11", 40042)
    assert (row["destination.ip"], row["destination.port"]) == ("8.8.8.8", 53)
    assert row["event.duration"] == 12_166_977
    assert (row["source.bytes"], row["destination.bytes"], row["network.bytes"]) == (0, 139, 139)
    assert row["labels"] == (
        '{"zeek.uid":"C5xhsO3uGtOfyrBlHh","zeek.conn_state":"SHR","zeek.history":"Cd"}'
    )


def test_other_zeek_logs_are_not_conn() -> None:
    out = run(ZeekConnParser, lines_of(SSH_JSON)[:20])
    assert not out[OK].any()
    assert not ZeekConnParser().matches(pl.Series(lines_of(SSH_JSON)[:20])).any()


def test_dns_tsv() -> None:
    out = run(ZeekDnsParser, [DNS_TSV, DNS_QUERY_ONLY])
    assert out[OK].to_list() == [True, True]
    row = out.row(0, named=True)
    assert row["@timestamp"] == datetime(2011, 3, 18, 19, 6, 8, 853778, tzinfo=UTC)
    assert row["dns.id"] == 33282
    assert row["dns.question.name"] == "www.bro-ids.org"
    assert row["dns.question.type"] == "A"
    assert row["dns.response_code"] == "NOERROR"
    assert row["dns.type"] == "answer"
    assert row["dns.answers"] == ["bro-ids.org", "192.150.187.43", "2001:db8::1"]
    assert row["dns.resolved_ip"] == ["192.150.187.43", "2001:db8::1"]
    assert row["network.transport"] == "udp" and row["event.dataset"] == "zeek.dns"
    assert row["labels"] == '{"zeek.uid":"C4J4Th3PJpwUYZZ6gc"}'
    q = out.row(1, named=True)
    assert (q["dns.question.name"], q["dns.question.type"], q["dns.type"]) == (
        "HPLAPTOP",
        "NB",
        "query",
    )
    assert q["dns.response_code"] is None and q["dns.answers"] is None


def test_dns_json() -> None:
    row = run(ZeekDnsParser, [DNS_JSON]).row(0, named=True)
    assert row[OK] and row["dns.id"] == 4660
    assert row["dns.question.type"] == "AAAA"
    assert row["dns.answers"] == ["2606:2800:220:1:248:1893:25c8:1946"]
    assert row["dns.resolved_ip"] == ["2606:2800:220:1:248:1893:25c8:1946"]


def test_http_tsv_and_json() -> None:
    out = run(ZeekHttpParser, [HTTP_TSV, HTTP_JSON])
    assert out[OK].to_list() == [True, True]
    row = out.row(0, named=True)
    assert row["http.request.method"] == "GET"
    assert row["url.domain"] == "www.reddit.com"
    assert row["url.original"] == "/r/programming/?limit=5"
    assert (row["url.path"], row["url.query"]) == ("/r/programming/", "limit=5")
    assert row["http.response.status_code"] == 200
    assert row["http.response.body.bytes"] == 109978
    assert row["user_agent.original"] == "Mozilla/5.0 (Windows NT 6.1)"
    assert row["http.request.referrer"] == "http://www.reddit.com/"
    assert row["event.outcome"] == "success" and row["event.dataset"] == "zeek.http"
    js = out.row(1, named=True)
    assert js["@timestamp"] == datetime(2022, 9, 29, 14, 40, 56, 755299, tzinfo=UTC)
    assert (js["http.request.method"], js["url.query"], js["http.response.status_code"]) == (
        "POST",
        "u=a",
        403,
    )
    assert js["http.request.referrer"] is None and js["event.outcome"] == "failure"


def test_types_are_told_apart() -> None:
    lines = [DNS_TSV, HTTP_TSV, DNS_JSON, HTTP_JSON, lines_of(TSV_CONN)[8], lines_of(JSON_CONN)[0]]
    assert run(ZeekConnParser, lines)[OK].to_list() == [False] * 4 + [True, True]
    assert run(ZeekDnsParser, lines)[OK].to_list() == [True, False, True, False, False, False]
    assert run(ZeekHttpParser, lines)[OK].to_list() == [False, True, False, True, False, False]


def test_fields_header_in_batch_sets_the_order() -> None:
    fields = ["uid", "ts", "id.resp_h", "id.resp_p", "id.orig_h", "id.orig_p", "proto"]
    fields += ["conn_state"]
    lines = [
        "#fields\t" + "\t".join(fields),
        "Cabc\t1700000000.5\t10.0.0.2\t443\t10.0.0.1\t5555\ttcp\tSF",
    ]
    out = run(ZeekConnParser, lines)
    assert out[OK].to_list() == [True, True]
    row = out.row(1, named=True)
    assert (row["source.ip"], row["destination.ip"], row["destination.port"]) == (
        "10.0.0.1",
        "10.0.0.2",
        443,
    )
    assert row["@timestamp"] == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
    # the same line without the header does not have the default column count
    assert not run(ZeekConnParser, lines[1:])[OK].any()
    # ... unless the order is configured
    assert run(ZeekConnParser, lines[1:], fields=lines[0])[OK].all()


def test_malformed_lines_in_a_batch() -> None:
    good = lines_of(TSV_CONN)[8:12]
    bad = [
        "",
        "not zeek at all",
        "abc\t" + "\t".join(["x"] * 20),
        '{"id.orig_h":"1.2.3.4","conn_state":"SF","ts":"yesterday"}',
        '{"id.orig_h":"1.2.3.4","conn_state":',
        "#comment that is no zeek header",
    ]
    lines = [good[0], *bad[:3], good[1], *bad[3:], good[2], good[3]]
    out = run(ZeekConnParser, lines)
    assert out.height == len(lines)
    assert out[OK].to_list() == [True, False, False, False, True, False, False, False, True, True]
    assert out["source.port"].to_list()[8:] == [55831, 60549]
    assert out.filter(~pl.col(OK))["source.ip"].null_count() == 6


def test_auto_detects_zeek() -> None:
    auto = get_parser("auto")
    lines = lines_of(TSV_CONN)[:40] + lines_of(JSON_CONN)[:10] + [DNS_TSV, HTTP_JSON]
    out = auto.parse(pl.Series(lines))
    assert out[OK].all()
    got = out["event.dataset"].to_list()
    assert got == ["zeek.header"] * 8 + ["zeek.conn"] * 42 + ["zeek.dns", "zeek.http"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=80),
            st.lists(
                st.sampled_from(["-", "(empty)", "1.5", "tcp", "SF", "a,b", "x"]), max_size=32
            ).map("\t".join),
            st.dictionaries(
                st.sampled_from(["ts", "id.orig_h", "conn_state", "trans_id", "query", "answers"]),
                st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
            ).map(json.dumps),
        ),
        max_size=12,
    )
)
def test_arbitrary_lines_never_raise(lines: list[str]) -> None:
    for parser in (ZeekConnParser, ZeekDnsParser, ZeekHttpParser):
        out = run(parser, lines)
        assert out.height == len(lines)
        ZeekConnParser().matches(pl.Series(lines, dtype=pl.String))


def test_conn_state_gives_tcp_outcome() -> None:
    """TCP: unanswered/refused -> failure, handshake done -> success; UDP/ICMP stay unknown."""
    out = run(ZeekConnParser, lines_of(JSON_CONN))  # nmap: SYNs to closed and filtered ports
    state = out["labels"].str.json_path_match("$['zeek.conn_state']").alias("state")
    got = out.select(pl.col("network.transport"), state, pl.col("event.outcome"))
    counts = {(t, s): (o, n) for t, s, o, n in got.group_by(got.columns).len().iter_rows()}
    assert counts[("tcp", "S0")] == ("failure", 2358)
    assert counts[("tcp", "REJ")] == ("failure", 1273)
    assert counts[("tcp", "RSTO")] == ("success", 95)
    assert counts[("tcp", "OTH")] == (None, 269)  # mid-stream: no handshake seen
    assert counts[("tcp", "RSTRH")] == (None, 32)
    assert counts[("udp", "S0")] == (None, 51)  # a UDP request without reply is often normal
    assert counts[("icmp", "OTH")] == (None, 383)
    sf = run(ZeekConnParser, lines_of(TSV_CONN)).filter(pl.col("network.transport") == "tcp")
    assert set(sf.filter(pl.col("labels").str.contains('"SF"'))["event.outcome"]) == {"success"}
