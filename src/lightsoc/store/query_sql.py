"""Compile search-language ASTs (see `query`) to parameterised DuckDB SQL.

One small function per node kind, dispatched on the node's type. SQL text is
built only from constants and schema column names (`quote_ident`); every
value from the query travels as a `?` parameter. Semantics:

- strings compare case-sensitively; wildcards become `LIKE ? ESCAPE '\\'`;
- numbers compare numerically (a wildcard compares the number's text);
- timestamps take ISO dates or datetimes (naive means UTC); a date alone
  means that whole UTC day, also as a range bound;
- list fields (`tags`) match when any element matches;
- IP fields (`*.ip`, `*_ip`) take IPv4 CIDRs and IPv4 ranges, computed on
  the dotted text in pure SQL (no inet extension);
- `labels.KEY` reads KEY from the `labels` JSON when no such column exists;
- full text is a case-insensitive substring match on `message` or
  `event.original`;
- NOT treats a NULL (absent field) as "does not match", so
  `NOT status:404` keeps events without a status.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from lightsoc import schema
from lightsoc.store.query import (
    And,
    Compiled,
    Exists,
    MatchAll,
    Node,
    Not,
    Or,
    Part,
    QueryError,
    Range,
    Term,
    Text,
    Value,
    Wild,
    quote_ident,
)

FULL_TEXT_FIELDS = ("message", "event.original")
ESCAPE = " ESCAPE '\\'"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
_IPV4_RE = rf"{_OCTET}(\.{_OCTET}){{3}}"  # a constant, never user text
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_INT64 = (-(2**63), 2**63 - 1)
_DEFAULT_FIELDS: dict[str, pa.DataType] = {f.name: f.type for f in schema.FIELDS}

Fields = Mapping[str, pa.DataType]


@dataclass(frozen=True)
class Col:
    """A resolved field: its SQL expression and how its values compare."""

    name: str
    expr: Compiled
    kind: str  # str | num | ts | bool | list
    ip: bool = False
    tz: bool = True


def _c(*parts: str | Compiled) -> Compiled:
    """Concatenate SQL text and fragments, keeping parameters in order."""
    sql: list[str] = []
    params: list[Any] = []
    for part in parts:
        if isinstance(part, str):
            sql.append(part)
        else:
            sql.append(part.sql)
            params.extend(part.params)
    return Compiled("".join(sql), params)


def _p(value: Any) -> Compiled:
    return Compiled("?", [value])


def _join(items: list[Compiled], sep: str) -> Compiled:
    if len(items) == 1:
        return items[0]
    joined = _c(*[x for item in items for x in (sep, item)][1:])
    return _c("(", joined, ")")


def _like(parts: tuple[Part, ...]) -> str:
    """A LIKE pattern (escape char backslash) for literal runs and wildcards."""
    out = []
    for part in parts:
        if isinstance(part, Wild):
            out.append("%" if part is Wild.STAR else "_")
        else:
            out.append(part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
    return "".join(out)


# -- fields and values ----------------------------------------------------


def _kind(t: pa.DataType) -> str:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "ts"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "num"
    if pa.types.is_boolean(t):
        return "bool"
    return "str"


def _column(name: str, pos: int, fields: Fields) -> Col:
    t = fields.get(name)
    if t is not None:
        kind = _kind(t)
        ip = kind in ("str", "list") and name.endswith((".ip", "_ip"))
        tz = not pa.types.is_timestamp(t) or t.tz is not None
        return Col(name, Compiled(quote_ident(name), []), kind, ip, tz)
    if name.startswith("labels.") and "labels" in fields:
        key = name.removeprefix("labels.")
        if not _LABEL_KEY.fullmatch(key):
            raise QueryError(
                f"invalid label key '{key}' at position {pos}; use letters, digits, '_', '.', '-'"
            )
        lab = quote_ident("labels")
        path = _p(f'$."{key}"')
        expr = _c(f"(CASE WHEN json_valid({lab}) THEN json_extract_string({lab}, ", path, ") END)")
        return Col(name, expr, "str")
    close = difflib.get_close_matches(name, list(fields), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise QueryError(f"unknown field '{name}' at position {pos}{hint}")


def _number(v: Value, col: Col) -> int | float:
    text = v.text
    bad = f"field '{col.name}' is numeric; '{text}' at position {v.pos} is not a number"
    if v.has_wild or not _NUMBER.fullmatch(text):
        raise QueryError(bad)
    try:
        if _INT.fullmatch(text):
            n = int(text)
            return n if _INT64[0] <= n <= _INT64[1] else float(n)
        f = float(text)
    except (ValueError, OverflowError):
        raise QueryError(f"number out of range at position {v.pos}") from None
    if not math.isfinite(f):
        raise QueryError(f"number out of range at position {v.pos}")
    return f


def _when(v: Value, col: Col) -> tuple[datetime, bool]:
    """A value as a UTC datetime, and whether it was a date alone."""
    bad = f"'{v.text}' at position {v.pos} is not an ISO date or datetime (field '{col.name}')"
    if v.has_wild:
        raise QueryError(bad)
    try:
        try:
            d = date.fromisoformat(v.text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC), True
        except ValueError:
            dt = datetime.fromisoformat(v.text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC), False
    except (ValueError, OverflowError):
        raise QueryError(bad) from None


def _ts(dt: datetime, col: Col, days: int = 0) -> Compiled:
    """A timestamp parameter cast to the column's type (`days` later)."""
    try:
        dt = dt + timedelta(days=days)
    except OverflowError:
        raise QueryError(f"date out of range for field '{col.name}'") from None
    if col.tz:
        return _c("CAST(", _p(dt.isoformat(sep=" ", timespec="microseconds")), " AS TIMESTAMPTZ)")
    naive = dt.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return _c("CAST(", _p(naive), " AS TIMESTAMP)")


