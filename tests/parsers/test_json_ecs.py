"""Generic JSON / ECS NDJSON parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers.json_ecs import JsonParser
from lightsoc.schema import POLARS_SCHEMA

GOOD = [
    json.dumps(
        {
            "@timestamp": "2024-01-15T10:00:00.123Z",
            "source": {"ip": "1.2.3.4", "port": "443", "geo": {"country_iso_code": "CN"}},
            "destination.ip": "5.6.7.8",
            "event": {"action": "allow", "severity": 3},
            "tags": ["a", "b"],
            "foo": {"bar": [1, 2]},
        }
    ),
    json.dumps(
        {
            "@timestamp": 1705312800000,
            "source.ip": "2001:db8::1",
            "source": {"port": 80},
            "labels": {"env": "prod"},
            "weird key": 'q"x',
            "user": {"name": "alice"},
            "process.pid": "42",
        }
    ),
    '  {"message": "hi", "dns": {"answers": "1.1.1.1"}, "event.duration": 1.5e9, "@timestamp": "2024-01-15 18:00:00+08:00"}',
]


def parse(lines: list[str | None]) -> pl.DataFrame:
    return JsonParser().parse(pl.Series(lines, dtype=pl.String))


def _rows(df: pl.DataFrame) -> list[dict]:
    return [{k: v for k, v in r.items() if v is not None} for r in df.rows(named=True)]


def test_registered_and_priority() -> None:
    assert registry.get("parsers", "json") is JsonParser
    assert JsonParser.auto_priority >= 500


def test_nested_and_dotted_ecs_keys() -> None:
    df = parse(GOOD)
    assert df["_ok"].all()
    r0, r1, r2 = _rows(df)
    assert r0["@timestamp"] == datetime(2024, 1, 15, 10, 0, 0, 123000, tzinfo=UTC)
    assert (r0["source.ip"], r0["source.port"], r0["destination.ip"]) == ("1.2.3.4", 443, "5.6.7.8")
    assert r0["source.geo.country_iso_code"] == "CN"
    assert (r0["event.action"], r0["event.severity"], r0["tags"]) == ("allow", 3, ["a", "b"])
    assert r1["@timestamp"] == datetime(2024, 1, 15, 10, 0, tzinfo=UTC)  # epoch millis
    assert (r1["source.ip"], r1["source.port"], r1["user.name"], r1["process.pid"]) == (
        "2001:db8::1",
        80,
        "alice",
        42,
    )
    assert r2["@timestamp"] == datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
    assert (r2["message"], r2["dns.answers"], r2["event.duration"]) == (
        "hi",
        ["1.1.1.1"],
        1_500_000_000,
    )
    for name, dtype in df.schema.items():
        if name != "_ok":
            assert dtype == POLARS_SCHEMA[name], name


def test_unknown_keys_go_to_labels() -> None:
    r0, r1, r2 = _rows(parse(GOOD))
    assert json.loads(r0["labels"]) == {"foo.bar": [1, 2]}
    assert json.loads(r1["labels"]) == {"env": "prod", "weird key": 'q"x'}
    assert "labels" not in r2


def test_defaults() -> None:
    r = _rows(parse(['{"message": "x"}', '{"event": {"dataset": "app.audit", "kind": "alert"}}']))
    assert (r[0]["event.dataset"], r[0]["event.module"], r[0]["event.kind"]) == (
        "json",
        "json",
        "event",
    )
    assert (r[1]["event.dataset"], r[1]["event.kind"]) == ("app.audit", "alert")


def test_bad_lines_amid_good_ones() -> None:
    bad = ["{bad json", "[1, 2]", "", None, "42", "null", '{"a": 1} trailing']
    lines = [GOOD[0], *bad, GOOD[1], GOOD[2]]
    df = parse(lines)
    assert df.height == len(lines)
    assert df["_ok"].to_list() == [True] + [False] * len(bad) + [True, True]
    good_rows = _rows(df.filter(pl.col("_ok")))
    assert good_rows == _rows(parse(GOOD))  # the fallback path gives the same result
    assert _rows(df.filter(~pl.col("_ok"))) == [{"_ok": False}] * len(bad)


def test_type_conflicts_between_lines() -> None:
    lines = [
        '{"a": 1, "source": {"port": 22}}',
        '{"a": {"b": "x"}, "source.port": "2222"}',
        '{"a": [1]}',
    ]
    df = parse(lines)
    assert df["_ok"].all()
    assert df["source.port"].to_list() == [22, 2222, None]
    assert [json.loads(x) for x in df["labels"]] == [{"a": 1}, {"a.b": "x"}, {"a": [1]}]


def test_big_integers_and_odd_values() -> None:
    lines = ['{"n": 123456789012345678901234567890, "source": {"bytes": 5}}', '{"event": {}}']
    df = parse(lines)
    assert df["_ok"].all()
    assert df["source.bytes"][0] == 5
    assert json.loads(df["labels"][0]) == {"n": 123456789012345678901234567890}


def test_matches() -> None:
    s = pl.Series(['{"a":1}', '  {"a":1}', "[1]", "Jan  5 10:00:00 h a: x", None])
    assert JsonParser().matches(s).to_list() == [True, True, False, False, False]


def test_empty_batch() -> None:
    assert parse([]).height == 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(max_size=50),
            st.dictionaries(
                st.sampled_from(
                    ["source", "source.ip", "@timestamp", "tags", "x", "event.severity"]
                ),
                _JSON,
                max_size=4,
            ).map(json.dumps),
        ),
        max_size=12,
    )
)
def test_arbitrary_input_never_raises(lines: list[str | None]) -> None:
    df = parse(lines)
    assert df.height == len(lines)
    assert df["_ok"].dtype == pl.Boolean
