"""Build one Sigma rule from a detection dict and run it on a hand-made frame."""

from __future__ import annotations

from typing import Any

import polars as pl
from sigma.rule import SigmaRule

from lightsoc.detect import RuleSet
from lightsoc.detect.sigma import CompiledRule, compile_rule

WEB = {"category": "webserver"}
ECS = {"product": "lightsoc"}  # every row, ECS field names


def make_rule(
    detection: dict[str, Any], logsource: dict[str, str] | None = None, **meta: Any
) -> CompiledRule:
    doc = {
        "title": meta.pop("title", "test rule"),
        "logsource": logsource or ECS,
        "detection": detection,
        "level": meta.pop("level", "medium"),
        **meta,
    }
    return compile_rule(SigmaRule.from_dict(doc, collect_errors=True), "test")


def matches(rule: CompiledRule, df: pl.DataFrame) -> list[int]:
    """Row indices the rule flags in `df`."""
    ev = RuleSet([rule]).evaluate_hits(df)
    return next((rows for r, rows in ev.hits if r is rule), [])


def web_frame(**cols: list[Any]) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    base = {"event.category": ["web"] * n, "event.dataset": ["nginx.access"] * n}
    return pl.DataFrame({**base, **cols}, strict=False)