def _ipv4_int(expr: Compiled) -> Compiled:
    """The integer value of a dotted IPv4 text expression."""
    octets: list[str | Compiled] = []
    for k, mul in enumerate((16777216, 65536, 256, 1), start=1):
        octets += [" + " if k > 1 else "", "TRY_CAST(split_part(", expr, f", '.', {k}) AS BIGINT)"]
        octets.append(f" * {mul}" if mul > 1 else "")
    return _c("(", *octets, ")")


def _ipv4_between(expr: Compiled, lo: int | None, hi: int | None) -> Compiled:
    """`expr` is dotted IPv4 text whose integer value lies in [lo, hi]."""
    valid = _c("regexp_full_match(", expr, f", '{_IPV4_RE}')")
    num = _ipv4_int(expr)
    if lo is not None and hi is not None:
        return _c("(", valid, " AND ", num, " BETWEEN ", _p(lo), " AND ", _p(hi), ")")
    op, bound = (" >= ", lo) if hi is None else (" <= ", hi)
    return _c("(", valid, " AND ", num, op, _p(bound), ")")


def _octet_texts(octet: int) -> list[str]:
    """Every text `_OCTET` reads as this value: 0-9 may also carry one leading zero."""
    return [str(octet), f"0{octet}"] if octet < 10 else [str(octet)]


def _prefix_texts(octets: tuple[int, ...]) -> list[str]:
    """Every dotted text of these leading octets that `_IPV4_RE` accepts."""
    texts = [""]
    for octet in octets:
        texts = [f"{t}{o}." for t in texts for o in _octet_texts(octet)]
    return texts


def _cidr(expr: Compiled, v: Value, col: Col) -> Compiled:
    """Dotted IPv4 text inside a network.

    Whole octets of the prefix compare as text (`starts_with`, cheap), so the
    costly exact check only runs on the few candidate rows; this matches exactly
    what `_ipv4_between` alone would (leading-zero octets included).
    """
    try:
        net = ipaddress.ip_network(v.text, strict=False)
    except ValueError:
        raise QueryError(f"invalid CIDR '{v.text}' at position {v.pos}") from None
    if net.version != 4:
        raise QueryError(f"IPv6 CIDR not supported yet ('{v.text}' at position {v.pos})")
    lo, hi = int(net.network_address), int(net.broadcast_address)
    whole = net.prefixlen // 8
    if whole == 0:  # /0 to /7: no whole octet to filter on
        return _ipv4_between(expr, lo, hi)
    octets = tuple(net.network_address.packed[:whole])
    if whole == 4:  # /32: the address itself, in each spelling the exact check accepts
        texts = [t[:-1] for t in _prefix_texts(octets)]
        items: list[str | Compiled] = [x for t in texts for x in (", ", _p(t))][1:]
        return _c("(", expr, " IN (", *items, "))")
    prefixes = _prefix_texts(octets)
    starts = _join([_c("starts_with(", expr, ", ", _p(t), ")") for t in prefixes], " OR ")
    if net.prefixlen % 8:
        exact = _ipv4_between(expr, lo, hi)
    else:  # the prefix fixes the value; the rest only has to be valid IPv4
        exact = _c("regexp_full_match(", expr, f", '{_IPV4_RE}')")
    return _c("(", starts, " AND ", exact, ")")


def _ipv4(v: Value, col: Col) -> int:
    try:
        return int(ipaddress.IPv4Address(v.text))
    except ValueError:
        raise QueryError(
            f"range on IP field '{col.name}' needs IPv4 addresses; got '{v.text}' at position {v.pos}"
        ) from None


# -- one function per node kind --------------------------------------------


def _match_all(node: MatchAll, fields: Fields) -> Compiled:
    return Compiled("TRUE", [])


