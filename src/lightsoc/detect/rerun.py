"""Rerun the stream rules over stored events (`lightsoc detect`).

A rule added after the events were stored (or a rule fixed since) never saw
them in the stream. Rerunning it raises the alerts it would have raised,
idempotently:

- a hit the stream already recorded (the stored event lists the rule's id in
  `rule.id`) was alerted then and is skipped;
- the other hits are counted per (rule, entity, hour) and raised as the
  window ("rerun", entity, hour) of that rule: the alert store remembers each
  window's count and adds only hits it did not count before, so running
  `lightsoc detect` twice, or over overlapping ranges, never counts twice.

Stored events are immutable (Parquet segments): the rerun raises alerts; it
does not add the new rule names to the stored events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from lightsoc import schema
from lightsoc.alerts.stream import ENTITY_FIELDS, candidates_from_events
from lightsoc.detect.ruleset import RuleSet
from lightsoc.store.base import TimeRange

if TYPE_CHECKING:
    from lightsoc.alerts.store import AlertStore
    from lightsoc.detect.correlation_eval import AllowFilter
    from lightsoc.store.events_duckdb import DuckDBEventStore

BUCKET = timedelta(hours=1)
#: longest range read from the store at once (a multiple of BUCKET)
STEP = timedelta(hours=6)
_RULE_COLS = ("rule.name", "rule.id", "event.risk_score")


@dataclass
class StreamRerun:
    """What a rerun of the stream rules found and raised."""

    rules: int = 0
    events: int = 0
    #: hits the stream had not recorded (new or changed rules)
    hits: int = 0
    new: int = 0
    updated: int = 0
    changed: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "events": self.events,
            "hits": self.hits,
            "alerts_new": self.new,
            "alerts_updated": self.updated,
        }


def _aligned(t: datetime) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=t.tzinfo)
    return epoch + ((t - epoch) // BUCKET) * BUCKET


def rerun_stream_rules(
    store: DuckDBEventStore,
    alerts: AlertStore,
    rules: RuleSet,
    start: datetime,
    end: datetime,
    *,
    allow: AllowFilter | None = None,
    levels: Mapping[str, str] | None = None,
) -> StreamRerun:
    """Evaluate `rules` over the stored events of [start, end) and raise what is new."""
    result = StreamRerun(rules=len(rules))
    if not len(rules) or start >= end:
        return result
    levels = levels if levels is not None else {r.id: r.level for r in rules.rules}
    fields = rules.fields | {"@timestamp", "event.id", "rule.id"}
    fields |= {f for f, _ in ENTITY_FIELDS}
    if allow is not None:
        fields |= set(allow.fields())
    wanted = sorted(f for f in fields if f in schema.POLARS_SCHEMA)
    a = start
    while a < end:
        # steps end on hour boundaries, so a bucket is never split inside one run
        b = min(end, _aligned(a) + STEP)
        events: pl.DataFrame = pl.from_arrow(  # type: ignore[assignment]
            store.read_range(TimeRange(a, b), wanted)
        )
        a = b
        if events.height == 0:
            continue
        result.events += events.height
        if allow is not None:
            events = allow(events)
        new_hits = _unrecorded_hits(rules, events)
        if new_hits.height == 0:
            continue
        result.hits += new_hits.height
        cands = []
        bucketed = new_hits.with_columns(pl.col("@timestamp").dt.truncate("1h").alias("__bucket"))
        for (bucket,), part in bucketed.group_by("__bucket", maintain_order=True):
            for c in candidates_from_events(part.drop("__bucket"), levels):
                c.window = ("rerun", c.entity_type, c.entity_value, str(bucket))
                cands.append(c)
        changed = alerts.raise_alerts(cands)
        result.new += sum(1 for c in changed if c.change == "new")
        result.updated += sum(1 for c in changed if c.change != "new")
        result.changed.extend(changed)
    return result


def _unrecorded_hits(rules: RuleSet, events: pl.DataFrame) -> pl.DataFrame:
    """One row per (event, rule) hit whose rule the stored event does not list."""
    recorded = events.get_column("rule.id") if "rule.id" in events.columns else None
    fresh = events.drop([c for c in _RULE_COLS if c in events.columns])
    ev = rules.evaluate_hits(fresh)
    parts = []
    for rule, rows in ev.hits:
        idx = pl.Series(rows, dtype=pl.UInt32)
        if recorded is not None:
            seen = recorded.gather(idx).list.contains(rule.id).fill_null(False)
            idx = idx.filter(~seen)
        if len(idx) == 0:
            continue
        parts.append(
            fresh[idx].with_columns(
                pl.lit([rule.title], dtype=pl.List(pl.Utf8)).alias("rule.name"),
                pl.lit([rule.id], dtype=pl.List(pl.Utf8)).alias("rule.id"),
                pl.lit(rule.score, dtype=pl.Float64).alias("event.risk_score"),
            )
        )
    if not parts:
        return pl.DataFrame()
    return pl.concat(parts, how="diagonal_relaxed")
