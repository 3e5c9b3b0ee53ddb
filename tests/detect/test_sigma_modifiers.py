"""Each Sigma value modifier and value form against hand-made frames."""

from __future__ import annotations

import base64

import polars as pl
import pytest

from lightsoc.detect.sigma import RuleError
from tests.detect.helpers import WEB, make_rule, matches, web_frame

URLS = ["/index.php?ID=1", "/Admin/login", "/static/app.js", None, "/a*b?c"]


def test_plain_equality_is_case_insensitive():
    r = make_rule({"sel": {"url.original": "/admin/LOGIN"}, "condition": "sel"})
    assert matches(r, web_frame(**{"url.original": URLS})) == [1]


def test_cased_equality_is_case_sensitive():
    r = make_rule({"sel": {"url.original|cased": "/admin/login"}, "condition": "sel"})
    assert matches(r, web_frame(**{"url.original": URLS})) == []
    r = make_rule({"sel": {"url.original|cased": "/Admin/login"}, "condition": "sel"})
    assert matches(r, web_frame(**{"url.original": URLS})) == [1]


@pytest.mark.parametrize(
    ("modifier", "value", "expected"),
    [
        ("contains", "PHP?id", [0]),
        ("startswith", "/STATIC", [2]),
        ("endswith", ".JS", [2]),
        ("contains", "/", [0, 1, 2, 4]),
    ],
)
def test_contains_startswith_endswith(modifier, value, expected):
    r = make_rule({"sel": {f"url.original|{modifier}": value}, "condition": "sel"})
    assert matches(r, web_frame(**{"url.original": URLS})) == expected


def test_list_values_are_or_and_all_makes_them_and():
    df = web_frame(**{"url.original": ["/a?x=1&y=2", "/a?x=1", "/b?y=2"]})
    any_ = make_rule({"sel": {"url.original|contains": ["x=1", "y=2"]}, "condition": "sel"})
    all_ = make_rule({"sel": {"url.original|contains|all": ["x=1", "y=2"]}, "condition": "sel"})
    assert matches(any_, df) == [0, 1, 2]
    assert matches(all_, df) == [0]


def test_wildcards_star_and_question_mark():
    df = web_frame(**{"url.original": ["/admin/x/login", "/admin/login", "/adminXlogin", "/a"]})
    star = make_rule({"sel": {"url.original": "/admin*login"}, "condition": "sel"})
    one = make_rule({"sel": {"url.original": "/admin?login"}, "condition": "sel"})
    assert matches(star, df) == [0, 1, 2]
    assert matches(one, df) == [1, 2]


def test_escaped_wildcards_are_literal():
    r = make_rule({"sel": {"url.original": "/a\\*b\\?c"}, "condition": "sel"})
    df = web_frame(**{"url.original": ["/a*b?c", "/aXXbYc"]})
    assert matches(r, df) == [0]


def test_regex_and_flags():
    df = web_frame(**{"message": ["Line one\nSECOND line", "second", "x"]})
    plain = make_rule({"sel": {"message|re": "^second"}, "condition": "sel"})
    i = make_rule({"sel": {"message|re|i": "^second"}, "condition": "sel"})
    im = make_rule({"sel": {"message|re|i|m": "^second"}, "condition": "sel"})
    s = make_rule({"sel": {"message|re|s": "one.SECOND"}, "condition": "sel"})
    no_s = make_rule({"sel": {"message|re": "one.SECOND"}, "condition": "sel"})
    assert matches(plain, df) == [1]
    assert matches(i, df) == [1]
    assert matches(im, df) == [0, 1]
    assert matches(s, df) == [0]
    assert matches(no_s, df) == []


@pytest.mark.parametrize("pattern", ["foo(?=bar)", "(?<!x)y", "(a)\\1", "(?P<n>a)(?P=n)"])
def test_regex_lookaround_and_backrefs_are_rejected(pattern):
    with pytest.raises(RuleError) as exc:
        make_rule({"sel": {"message|re": pattern}, "condition": "sel"}, title="Bad Regex")
    assert "Bad Regex" in str(exc.value)
    # pySigma's own check (re2) or ours (the polars Rust engine) rejects it, naming the regex
    assert "regex" in exc.value.reason.lower() or "regular expression" in exc.value.reason.lower()
    assert pattern in exc.value.reason


def test_catastrophic_regex_runs_in_linear_time_engine():
    # (a+)+$ backtracks exponentially in PCRE/Python; the Rust engine is linear
    r = make_rule({"sel": {"message|re": "^(a+)+$"}, "condition": "sel"})
    df = web_frame(message=["a" * 5000 + "!", "aaaa"])
    assert matches(r, df) == [1]