def _and(node: And, fields: Fields) -> Compiled:
    return _join([_emit(item, fields) for item in node.items], " AND ")


def _or(node: Or, fields: Fields) -> Compiled:
    return _join([_emit(item, fields) for item in node.items], " OR ")


def _not(node: Not, fields: Fields) -> Compiled:
    return _c("(NOT COALESCE(", _emit(node.item, fields), ", FALSE))")


def _text(node: Text, fields: Fields) -> Compiled:
    names = [n for n in FULL_TEXT_FIELDS if n in fields and _kind(fields[n]) == "str"]
    if not names:
        raise QueryError(f"full-text search needs a message field (position {node.value.pos})")
    pattern = "%" + _like(node.value.parts) + "%"
    return _join([_c(quote_ident(n), " ILIKE ", _p(pattern), ESCAPE) for n in names], " OR ")


def _exists(node: Exists, fields: Fields) -> Compiled:
    col = _column(node.field, node.pos, fields)
    if col.kind == "list":
        return _c("len(", col.expr, ") > 0")
    return _c(col.expr, " IS NOT NULL")


def _str_match(expr: Compiled, v: Value, col: Col) -> Compiled:
    if v.has_wild:
        return _c(expr, " LIKE ", _p(_like(v.parts)), ESCAPE)
    if col.ip and "/" in v.text:
        return _cidr(expr, v, col)
    return _c(expr, " = ", _p(v.text))


def _term(node: Term, fields: Fields) -> Compiled:
    col = _column(node.field, node.pos, fields)
    v, expr = node.value, col.expr
    if col.kind == "list":
        if not v.has_wild and not (col.ip and "/" in v.text):
            return _c("list_contains(", expr, ", ", _p(v.text), ")")
        elem = _str_match(Compiled("_e", []), v, col)
        return _c("len(list_filter(", expr, ", lambda _e: ", elem, ")) > 0")
    if col.kind == "num":
        if v.has_wild:
            return _c("CAST(", expr, " AS VARCHAR) LIKE ", _p(_like(v.parts)), ESCAPE)
        return _c(expr, " = ", _p(_number(v, col)))
    if col.kind == "ts":
        dt, whole_day = _when(v, col)
        if whole_day:
            return _c("(", expr, " >= ", _ts(dt, col), " AND ", expr, " < ", _ts(dt, col, 1), ")")
        return _c(expr, " = ", _ts(dt, col))
    if col.kind == "bool":
        if v.has_wild or v.text.lower() not in ("true", "false"):
            raise QueryError(f"field '{col.name}' takes true or false (position {v.pos})")
        return _c(expr, " = ", _p(v.text.lower() == "true"))
    return _str_match(expr, v, col)


def _range(node: Range, fields: Fields) -> Compiled:
    col = _column(node.field, node.pos, fields)
    if node.lo is None and node.hi is None:
        return _exists(Exists(node.field, node.pos), fields)
    if col.kind in ("list", "bool"):
        raise QueryError(f"field '{col.name}' does not support ranges (position {node.pos})")
    for bound in (node.lo, node.hi):
        if bound is not None and bound.has_wild:
            raise QueryError(f"wildcards are not allowed in range bounds (position {bound.pos})")
    if col.ip:
        lo = None if node.lo is None else _ipv4(node.lo, col) + (0 if node.lo_incl else 1)
        hi = None if node.hi is None else _ipv4(node.hi, col) - (0 if node.hi_incl else 1)
        return _ipv4_between(col.expr, lo, hi)
    conds: list[Compiled] = []
    for bound, is_lo, incl in ((node.lo, True, node.lo_incl), (node.hi, False, node.hi_incl)):
        if bound is None:
            continue
        op = (">" if is_lo else "<") + ("=" if incl else "")
        if col.kind == "num":
            rhs = _p(_number(bound, col))
        elif col.kind == "ts":
            dt, whole_day = _when(bound, col)
            if whole_day:  # a date bound covers its whole day
                op = ">=" if is_lo else "<"
                rhs = _ts(dt, col, int(is_lo != incl))
            else:
                rhs = _ts(dt, col)
        else:
            rhs = _p(bound.text)
        conds.append(_c(col.expr, f" {op} ", rhs))
    return _join(conds, " AND ")


_COMPILERS: dict[type[Node], Callable[[Any, Fields], Compiled]] = {
    MatchAll: _match_all,
    And: _and,
    Or: _or,
    Not: _not,
    Text: _text,
    Exists: _exists,
    Term: _term,
    Range: _range,
}


def _emit(node: Node, fields: Fields) -> Compiled:
    return _COMPILERS[type(node)](node, fields)


def to_sql(node: Node, fields: Fields | None = None) -> Compiled:
    """Compile an AST to a boolean SQL expression with `?` parameters."""
    return _emit(node, _DEFAULT_FIELDS if fields is None else fields)
