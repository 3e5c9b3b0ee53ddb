"""Injection: search values never reach the SQL text, and match only themselves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc.store.query import compile_query
from lightsoc.store.query_sql import ESCAPE
from tests.store.test_query import ROWS, _shared_db, ids, row_count

NASTY = [
    "'; DROP TABLE events; --",
    '") OR 1=1 --',
    "x' OR '1'='1",
    "' OR ''='",
    "\\'; DELETE FROM events; --",
    'a"b\\c',
    "\x00",
    "a\x00'; DROP TABLE events; --",
    "%' OR 1=1 --",
    "*/ OR TRUE /*",
    "$.env') = 'prod' OR ('1",
]


def _phrase(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bare(value: str) -> str:
    return "".join("\\" + ch for ch in value)


TEMPLATES = [
    ("url.query:{}", "url.query"),
    ("user.name:({} OR {})", "user.name"),
    ("tags:{}", "tags"),
    ("labels.env:{}", None),
    ("{}", None),
    ("NOT url.query:{}", None),
]


@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=20)),
    template=st.sampled_from(TEMPLATES),
    quoting=st.sampled_from([_phrase, _bare]),
)
def test_injection_values_stay_in_params(value: str, template: tuple, quoting) -> None:
    db = _shared_db()
    fmt, column = template
    compiled = compile_query(fmt.format(quoting(value), quoting(value)))
    # the SQL text does not depend on the value, but for a fixed ESCAPE clause that
    # a pattern with an escaped literal needs
    plain = compile_query(fmt.format(quoting("x"), quoting("x"))).sql
    assert compiled.sql.replace(ESCAPE, "") == plain.replace(ESCAPE, "")
    like = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    assert any(p == value or (isinstance(p, str) and like in p) for p in compiled.params)
    sql = f'SELECT "event.id" FROM events WHERE {compiled.sql}'  # noqa: S608 - compiled predicate
    matched = {r[0] for r in db.execute(sql, compiled.params).fetchall()}
    assert row_count(db) == len(ROWS)
    if column == "url.query" or column == "user.name":
        assert matched == {r["event.id"] for r in ROWS if r.get(column) == value}
    if column == "tags":
        assert matched == {r["event.id"] for r in ROWS if value in (r.get("tags") or [])}


@pytest.mark.parametrize("value", NASTY)
def test_injection_matches_nothing(value: str) -> None:
    con = _shared_db()
    for query in (f"url.query:{_phrase(value)}", _phrase(value), f"labels.env:{_phrase(value)}"):
        compiled = compile_query(query)
        for param in compiled.params:
            if isinstance(param, str) and len(param) > 3:
                assert param.strip('%$."') not in compiled.sql
        assert ids(con, query) == set()
        assert row_count(con) == len(ROWS)
    assert ids(con, "url.query:\"x' OR '1'='1\"") == set()
