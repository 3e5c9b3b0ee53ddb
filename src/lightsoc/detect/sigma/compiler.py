"""Compile a Sigma detection rule to ONE vectorised polars boolean expression.

pySigma parses the YAML and resolves the condition (`and`/`or`/`not`,
`1 of`/`all of selection*`, `them`) into a tree whose leaves are
"field matches value" or "keyword"; value modifiers (contains, startswith,
endswith, all, re, cidr, base64, base64offset, windash, exists, lt/gt...,
fieldref, cased) are already applied to the values by pySigma. This module
maps the rule's fields to ECS (`logsources`), then turns the tree into a polars
expression (`values`). Whatever cannot be evaluated faithfully raises
`RuleError` naming the rule and the construct, so a rule never loads wrong.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaCasedString,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaType,
)

from lightsoc import schema
from lightsoc.detect.sigma import logsources, prefilter
from lightsoc.detect.sigma.values import (
    Unsupported,
    field_expr,
    fieldref_expr,
    lowered_col,
    regex_pred,
    string_pred,
    string_shape,
)

#: Sigma level -> event.risk_score
LEVEL_SCORES = {"informational": 10.0, "low": 25.0, "medium": 50.0, "high": 75.0, "critical": 90.0}
#: fields a keyword (field-less value) is searched in, case-insensitively like Sigma
KEYWORD_FIELDS = ("message", "event.original")
_KEYWORDS = "\x00keywords"  # group key of fused keyword values
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it


def _anchored(texts: list[str], *, start: bool) -> str:
    """`^(?:a|b)` / `(?:a|b)$` over escaped literals (the column is already lower-cased)."""
    alternation = "|".join(re.escape(t) for t in sorted(set(texts), key=lambda t: (-len(t), t)))
    return f"(?s)^(?:{alternation})" if start else f"(?s)(?:{alternation})$"


class RuleError(Exception):
    """A rule that cannot be loaded; `str()` names the rule and the construct."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason


@dataclass
class CompiledRule:
    """A detection rule ready for the stream."""

    id: str
    title: str
    level: str
    score: float
    logsource: str
    #: rows the rule applies to (None: every row)
    rows: pl.Expr | None
    expr: pl.Expr
    #: string fields the expression reads lower-cased (computed once per batch)
    lowered: set[str] = field(default_factory=set)
    origin: str = ""
    #: where it came from: "sigma" (YAML) or "db" (a simple rule in the state store)
    kind: str = "sigma"
    #: necessary literals {field: {needle}} (see `prefilter`); None: evaluate every row
    prefilter: dict[str, set[str]] | None = None
    #: Sigma tags (attack.t1190, ...): its alerts carry them
    tags: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.title


def rule_label(rule: SigmaRule | SigmaCorrelationRule, origin: str) -> str:
    title = getattr(rule, "title", None) or "(untitled)"
    rid = getattr(rule, "id", None)
    where = f" [{origin}]" if origin else ""
    return f"rule {title!r} ({rid}){where}" if rid else f"rule {title!r}{where}"


