"""Simple rules in the state store, compiled by the Sigma machinery."""

from __future__ import annotations

import polars as pl
import pytest

from lightsoc.config import Config
from lightsoc.detect.build import build_ruleset
from lightsoc.detect.sigma import RuleError
from lightsoc.detect.simple import compile_simple, load_simple
from lightsoc.store.state import StateStore
from lightsoc.store.state_rules import RulesStore, SimpleRule

DF = pl.DataFrame(
    {
        "url.original": ["/.env", "/app/.ENV", "/index.php?x=/.env", "/ok"],
        "source.ip": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
        "http.response.status_code": pl.Series([200, 404, 200, 200], dtype=pl.Int32),
    }
)


def rows(rule: SimpleRule) -> list[int]:
    from lightsoc.detect import RuleSet

    compiled = compile_simple(rule)
    return next((r for c, r in RuleSet([compiled]).evaluate_hits(DF).hits if c is compiled), [])


def test_kinds_and_exceptions():
    assert rows(SimpleRule(1, "re", "url.original", "regex", r"^/\.env$", "high", True)) == [0]
    assert rows(SimpleRule(2, "ci", "url.original", "contains", ".env", "high", True)) == [0, 1, 2]
    assert rows(SimpleRule(3, "eq", "url.original", "equals", "/.ENV", "high", True)) == [0]
    assert rows(
        SimpleRule(4, "num", "http.response.status_code", "equals", "404", "low", True)
    ) == [1]
    star = SimpleRule(5, "lit", "url.original", "contains", "*", "low", True)
    assert rows(star) == []  # a literal '*', not a wildcard
    exc = SimpleRule(
        6, "x", "url.original", "contains", ".env", "high", True, [("source.ip", "10.0.0.2")]
    )
    assert rows(exc) == [0, 2]


def test_bad_rules_fail_with_their_name():
    with pytest.raises(RuleError, match="'broken'.*not an event field"):
        compile_simple(SimpleRule(1, "broken", "nope.field", "contains", "x", "low", True))
    res = load_simple(
        [
            SimpleRule(1, "bad re", "url.original", "regex", "(?<=a)b", "low", True),
            SimpleRule(2, "off", "url.original", "regex", "(?<=a)b", "low", False),
            SimpleRule(3, "good", "url.original", "contains", "env", "low", True),
        ]
    )
    assert [r.title for r in res.rules] == ["good"]
    assert len(res.failures) == 1 and "bad re" in str(res.failures[0])


def test_store_round_trip_and_ruleset(tmp_path):
    state = StateStore.for_data_dir(tmp_path)
    try:
        store = RulesStore(state)
        store.add("env", "url.original", "contains", ".env", "critical")
        store.add("ok page", "url.original", "equals", "/ok", "low")
        store.add_exception("env", "source.ip", "10.0.0.3")
        store.set_enabled("ok page", False)
        with pytest.raises(ValueError, match="exists already"):
            store.add("env", "url.original", "contains", "x", "low")
        with pytest.raises(ValueError, match="severity"):
            store.add("y", "url.original", "contains", "x", "urgent")
        listed = store.list()
        assert [(r.name, r.enabled, r.exceptions) for r in listed] == [
            ("env", True, [("source.ip", "10.0.0.3")]),
            ("ok page", False, []),
        ]
        config = Config(detect={"rules": []})
        rs = build_ruleset(config, tmp_path, state)
        assert [r.title for r in rs.rules] == ["env"] and rs.rules[0].score == 90.0
        out = rs.evaluate(DF)
        assert out["rule.name"].to_list() == [["env"], ["env"], None, None]
        store.remove("env")
        assert build_ruleset(config, tmp_path, state).rules == []
    finally:
        state.close()
