"""Parsers: one module per format, registered by name; `auto` picks per record.

`parse_records` is the parse stage: raw records in, ECS columns out, failed
records kept with `tags: [parse_failure]` and their original text.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from lightsoc import registry
from lightsoc.parsers.base import OK, Parser
from lightsoc.schema import PARSE_FAILURE, POLARS_SCHEMA

ORIGINAL = "event.original"
_ROW = "_row"


class AutoParser(Parser):
    """Detects the format per record by trying parsers in `auto_priority` order.

    The parser that recognised most records last time is tried first, so a
    stream in one format costs one pass; records it rejects (a file that
    changes format midway, mixed senders) fall through to the others.
    """

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        classes = sorted(
            (cls for name, cls in registry.all_of("parsers").items() if name != "auto"),
            key=lambda c: (c.auto_priority, c.component_name),
        )
        seen: set[type] = set()
        self.candidates: list[Parser] = []
        for cls in classes:  # a class registered under two names is tried once
            if cls not in seen:
                seen.add(cls)
                self.candidates.append(cls(self.options))
        self.preferred: Parser | None = None

    def matches(self, raw: pl.Series) -> pl.Series:
        out = pl.Series([False] * len(raw))
        for p in self.candidates:
            out = out | p.matches(raw)
        return out

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        rest = pl.DataFrame({_ROW: pl.int_range(0, len(raw), eager=True), ORIGINAL: raw})
        done: list[pl.DataFrame] = []
        order = self.candidates
        if self.preferred is not None:
            order = [self.preferred] + [p for p in self.candidates if p is not self.preferred]
        best, best_n = None, 0
        for parser in order:
            if rest.height == 0:
                break
            mask = parser.matches(rest[ORIGINAL])
            if not mask.any():
                continue
            sub = rest.filter(mask)
            out = parser.parse(sub[ORIGINAL]).with_columns(sub[_ROW])
            good = out.filter(pl.col(OK))
            if good.height:
                done.append(good)
                rest = rest.join(good.select(_ROW), on=_ROW, how="anti")
                if good.height > best_n:
                    best, best_n = parser, good.height
        if best is not None:
            self.preferred = best
        done.append(rest.select(_ROW, pl.lit(False).alias(OK)))
        merged = pl.concat(done, how="diagonal_relaxed").sort(_ROW)
        return merged.drop(_ROW)


registry.register("parsers", "auto")(AutoParser)


def get_parser(name: str, options: dict[str, Any] | None = None) -> Parser:
    """A parser instance by registered name (`auto` for detection)."""
    return registry.get("parsers", name)(options)


def parse_records(records: pl.DataFrame, parser: Parser) -> pl.DataFrame:
    """Parse `records[event.original]`; failed rows become parse_failure events."""
    n = records.height
    if n == 0:
        return records
    parsed = parser.parse(records[ORIGINAL])
    if parsed.height != n:  # a parser bug must not lose records
        raise RuntimeError(f"parser {type(parser).__name__} returned {parsed.height} rows for {n}")
    ok = parsed[OK].fill_null(False) if OK in parsed.columns else pl.Series([False] * n)
    keep = [
        c for c in parsed.columns if c != OK and c in POLARS_SCHEMA and c not in records.columns
    ]
    out = records.hstack(parsed.select(keep))
    # A failed row keeps only what the source knew about it, never half-parsed fields.
    if not ok.all():
        out = out.with_columns(
            pl.when(ok).then(pl.col(c)).otherwise(pl.lit(None, dtype=out.schema[c])).alias(c)
            for c in keep
            if c not in ("event.dataset", "event.module")
        )
    failure_tag = pl.when(~ok).then(pl.lit(PARSE_FAILURE))
    kind = pl.when(~ok).then(pl.lit("pipeline_error"))
    if "event.kind" in out.columns:
        kind = kind.otherwise(pl.col("event.kind"))
    return out.with_columns(
        kind.alias("event.kind"),
        failure_tag.alias("_parse_failure_tag"),
        pl.Series("_parse_ok", ok),
    )