def test_cidr_v4_aligned_unaligned_and_v6():
    ips = ["10.1.2.3", "10.2.0.1", "192.168.10.130", "192.168.10.20", "2001:db8::1", None]
    df = web_frame(**{"source.ip": ips})
    assert matches(make_rule({"s": {"source.ip|cidr": "10.1.0.0/16"}, "condition": "s"}), df) == [0]
    r = make_rule({"s": {"source.ip|cidr": "192.168.10.128/25"}, "condition": "s"})
    assert matches(r, df) == [2]
    r = make_rule({"s": {"source.ip|cidr": "2001:DB8::/32"}, "condition": "s"})
    assert matches(r, df) == [4]


def test_base64_and_base64offset():
    secret = "whoami"
    whole = base64.b64encode(secret.encode()).decode()
    shifted = base64.b64encode(b"x" + secret.encode() + b"yy").decode()
    df = web_frame(**{"url.query": [f"c={whole}", f"c={shifted}", "c=plain"]})
    b64 = make_rule({"s": {"url.query|base64|contains": secret}, "condition": "s"})
    off = make_rule({"s": {"url.query|base64offset|contains": secret}, "condition": "s"})
    assert matches(b64, df) == [0]
    assert matches(off, df) == [0, 1]


def test_windash_expands_dash_forms():
    df = web_frame(**{"process.command_line": ["net user -add", "net user /add", "net user add"]})
    r = make_rule({"s": {"process.command_line|windash|contains": " -add"}, "condition": "s"})
    assert matches(r, df) == [0, 1]


def test_exists_true_and_false():
    df = web_frame(**{"user.name": ["bob", None]})
    yes = make_rule({"s": {"user.name|exists": True}, "condition": "s"})
    no = make_rule({"s": {"user.name|exists": False}, "condition": "s"})
    assert matches(yes, df) == [0]
    assert matches(no, df) == [1]


def test_exists_on_a_field_the_batch_lacks():
    r = make_rule({"s": {"user.name|exists": False}, "condition": "s"})
    assert matches(r, web_frame(**{"url.original": ["/"]})) == [0]


@pytest.mark.parametrize(
    ("modifier", "expected"), [("lt", [0]), ("lte", [0, 1]), ("gt", [2]), ("gte", [1, 2])]
)
def test_numeric_comparisons(modifier, expected):
    df = web_frame(**{"http.response.status_code": pl.Series([200, 404, 500], dtype=pl.Int32)})
    r = make_rule({"s": {f"http.response.status_code|{modifier}": 404}, "condition": "s"})
    assert matches(r, df) == expected


def test_numeric_equality_from_number_and_string():
    df = web_frame(**{"http.response.status_code": pl.Series([200, 404], dtype=pl.Int32)})
    r = make_rule({"s": {"sc-status": 404}, "condition": "s"}, WEB)
    assert matches(r, df) == [1]
    r = make_rule({"s": {"sc-status": "404"}, "condition": "s"}, WEB)
    assert matches(r, df) == [1]


def test_fieldref_compares_two_fields_case_insensitively():
    df = web_frame(
        **{"user.name": ["Bob", "alice", None], "user.target.name": ["bob", "root", None]}
    )
    r = make_rule({"s": {"user.name|fieldref": "user.target.name"}, "condition": "s"})
    assert matches(r, df) == [0]
    r = make_rule({"s": {"user.name|fieldref": "user.target.name"}, "condition": "not s"})
    assert matches(r, df) == [1, 2]


def test_null_value_matches_absent_field():
    df = web_frame(**{"http.request.referrer": ["http://x/", None]})
    r = make_rule({"s": {"cs-referer": None}, "condition": "s"}, WEB)
    assert matches(r, df) == [1]


def test_keywords_search_message_and_original_case_insensitively():
    df = pl.DataFrame(
        {
            "message": ["Failed password for root", None, "ok"],
            "event.original": ["x", "<1>sshd: FAILED PASSWORD for bob", "ok"],
        }
    )
    r = make_rule({"keywords": ["failed password"], "condition": "keywords"})
    assert matches(r, df) == [0, 1]
    wild = make_rule({"keywords": ["failed*root"], "condition": "keywords"})
    assert matches(wild, df) == [0]
    both = make_rule({"keywords": {"|all": ["failed", "bob"]}, "condition": "keywords"})
    assert matches(both, df) == [1]


def test_list_fields_match_any_element():
    df = pl.DataFrame(
        {
            "event.dataset": ["dns", "dns"],
            "dns.answers": [["1.2.3.4", "EVIL.example"], ["5.6.7.8"]],
        },
        schema={"event.dataset": pl.Utf8, "dns.answers": pl.List(pl.Utf8)},
    )
    r = make_rule({"s": {"answer|endswith": "evil.example"}, "condition": "s"}, {"category": "dns"})
    assert matches(r, df) == [0]


def test_numbers_on_string_fields_compare_as_text():
    df = web_frame(**{"url.query": ["1", "12"]})
    r = make_rule({"s": {"url.query": 1}, "condition": "s"})
    assert matches(r, df) == [0]
