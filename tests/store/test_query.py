"""The search language, run against a real in-memory DuckDB events table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightsoc import schema
from lightsoc.store.query import QueryError, compile_query, quote_ident


def _ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


ROWS: list[dict] = [
    {
        "event.id": "e1",
        "@timestamp": _ts(2024, 1, 1, 10),
        "source.ip": "10.0.0.5",
        "url.query": "id=1 union select",
        "url.path": "/admin:x",
        "http.response.status_code": 200,
        "message": "Login failed for admin",
        "event.original": "raw one",
        "tags": ["web", "prod"],
        "labels": '{"env": "prod", "team.name": "blue"}',
        "user.name": "alice",
    },
    {
        "event.id": "e2",
        "@timestamp": _ts(2024, 1, 1, 23, 59, 59),
        "source.ip": "10.0.0.5",
        "url.query": "id=2 union select",
        "url.path": "/index.html",
        "http.response.status_code": 404,
        "message": "Hello World",
        "tags": ["web"],
        "labels": '{"env": "dev"}',
    },
    {
        "event.id": "e3",
        "@timestamp": _ts(2024, 1, 2),
        "source.ip": "10.1.2.3",
        "url.query": "q=50%_off",
        "url.path": "/50%_off",
        "http.response.status_code": 500,
        "event.original": "GET /50%_off HTTP/1.1",
        "tags": [],
        "labels": "not json",
    },
    {
        "event.id": "e4",
        "@timestamp": _ts(2024, 1, 3, 12),
        "source.ip": "192.168.1.10",
        "url.query": "q=50%xoff",
        "url.path": "/a_b",
        "message": "backslash \\ path C:\\temp",
    },
    {
        "event.id": "e5",
        "@timestamp": _ts(2024, 1, 5),
        "source.ip": "fe80::1",
        "url.query": "axb",
        "url.path": "/ab",
        "http.response.status_code": 301,
        "message": 'two words "quoted" here',
        "tags": ["db"],
        "user.name": "bob",
    },
    {
        "event.id": "e6",
        "@timestamp": _ts(2023, 12, 31, 23, 59, 59),
        "source.ip": "11.0.0.1",
        "destination.ip": "10.255.255.255",
        "dns.resolved_ip": ["10.0.0.1", "8.8.8.8"],
        "http.response.status_code": 404,
    },
    {
        "event.id": "e7",
        "@timestamp": _ts(2024, 2, 1),
        "source.ip": "10.0.0.300",
        "message": "union all",
        "tags": ["web-1"],
    },
    {
        "event.id": "e8",
        "@timestamp": _ts(2024, 2, 2),
        "url.query": "*",
        "message": "percent 100% done",
        "user.name": "Alice",
    },
    {
        "event.id": "e9",
        "@timestamp": _ts(2024, 2, 3),
        "source.ip": "10.0.0.5",
        "url.query": "a union b",
    },
    {
        "event.id": "e10",
        "@timestamp": _ts(2024, 2, 4),
        "source.ip": "10.0.0.7",
        "url.query": "UNION",
        "http.response.status_code": 200,
    },
]
ALL = {r["event.id"] for r in ROWS}


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    tbl = pa.Table.from_pylist(ROWS, schema=schema.ARROW_SCHEMA)
    c.register("tbl", tbl)
    c.execute("CREATE TABLE events AS SELECT * FROM tbl")
    c.unregister("tbl")
    yield c
    c.close()


def ids(con: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    compiled = compile_query(query)
    sql = f'SELECT "event.id" FROM events WHERE {compiled.sql}'  # noqa: S608 - compiled predicate
    return {row[0] for row in con.execute(sql, compiled.params).fetchall()}


def row_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM events").fetchone()[0]


CASES = [
    # the headline query; NOT keeps e9 whose status is NULL, LIKE is case-sensitive
    (
        "source.ip:10.0.0.5 AND url.query:*union* AND NOT http.response.status_code:404",
        {"e1", "e9"},
    ),
    ("", ALL),
    ("*", ALL),
    ("  ", ALL),
    # exact strings are case-sensitive
    ("user.name:alice", {"e1"}),
    ("user.name:Alice", {"e8"}),
    # numbers
    ("http.response.status_code:404", {"e2", "e6"}),
    ("http.response.status_code:404.0", {"e2", "e6"}),
    ('http.response.status_code:"404"', {"e2", "e6"}),
    ("http.response.status_code:4*", {"e2", "e6"}),
    ("NOT http.response.status_code:404", ALL - {"e2", "e6"}),
    # comparisons
    ("http.response.status_code:>=500", {"e3"}),
    ("http.response.status_code:>404", {"e3"}),
    ("http.response.status_code:<300", {"e1", "e10"}),
    ("http.response.status_code:<=301", {"e1", "e10", "e5"}),
    # ranges, inclusive / exclusive / mixed / open
    ("http.response.status_code:[200 TO 404]", {"e1", "e10", "e5", "e2", "e6"}),
    ("http.response.status_code:{200 TO 404]", {"e5", "e2", "e6"}),
    ("http.response.status_code:[200 TO 404}", {"e1", "e10", "e5"}),
    ("http.response.status_code:{200 TO 404}", {"e5"}),
    ("http.response.status_code:[* TO 300}", {"e1", "e10"}),
    ("http.response.status_code:[404 TO *]", {"e2", "e6", "e3"}),
    ("http.response.status_code:[* TO *]", {"e1", "e2", "e3", "e5", "e6", "e10"}),
    ("http.response.status_code:[404 to 500]", {"e2", "e6", "e3"}),
    # phrases: exact with a field, case-insensitive substring without
    ('message:"Hello World"', {"e2"}),
    ('message:"hello world"', set()),
    ('"hello world"', {"e2"}),
    ("hello", {"e2"}),
    ("LOGIN admin", {"e1"}),
    ('message:"two words \\"quoted\\" here"', {"e5"}),
    ('"\\"quoted\\""', {"e5"}),
    # full text also searches event.original; % and _ are literal
    ('"50%_off"', {"e3"}),
    ("100%", {"e8"}),
    ("UNION", {"e7"}),  # message only; url.query is not full text
    # wildcards with literal % and _
    ("url.query:*50%_off", {"e3"}),
    ("url.query:q=50?off", set()),
    ("url.query:q=50%?off", {"e3", "e4"}),
    ("url.path:*_*", {"e3", "e4"}),
    ("url.path:/a?b", {"e4"}),
    ("url.path:/a*", {"e1", "e4", "e5"}),
    ("url.query:\\*", {"e8"}),
    ("url.query:*", ALL - {"e6", "e7"}),
    ("message:*C:\\\\temp", {"e4"}),
    # escapes in bare values
    ("url.path:\\/admin\\:x", {"e1"}),
    ("url.path:/admin:x", {"e1"}),
    # CIDR on IP fields (10.0.0.300 is not an address)
    ("source.ip:10.0.0.0/8", {"e1", "e2", "e3", "e9", "e10"}),
    ("source.ip:10.0.0.0/24", {"e1", "e2", "e9", "e10"}),
    ("source.ip:10.0.0.4/31", {"e1", "e2", "e9"}),
    ("source.ip:192.168.1.10/32", {"e4"}),
    ('source.ip:"192.168.0.0/16"', {"e4"}),
    ("destination.ip:10.0.0.0/8", {"e6"}),
    ("dns.resolved_ip:8.8.8.0/24", {"e6"}),
    ("dns.resolved_ip:9.0.0.0/8", set()),
    ("NOT source.ip:10.0.0.0/8", {"e4", "e5", "e6", "e7", "e8"}),
    ("source.ip:(10.0.0.0/24 AND NOT 10.0.0.5)", {"e10"}),
    ("source.ip:fe80::1", {"e5"}),
    ("source.ip:10.0.0.*", {"e1", "e2", "e9", "e10", "e7"}),
    ("source.ip:[10.0.0.6 TO 192.168.1.10]", {"e3", "e10", "e4", "e6"}),
    ("source.ip:{10.0.0.5 TO 10.0.0.7]", {"e10"}),
    ("source.ip:>=11.0.0.0", {"e4", "e6"}),
    # lists: contains, wildcard over elements, presence
    ("tags:web", {"e1", "e2"}),
    ("tags:web*", {"e1", "e2", "e7"}),
    ("tags:(db OR prod)", {"e1", "e5"}),
    ("tags:*", {"e1", "e2", "e5", "e7"}),
    ("NOT tags:web", ALL - {"e1", "e2"}),
    ("dns.resolved_ip:8.8.8.8", {"e6"}),
    # presence
    ("_exists_:user.name", {"e1", "e5", "e8"}),
    ("user.name:*", {"e1", "e5", "e8"}),
    ("NOT _exists_:url.query", {"e6", "e7"}),
    # timestamps: a date alone is the whole UTC day
    ("@timestamp:[2024-01-01 TO 2024-01-02]", {"e1", "e2", "e3"}),
    ("@timestamp:[2024-01-01 TO 2024-01-02}", {"e1", "e2"}),
    ("@timestamp:{2023-12-31 TO 2024-01-02}", {"e1", "e2"}),
    ("@timestamp:2024-01-01", {"e1", "e2"}),
    ("@timestamp:<2024-01-01", {"e6"}),
    ("@timestamp:>2024-02-02", {"e9", "e10"}),
    ("@timestamp:>=2024-02-02", {"e8", "e9", "e10"}),
    ("@timestamp:<=2023-12-31", {"e6"}),
    ("@timestamp:{2024-01-01T10:00:00Z TO 2024-01-02T00:00:00Z]", {"e2", "e3"}),
    ("@timestamp:[2024-01-01T10:00:00 TO 2024-01-01T10:00:00]", {"e1"}),
    ('@timestamp:"2024-01-01T11:00:00+01:00"', {"e1"}),
    ("@timestamp:2024-01-01T10:00:00.000000Z", {"e1"}),
    ("@timestamp:[2024-02-01 TO *]", {"e7", "e8", "e9", "e10"}),
    # labels JSON (e3 holds invalid JSON and must not break the query)
    ("labels.env:prod", {"e1"}),
    ("labels.team.name:blue", {"e1"}),
    ("labels.env:*", {"e1", "e2"}),
    ("labels.env:d*", {"e2"}),
    ("NOT labels.env:prod", ALL - {"e1"}),
    # implicit AND, precedence NOT > AND > OR, nesting
    ("source.ip:10.0.0.5 http.response.status_code:200", {"e1"}),
    ("user.name:bob OR source.ip:10.0.0.5 AND http.response.status_code:404", {"e2", "e5"}),
    ("(user.name:bob OR source.ip:10.0.0.5) AND http.response.status_code:404", {"e2"}),
    ("NOT user.name:bob AND user.name:*", {"e1", "e8"}),
    ("NOT (user.name:bob OR user.name:alice)", ALL - {"e1", "e5"}),
    (
        "(user.name:bob OR (source.ip:10.0.0.5 AND "
        "(http.response.status_code:404 OR NOT http.response.status_code:*)))",
        {"e2", "e5", "e9"},
    ),
    ("NOT NOT user.name:bob", {"e5"}),
    # operator spellings
    ("user.name:bob || user.name:alice", {"e1", "e5"}),
    ("user.name:bob or user.name:alice", {"e1", "e5"}),
    ("tags:web && !http.response.status_code:404", {"e1"}),
    ("tags:web and not http.response.status_code:404", {"e1"}),
    ("tags:web -http.response.status_code:404", {"e1"}),
    ("+tags:web -http.response.status_code:404", {"e1"}),
    # field groups
    ("http.response.status_code:(200 OR 404)", {"e1", "e2", "e6", "e10"}),
    ("http.response.status_code:(>=300 AND <500)", {"e2", "e5", "e6"}),
    ("http.response.status_code:(>=300 -404)", {"e3", "e5"}),
    ("http.response.status_code:(>=300 \\-404)", set()),
    ("http.response.status_code:-404", set()),
    ("http.response.status_code:([200 TO 300] OR 500)", {"e1", "e3", "e10"}),
    ("user.name:(alice OR (bob AND NOT alice))", {"e1", "e5"}),
]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_query_matches(con: duckdb.DuckDBPyConnection, query: str, expected: set[str]) -> None:
    assert ids(con, query) == expected


def test_values_only_in_params() -> None:
    c = compile_query("source.ip:10.0.0.5 AND url.query:*union* AND NOT user.name:mallory")
    assert c.params == ["10.0.0.5", "%union%", "mallory"]
    for value in ("10.0.0.5", "union", "mallory"):
        assert value not in c.sql
    assert c.sql.count("?") == len(c.params)


def test_match_all_is_true() -> None:
    assert compile_query("") == compile_query("*")
    assert compile_query("   ").sql == "TRUE"


def test_custom_fields() -> None:
    fields = {"message": pa.string(), "n": pa.int64(), "ok": pa.bool_()}
    assert compile_query("n:>3", fields=fields).params == [3]
    assert compile_query("ok:TRUE", fields=fields).params == [True]
    with pytest.raises(QueryError, match="unknown field 'source.ip'"):
        compile_query("source.ip:1", fields=fields)
    with pytest.raises(QueryError, match="full-text search needs"):
        compile_query("hello", fields={"n": pa.int64()})


def test_quote_ident() -> None:
    assert quote_ident("source.ip") == '"source.ip"'
    assert quote_ident('we"ird') == '"we""ird"'
    with pytest.raises(ValueError):
        quote_ident("")


ERRORS = [
    ("sorce.ip:10.0.0.5", r"unknown field 'sorce.ip' at position 0; did you mean 'source.ip'\?"),
    ("user.name:x AND sorce.ip:1", r"unknown field 'sorce.ip' at position 16"),
    ("zzzzqqq:1", r"unknown field 'zzzzqqq' at position 0$"),
    ("(user.name:a OR b", r"'\(' at position 0 is never closed"),
    ("user.name:a OR b)", r"unexpected '\)' at position 16"),
    ("((a)", r"'\(' at position 0 is never closed"),
    ("()", r"unexpected '\)' at position 1"),
    ("http.response.status_code:[1 TO]", r"unexpected '\]' at position 31; expected a range bound"),
    ("http.response.status_code:[1 5]", r"unexpected '5' at position 29; expected 'TO'"),
    ("http.response.status_code:[1 TO 5", r"range '\[' at position 26 is never closed"),
    ("http.response.status_code:[a TO 5]", r"'a' at position 27 is not a number"),
    ("http.response.status_code:[1 TO 5) x", r"unexpected '\)' inside range at position 33"),
    ("@timestamp:[2024-13-01 TO *]", r"'2024-13-01' at position 12 is not an ISO date or datetime"),
    ("@timestamp:2024*", r"not an ISO date"),
    ("http.response.status_code:[1* TO 5]", r"wildcards are not allowed in range bounds"),
    ("tags:[a TO b]", r"does not support ranges \(position 0\)"),
    ("user.name:a AND", r"query ends after 'AND' at position 12; expected a term"),
    ("user.name:a OR", r"query ends after 'OR' at position 12"),
    ("NOT", r"query ends after 'NOT' at position 0"),
    ("a AND OR b", r"unexpected 'OR' at position 6"),
    ("user.name:", r"query ends after ':' at position 9; expected a value for 'user.name'"),
    ("http.response.status_code:abc", r"is numeric; 'abc' at position 26 is not a number"),
    ("http.response.status_code:1e999", r"number out of range at position 26"),
    ("source.ip:fe80::/10", r"IPv6 CIDR not supported yet"),
    ("source.ip:10.0.0.0/33", r"invalid CIDR '10.0.0.0/33' at position 10"),
    ("source.ip:[a TO b]", r"needs IPv4 addresses; got 'a' at position 11"),
    ('message:"open', r"unterminated quoted phrase starting at position 8"),
    ("message:x\\", r"dangling escape '\\' at position 9"),
    ('labels.a"b:x', r"invalid label key"),
    ("_exists_:(a)", r"unexpected '\(' at position 9; expected a field name"),
    (":x", r"unexpected ':' at position 0"),
    ("(" * 100 + "a" + ")" * 100, r"nested too deeply at position \d+"),
    ("NOT " * 100 + "a", r"nested too deeply"),
]


@pytest.mark.parametrize(("query", "pattern"), ERRORS)
def test_errors(query: str, pattern: str) -> None:
    with pytest.raises(QueryError, match=pattern) as info:
        compile_query(query)
    assert re.search(r"position \d+", str(info.value)) or "full-text" in str(info.value)


# -- properties -------------------------------------------------------------

FRAGMENTS = [
    "source.ip",
    "url.query",
    "tags",
    "@timestamp",
    "http.response.status_code",
    "labels.env",
    "_exists_",
    "message",
    "sorce.ip",
    ":",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    " TO ",
    " AND ",
    " OR ",
    " NOT ",
    "&&",
    "||",
    "!",
    "-",
    "+",
    ">",
    ">=",
    "<",
    '"',
    "\\",
    "*",
    "?",
    "%",
    "_",
    "'",
    ";",
    " ",
    "10.0.0.0/8",
    "::1",
    "404",
    "1e5",
    "-3",
    "2024-01-01",
    "2024-01-01T10:00:00Z",
    "union",
    "\x00",
]
QUERIES = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=10).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=QUERIES)
def test_any_text_compiles_or_query_error(text: str) -> None:
    db = _shared_db()
    try:
        compiled = compile_query(text)
    except QueryError:
        return
    assert compiled.sql.count("?") == len(compiled.params)
    sql = f"SELECT count(*) FROM events WHERE {compiled.sql}"  # noqa: S608 - compiled predicate
    db.execute(sql, compiled.params).fetchone()


_DB: list[duckdb.DuckDBPyConnection] = []


def _shared_db() -> duckdb.DuckDBPyConnection:
    """One table for the property tests (hypothesis dislikes function fixtures)."""
    if not _DB:
        c = duckdb.connect()
        c.register("tbl", pa.Table.from_pylist(ROWS, schema=schema.ARROW_SCHEMA))
        c.execute("CREATE TABLE events AS SELECT * FROM tbl")
        c.unregister("tbl")
        _DB.append(c)
    return _DB[0]
