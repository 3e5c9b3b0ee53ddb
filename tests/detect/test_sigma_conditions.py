"""Condition forms, rule-level errors and the RuleSet's merge / log-source behaviour."""

from __future__ import annotations

import polars as pl
import pytest

from lightsoc.detect import RuleSet
from lightsoc.detect.sigma import RuleError, load_text
from lightsoc.detect.sigma.values import Unsupported, check_regex
from tests.detect.helpers import WEB, make_rule, matches, web_frame

DF = web_frame(
    **{
        "url.original": ["/a", "/b", "/a", "/c"],
        "http.request.method": ["GET", "POST", "POST", "GET"],
        "user_agent.original": ["curl", "curl", "firefox", None],
    }
)
SELS = {
    "selection_a": {"cs-uri-query": "/a"},
    "selection_post": {"cs-method": "post"},
    "filter_ff": {"cs-user-agent|contains": "firefox"},
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("selection_a and selection_post", [2]),
        ("selection_a or selection_post", [0, 1, 2]),
        ("not selection_a", [1, 3]),
        ("selection_a and not filter_ff", [0]),
        ("1 of selection_*", [0, 1, 2]),
        ("all of selection_*", [2]),
        ("1 of them", [0, 1, 2]),
        ("all of them", [2]),
        ("(selection_a or selection_post) and not 1 of filter_*", [0, 1]),
        ("not (selection_a or selection_post)", [3]),
    ],
)
def test_condition_forms(condition, expected):
    r = make_rule({**SELS, "condition": condition}, WEB)
    assert matches(r, DF) == expected


def test_not_over_absent_value_is_true():
    r = make_rule({"f": {"cs-user-agent|contains": "curl"}, "condition": "not f"}, WEB)
    assert matches(r, DF) == [2, 3]  # row 3 has no user agent: it does not contain curl


def test_list_of_maps_is_or():
    r = make_rule(
        {"sel": [{"cs-uri-query": "/b"}, {"cs-user-agent": "FIREFOX"}], "condition": "sel"}, WEB
    )
    assert matches(r, DF) == [1, 2]


def test_several_conditions_are_or():
    r = make_rule({**SELS, "condition": ["selection_a and selection_post", "filter_ff"]}, WEB)
    assert matches(r, DF) == [2]


def test_unmapped_field_fails_naming_rule_and_field():
    with pytest.raises(RuleError) as exc:
        make_rule({"s": {"cs-cookie|contains": "x"}, "condition": "s"}, WEB, title="Cookie Rule")
    assert "Cookie Rule" in str(exc.value)
    assert "cs-cookie" in exc.value.reason


def test_uncovered_log_source_fails():
    with pytest.raises(RuleError, match="log source not covered.*process_creation"):
        make_rule(
            {"s": {"Image|endswith": "/bash"}, "condition": "s"},
            {"category": "process_creation", "product": "linux"},
        )


def test_unsupported_modifier_fails():
    with pytest.raises(RuleError, match="placeholder"):
        make_rule({"s": {"source.ip|expand": "%internal%"}, "condition": "s"})


def test_own_regex_check_rejects_what_rust_regex_cannot_run():
    for pattern in ("foo(?=bar)", "(a)\\1", "a++"):
        with pytest.raises(Unsupported):
            check_regex(pattern)
    check_regex("(?i)union\\s+select")


def test_load_text_reports_bad_yaml_and_correlation_rules():
    bad = load_text("title: x\ndetection: [", "bad.yml")
    assert not bad.rules and "bad.yml" in str(bad.failures[0])
    corr = load_text(
        """
title: failure
name: some-rule
logsource: {product: linux, service: sshd}
detection: {k: [failed], condition: k}
---
title: many failures
correlation:
    type: event_count
    rules: [some-rule]
    group-by: [source.ip]
    timespan: 5m
    condition: {gte: 10}
""",
        "corr.yml",
    )
    assert corr.rules == []  # the base rule feeds the correlation only (generate: false)
    assert [r.title for r in corr.correlation_bases] == ["failure"]
    assert not corr.failures  # not a failure: the scheduler runs it
    assert len(corr.correlations) == 1 and "many failures" in corr.correlations[0]


def test_level_scores_and_merge_with_existing_flags():
    high = make_rule({"s": {"cs-uri-query": "/a"}, "condition": "s"}, WEB, title="A", level="high")
    low = make_rule({"s": {"cs-method": "GET"}, "condition": "s"}, WEB, title="G", level="low")
    df = DF.with_columns(
        pl.Series("rule.name", [["intel"], None, None, None], dtype=pl.List(pl.Utf8)),
        pl.Series("rule.id", [["ti:1"], None, None, None], dtype=pl.List(pl.Utf8)),
        pl.Series("event.risk_score", [90.0, None, None, None]),
    )
    out = RuleSet([high, low]).evaluate(df)
    assert out["rule.name"].to_list() == [["intel", "A", "G"], None, ["A"], ["G"]]
    assert out["rule.id"].to_list()[0][0] == "ti:1"
    assert out["event.risk_score"].to_list() == [90.0, None, 75.0, 25.0]
    assert out.columns == df.columns  # nothing extra left behind


def test_rules_only_see_rows_of_their_log_source():
    r = make_rule(
        {"keywords": ["password"], "condition": "keywords"}, {"product": "linux", "service": "sshd"}
    )
    df = pl.DataFrame(
        {
            "event.dataset": ["sshd", "nginx.access", "syslog"],
            "event.category": ["authentication", "web", None],
            "process.name": ["sshd", None, "cron"],
            "message": ["Failed password", "GET /password", "password changed"],
        }
    )
    assert matches(r, df) == [0]


def test_empty_batch_and_empty_ruleset():
    r = make_rule({"s": {"cs-uri-query": "/a"}, "condition": "s"}, WEB)
    empty = DF.head(0)
    assert RuleSet([r]).evaluate(empty).height == 0
    assert RuleSet([]).evaluate(DF).equals(DF)
