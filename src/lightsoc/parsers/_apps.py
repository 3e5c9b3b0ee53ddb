"""Application sub-parsers for syslog messages, and a small rule engine for them.

The syslog parser splits the header off each line; the message of every row
whose app name (normalised: lower case, no path, no ``(pam_unix)`` suffix) is
claimed by an app parser is handed to that parser. An app parser is one
module with one decorated function::

    @app_parser("sshd")
    def parse_sshd(frame: pl.DataFrame) -> pl.DataFrame: ...

It receives a frame with ``message`` (the message text, unwrapped from
"message repeated N times: [ ... ]") and ``_app`` (the normalised app name) and
returns a frame of ECS columns of the same height; non-null values override
the syslog parser's columns. The frame also carries the sender's ``_host``
(host.name), ``_pid`` (process.pid) and ``_ts`` (@timestamp), in line order, for
parsers that tie the lines of one process together (sshd: one process per
connection); a parser must not require them.

`apply_rules` runs an ordered list of regex `Rule`s over a text column without
per-row Python: rows are dispatched by literal prefix and each rule's regex
runs only on the rows that could match it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

AppFunc = Callable[[pl.DataFrame], pl.DataFrame]

_APPS: dict[str, AppFunc] = {}

#: name of the row-index column used while splitting and re-assembling batches
ROW = "_i"
_MATCH = "_m"


def app_parser(*appnames: str) -> Callable[[AppFunc], AppFunc]:
    """Decorator: parse syslog messages of these (normalised) app names."""

    def deco(fn: AppFunc) -> AppFunc:
        for name in appnames:
            existing = _APPS.get(name)
            if existing is not None and existing is not fn:
                raise ValueError(f"syslog app {name!r} has two parsers")
            _APPS[name] = fn
        return fn

    return deco


def app_parsers() -> dict[str, AppFunc]:
    """All app parsers, after loading built-in parser modules and plugins."""
    from lightsoc import registry

    registry.load_all("parsers")
    return dict(_APPS)


def app_key(appname: pl.Expr) -> pl.Expr:
    """Normalise an app name for lookup: `/usr/sbin/sshd` and `sshd(pam_unix)` -> `sshd`."""
    return appname.str.to_lowercase().str.replace(r"\(.*$", "").str.replace(r"^.*/", "")


@dataclass(frozen=True)
class Rule:
    """One message shape: literal prefixes (for dispatch), a regex and constants.

    Only rows starting with one of `prefixes` reach the regex (``""`` = any
    row), so the regex may skip re-matching the prefix: an unanchored pattern
    matching a short span is cheaper to capture from. Named groups become
    columns; `consts` are added as string columns on the rows it matches. Rules
    are tried in order; the first match wins.
    """

    prefixes: tuple[str, ...]
    pattern: str
    consts: dict[str, str] = field(default_factory=dict)


def apply_rules(text: pl.Series, rules: Sequence[Rule]) -> pl.DataFrame:
    """Match rows against rules; one output row per input row, in order.

    Output columns: every named group of every rule, every const column, and
    ``_rule`` (index of the matching rule, null when none matched).
    """
    n = len(text)
    prefixes = sorted({p for r in rules for p in r.prefixes if p}, key=len, reverse=True)
    base = pl.DataFrame({ROW: pl.int_range(n, eager=True, dtype=pl.UInt32), "_t": text})
    # Each row goes to the longest literal prefix it starts with ("" if none): one regex
    # with a literal alternation (leftmost-first, longest listed first) instead of a
    # `when` chain of `starts_with`.
    if prefixes:
        alternation = "^(" + "|".join(re.escape(p) for p in prefixes) + ")"
        base = base.with_columns(pl.col("_t").str.extract(alternation, 1).fill_null("").alias("_k"))
    else:
        base = base.with_columns(pl.lit("").alias("_k"))
    parts: list[pl.DataFrame] = []
    for (k,), group in base.partition_by("_k", as_dict=True, maintain_order=False).items():
        applicable = [
            (i, r) for i, r in enumerate(rules) if any(str(k).startswith(p) for p in r.prefixes)
        ]
        remaining = group
        for i, rule in applicable:
            if remaining.height == 0:
                break
            groups = remaining["_t"].str.extract_groups(f"(?P<{_MATCH}>){rule.pattern}")
            cols = groups.struct.unnest()
            hit = cols[_MATCH].is_not_null()
            matched = pl.concat(
                [remaining.select(ROW).filter(hit), cols.drop(_MATCH).filter(hit)],
                how="horizontal",
            )
            parts.append(
                matched.with_columns(
                    pl.lit(i, dtype=pl.Int32).alias("_rule"),
                    *[pl.lit(v, dtype=pl.String).alias(c) for c, v in rule.consts.items()],
                )
            )
            remaining = remaining.filter(~hit)
        parts.append(remaining.select(ROW))
    names = _output_names(rules)
    template = pl.DataFrame(
        {ROW: pl.Series(ROW, [], dtype=pl.UInt32), "_rule": pl.Series([], dtype=pl.Int32)}
        | {c: pl.Series(c, [], dtype=pl.String) for c in names}
    )
    out = pl.concat([template, *parts], how="diagonal_relaxed")
    return out.sort(ROW).select("_rule", *names)


def _output_names(rules: Sequence[Rule]) -> list[str]:
    names: dict[str, None] = {}
    for r in rules:
        for g in re.compile(r.pattern).groupindex:
            names[g] = None
        for c in r.consts:
            names[c] = None
    return list(names)


def json_str(expr: pl.Expr) -> pl.Expr:
    """The JSON encoding of a value (string -> quoted and escaped), as a string expression."""
    return pl.struct(expr.alias("v")).struct.json_encode().str.slice(5).str.head(-1)


def nullif_empty(expr: pl.Expr) -> pl.Expr:
    """Empty strings to null."""
    return pl.when(expr.str.len_bytes() > 0).then(expr)


_IPV4 = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}"
IP_RE = rf"^(?:{_IPV4}|[0-9A-Fa-f]{{0,4}}(?::[0-9A-Fa-f]{{0,4}}){{2,7}}(?::{_IPV4})?(?:%[0-9A-Za-z_.-]+)?)$"


def split_host(host: pl.Expr, is_ip: pl.Expr | None = None) -> tuple[pl.Expr, pl.Expr]:
    """(ip, domain) from an address that is either an IP or a host name.

    IPv4-mapped IPv6 (``::ffff:1.2.3.4``, as dual-stack sshd logs) becomes plain
    IPv4. `host` is used several times: pass a column, not a costly expression,
    and `is_ip` (``host.str.contains(IP_RE)``) precomputed if you have it.
    """
    is_ip = host.str.contains(IP_RE) if is_ip is None else is_ip
    mapped = host.str.starts_with("::ffff:") & host.str.contains(".", literal=True)
    ip = pl.when(is_ip).then(pl.when(mapped).then(host.str.slice(7)).otherwise(host))
    domain = pl.when(~is_ip & (host.str.len_bytes() > 0) & (host != "-")).then(host)
    return ip, domain


def event_fields(action: str, category: str, etype: str, outcome: str) -> dict[str, str]:
    """The ECS event classification a rule sets on the rows it matches."""
    return {
        "event.action": action,
        "event.category": category,
        "event.type": etype,
        "event.outcome": outcome,
    }
