"""The compiler never crashes: any generated rule loads and evaluates, or fails with RuleError."""

from __future__ import annotations

import polars as pl
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightsoc.detect import RuleSet
from lightsoc.detect.sigma import load_text

FIELDS = [
    "cs-uri-query",
    "cs-method",
    "sc-status",
    "c-ip",
    "cs-user-agent",
    "url.original",
    "dns.answers",
    "source.port",
    "event.risk_score",
    "rule.name",
    "no-such-field",
    "message",
]
MODIFIERS = [
    "contains",
    "startswith",
    "endswith",
    "all",
    "re",
    "i",
    "m",
    "s",
    "cidr",
    "base64",
    "base64offset",
    "exists",
    "lt",
    "lte",
    "gt",
    "gte",
    "fieldref",
    "windash",
    "cased",
    "wide",
    "neq",
    "expand",
    "hour",
    "bogus",
]
SCALARS = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(["*", "?", "\\*", "a*b?c", "10.0.0.0/8", "::1/128", "(a+)+$", "[", "%x%"]),
    st.integers(-5, 70000),
    st.booleans(),
    st.none(),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))
KEYS = st.builds(
    lambda f, mods: "|".join([f, *mods]),
    st.sampled_from(FIELDS),
    st.lists(st.sampled_from(MODIFIERS), max_size=3),
)
SELECTION = st.one_of(
    st.dictionaries(KEYS, VALUES, min_size=1, max_size=3),
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3),  # keywords
)
CONDITIONS = st.sampled_from(
    [
        "sel_a",
        "sel_a and not sel_b",
        "1 of sel_*",
        "all of them",
        "not 1 of them",
        "sel_a or (sel_b and sel_c)",
        "sel_x",
    ]
)
LOGSOURCES = st.sampled_from(
    [
        {"category": "webserver"},
        {"category": "dns"},
        {"product": "lightsoc"},
        {"product": "windows"},
    ]
)
FRAME = pl.DataFrame(
    {
        "event.category": ["web", "web", None],
        "event.dataset": ["nginx.access", "dns", None],
        "url.original": ["/a?b=c", "/A*B?C", None],
        "source.ip": ["10.1.2.3", "::1", None],
        "http.response.status_code": pl.Series([200, 404, None], dtype=pl.Int32),
        "dns.answers": pl.Series([["x"], None, []], dtype=pl.List(pl.Utf8)),
        "message": ["hello", None, "x"],
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sels=st.fixed_dictionaries({"sel_a": SELECTION, "sel_b": SELECTION, "sel_c": SELECTION}),
    condition=CONDITIONS,
    logsource=LOGSOURCES,
)
def test_generated_rules_load_or_fail_cleanly(sels, condition, logsource):
    doc = {"title": "fuzz", "logsource": logsource, "detection": {**sels, "condition": condition}}
    res = load_text(yaml.safe_dump(doc), "fuzz.yml")
    assert len(res.rules) + len(res.failures) == 1
    for f in res.failures:
        assert "fuzz" in str(f)
    if res.rules:
        out = RuleSet(res.rules).evaluate(FRAME)
        assert out.height == FRAME.height


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_loader(text):
    res = load_text(text, "junk.yml")
    assert all(str(f) for f in res.failures)
