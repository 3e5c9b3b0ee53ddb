"""One Sigma value against one column -> a polars boolean expression.

Matching follows Sigma: string comparison is case-insensitive unless the
value is `|cased`; `*` and `?` are wildcards; regular expressions are
case-sensitive unless `(?i)`/`|i`. Regexes run on polars' Rust `regex` engine,
which is linear-time (no catastrophic backtracking) and therefore has no
lookaround or backreferences: such a rule is rejected when it loads.

Every leaf is null-safe (`fill_null(False)`) so `not` over an absent field is
true, as Sigma expects.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from lightsoc import schema


class Unsupported(Exception):
    """A construct lightsoc cannot evaluate (the message names it)."""


#: a function from "the value to test" (a column or a list element) to a predicate
Pred = Callable[[pl.Expr], pl.Expr]

_NUMERIC = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt32, pl.UInt64, pl.Float32, pl.Float64)
_LOOKAROUND = re.compile(r"\(\?<?[=!]|\\[1-9]|\\k<|\(\?P=|\(\?>|[*+?}]\+")


def dtype_of(field: str) -> pl.DataType:
    return schema.POLARS_SCHEMA[field]


def is_list(field: str) -> bool:
    return isinstance(dtype_of(field), pl.List)


def is_numeric(field: str) -> bool:
    return isinstance(dtype_of(field), _NUMERIC)


def check_regex(pattern: str) -> None:
    """Raise `Unsupported` unless the Rust regex engine accepts `pattern`."""
    if _LOOKAROUND.search(pattern):
        raise Unsupported(
            f"regex {pattern!r} uses lookaround, backreferences or possessive/atomic groups, "
            "which the linear-time regex engine does not support"
        )
    try:
        pl.Series([""], dtype=pl.Utf8).str.contains(pattern)
    except Exception as exc:  # polars reports the engine's parse error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Unsupported(
            f"regex {pattern!r} is not valid for the Rust regex engine: {first}"
        ) from None


def _parts(value: SigmaString) -> list[str | SpecialChars]:
    parts = list(value.s)
    for p in parts:
        if isinstance(p, Placeholder):
            raise Unsupported(f"placeholder %{p.name}% (no placeholder values configured)")
    return parts  # type: ignore[return-value]


def wildcard_regex(parts: list[str | SpecialChars], anchored: bool = True) -> str:
    """A Sigma wildcard string as a regex; leading/trailing `*` drop the anchor (faster)."""
    out = []
    for p in parts:
        if p is SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif p is SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        else:
            out.append(re.escape(str(p)))
    head = "^" if anchored else ""
    tail = "$" if anchored else ""
    while out and out[0] == ".*":
        out.pop(0)
        head = ""
    while out and out[-1] == ".*":
        out.pop()
        tail = ""
    return head + "".join(out) + tail


def string_shape(value: SigmaString) -> tuple[str, str] | None:
    """(kind, text) for eq / contains / startswith / endswith; None if it needs a regex."""
    parts = _parts(value)
    multi = SpecialChars.WILDCARD_MULTI
    inner = parts
    kind = "eq"
    if len(parts) >= 2 and parts[0] is multi and parts[-1] is multi:
        inner, kind = parts[1:-1], "contains"
    elif parts and parts[0] is multi:
        inner, kind = parts[1:], "endswith"
    elif parts and parts[-1] is multi:
        inner, kind = parts[:-1], "startswith"
    if any(isinstance(p, SpecialChars) for p in inner):
        return None
    text = "".join(str(p) for p in inner)
    if kind == "contains" and text == "":
        return ("any", "")
    return kind, text


def string_pred(value: SigmaString, *, keyword: bool = False) -> Pred:
    """A predicate on a (lower-cased unless cased) string for a Sigma string value."""
    cased = isinstance(value, SigmaCasedString)
    shape = string_shape(value)

    def norm(s: str) -> str:
        return s if cased else s.lower()

    if shape is None:
        # non-cased values are matched against lower-cased text: lower the pattern
        # instead of a slower case-insensitive regex
        parts = [p.lower() if isinstance(p, str) and not cased else p for p in _parts(value)]
        regex = "(?s)" + wildcard_regex(parts, anchored=not keyword)
        return lambda e: e.str.contains(regex)
    kind, text = shape
    if keyword and kind == "eq":
        kind = "contains"  # a keyword is a full-text search, not the whole record
    text = norm(text)
    if kind == "any":
        return lambda e: e.is_not_null()
    if kind == "eq":
        return lambda e: e == text
    if kind == "contains":
        return lambda e: e.str.contains(text, literal=True)
    if kind == "startswith":
        return lambda e: e.str.starts_with(text)
    return lambda e: e.str.ends_with(text)


def regex_pred(value: SigmaRegularExpression) -> Pred:
    flags = ""
    if SigmaRegularExpressionFlag.IGNORECASE in value.flags:
        flags += "i"
    if SigmaRegularExpressionFlag.MULTILINE in value.flags:
        flags += "m"
    if SigmaRegularExpressionFlag.DOTALL in value.flags:
        flags += "s"
    pattern = value.regexp.to_plain() if isinstance(value.regexp, SigmaString) else str(value)
    check_regex(pattern)
    full = f"(?{flags}){pattern}" if flags else pattern
    if flags:
        check_regex(full)
    return lambda e: e.str.contains(full)


def cidr_pred(value: SigmaCIDRExpression) -> Pred:
    prefixes = [p.rstrip("*").lower() for p in value.expand("*")]
    if any(p == "" for p in prefixes):
        return lambda e: e.is_not_null()
    return lambda e: pl.any_horizontal([e.str.starts_with(p) for p in prefixes])


_OPS = {
    CompareOperators.LT: lambda e, n: e < n,
    CompareOperators.LTE: lambda e, n: e <= n,
    CompareOperators.GT: lambda e, n: e > n,
    CompareOperators.GTE: lambda e, n: e >= n,
    CompareOperators.NEQ: lambda e, n: e != n,
}


def _on_field(field: str, pred: Pred, *, lowered: bool) -> pl.Expr:
    """Apply `pred` to the field's values (lower-cased strings when `lowered`)."""
    col = pl.col(field)
    if is_list(field):
        el = pl.element().cast(pl.Utf8)
        el = el.str.to_lowercase() if lowered else el
        return col.list.eval(pred(el).fill_null(False)).list.any().fill_null(False)
    if is_numeric(field) or dtype_of(field) != pl.Utf8:
        col = col.cast(pl.Utf8)
    if lowered:
        col = lowered_col(field)
    return pred(col).fill_null(False)


