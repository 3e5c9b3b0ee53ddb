"""Compile search-language ASTs (see `query`) to parameterised ClickHouse SQL.

The ClickHouse spelling of the shared walk in `query_dialect`, with the same
semantics (see there). Differences forced by the engine, not by the language:
- time fields are stored as Int64 microseconds since the epoch (see
  `events_clickhouse`), so times compare as integers;
- there is no ILIKE on old servers: full text is `lowerUTF8(col) LIKE lowerUTF8(?)`;
- every value, including the IPv4 regular expression, is a `?` parameter (the
  engine adapter turns `?` into the driver's placeholders), so `?` never
  appears in the SQL text otherwise; identifiers are schema names in backticks;
- the field map is always the ECS schema (no boolean or naive time fields).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from lightsoc import schema
from lightsoc.store.query import Compiled, QueryError
from lightsoc.store.query_dialect import _IPV4_RE, Col, SqlDialect, _c, _p

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


class Dialect(SqlDialect):
    """The ClickHouse spelling of the shared walk; what the server supports
    (gated on its version)."""

    true = "1"

    def __init__(self, json_functions: bool = True) -> None:
        super().__init__(_FIELDS)
        self.json_functions = json_functions

    def ident(self, name: str) -> str:
        return qi(name)

    def label(self, key: str) -> Compiled:
        """`labels.KEY` from the JSON, as the DuckDB store reads it."""
        lab = "`labels`"
        if self.json_functions:
            return _c(
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
        # 18.x has no JSON parser but regular expressions: a top-level
        # "key": string (its raw text, escapes not decoded) or scalar
        pattern = '"' + re.escape(key) + r'"\s*:\s*"?([^",}]*)'
        return _c(
            f"if(match(ifNull({lab}, ''), ",
            _p(pattern),
            f"), extract(ifNull({lab}, ''), ",
            _p(pattern),
            "), NULL)",
        )

    def timestamp(self, dt: datetime, col: Col, days: int = 0) -> Compiled:
        """Int64 microseconds (every time field of the schema is stored so)."""
        try:
            return _p(micros(dt + timedelta(days=days)))
        except OverflowError:
            raise QueryError("date out of range") from None

    def false_if_null(self, expr: Compiled) -> Compiled:
        return _c("ifNull(", expr, ", 0)")

    def like(self, expr: Compiled, pattern: str) -> Compiled:
        return _c(expr, " LIKE ", _p(pattern))  # ClickHouse's LIKE escapes with backslash

    def ilike(self, expr: Compiled, pattern: str) -> Compiled:
        return _c("lowerUTF8(", expr, ") LIKE lowerUTF8(", _p(pattern), ")")

    def as_text(self, expr: Compiled) -> Compiled:
        return _c("toString(", expr, ")")

    def not_null(self, expr: Compiled) -> Compiled:
        return _c("isNotNull(", expr, ")")

    def non_empty(self, expr: Compiled) -> Compiled:
        return _c("notEmpty(", expr, ")")

    def list_has(self, expr: Compiled, value: str) -> Compiled:
        return _c("has(", expr, ", ", _p(value), ")")

    def list_any(self, expr: Compiled, elem: Compiled) -> Compiled:
        return _c("arrayExists(_e -> ", elem, ", ", expr, ")")

    def starts_with(self, expr: Compiled, prefix: str) -> Compiled:
        return _c("position(", expr, ", ", _p(prefix), ") = 1")

    def ipv4_valid(self, expr: Compiled) -> Compiled:
        return _c("match(ifNull(", expr, ", ''), ", _p(_IPV4_FULL), ")")

    def ipv4_octet(self, expr: Compiled, k: int) -> Compiled:
        """0 where not digits: `ipv4_valid` guards the comparison."""
        return _c("toInt64OrZero(splitByChar('.', ifNull(", expr, f", ''))[{k}])")
