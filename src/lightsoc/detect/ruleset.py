"""A set of compiled stream rules evaluated over a batch in one vectorised pass.

`RuleSet.evaluate(df)` returns the batch with `rule.name` / `rule.id` (the
matched rules, appended to what earlier detectors put there) and
`event.risk_score` (the highest score of what flagged the row). Each rule is
only evaluated on the rows of its log source: its expression is AND-ed with
the log source's filter, which polars evaluates per batch like any column.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from lightsoc.enrich.allowlist import ALLOWED

if TYPE_CHECKING:
    # The Sigma compiler imports pySigma (~0.3 s); it is imported where rules are
    # loaded or evaluated, so an empty rule set (`detect.rules: []`) costs nothing
    # at start-up.
    from lightsoc.detect.sigma.compiler import CompiledRule, LoadResult, RuleError

log = logging.getLogger(__name__)

#: the rule pack that ships with lightsoc (the repository's `rules/`, or package data)
BUILTIN_DIRS = (
    Path(__file__).resolve().parents[3] / "rules",
    Path(__file__).resolve().parents[1] / "rules",
)


def builtin_dir() -> Path | None:
    return next((d for d in BUILTIN_DIRS if d.is_dir()), None)


_MATCH = "__rule_hit_"
_ROW = "__row"


@dataclass
class _Group:
    """The rules of one log source."""

    rows: pl.Expr | None
    filtered: list[int] = field(default_factory=list)
    unfiltered: list[int] = field(default_factory=list)
    needles: dict[str, set[str]] = field(default_factory=dict)
    #: field -> needle -> the prefiltered rules that need it
    by_needle: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    #: per field, "the field holds one of its needles"
    candidates: dict[str, pl.Expr] = field(default_factory=dict)

    def present(self, cand: pl.DataFrame, fields: list[str]) -> list[int]:
        """The prefiltered rules some of whose needles occur in the candidate rows.

        A rule none of whose needles occur cannot match (the needles are a
        necessary condition), so of a hundred web rules only the few whose
        literals a batch's attacks contain are evaluated. Only `fields`, the
        ones where some candidate row holds a needle, are searched.
        """
        if cand.height == 0 or not fields:
            return []
        found = cand.select(
            pl.col(f)
            .str.to_lowercase()
            .str.extract_many(sorted(self.by_needle[f]), overlapping=True)
            .list.unique()
            .implode()
            .list.eval(pl.element().explode().drop_nulls().unique())
            .alias(f)
            for f in fields
        ).row(0, named=True)
        run: set[int] = set()
        for f, values in found.items():
            for x in values or ():
                run.update(self.by_needle[f].get(x, ()))
        return sorted(run)


@dataclass
class Evaluation:
    """The flagged batch, and per rule the row indices it matched (for alerting)."""

    events: pl.DataFrame
    hits: list[tuple[CompiledRule, list[int]]] = field(default_factory=list)


class RuleSet:
    """Compiled rules; `evaluate` flags a batch, `evaluate_hits` also says which rows."""

    component_name = "sigma"

    def __init__(self, rules: Iterable[CompiledRule] = ()) -> None:
        self.rules: list[CompiledRule] = list(rules)
        self.failures: list[RuleError] = []
        self._lowered = set().union(*(r.lowered for r in self.rules)) if self.rules else set()
        # rules by log source, split by whether a literal prefilter applies
        groups: dict[str, _Group] = {}
        for i, r in enumerate(self.rules):
            g = groups.setdefault(r.logsource, _Group(r.rows))
            (g.filtered if r.prefilter else g.unfiltered).append(i)
            for f, needles in (r.prefilter or {}).items():
                g.needles.setdefault(f, set()).update(needles)
                for x in needles:
                    g.by_needle.setdefault(f, {}).setdefault(x, []).append(i)
        if any(g.needles for g in groups.values()):
            from lightsoc.detect.sigma import prefilter  # start-up time: see the imports

            for g in groups.values():
                g.candidates = prefilter.candidates(g.needles) if g.needles else {}
        self._groups = list(groups.values())
        self._needed_cols = self._needed()

    @property
    def fields(self) -> set[str]:
        """Event fields the rules and their row filters read."""
        return set(self._needed_cols)

    def __len__(self) -> int:
        return len(self.rules)

    @classmethod
    def from_result(cls, result: LoadResult) -> RuleSet:
        rs = cls(result.rules)
        rs.failures = list(result.failures)
        return rs

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> RuleSet:
        """Rules from files/directories; `builtin` names the shipped pack."""
        paths = list(paths)
        if not paths:  # nothing to compile: no pySigma import (start-up time)
            return cls()
        from lightsoc.detect.sigma.compiler import LoadResult, RuleError, load_path

        result = LoadResult()
        for p in paths:
            if str(p) == "builtin":
                d = builtin_dir()
                if d is None:
                    log.warning("the built-in rule pack is not installed")
                    continue
                p = d
            path = Path(p)
            if not path.exists():
                result.failures.append(RuleError(f"path {path}", "does not exist"))
                continue
            result.extend(load_path(path))
        for f in result.failures:
            log.warning("rule not loaded: %s", f)
        return cls.from_result(result)

    def _matches(self, df: pl.DataFrame) -> dict[int, pl.Series]:
        """Per matching rule (by index), the batch rows it matched (sorted, UInt32).

        Per log source: its row filter once (a source with no rows in the batch
        costs nothing more); then one pass per field over the needles of its
        prefiltered rules picks the candidate rows, and those rules run only
        there; the rest run on all the source's rows. Lower-cased copies of
        text are made only for the rows a rule runs on.
        """
        present = [c for c in self._needed_cols if c in df.columns]
        work = _with_columns(df.with_row_index(_ROW).select(_ROW, *present), self._needed_cols)
        hits: dict[int, pl.Series] = {}
        n = work.height
        # every log source's row filter in one pass; most are empty for a batch
        masks = work.select(
            g.rows.fill_null(False).alias(str(k))
            for k, g in enumerate(self._groups)
            if g.rows is not None
        )
        counts = dict(zip(masks.columns, masks.sum().row(0), strict=True)) if masks.width else {}
        for k, group in enumerate(self._groups):
            count = counts.get(str(k), n)  # no row filter: every row
            if count == 0:
                continue
            sub = work if count == n else work.filter(masks[str(k)])
            if group.filtered:
                # one regex pass per field; only fields with a hit are searched again
                marks = sub.select(e.alias(f) for f, e in group.candidates.items())
                per_field = marks.sum().row(0)
                hit_fields = [f for f, c in zip(marks.columns, per_field, strict=True) if c]
                cand = sub.filter(marks.select(pl.any_horizontal(pl.all())).to_series())
                self._run(cand, group.present(cand, hit_fields), hits)
            if group.unfiltered:
                self._run(sub, group.unfiltered, hits)
        return hits

    def _run(self, frame: pl.DataFrame, idx: list[int], out: dict[int, pl.Series]) -> None:
        """Evaluate rules `idx` (one `select`) on `frame`; record the rows each matched."""
        if frame.height == 0:
            return
        from lightsoc.detect.sigma.values import add_lowered  # loaded with the rules

        frame = add_lowered(frame, set().union(*(self.rules[i].lowered for i in idx)))
        got = frame.select(self.rules[i].expr.fill_null(False).alias(f"{_MATCH}{i}") for i in idx)
        counts = got.sum().row(0)
        rows = frame[_ROW]
        for i, n in zip(idx, counts, strict=True):
            if n:
                out[i] = rows.filter(got[f"{_MATCH}{i}"])

    def _needed(self) -> set[str]:
        """Event fields the rules and their row filters read."""
        from lightsoc import schema

        if not self.rules:
            return set()
        from lightsoc.detect.sigma.values import LOWER_PREFIX  # loaded with the rules

        cols: set[str] = set()
        for r in self.rules:
            for e in (r.expr, r.rows):
                if e is not None:
                    cols.update(c for c in e.meta.root_names() if not c.startswith(LOWER_PREFIX))
        cols.update(self._lowered)
        return {c for c in cols if c in schema.POLARS_SCHEMA}

    def evaluate_hits(self, df: pl.DataFrame) -> Evaluation:
        """The flagged batch and, per matching rule, its row indices."""
        if not self.rules or df.height == 0:
            return Evaluation(df)
        hits = _drop_allowed(df, self._matches(df))
        if not hits:
            return Evaluation(df)
        order = sorted(hits)  # rule order: names/ids listed as the rules were loaded
        pairs = pl.DataFrame(
            {
                _ROW: pl.concat([hits[i] for i in order]),
                "__f_n": pl.Series(
                    [self.rules[i].title for i in order for _ in range(len(hits[i]))],
                    dtype=pl.Utf8,
                ),
                "__f_i": pl.Series(
                    [self.rules[i].id for i in order for _ in range(len(hits[i]))], dtype=pl.Utf8
                ),
                "__f_s": pl.Series(
                    [self.rules[i].score for i in order for _ in range(len(hits[i]))],
                    dtype=pl.Float64,
                ),
            }
        )
        flags = pairs.group_by(_ROW, maintain_order=True).agg(
            pl.col("__f_n"), pl.col("__f_i"), pl.col("__f_s").max()
        )
        events = _merge(df, flags)
        return Evaluation(events, [(self.rules[i], hits[i].to_list()) for i in order])

    def evaluate(self, df: pl.DataFrame) -> pl.DataFrame:
        """`df` with `rule.name`, `rule.id` and `event.risk_score` for the rows rules matched."""
        return self.evaluate_hits(df).events

    # detectors in the pipeline are called like enrichers
    def detect(self, df: pl.DataFrame) -> pl.DataFrame:
        return self.evaluate(df)


def _drop_allowed(df: pl.DataFrame, hits: dict[int, pl.Series]) -> dict[int, pl.Series]:
    """Hits without the rows the allow list trusts (`detect.allow`, `intel allow`).

    Allowed rows are still stored and searchable; no rule flags them and no
    alert names them.
    """
    if not hits or ALLOWED not in df.columns:
        return hits
    allowed = df.get_column(ALLOWED).fill_null(False)
    if not allowed.any():
        return hits
    kept = {i: rows.filter(~allowed.gather(rows)) for i, rows in hits.items()}
    return {i: rows for i, rows in kept.items() if len(rows)}


def _with_columns(df: pl.DataFrame, needed: set[str]) -> pl.DataFrame:
    """`df` plus typed null columns for fields the rules read but the batch lacks."""
    from lightsoc import schema

    missing = [n for n in needed if n not in df.columns]
    if not missing:
        return df
    return df.with_columns(pl.lit(None, dtype=schema.POLARS_SCHEMA[n]).alias(n) for n in missing)


def _merge(df: pl.DataFrame, flags: pl.DataFrame) -> pl.DataFrame:
    """Append matched names/ids to existing `rule.*` lists; keep the higher risk score.

    Only the three rule columns are computed, aligned to the batch by joining
    the flags onto the bare row numbers; the batch's other columns are reused,
    not copied through a join.
    """
    str_list = pl.List(pl.Utf8)
    n = df.height
    index = pl.int_range(0, n, dtype=pl.UInt32, eager=True).alias(_ROW).to_frame()
    aligned = index.join(flags, on=_ROW, how="left", maintain_order="left")
    rule_cols = ("rule.name", "rule.id", "event.risk_score")
    if all(c not in df.columns or df.get_column(c).null_count() == n for c in rule_cols):
        # nothing flagged these rows before (the usual case): the flags are the columns
        return df.with_columns(
            aligned.get_column("__f_n").alias("rule.name"),
            aligned.get_column("__f_i").alias("rule.id"),
            aligned.get_column("__f_s").alias("event.risk_score"),
        )
    cols = []
    for name, dtype in (
        ("rule.name", str_list),
        ("rule.id", str_list),
        ("event.risk_score", pl.Float64),
    ):
        if name in df.columns:
            cols.append(df.get_column(name).cast(dtype))
        else:
            cols.append(pl.repeat(None, n, dtype=dtype, eager=True).alias(name))
    has = pl.col("__f_n").is_not_null()
    empty = pl.lit([], str_list)
    new = aligned.with_columns(cols).select(
        pl.when(has)
        .then(pl.concat_list(pl.col("rule.name").fill_null(empty), pl.col("__f_n")))
        .otherwise(pl.col("rule.name"))
        .alias("rule.name"),
        pl.when(has)
        .then(pl.concat_list(pl.col("rule.id").fill_null(empty), pl.col("__f_i")))
        .otherwise(pl.col("rule.id"))
        .alias("rule.id"),
        pl.max_horizontal(pl.col("event.risk_score"), pl.col("__f_s")).alias("event.risk_score"),
    )
    return df.with_columns(new.get_columns())
