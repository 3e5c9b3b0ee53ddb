"""Compile search-language ASTs (see `query`) to parameterised ClickHouse SQL.

The ClickHouse dialect of `query_sql` with the same semantics (see there):
case-sensitive strings, LIKE wildcards, numeric numbers, ISO dates as whole
UTC days, list fields match on any element, IPv4 CIDRs and ranges on dotted
text, `labels.KEY` from the JSON, case-insensitive full text on `message` /
`event.original`, and NOT treating an absent field as "does not match".

Differences forced by the engine, not by the language:
- time fields are stored as Int64 microseconds since the epoch (see
  `events_clickhouse`), so times compare as integers;
- there is no ILIKE on old servers: full text is `lowerUTF8(col) LIKE lowerUTF8(?)`;
- every value, including the IPv4 regular expression, is a `?` parameter (the
  engine adapter turns `?` into the driver's placeholders), so `?` never
  appears in the SQL text otherwise; identifiers are schema names in backticks.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from lightsoc import schema
from lightsoc.store.query import (
    And,
    Compiled,
    Exists,
    MatchAll,
    Node,
    Not,
    Or,
    QueryError,
    Range,
    Term,
    Text,
    Value,
    parse,
)
from lightsoc.store.query_sql import (
    _IPV4_RE,
    _LABEL_KEY,
    FULL_TEXT_FIELDS,
    Col,
    _c,
    _column,
    _ipv4,
    _join,
    _like,
    _number,
    _p,
    _prefix_texts,
    _when,
)

_FIELDS = {f.name: f.type for f in schema.FIELDS}
_IPV4_FULL = f"^{_IPV4_RE}$"  # `match` searches: anchor it to match the whole text
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def storage_name(name: str) -> str:
    """The column that stores a field. Array columns sharing a prefix before a dot
    (`dns.answers`, `dns.resolved_ip`) would form a ClickHouse Nested structure
    whose arrays must be of equal length, so list fields lose their dots."""
    if name not in schema.BY_NAME:
        raise ValueError(f"unknown field {name!r}")
    return name.replace(".", "__") if schema.BY_NAME[name].type == schema.STR_LIST else name


def qi(name: str) -> str:
    """The backquoted storage column of a schema field (checked)."""
    return f"`{storage_name(name)}`"


def micros(dt: datetime) -> int:
    """A datetime as Int64 microseconds since the epoch (naive means UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class Dialect:
    """What the server supports (gated on its version)."""

    def __init__(self, json_functions: bool = True) -> None:
        self.json_functions = json_functions

    def column(self, name: str, pos: int) -> Col:
        """A field's expression; `labels.KEY` reads the JSON as the DuckDB store does."""
        if name not in _FIELDS and name.startswith("labels."):
            key = name.removeprefix("labels.")
            if not _LABEL_KEY.fullmatch(key):
                raise QueryError(
                    f"invalid label key '{key}' at position {pos}; "
                    "use letters, digits, '_', '.', '-'"
                )
            lab = "`labels`"
            if self.json_functions:
                expr = _c(
                    f"if(isValidJSON(ifNull({lab}, '')) AND JSONHas(ifNull({lab}, ''), ",
                    _p(key),
                    f"), if(JSONType(ifNull({lab}, ''), ",
                    _p(key),
                    f") = 'String', JSONExtractString(ifNull({lab}, ''), ",
                    _p(key),
                    f"), JSONExtractRaw(ifNull({lab}, ''), ",
                    _p(key),
                    ")), NULL)",
                )
            else:  # 18.x has no JSON parser but regular expressions: a top-level
                # "key": string (its raw text, escapes not decoded) or scalar
                pattern = '"' + re.escape(key) + r'"\s*:\s*"?([^",}]*)'
                expr = _c(
                    f"if(match(ifNull({lab}, ''), ",
                    _p(pattern),
                    f"), extract(ifNull({lab}, ''), ",
                    _p(pattern),
                    "), NULL)",
                )
            return Col(name, expr, "str")
        col = _column(name, pos, _FIELDS)
        return Col(col.name, Compiled(qi(col.name), []), col.kind, col.ip, col.tz)

    # -- one method per node kind ------------------------------------------
    def emit(self, node: Node) -> Compiled:
        return self._compilers[type(node)](self, node)

    def _match_all(self, node: MatchAll) -> Compiled:
        return Compiled("1", [])

    def _and(self, node: And) -> Compiled:
        return _join([self.emit(i) for i in node.items], " AND ")

    def _or(self, node: Or) -> Compiled:
        return _join([self.emit(i) for i in node.items], " OR ")

    def _not(self, node: Not) -> Compiled:
        return _c("(NOT ifNull(", self.emit(node.item), ", 0))")

    def _text(self, node: Text) -> Compiled:
        pattern = "%" + _like(node.value.parts) + "%"
        return _join(
            [_c(f"lowerUTF8({qi(n)}) LIKE lowerUTF8(", _p(pattern), ")") for n in FULL_TEXT_FIELDS],
            " OR ",
        )

    def _exists(self, node: Exists) -> Compiled:
        col = self.column(node.field, node.pos)
        if col.kind == "list":
            return _c("notEmpty(", col.expr, ")")
        return _c("isNotNull(", col.expr, ")")

    def _str_match(self, expr: Compiled, v: Value, col: Col) -> Compiled:
        if v.has_wild:
            return _c(expr, " LIKE ", _p(_like(v.parts)))
        if col.ip and "/" in v.text:
            return _cidr(expr, v)
        return _c(expr, " = ", _p(v.text))

    def _term(self, node: Term) -> Compiled:
        col = self.column(node.field, node.pos)
        v, expr = node.value, col.expr
        if col.kind == "list":
            if not v.has_wild and not (col.ip and "/" in v.text):
                return _c("has(", expr, ", ", _p(v.text), ")")
            elem = self._str_match(Compiled("_e", []), v, col)
            return _c("arrayExists(_e -> ", elem, ", ", expr, ")")
        if col.kind == "num":
            if v.has_wild:
                return _c("toString(", expr, ") LIKE ", _p(_like(v.parts)))
            return _c(expr, " = ", _p(_number(v, col)))
        if col.kind == "ts":
            dt, whole_day = _when(v, col)
            if whole_day:
                return _c("(", expr, " >= ", _us(dt), " AND ", expr, " < ", _us(dt, 1), ")")
            return _c(expr, " = ", _us(dt))
        return self._str_match(expr, v, col)

    def _range(self, node: Range) -> Compiled:
        col = self.column(node.field, node.pos)
        if node.lo is None and node.hi is None:
            return self._exists(Exists(node.field, node.pos))
        if col.kind in ("list", "bool"):
            raise QueryError(f"field '{col.name}' does not support ranges (position {node.pos})")
        for bound in (node.lo, node.hi):
            if bound is not None and bound.has_wild:
                raise QueryError(
                    f"wildcards are not allowed in range bounds (position {bound.pos})"
                )
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
                if whole_day:
                    op = ">=" if is_lo else "<"
                    rhs = _us(dt, int(is_lo != incl))
                else:
                    rhs = _us(dt)
            else:
                rhs = _p(bound.text)
            conds.append(_c(col.expr, f" {op} ", rhs))
        return _join(conds, " AND ")

    _compilers: dict[type[Node], Callable[[Dialect, Any], Compiled]] = {
        MatchAll: _match_all,
        And: _and,
        Or: _or,
        Not: _not,
        Text: _text,
        Exists: _exists,
        Term: _term,
        Range: _range,
    }

    def compile(self, text: str) -> Compiled:
        """A query's boolean ClickHouse expression with `?` parameters."""
        return self.emit(parse(text))


def _us(dt: datetime, days: int = 0) -> Compiled:
    try:
        return _p(micros(dt + timedelta(days=days)))
    except OverflowError:
        raise QueryError("date out of range") from None


def _ipv4_int(expr: Compiled) -> Compiled:
    """The integer value of a dotted IPv4 text (0 parts where not digits: guarded)."""
    octets: list[str | Compiled] = []
    for k, mul in enumerate((16777216, 65536, 256, 1), start=1):
        octets += [" + " if k > 1 else "", "toInt64OrZero(splitByChar('.', ifNull(", expr]
        octets.append(f", ''))[{k}]) * {mul}" if mul > 1 else f", ''))[{k}])")
    return _c("(", *octets, ")")


def _valid(expr: Compiled) -> Compiled:
    return _c("match(ifNull(", expr, ", ''), ", _p(_IPV4_FULL), ")")


def _ipv4_between(expr: Compiled, lo: int | None, hi: int | None) -> Compiled:
    num = _ipv4_int(expr)
    if lo is not None and hi is not None:
        return _c("(", _valid(expr), " AND ", num, " BETWEEN ", _p(lo), " AND ", _p(hi), ")")
    op, bound = (" >= ", lo) if hi is None else (" <= ", hi)
    return _c("(", _valid(expr), " AND ", num, op, _p(bound), ")")


def _cidr(expr: Compiled, v: Value) -> Compiled:
    """As `query_sql._cidr`: whole prefix octets as text first, then the exact check."""
    try:
        net = ipaddress.ip_network(v.text, strict=False)
    except ValueError:
        raise QueryError(f"invalid CIDR '{v.text}' at position {v.pos}") from None
    if net.version != 4:
        raise QueryError(f"IPv6 CIDR not supported yet ('{v.text}' at position {v.pos})")
    lo, hi = int(net.network_address), int(net.broadcast_address)
    whole = net.prefixlen // 8
    if whole == 0:
        return _ipv4_between(expr, lo, hi)
    octets = tuple(net.network_address.packed[:whole])
    if whole == 4:
        texts = [t[:-1] for t in _prefix_texts(octets)]
        items: list[str | Compiled] = [x for t in texts for x in (", ", _p(t))][1:]
        return _c("(", expr, " IN (", *items, "))")
    starts = _join(
        [_c("position(", expr, ", ", _p(t), ") = 1") for t in _prefix_texts(octets)], " OR "
    )
    exact = _ipv4_between(expr, lo, hi) if net.prefixlen % 8 else _valid(expr)
    return _c("(", starts, " AND ", exact, ")")
