"""Simple DB rules -> Sigma rules -> the same compiler as SigmaHQ rules.

A simple rule ("`url.query` matches regex R -> name, severity") becomes a
Sigma rule on the `lightsoc` log source (every event, ECS field names), its
exceptions a `not filter_*` selection, so matching semantics (case, regex
engine, null handling) are exactly those of Sigma rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sigma.rule import SigmaRule

from lightsoc import schema
from lightsoc.detect.sigma.compiler import CompiledRule, LoadResult, RuleError, compile_rule

if TYPE_CHECKING:
    from lightsoc.store.state_rules import SimpleRule


def _escape(value: str) -> str:
    """A literal for a Sigma string (no wildcards)."""
    return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def to_sigma(rule: SimpleRule) -> dict[str, Any]:
    """The Sigma rule (as a dict) a simple rule stands for."""
    if rule.field not in schema.POLARS_SCHEMA:
        raise RuleError(f"simple rule {rule.name!r}", f"{rule.field!r} is not an event field")
    if rule.kind == "regex":
        key, value = f"{rule.field}|re", rule.pattern
    elif rule.kind == "contains":
        key, value = f"{rule.field}|contains", _escape(rule.pattern)
    else:
        key, value = rule.field, _escape(rule.pattern)
    detection: dict[str, Any] = {"selection": {key: value}}
    condition = "selection"
    for i, (f, v) in enumerate(rule.exceptions):
        if f not in schema.POLARS_SCHEMA:
            raise RuleError(
                f"simple rule {rule.name!r}", f"exception field {f!r} is not an event field"
            )
        detection[f"filter_{i}"] = {f: _escape(v)}
    if rule.exceptions:
        condition += " and not 1 of filter_*"
    detection["condition"] = condition
    return {
        "title": rule.name,
        "status": "experimental",
        "logsource": {"product": "lightsoc"},
        "detection": detection,
        "level": rule.severity,
    }


def compile_simple(rule: SimpleRule) -> CompiledRule:
    sigma = SigmaRule.from_dict(to_sigma(rule), collect_errors=True)
    compiled = compile_rule(sigma, origin="state store")
    compiled.id = f"db:{rule.id}"
    compiled.kind = "db"
    return compiled


def load_simple(rules: list[SimpleRule]) -> LoadResult:
    """Compile the enabled simple rules; failures name the rule."""
    out = LoadResult()
    for r in rules:
        if not r.enabled:
            continue
        try:
            out.rules.append(compile_simple(r))
        except RuleError as exc:
            out.failures.append(exc)
    return out
