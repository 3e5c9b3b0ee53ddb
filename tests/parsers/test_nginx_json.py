"""nginx/openresty JSON access logs: default map, custom map, bad lines, time formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import get_parser, nginx_json
from lightsoc.parsers.base import OK
from lightsoc.parsers.nginx_json import NginxJsonParser, decode_objects, parse_time
from lightsoc.parsers.web_access import NginxCombinedParser
from lightsoc.schema import polars_type

BENIGN = Path(__file__).resolve().parents[3] / "shared" / "data" / "web" / "apache_logs_benign.log"

LINE = (
    '{"ip":"83.149.9.216","time_local":"17/May/2015:10:05:03 +0000","statuscode":200,'
    '"request_uri":"/a%20b?b=1&c=\\"2\\"","http_user_agent":"Mozilla/5.0 (X11)","method":"GET",'
    '"host":"example.com","body_bytes_sent":123,"referer":"-","request_time":0.001,'
    '"upstream_addr":"10.0.0.1:8080","request_id":"abc"}'
)


def parse(lines: list[str | None], **options: object) -> pl.DataFrame:
    return NginxJsonParser(dict(options)).parse(pl.Series(lines, dtype=pl.String))


def one(line: str, **options: object) -> dict:
    return parse([line], **options).row(0, named=True)


def test_registered() -> None:
    assert registry.get("parsers", "nginx_json") is NginxJsonParser


def test_default_map() -> None:
    row = one(LINE)
    assert row == {
        "@timestamp": datetime(2015, 5, 17, 10, 5, 3, tzinfo=UTC),
        "event.kind": "event",
        "event.category": "web",
        "event.type": "access",
        "event.outcome": "success",
        "event.duration": 1_000_000,
        "labels": '{"upstream_addr":"10.0.0.1:8080","request_id":"abc"}',
        "host.name": None,
        "source.ip": "83.149.9.216",
        "source.port": None,
        "destination.ip": None,
        "destination.port": None,
        "url.original": '/a%20b?b=1&c="2"',
        "url.path": "/a%20b",
        "url.query": 'b=1&c="2"',
        "url.domain": "example.com",
        "http.request.method": "GET",
        "http.request.referrer": None,
        "http.response.status_code": 200,
        "http.response.body.bytes": 123,
        "http.version": None,
        "user_agent.original": "Mozilla/5.0 (X11)",
        "user.name": None,
        "event.dataset": "nginx.access",
        "event.module": "nginx",
        OK: True,
    }


def test_types_follow_schema() -> None:
    out = parse([LINE])
    for name in out.columns:
        if name != OK:
            assert out.schema[name] == polars_type(name), name


def test_request_line_iso_time_and_server_protocol() -> None:
    row = one(
        json.dumps(
            {
                "remote_addr": "2001:db8::2",
                "remote_user": "bob",
                "time_iso8601": "2024-02-29T23:59:59+08:00",
                "request": "POST /login?next=%2F HTTP/2.0",
                "status": "403",
                "body_bytes_sent": "0",
                "http_referer": "",
                "server_port": "443",
            }
        )
    )
    assert row[OK]
    assert row["@timestamp"] == datetime(2024, 2, 29, 15, 59, 59, tzinfo=UTC)
    assert (row["source.ip"], row["user.name"]) == ("2001:db8::2", "bob")
    assert (row["http.request.method"], row["http.version"]) == ("POST", "2.0")
    assert (row["url.path"], row["url.query"]) == ("/login", "next=%2F")
    assert (row["http.response.status_code"], row["event.outcome"]) == (403, "failure")
    assert row["http.request.referrer"] is None
    assert row["destination.port"] == 443
    proto = one('{"ip":"1.1.1.1","server_protocol":"HTTP/1.1","uri":"/x"}')
    assert (proto["http.version"], proto["url.original"], proto["url.query"]) == ("1.1", "/x", None)


def test_time_formats() -> None:
    got = parse_time(
        pl.Series(
            [
                "17/May/2015:10:05:03 +0200",
                "2015-05-17T10:05:03Z",
                "2015-05-17T10:05:03.250+00:00",
                "2015-05-17 10:05:03+0000",
                "2015-05-17T10:05:03",
                "1431857103.5",
                "yesterday",
                None,
            ]
        )
    ).to_list()
    base = datetime(2015, 5, 17, 10, 5, 3, tzinfo=UTC)
    assert got == [
        datetime(2015, 5, 17, 8, 5, 3, tzinfo=UTC),
        base,
        base.replace(microsecond=250_000),
        base,
        base,
        base.replace(microsecond=500_000),
        None,
        None,
    ]
    row = one('{"ip":"1.1.1.1","time_local":"yesterday"}')
    assert not row[OK]  # a time that is there but unreadable fails the record


def test_custom_field_map() -> None:
    line = (
        '{"cip":"192.0.2.7","ts":"2024-01-01T00:00:00Z","code":"502","ip":"10.9.9.9","path":"/p"}'
    )
    row = one(
        line,
        field_map={
            "cip": "source.ip",
            "ts": "@timestamp",
            "code": "http.response.status_code",
            "path": "url.original",
            "ip": "destination.ip",
        },
    )
    assert row["source.ip"] == "192.0.2.7"  # user key wins over the default `ip`
    assert row["destination.ip"] == "10.9.9.9"
    assert row["@timestamp"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert (row["http.response.status_code"], row["event.outcome"]) == (502, "failure")
    assert row["url.path"] == "/p"
    dropped = one('{"ip":"1.1.1.1","host":"h"}', field_map={"host": None})
    assert dropped["url.domain"] is None
    assert dropped["labels"] == '{"host":"h"}'
    assert NginxJsonParser({"field_map": {"cip": "source.ip"}}).matches(
        pl.Series([line, '{"ip":"1"}', "1.2.3.4 - -", '{"x":1}'])
    ).to_list() == [True, True, False, False]


def test_bad_field_map() -> None:
    with pytest.raises(ValueError, match="not a scalar ECS field"):
        NginxJsonParser({"field_map": {"a": "no.such.field"}})
    with pytest.raises(ValueError, match="not a scalar ECS field"):
        NginxJsonParser({"field_map": {"a": "tags"}})


def test_not_access_records() -> None:
    """An object without any mapped key is not an access record; empty values still count."""
    rows = parse(['{"foo":"bar"}', "{}", '{"ip":""}', '{"ip":"-","status":"200"}'], labels=False)
    assert rows[OK].to_list() == [False, False, True, True]
    assert rows["source.ip"].to_list() == [None, None, None, None]


def test_malformed_lines_in_a_batch() -> None:
    good = [LINE.replace("83.149.9.216", f"10.0.0.{i}") for i in range(200)]
    bad = {
        3: "{bad",
        50: '{"ip":"1.1.1.1"},{"ip":"2.2.2.2"}',  # would split into two rows
        51: '{"ip":"3.3.3.3","a":[1',  # with 52, would merge into one row
        52: '2],"ip":"4.4.4.4"}',
        100: "",
        101: "[1, 2]",
        102: "null",
        103: '"just a string"',
        150: '{"ip":"5.5.5.5"} trailing',
        199: '{"ip":"6.6.6.6",',
    }
    lines: list[str | None] = list(good)
    for i, line in bad.items():
        lines[i] = line
    lines.append(None)
    out = parse(lines)
    assert out.height == 201
    assert out[OK].to_list() == [i not in bad for i in range(200)] + [False]
    ips = out["source.ip"].to_list()
    assert [ips[i] for i in range(200) if i not in bad] == [
        f"10.0.0.{i}" for i in range(200) if i not in bad
    ]
    assert all(ips[i] is None for i in bad)


def test_nested_values_become_json_text() -> None:
    line = '{"ip":"1.1.1.1","status":200,"geo":{"cc":"NL"},"host":["a","b"],"ok":true}'
    fast = one(line)
    slow = parse([line, "{broken"])  # a failing piece of <= 64 lines is decoded line by line
    assert slow[OK].to_list() == [True, False]
    for row in (fast, slow.row(0, named=True)):
        assert row[OK]
        assert (row["source.ip"], row["http.response.status_code"]) == ("1.1.1.1", 200)
        assert row["url.domain"] == '["a", "b"]'
        assert json.loads(row["labels"]) == {"geo": '{"cc": "NL"}', "ok": "true"}


def test_decode_objects_never_shifts_rows() -> None:
    lines = pl.Series(['{"a":"1"}', '{"a":"2"},{"a":"x"}', '{"a":"3","b":[1', "2]}", '{"a":"5"}'])
    assert decode_objects(lines, ["a"])["a"].to_list() == ["1", None, None, None, "5"]


def test_labels_off() -> None:
    assert "labels" not in parse([LINE], labels=False).columns


def test_same_fields_as_combined() -> None:
    """The JSON form of the first benign line parses like the combined line."""
    if not BENIGN.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {BENIGN}")
    combined = BENIGN.read_text().splitlines()[31]
    expect = NginxCombinedParser().parse(pl.Series([combined])).row(0, named=True)
    line = json.dumps(
        {
            "remote_addr": "50.16.19.13",
            "remote_user": "",
            "time_local": "17/May/2015:10:05:10 +0000",
            "request": "GET /blog/tags/puppet?flav=rss20 HTTP/1.1",
            "status": 200,
            "body_bytes_sent": 14872,
            "http_referer": "http://www.semicomplete.com/blog/tags/puppet?flav=rss20",
            "http_user_agent": "Tiny Tiny RSS/1.11 (http://tt-rss.org/)",
        }
    )
    got = one(line)
    same = [c for c in got if c in expect and c not in ("labels",)]
    assert len(same) > 15
    assert {c: got[c] for c in same} == {c: expect[c] for c in same}


def test_auto_picks_per_line() -> None:
    lines = [
        LINE,
        '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
        'v.example:80 1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
    ]
    out = get_parser("auto").parse(pl.Series(lines))
    assert out[OK].all()
    assert out["event.dataset"].to_list() == ["nginx.access", "nginx.access", "apache.access"]
    assert out["url.domain"].to_list() == ["example.com", None, "v.example"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=80),
            st.dictionaries(
                st.sampled_from(["ip", "status", "request", "time_local", "x", "msec"]),
                st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
            ).map(json.dumps),
        ),
        max_size=12,
    )
)
def test_arbitrary_lines_never_raise(lines: list[str]) -> None:
    out = parse(lines)
    assert out.height == len(lines)


def test_row_fallback_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx_json, "_ROW_FALLBACK", 2)
    lines = [LINE] * 9 + ["{oops"] + [LINE] * 9
    assert parse(lines)[OK].to_list() == [True] * 9 + [False] + [True] * 9


def test_ecs_json_events_are_not_nginx_lines() -> None:
    """Packetbeat/Filebeat ECS events nest `"ip"` under `source`: the generic JSON parser's."""
    ecs = json.dumps(
        {
            "@timestamp": "2026-11-20T09:00:00Z",
            "event": {"dataset": "dns"},
            "source": {"ip": "10.1.1.66", "port": 5000},
            "dns": {"question": {"name": "example.com", "type": "A"}},
        }
    )
    dotted = json.dumps({"@timestamp": "2026-11-20T09:00:00Z", "source.ip": "10.1.1.7"})
    flat = json.dumps({"remote_addr": "10.1.1.8", "request": "GET / HTTP/1.1", "status": 200})
    parser = get_parser("nginx_json")
    assert parser.matches(pl.Series([ecs, dotted, flat])).to_list() == [False, False, True]
    df = get_parser("auto").parse(pl.Series([ecs, flat]))
    assert df["event.dataset"].to_list() == ["dns", "nginx.access"]
    assert df["dns.question.name"].to_list() == ["example.com", None]
    assert df["source.ip"].to_list() == ["10.1.1.66", "10.1.1.8"]