#: lower-cased copies of string columns, computed once per batch by the rule set
LOWER_PREFIX = "__lc__"


def lowered_col(field: str) -> pl.Expr:
    return pl.col(LOWER_PREFIX + field)


def field_expr(field: str, value: SigmaType, lowered: set[str]) -> pl.Expr:
    """`field` matches `value` (one leaf of a detection)."""
    if isinstance(value, SigmaExpansion):
        return pl.any_horizontal([field_expr(field, v, lowered) for v in value.values])
    if isinstance(value, SigmaNull):
        if is_list(field):
            return pl.col(field).is_null() | (pl.col(field).list.len() == 0)
        return pl.col(field).is_null()
    if isinstance(value, SigmaExists):
        present = pl.col(field).is_not_null()
        return present if bool(value) else ~present
    if isinstance(value, SigmaCompareExpression):
        number = value.number.number
        col = pl.col(field)
        if not is_numeric(field):
            col = col.cast(pl.Float64, strict=False)
        return _OPS[value.op](col, number).fill_null(False)
    if isinstance(value, SigmaNumber):
        if is_numeric(field):
            return (pl.col(field) == value.number).fill_null(False)
        return field_expr(field, SigmaString(str(value.number)), lowered)
    if isinstance(value, SigmaBool):
        text = "true" if bool(value) else "false"
        return field_expr(field, SigmaString(text), lowered)
    if isinstance(value, SigmaRegularExpression):
        return _on_field(field, regex_pred(value), lowered=False)
    if isinstance(value, SigmaCIDRExpression):
        return _on_field(field, cidr_pred(value), lowered=_lower(field, lowered))
    if isinstance(value, SigmaFieldReference):
        raise Unsupported("fieldref must be compiled by the caller")  # pragma: no cover
    if isinstance(value, SigmaString):
        if is_numeric(field):
            shape = string_shape(value)
            if shape is not None and shape[0] == "eq":
                try:
                    return (pl.col(field) == int(shape[1])).fill_null(False)
                except ValueError:
                    return pl.lit(False)  # a non-number never equals a number
        cased = isinstance(value, SigmaCasedString)
        lower = not cased and _lower(field, lowered)
        return _on_field(field, string_pred(value), lowered=lower)
    raise Unsupported(f"value type {type(value).__name__}")


def _lower(field: str, lowered: set[str]) -> bool:
    """Use (and register) the lower-cased copy of a scalar string column."""
    if is_list(field):
        return True
    lowered.add(field)
    return True


def fieldref_expr(field: str, ref: SigmaFieldReference, lowered: set[str]) -> pl.Expr:
    """`field` equals (starts/ends with) the value of another field, case-insensitively."""
    for f in (field, ref.field):
        if is_list(f):
            raise Unsupported(f"fieldref on list field {f}")
        lowered.add(f)
    a = lowered_col(field)
    b = lowered_col(ref.field)
    if ref.starts_with:
        expr = a.str.starts_with(b)
    elif ref.ends_with:
        expr = a.str.ends_with(b)
    else:
        expr = a == b
    return expr.fill_null(False)


def add_lowered(df: pl.DataFrame, fields: set[str]) -> pl.DataFrame:
    """The batch with the lower-cased copies the rules read (absent fields as nulls)."""
    exprs = []
    for f in sorted(fields):
        src = pl.col(f) if f in df.columns else pl.lit(None, dtype=pl.Utf8)
        if f in df.columns and df.schema[f] != pl.Utf8:
            src = src.cast(pl.Utf8)
        exprs.append(src.str.to_lowercase().alias(LOWER_PREFIX + f))
    return df.with_columns(exprs) if exprs else df
