"""Compile search-language ASTs (see `query`) to parameterised DuckDB SQL.

The DuckDB spelling of the shared walk in `query_dialect` (the semantics are
documented there). What is DuckDB's own:

- identifiers are double-quoted (`quote_ident`); every value is a `?`
  parameter, only the constant IPv4 regular expression is a literal;
- wildcards are `LIKE ?` (with `ESCAPE '\\'` when the pattern escapes a
  literal `%`, `_` or backslash), full text is `ILIKE`;
- timestamps are cast parameters (`TIMESTAMPTZ`, or `TIMESTAMP` for a naive
  column); the field map is the caller's (default: the ECS schema), so a
  field may be absent, boolean, or of a naive time type;
- IPv4 checks use `regexp_full_match` and `split_part` (no inet extension).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from lightsoc import schema
from lightsoc.store.query import Compiled, Node, QueryError, quote_ident
from lightsoc.store.query_dialect import (
    _IPV4_RE,
    FULL_TEXT_FIELDS,
    Col,
    Fields,
    SqlDialect,
    _c,
    _p,
)

__all__ = ["FULL_TEXT_FIELDS", "Col", "DuckDBDialect", "to_sql"]

ESCAPE = " ESCAPE '\\'"
_DEFAULT_FIELDS: Fields = {f.name: f.type for f in schema.FIELDS}


class DuckDBDialect(SqlDialect):
    """The DuckDB spelling of the shared walk, over the columns of `fields`."""

    true = "TRUE"

    def ident(self, name: str) -> str:
        return quote_ident(name)

    def label(self, key: str) -> Compiled:
        lab = quote_ident("labels")
        path = _p(f'$."{key}"')
        return _c(f"(CASE WHEN json_valid({lab}) THEN json_extract_string({lab}, ", path, ") END)")

    def timestamp(self, dt: datetime, col: Col, days: int = 0) -> Compiled:
        """A parameter cast to the column's type (naive columns hold UTC)."""
        try:
            dt = dt + timedelta(days=days)
        except OverflowError:
            raise QueryError(f"date out of range for field '{col.name}'") from None
        if col.tz:
            text = dt.isoformat(sep=" ", timespec="microseconds")
            return _c("CAST(", _p(text), " AS TIMESTAMPTZ)")
        naive = dt.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return _c("CAST(", _p(naive), " AS TIMESTAMP)")

    def false_if_null(self, expr: Compiled) -> Compiled:
        return _c("COALESCE(", expr, ", FALSE)")

    # Without a backslash the pattern means the same with or without ESCAPE, and
    # DuckDB matches twice as fast without (its LIKE fast paths skip an ESCAPE).
    def like(self, expr: Compiled, pattern: str) -> Compiled:
        return _c(expr, " LIKE ", _p(pattern), ESCAPE if "\\" in pattern else "")

    def ilike(self, expr: Compiled, pattern: str) -> Compiled:
        return _c(expr, " ILIKE ", _p(pattern), ESCAPE if "\\" in pattern else "")

    def as_text(self, expr: Compiled) -> Compiled:
        return _c("CAST(", expr, " AS VARCHAR)")

    def not_null(self, expr: Compiled) -> Compiled:
        return _c(expr, " IS NOT NULL")

    def non_empty(self, expr: Compiled) -> Compiled:
        return _c("len(", expr, ") > 0")

    def list_has(self, expr: Compiled, value: str) -> Compiled:
        return _c("list_contains(", expr, ", ", _p(value), ")")

    def list_any(self, expr: Compiled, elem: Compiled) -> Compiled:
        return _c("len(list_filter(", expr, ", lambda _e: ", elem, ")) > 0")

    def starts_with(self, expr: Compiled, prefix: str) -> Compiled:
        return _c("starts_with(", expr, ", ", _p(prefix), ")")

    def ipv4_valid(self, expr: Compiled) -> Compiled:
        return _c("regexp_full_match(", expr, f", '{_IPV4_RE}')")

    def ipv4_octet(self, expr: Compiled, k: int) -> Compiled:
        return _c("TRY_CAST(split_part(", expr, f", '.', {k}) AS BIGINT)")


def _ipv4_between(expr: Compiled, lo: int | None, hi: int | None) -> Compiled:
    """`expr` is dotted IPv4 text whose integer value lies in [lo, hi] (DuckDB)."""
    return DuckDBDialect(_DEFAULT_FIELDS).ipv4_between(expr, lo, hi)


def to_sql(node: Node, fields: Fields | None = None) -> Compiled:
    """Compile an AST to a boolean SQL expression with `?` parameters."""
    return DuckDBDialect(_DEFAULT_FIELDS if fields is None else fields).emit(node)