class _Compiler:
    def __init__(self, spec: logsources.LogSourceSpec) -> None:
        self.spec = spec
        self.lowered: set[str] = set()

    def field(self, name: str) -> str:
        mapped = self.spec.mapping.get(name, name)
        if mapped not in schema.POLARS_SCHEMA:
            raise Unsupported(
                f"field {name!r} has no ECS mapping for log source {self.spec.name}"
                if mapped == name
                else f"field {name!r} maps to {mapped!r}, which is not an event field"
            )
        return mapped

    def cond(self, node: object) -> pl.Expr:
        if isinstance(node, ConditionOR):
            return self._or(node.args)
        if isinstance(node, ConditionAND):
            return pl.all_horizontal([self.cond(a) for a in node.args])
        if isinstance(node, ConditionNOT):
            return ~self.cond(node.args[0])
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.leaf(node.field, node.value)
        if isinstance(node, ConditionValueExpression):
            return self.keyword(node.value)
        if isinstance(node, ConditionItem):
            raise Unsupported(f"condition element {type(node).__name__}")
        raise Unsupported(f"condition element {node!r}")

    def _or(self, args: list) -> pl.Expr:
        """OR, with same-field plain string values fused (Aho-Corasick `contains_any`, `is_in`)."""
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        rest: list[pl.Expr] = []
        for a in args:
            key = self._fusable(a)
            if key is None:
                rest.append(self.cond(a))
            else:
                groups[key[:2]].append(key[2])
        for (fname, kind), texts in groups.items():
            if fname == _KEYWORDS:
                self.lowered.update(KEYWORD_FIELDS)
                cols = [lowered_col(f) for f in KEYWORD_FIELDS]
                rest.append(
                    pl.any_horizontal([c.str.contains_any(texts).fill_null(False) for c in cols])
                )
                continue
            if len(texts) == 1:
                rest.append(self.leaf(fname, _plain(kind, texts[0])))
                continue
            fld = self.field(fname)
            self.lowered.add(fld)
            col = lowered_col(fld)
            if kind == "contains":
                e = col.str.contains_any(texts)
            elif kind == "eq":
                e = col.is_in(texts)
            elif kind == "startswith":  # one anchored alternation, not one expression each
                e = col.str.contains(_anchored(texts, start=True))
            else:
                e = col.str.contains(_anchored(texts, start=False))
            rest.append(e.fill_null(False))
        return rest[0] if len(rest) == 1 else pl.any_horizontal(rest)

    def _fusable(self, node: object) -> tuple[str, str, str] | None:
        if isinstance(node, ConditionValueExpression):
            v = node.value
            shape = string_shape(v) if type(v) is SigmaString else None
            if shape is None or shape[1] == "" or shape[0] not in ("eq", "contains"):
                return None
            return _KEYWORDS, "contains", shape[1].lower()  # a keyword is a substring search
        if not isinstance(node, ConditionFieldEqualsValueExpression):
            return None
        v = node.value
        if type(v) is not SigmaString or node.field is None:
            return None
        fld = self.field(node.field)
        if fld not in schema.POLARS_SCHEMA or schema.POLARS_SCHEMA[fld] != pl.Utf8:
            return None
        shape = string_shape(v)
        if shape is None or shape[0] == "any" or shape[1] == "":
            return None
        return node.field, shape[0], shape[1].lower()

    def leaf(self, name: str, value: SigmaType) -> pl.Expr:
        fld = self.field(name)
        if isinstance(value, SigmaFieldReference):
            ref = SigmaFieldReference(self.field(value.field), value.starts_with, value.ends_with)
            return fieldref_expr(fld, ref, self.lowered)
        return field_expr(fld, value, self.lowered)

    def keyword(self, value: SigmaType) -> pl.Expr:
        if isinstance(value, SigmaExpansion):
            return pl.any_horizontal([self.keyword(v) for v in value.values])
        if isinstance(value, SigmaNumber):
            value = SigmaString(str(value.number))
        if isinstance(value, SigmaRegularExpression):
            pred = regex_pred(value)
            return pl.any_horizontal([pred(pl.col(f)).fill_null(False) for f in KEYWORD_FIELDS])
        if not isinstance(value, SigmaString):
            raise Unsupported(f"keyword of type {type(value).__name__}")
        pred = string_pred(value, keyword=True)
        if isinstance(value, SigmaCasedString):
            cols = [pl.col(f) for f in KEYWORD_FIELDS]
        else:
            self.lowered.update(KEYWORD_FIELDS)
            cols = [lowered_col(f) for f in KEYWORD_FIELDS]
        return pl.any_horizontal([pred(c).fill_null(False) for c in cols])


