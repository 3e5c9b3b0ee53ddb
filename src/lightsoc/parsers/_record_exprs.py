"""Column expressions shared by the flow and network-log parsers (Zeek, Suricata,
nfdump, Argus): unset markers, epoch-or-ISO times, durations, label objects,
sums of two sides, Zeek sets and IP-only lists."""

from __future__ import annotations

import polars as pl

from lightsoc.parsers.nginx_json import parse_time

#: an IPv4 or IPv6 address (with an optional zone)
RX_IP = r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%\S+)?)$"


def null_unset(expr: pl.Expr) -> pl.Expr:
    """Null for Zeek's unset `-`, empty `(empty)` and the empty string."""
    return pl.when(~expr.is_in(["-", "(empty)", ""])).then(expr)


def epoch_or_iso(text: pl.Series) -> pl.Series:
    """UTC datetimes from epoch seconds (any magnitude) or ISO 8601 text."""
    secs = text.cast(pl.Float64, strict=False)
    dtype = pl.Datetime("us", "UTC")
    fine = secs.is_finite() & (secs.abs() < 1e11)
    epoch = pl.select(
        pl.when(fine).then((secs * 1e6).round()).cast(pl.Int64).cast(dtype)
    ).to_series()
    if (epoch.is_null() & text.is_not_null()).any():
        epoch = epoch.fill_null(
            parse_time(pl.select(pl.when(secs.is_null()).then(text)).to_series())
        )
    return epoch


def seconds_ns(expr: pl.Expr) -> pl.Expr:
    """Seconds (text) as integer nanoseconds."""
    secs = expr.cast(pl.Float64, strict=False)
    return pl.when(secs.is_finite() & (secs.abs() < 1e9)).then((secs * 1e9).round()).cast(pl.Int64)


def labels_expr(items: dict[str, pl.Expr]) -> pl.Expr:
    """A JSON object of strings from `{label: expr}`, null values left out (`{}` is null)."""
    encoded = pl.struct([e.cast(pl.String).alias(k) for k, e in items.items()]).struct.json_encode()
    text = encoded.str.replace_all(r'"(?:[^"\\]|\\.)*":null,?', "").str.replace(r",\}$", "}")
    return pl.when(text != "{}").then(text)


def total(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """a + b, treating one missing side as 0 (null only when both are)."""
    return pl.when(a.is_null() & b.is_null()).then(None).otherwise(a.fill_null(0) + b.fill_null(0))


def set_list(expr: pl.Expr) -> pl.Expr:
    """A Zeek set (TSV `a,b`) or JSON array text (`["a", "b"]`) as a list of strings."""
    quoted = expr.str.extract_all(r'"(?:[^"\\]|\\.)*"').list.eval(
        pl.element().str.slice(1, pl.element().str.len_chars() - 2).str.replace_all(r"\\(.)", "$1")
    )
    return pl.when(expr.str.starts_with("[")).then(quoted).otherwise(expr.str.split(","))


def ip_only(lst: pl.Expr) -> pl.Expr:
    """The elements of a list of strings that look like IPv4/IPv6 addresses."""
    return lst.list.eval(pl.element().filter(pl.element().str.contains(RX_IP)))
