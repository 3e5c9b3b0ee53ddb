"""Sigma correlation rules: loading (this module) and evaluation (`correlation_eval`).

A correlation rule (`event_count`, `value_count`, `value_sum`, `value_avg`,
`temporal`, `temporal_ordered`) names detection rules by `name` or `id`;
pySigma's `SigmaCollection` resolves those references across every file of
the rule paths, so a correlation and the rules it counts may live in
different files. Each referenced detection rule is compiled with the stream
compiler (`compile_rule`): the same polars expression and log source row
filter the stream uses. Group-by, alias and value fields are mapped through
the referenced rule's log source mapping to ECS, so `c-ip` in a webserver
correlation means `source.ip`.

Whatever cannot be evaluated faithfully (a missing referenced rule, a
correlation of correlations, a field without an ECS mapping, an extended
condition on `temporal_ordered`) fails loading with a message naming the rule.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationCondition,
    SigmaCorrelationRule,
    SigmaCorrelationType,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from lightsoc import schema
from lightsoc.detect.sigma import logsources
from lightsoc.detect.sigma.compiler import (
    LEVEL_SCORES,
    YAML_LOADER,
    CompiledRule,
    RuleError,
    compile_rule,
    rule_files,
    rule_label,
)

log = logging.getLogger(__name__)

TYPES = {
    SigmaCorrelationType.EVENT_COUNT: "event_count",
    SigmaCorrelationType.VALUE_COUNT: "value_count",
    SigmaCorrelationType.VALUE_SUM: "value_sum",
    SigmaCorrelationType.VALUE_AVG: "value_avg",
    SigmaCorrelationType.TEMPORAL: "temporal",
    SigmaCorrelationType.TEMPORAL_ORDERED: "temporal_ordered",
}
OPS = ("gt", "gte", "lt", "lte", "eq", "neq")


@dataclass
class Ref:
    """One referenced detection rule, with its fields of the correlation in ECS."""

    name: str
    compiled: CompiledRule
    #: group-by name (alias or field as written) -> ECS field in this rule's events
    group: dict[str, str] = field(default_factory=dict)
    #: ECS field of the condition's `field` (value_count/sum/avg)
    value: str | None = None


@dataclass
class CorrelationRule:
    """A loaded correlation rule, ready for `correlation_eval.evaluate`."""

    id: str
    title: str
    level: str
    score: float
    type: str
    timespan: timedelta
    group_by: list[str]
    refs: list[Ref]
    op: str = "gte"
    threshold: float = 1
    #: extended temporal condition ("a and not b"): a tree over reference names
    expression: object | None = None
    origin: str = ""
    tags: list[str] = field(default_factory=list)

    @property
    def monotone(self) -> bool:
        """True when more events can only make the condition true, never false.

        Such a rule may be raised on a window that is still open (later runs add
        to the same window); the others wait until the window has closed.
        """
        return self.op in ("gt", "gte") and not _has_not(self.expression)


@dataclass
class CorrelationLoad:
    rules: list[CorrelationRule] = field(default_factory=list)
    failures: list[RuleError] = field(default_factory=list)


def _has_not(node: object) -> bool:
    if isinstance(node, CorrelationConditionNOT):
        return True
    if isinstance(node, CorrelationConditionAND | CorrelationConditionOR):
        return any(_has_not(a) for a in node.args)
    return False


def resolve_paths(paths: Iterable[str | Path], data_dir: Path | None = None) -> list[Path]:
    """`detect.rules` entries (`builtin`, files, dirs) plus `<data_dir>/rules/` if present."""
    from lightsoc.detect.build import imported_dir
    from lightsoc.detect.ruleset import builtin_dir

    out: list[Path] = []
    for p in paths:
        if str(p) == "builtin":
            d = builtin_dir()
            if d is not None:
                out.append(d)
            continue
        out.append(Path(p))
    if data_dir is not None and imported_dir(data_dir).is_dir():
        out.append(imported_dir(data_dir))
    return out


def load_correlations(paths: Iterable[str | Path]) -> CorrelationLoad:
    """Every correlation rule under the paths, its references resolved across all files."""
    result = CorrelationLoad()
    collections: list[SigmaCollection] = []
    for base in paths:
        base = Path(base)
        if not base.exists():
            continue  # the stream loader reports missing paths
        for p in rule_files(base):
            try:
                text = p.read_text(encoding="utf-8")
                # libyaml, as the stream loader: pySigma's from_yaml parses in pure Python
                docs = list(yaml.load_all(text, Loader=YAML_LOADER))
                collections.append(
                    SigmaCollection.from_dicts(docs, collect_errors=True, resolve_references=False)
                )
            except (OSError, UnicodeDecodeError, SigmaError, yaml.YAMLError):
                continue  # not our business: the stream loader reports broken files
            except Exception:  # pySigma trips over some non-rule YAML  # noqa: S112
                continue
            for r in collections[-1].rules:
                if isinstance(r, SigmaCorrelationRule):
                    r.custom_attributes["_lightsoc_origin"] = str(p)
    merged = SigmaCollection.merge(collections, resolve_references=False)
    compiled: dict[int, CompiledRule] = {}
    for rule in merged.rules:
        if not isinstance(rule, SigmaCorrelationRule):
            continue
        origin = str(rule.custom_attributes.get("_lightsoc_origin", ""))
        try:
            result.rules.append(_build(rule, merged, origin, compiled))
        except RuleError as exc:
            result.failures.append(exc)
        except Exception as exc:  # one rule, one message, whatever pySigma raised
            result.failures.append(
                RuleError(rule_label(rule, origin), f"{type(exc).__name__}: {exc}")
            )
    for f in result.failures:
        log.warning("correlation rule not loaded: %s", f)
    return result


def _build(
    rule: SigmaCorrelationRule,
    coll: SigmaCollection,
    origin: str,
    cache: dict[int, CompiledRule],
) -> CorrelationRule:
    label = rule_label(rule, origin)
    if rule.errors:
        raise RuleError(label, str(rule.errors[0]))
    ctype = TYPES.get(rule.type)
    if ctype is None:
        raise RuleError(label, f"correlation type {rule.type.name.lower()} is not supported")
    try:
        rule.resolve_rule_references(coll)
    except SigmaError as exc:
        raise RuleError(label, f"referenced rule not found: {exc}") from None
    cond = rule.condition
    expression = None
    op, threshold = "gte", float(len(rule.referenced_rules))
    if isinstance(cond, SigmaExtendedCorrelationCondition):
        if ctype != "temporal":
            raise RuleError(label, "an extended condition is only supported for temporal")
        expression = cond.parsed
    elif isinstance(cond, SigmaCorrelationCondition):
        op, threshold = cond.op.name.lower(), float(cond.count)
    value_field = cond.fieldref if isinstance(cond, SigmaCorrelationCondition) else None
    if isinstance(value_field, list):
        raise RuleError(label, "a condition over several fields is not supported")
    group_by = list(rule.group_by or [])
    aliases = {
        a.alias: {ref.reference: name for ref, name in a.mapping.items()} for a in rule.aliases
    }
    refs = [
        _ref(label, ref, group_by, aliases, value_field, cache) for ref in rule.referenced_rules
    ]
    level = rule.level.name.lower() if rule.level else "medium"
    return CorrelationRule(
        id=str(rule.id) if rule.id else (rule.name or rule.title),
        title=rule.title,
        level=level,
        score=LEVEL_SCORES.get(level, 50.0),
        type=ctype,
        timespan=timedelta(seconds=rule.timespan.seconds),
        group_by=group_by,
        refs=refs,
        op=op,
        threshold=threshold,
        expression=expression,
        origin=origin,
        tags=[str(t) for t in rule.tags or []],
    )


def _ref(
    label: str,
    ref: SigmaRuleReference,
    group_by: list[str],
    aliases: dict[str, dict[str, str]],
    value_field: str | None,
    cache: dict[int, CompiledRule],
) -> Ref:
    target = ref.rule
    if not isinstance(target, SigmaRule):
        raise RuleError(label, f"references correlation rule {ref.reference!r}: not supported")
    names = {ref.reference, target.name, str(target.id) if target.id else None} - {None}
    spec = logsources.resolve(target.logsource)
    if spec is None:
        raise RuleError(
            label,
            f"rule {ref.reference!r}: log source not covered "
            f"({logsources.describe(target.logsource)})",
        )
    compiled = cache.get(id(target))
    if compiled is None:
        try:
            compiled = compile_rule(target, "")
        except RuleError as exc:
            raise RuleError(label, f"referenced {exc}") from None
        cache[id(target)] = compiled

    def ecs(name: str, what: str) -> str:
        alias = aliases.get(name)
        if alias is not None:
            name = next((alias[n] for n in names if n in alias), name)
        mapped = spec.mapping.get(name, name)
        if mapped not in schema.POLARS_SCHEMA:
            raise RuleError(
                label, f"{what} field {name!r} of rule {ref.reference!r} is not an event field"
            )
        return mapped

    return Ref(
        name=ref.reference,
        compiled=compiled,
        group={g: ecs(g, "group-by") for g in group_by},
        value=ecs(value_field, "condition") if value_field else None,
    )


def load_for_config(
    rule_paths: Iterable[str | Path], data_dir: Path | None = None
) -> CorrelationLoad:
    """The correlation rules of `detect.rules` and the data directory's imported rules."""
    return load_correlations(resolve_paths(rule_paths, data_dir))