def _plain(kind: str, text: str) -> SigmaString:
    s = SigmaString(text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?"))
    multi = SigmaString("*")
    if kind == "contains":
        return multi + s + multi
    if kind == "startswith":
        return s + multi
    if kind == "endswith":
        return multi + s
    return s


def compile_rule(rule: SigmaRule, origin: str = "") -> CompiledRule:
    """The rule as a `CompiledRule`, or `RuleError` saying why it cannot be."""
    label = rule_label(rule, origin)
    if rule.errors:
        raise RuleError(label, str(rule.errors[0]))
    spec = logsources.resolve(rule.logsource)
    if spec is None:
        raise RuleError(label, f"log source not covered ({logsources.describe(rule.logsource)})")
    try:
        spec.pipeline().apply(rule)
        conds = [c.parsed for c in rule.detection.parsed_condition]
        comp = _Compiler(spec)
        exprs = [comp.cond(c) for c in conds]
        needed = prefilter.union_of(
            [prefilter.needles(c, comp.field, KEYWORD_FIELDS) for c in conds]
        )
    except Unsupported as exc:
        raise RuleError(label, str(exc)) from None
    except SigmaError as exc:
        raise RuleError(label, f"{type(exc).__name__}: {exc}") from None
    expr = exprs[0] if len(exprs) == 1 else pl.any_horizontal(exprs)
    level = rule.level.name.lower() if rule.level else "medium"
    return CompiledRule(
        id=str(rule.id) if rule.id else rule.title,
        title=rule.title,
        level=level,
        score=LEVEL_SCORES.get(level, 50.0),
        logsource=spec.name,
        rows=spec.filter,
        expr=expr,
        lowered=comp.lowered,
        origin=origin,
        prefilter=needed,
        tags=[str(t) for t in rule.tags or []],
    )


@dataclass
class LoadResult:
    """What loading some YAML gave: compiled rules and failures (one line each)."""

    rules: list[CompiledRule] = field(default_factory=list)
    failures: list[RuleError] = field(default_factory=list)
    #: correlation rules seen (they run in the scheduler, not in the stream)
    correlations: list[str] = field(default_factory=list)
    #: detection rules that only feed a correlation (Sigma `generate: false`)
    correlation_bases: list[CompiledRule] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.rules.extend(other.rules)
        self.failures.extend(other.failures)
        self.correlations.extend(other.correlations)
        self.correlation_bases.extend(other.correlation_bases)


def load_text(text: str, origin: str = "") -> LoadResult:
    """Compile every rule in a YAML text (one or more documents)."""
    out = LoadResult()
    try:
        # pySigma's from_yaml parses with the pure-Python loader: three quarters of the
        # rule loading at every start. libyaml's loader builds the same documents.
        docs = list(yaml.load_all(text, Loader=YAML_LOADER))
        coll = SigmaCollection.from_dicts(docs, collect_errors=True)
    except (SigmaError, yaml.YAMLError) as exc:  # not a rule at all
        out.failures.append(RuleError(f"file {origin}", f"not a Sigma rule: {exc}"))
        return out
    except Exception as exc:  # pySigma trips over some non-rule YAML (a bare number, a list)
        out.failures.append(
            RuleError(f"file {origin}", f"not a Sigma rule: {type(exc).__name__}: {exc}")
        )
        return out
    own = {str(e) for r in coll.rules for e in getattr(r, "errors", [])}
    for err in coll.errors:  # collection-level problems (a rule's own are reported with it)
        if str(err) not in own:
            out.failures.append(RuleError(f"file {origin}", str(err)))
    for rule in coll.rules:
        if isinstance(rule, SigmaCorrelationRule):
            out.correlations.append(rule_label(rule, origin))  # the scheduler's, not a failure
            continue
        try:
            compiled = compile_rule(rule, origin)
            # a correlation's base rule (no `generate: true`) only feeds the correlation:
            # checked here, flagged by the scheduler, not event by event in the stream
            if getattr(rule, "_output", True):
                out.rules.append(compiled)
            else:
                out.correlation_bases.append(compiled)
        except RuleError as exc:
            out.failures.append(exc)
        except Exception as exc:  # pySigma or polars surprise: still one rule, one message
            out.failures.append(RuleError(rule_label(rule, origin), f"{type(exc).__name__}: {exc}"))
    return out


def rule_files(path: Path) -> list[Path]:
    """YAML files under a path (itself, if a file), in a stable order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def load_path(path: Path) -> LoadResult:
    """Compile every rule in a file or under a directory."""
    out = LoadResult()
    for p in rule_files(Path(path)):
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out.failures.append(RuleError(f"file {p}", f"unreadable: {exc}"))
            continue
        out.extend(load_text(text, str(p)))
    return out
