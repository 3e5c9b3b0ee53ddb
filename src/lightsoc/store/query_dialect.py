"""The walk from a search-language AST (see `query`) to a parameterised SQL predicate.

`SqlDialect` holds everything both engines share: one small method per node
kind, dispatched on the node's type, and the checks and conversions of the
values. A dialect (`query_sql.DuckDBDialect`, `query_clickhouse.Dialect`)
only says how its engine spells a handful of things: identifiers, timestamp
values, LIKE, list membership, NULL-as-false, the `labels` JSON, and the
pieces of the IPv4 checks. SQL text is built only from constants and schema
column names; every value from the query travels as a `?` parameter.
Semantics, the same on every engine:

- strings compare case-sensitively; wildcards become LIKE patterns;
- numbers compare numerically (a wildcard compares the number's text);
- timestamps take ISO dates or datetimes (naive means UTC); a date alone
  means that whole UTC day, also as a range bound;
- list fields (`tags`) match when any element matches;
- IP fields (`*.ip`, `*_ip`) take IPv4 CIDRs and IPv4 ranges, computed on
  the dotted text in pure SQL;
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
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import pyarrow as pa

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
    parse,
)

FULL_TEXT_FIELDS = ("message", "event.original")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
_IPV4_RE = rf"{_OCTET}(\.{_OCTET}){{3}}"  # a constant, never user text
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_INT64 = (-(2**63), 2**63 - 1)

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


def _ipv4(v: Value, col: Col) -> int:
    try:
        return int(ipaddress.IPv4Address(v.text))
    except ValueError:
        raise QueryError(
            f"range on IP field '{col.name}' needs IPv4 addresses; got '{v.text}' at position {v.pos}"
        ) from None


def _octet_texts(octet: int) -> list[str]:
    """Every text `_OCTET` reads as this value: 0-9 may also carry one leading zero."""
    return [str(octet), f"0{octet}"] if octet < 10 else [str(octet)]


def _prefix_texts(octets: tuple[int, ...]) -> list[str]:
    """Every dotted text of these leading octets that `_IPV4_RE` accepts."""
    texts = [""]
    for octet in octets:
        texts = [f"{t}{o}." for t in texts for o in _octet_texts(octet)]
    return texts


class SqlDialect(ABC):
    """The shared walk; a subclass spells the engine's SQL (`true` and the abstract methods)."""

    #: a predicate that is always true
    true: ClassVar[str]

    def __init__(self, fields: Fields) -> None:
        self.fields = fields

    # -- what an engine spells -----------------------------------------------
    @abstractmethod
    def ident(self, name: str) -> str:
        """The quoted column of a field in `fields`."""

    @abstractmethod
    def label(self, key: str) -> Compiled:
        """The text value of `key` in the `labels` JSON (NULL if absent)."""

    @abstractmethod
    def timestamp(self, dt: datetime, col: Col, days: int = 0) -> Compiled:
        """A UTC datetime (`days` later) as a value comparable to `col`."""

    @abstractmethod
    def false_if_null(self, expr: Compiled) -> Compiled:
        """A boolean expression with NULL read as false."""

    @abstractmethod
    def like(self, expr: Compiled, pattern: str) -> Compiled:
        """`expr` matches a `_like` pattern (backslash escapes)."""

    @abstractmethod
    def ilike(self, expr: Compiled, pattern: str) -> Compiled:
        """As `like`, ignoring case."""

    @abstractmethod
    def as_text(self, expr: Compiled) -> Compiled:
        """A number's text."""

    @abstractmethod
    def not_null(self, expr: Compiled) -> Compiled:
        """The value is present."""

    @abstractmethod
    def non_empty(self, expr: Compiled) -> Compiled:
        """A list has an element."""

    @abstractmethod
    def list_has(self, expr: Compiled, value: str) -> Compiled:
        """A list holds `value`."""

    @abstractmethod
    def list_any(self, expr: Compiled, elem: Compiled) -> Compiled:
        """Some element `_e` of a list makes `elem` true."""

    @abstractmethod
    def starts_with(self, expr: Compiled, prefix: str) -> Compiled:
        """A text begins with `prefix`."""

    @abstractmethod
    def ipv4_valid(self, expr: Compiled) -> Compiled:
        """A text is a dotted IPv4 address (`_IPV4_RE`, the whole text)."""

    @abstractmethod
    def ipv4_octet(self, expr: Compiled, k: int) -> Compiled:
        """The integer value of the `k`th (from 1) dotted part of a text."""

    # -- fields --------------------------------------------------------------
    def column(self, name: str, pos: int) -> Col:
        """A field's expression and kind; `labels.KEY` reads the JSON when no such field."""
        t = self.fields.get(name)
        if t is not None:
            kind = _kind(t)
            ip = kind in ("str", "list") and name.endswith((".ip", "_ip"))
            tz = not pa.types.is_timestamp(t) or t.tz is not None
            return Col(name, Compiled(self.ident(name), []), kind, ip, tz)
        if name.startswith("labels.") and "labels" in self.fields:
            key = name.removeprefix("labels.")
            if not _LABEL_KEY.fullmatch(key):
                raise QueryError(
                    f"invalid label key '{key}' at position {pos}; "
                    "use letters, digits, '_', '.', '-'"
                )
            return Col(name, self.label(key), "str")
        close = difflib.get_close_matches(name, list(self.fields), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise QueryError(f"unknown field '{name}' at position {pos}{hint}")

    # -- IPv4 on dotted text ------------------------------------------------
    def ipv4_between(self, expr: Compiled, lo: int | None, hi: int | None) -> Compiled:
        """`expr` is dotted IPv4 text whose integer value lies in [lo, hi]."""
        parts: list[str | Compiled] = []
        for k, mul in enumerate((16777216, 65536, 256, 1), start=1):
            parts += [" + " if k > 1 else "", self.ipv4_octet(expr, k)]
            parts.append(f" * {mul}" if mul > 1 else "")
        valid, num = self.ipv4_valid(expr), _c("(", *parts, ")")
        if lo is not None and hi is not None:
            return _c("(", valid, " AND ", num, " BETWEEN ", _p(lo), " AND ", _p(hi), ")")
        op, bound = (" >= ", lo) if hi is None else (" <= ", hi)
        return _c("(", valid, " AND ", num, op, _p(bound), ")")

    def cidr(self, expr: Compiled, v: Value) -> Compiled:
        """Dotted IPv4 text inside a network.

        Whole octets of the prefix compare as text (cheap), so the costly exact
        check only runs on the few candidate rows; this matches exactly what
        `ipv4_between` alone would (leading-zero octets included).
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
            return self.ipv4_between(expr, lo, hi)
        octets = tuple(net.network_address.packed[:whole])
        if whole == 4:  # /32: the address itself, in each spelling the exact check accepts
            texts = [t[:-1] for t in _prefix_texts(octets)]
            items: list[str | Compiled] = [x for t in texts for x in (", ", _p(t))][1:]
            return _c("(", expr, " IN (", *items, "))")
        starts = _join([self.starts_with(expr, t) for t in _prefix_texts(octets)], " OR ")
        if net.prefixlen % 8:
            exact = self.ipv4_between(expr, lo, hi)
        else:  # the prefix fixes the value; the rest only has to be valid IPv4
            exact = self.ipv4_valid(expr)
        return _c("(", starts, " AND ", exact, ")")

    # -- one method per node kind -------------------------------------------
    _methods: ClassVar[dict[type[Node], str]] = {
        MatchAll: "match_all",
        And: "and_",
        Or: "or_",
        Not: "not_",
        Text: "text",
        Exists: "exists",
        Term: "term",
        Range: "range_",
    }

    def emit(self, node: Node) -> Compiled:
        """An AST's boolean SQL expression with `?` parameters."""
        return getattr(self, self._methods[type(node)])(node)

    def compile(self, text: str) -> Compiled:
        """A query's boolean SQL expression with `?` parameters."""
        return self.emit(parse(text))

    def match_all(self, node: MatchAll) -> Compiled:
        return Compiled(self.true, [])

    def and_(self, node: And) -> Compiled:
        return _join([self.emit(item) for item in node.items], " AND ")

    def or_(self, node: Or) -> Compiled:
        return _join([self.emit(item) for item in node.items], " OR ")

    def not_(self, node: Not) -> Compiled:
        return _c("(NOT ", self.false_if_null(self.emit(node.item)), ")")

    def text(self, node: Text) -> Compiled:
        names = [n for n in FULL_TEXT_FIELDS if n in self.fields and _kind(self.fields[n]) == "str"]
        if not names:
            raise QueryError(f"full-text search needs a message field (position {node.value.pos})")
        pattern = "%" + _like(node.value.parts) + "%"
        return _join([self.ilike(Compiled(self.ident(n), []), pattern) for n in names], " OR ")

    def exists(self, node: Exists) -> Compiled:
        col = self.column(node.field, node.pos)
        return self.non_empty(col.expr) if col.kind == "list" else self.not_null(col.expr)

    def str_match(self, expr: Compiled, v: Value, col: Col) -> Compiled:
        if v.has_wild:
            return self.like(expr, _like(v.parts))
        if col.ip and "/" in v.text:
            return self.cidr(expr, v)
        return _c(expr, " = ", _p(v.text))

    def term(self, node: Term) -> Compiled:
        col = self.column(node.field, node.pos)
        v, expr = node.value, col.expr
        if col.kind == "list":
            if not v.has_wild and not (col.ip and "/" in v.text):
                return self.list_has(expr, v.text)
            return self.list_any(expr, self.str_match(Compiled("_e", []), v, col))
        if col.kind == "num":
            if v.has_wild:
                return self.like(self.as_text(expr), _like(v.parts))
            return _c(expr, " = ", _p(_number(v, col)))
        if col.kind == "ts":
            dt, whole_day = _when(v, col)
            if whole_day:
                day = (self.timestamp(dt, col), self.timestamp(dt, col, 1))
                return _c("(", expr, " >= ", day[0], " AND ", expr, " < ", day[1], ")")
            return _c(expr, " = ", self.timestamp(dt, col))
        if col.kind == "bool":
            if v.has_wild or v.text.lower() not in ("true", "false"):
                raise QueryError(f"field '{col.name}' takes true or false (position {v.pos})")
            return _c(expr, " = ", _p(v.text.lower() == "true"))
        return self.str_match(expr, v, col)

    def range_(self, node: Range) -> Compiled:
        col = self.column(node.field, node.pos)
        if node.lo is None and node.hi is None:
            return self.exists(Exists(node.field, node.pos))
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
            return self.ipv4_between(col.expr, lo, hi)
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
                    rhs = self.timestamp(dt, col, int(is_lo != incl))
                else:
                    rhs = self.timestamp(dt, col)
            else:
                rhs = _p(bound.text)
            conds.append(_c(col.expr, f" {op} ", rhs))
        return _join(conds, " AND ")
