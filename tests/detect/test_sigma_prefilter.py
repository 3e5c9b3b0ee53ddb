"""The literal prefilter never changes what matches: with and without it, same hits."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc.detect import RuleSet
from tests.detect.helpers import make_rule, web_frame
from tests.detect.test_sigma_real import DATA, REPO_RULES, SIGMA, parse, payload_lines


def unfiltered(rs: RuleSet) -> RuleSet:
    return RuleSet([dataclasses.replace(r, prefilter=None) for r in rs.rules])


def hits(rs: RuleSet, df: pl.DataFrame) -> dict[str, list[int]]:
    return {r.id: rows for r, rows in rs.evaluate_hits(df).hits}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    rs = RuleSet.load(
        [
            REPO_RULES,
            SIGMA / "web",
            SIGMA / "linux" / "builtin",
            DATA / "sigma" / "rules-emerging-threats",
        ]
    )
    # the built-in Linux rules select parsed actions (no literal to prefilter on)
    assert sum(1 for r in rs.rules if r.prefilter) > 0.85 * len(rs)
    web = [r for r in rs.rules if r.logsource == "webserver"]
    assert sum(1 for r in web if r.prefilter) == len(web)
    return rs


def test_same_hits_on_attack_payloads_and_real_logs(rules: RuleSet) -> None:
    lines: list[str] = []
    for name in (
        "SQL_Injection.txt",
        "XSS_Injection.txt",
        "Command_Injection.txt",
        "File_Inclusion.txt",
    ):
        lines += payload_lines(name)[1][:3000]
    lines += (DATA / "web" / "hackers-access.log").read_text().splitlines()
    lines += (DATA / "auth" / "loghub" / "OpenSSH_2k.log").read_text().splitlines()
    df = parse(lines)
    with_pf = hits(rules, df)
    assert with_pf == hits(unfiltered(rules), df)
    assert sum(map(len, with_pf.values())) > 3000


@settings(max_examples=60, deadline=None)
@given(
    value=st.text(alphabet="aAbB*?É é.%/", min_size=1, max_size=8),
    modifier=st.sampled_from(["", "|contains", "|startswith", "|endswith", "|cased"]),
    text=st.lists(st.text(alphabet="aAbBxÉ é.%/", max_size=12), min_size=1, max_size=6),
)
def test_same_hits_on_generated_values(value, modifier, text):
    rule = make_rule({"s": {f"url.original{modifier}": value}, "k": [value], "condition": "s or k"})
    df = web_frame(**{"url.original": text, "message": list(reversed(text))})
    rs = RuleSet([rule])
    assert hits(rs, df) == hits(unfiltered(rs), df)
