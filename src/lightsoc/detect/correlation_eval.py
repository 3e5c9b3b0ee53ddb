"""Evaluate correlation rules over stored events and raise their alerts.

Windows are **tumbling windows of the rule's `timespan`, aligned to the Unix
epoch** (window start = floor(t / timespan) * timespan). A window's bounds
depend only on the event time, never on when or over which range a run
happened, so the scheduler's overlapping runs, a restart, `lightsoc detect`
over a day and the ingest hook all produce the same (rule, group key,
window) for the same events; `AlertStore` keys idempotency on exactly that
and adds only events a window did not count before. This is also what
pySigma's query backends do (Splunk `bin _time span=...`, ES|QL `BUCKET`).
The price: a burst that straddles a window boundary is split in two, so a
threshold of 10 in 5m may need up to 18 events when they sit across a
boundary; sliding windows anchored at events would depend on where a run
started and break rerun idempotency.

Monotone conditions (`gt`/`gte`, no `not`) are evaluated on windows that are
still open as well: a later run only adds to the same window. Others
(`lt`, `eq`, ...) wait until the window has ended. Events whose group-by
field is empty are not grouped (there is nobody to attribute them to).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Union

import polars as pl

from lightsoc import schema
from lightsoc.alerts.model import AlertCandidate
from lightsoc.store.base import TimeRange

if TYPE_CHECKING:
    # pySigma (~0.3 s to import) comes with loaded rules: the Sigma modules are
    # imported where rules are evaluated, so `ingest` without rules never pays for it.
    from lightsoc.alerts.store import AlertStore
    from lightsoc.config import Config
    from lightsoc.detect.correlation import CorrelationRule
    from lightsoc.runtime import Stores
    from lightsoc.store.events_duckdb import DuckDBEventStore

log = logging.getLogger(__name__)

SAMPLE_EVENT_IDS = 20
#: longest range read from the store at once
DEFAULT_STEP = timedelta(hours=6)
#: a step holding more events than this is halved (memory stays bounded on busy days)
MAX_STEP_EVENTS = 100_000
MIN_STEP = timedelta(minutes=5)
_REF = "__ref"
_WS = "__window"


def entity_type_of(field_name: str) -> str | None:
    """ip / user / host / domain for an ECS field that names such an entity."""
    if field_name.endswith(".ip") or field_name == "dns.resolved_ip":
        return "ip"
    if field_name.startswith("user.") and field_name.endswith(".name"):
        return "user"
    if field_name in ("host.name", "host.hostname", "observer.name", "log.syslog.hostname"):
        return "host"
    if field_name.endswith(".domain") or field_name.startswith("dns.question."):
        if field_name in ("dns.question.type",):
            return None
        return "domain"
    return None


#: fallback entity when no group-by field is one: like the stream's alerts
_FALLBACK = (("source.ip", "ip"), ("user.name", "user"), ("host.name", "host"))


def window_start(ts: datetime, span: timedelta) -> datetime:
    """The epoch-aligned tumbling window holding `ts`."""
    us = int(span.total_seconds() * 1_000_000)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    t = int((ts.astimezone(UTC) - epoch) / timedelta(microseconds=1))
    return epoch + timedelta(microseconds=(t // us) * us)


def fetch_start(rules: Sequence[CorrelationRule], start: datetime) -> datetime:
    """Where to read from so the first window overlapping `start` is whole."""
    return min((window_start(start, r.timespan) for r in rules), default=start)


def needed_fields(rules: Iterable[CorrelationRule]) -> list[str]:
    from lightsoc.detect.sigma.values import LOWER_PREFIX  # loaded with the rules

    cols = {"@timestamp", "event.id", *(f for f, _ in _FALLBACK)}
    for r in rules:
        for ref in r.refs:
            c = ref.compiled
            for e in (c.expr, c.rows):
                if e is not None:
                    cols.update(n for n in e.meta.root_names() if not n.startswith(LOWER_PREFIX))
            cols.update(c.lowered)
            cols.update(ref.group.values())
            if ref.value:
                cols.add(ref.value)
    return sorted(c for c in cols if c in schema.POLARS_SCHEMA)


def fetch(
    store: DuckDBEventStore,
    rules: Sequence[CorrelationRule],
    start: datetime,
    end: datetime,
    allow: AllowFilter | None = None,
) -> pl.DataFrame:
    """The stored events the rules need for windows overlapping [start, end).

    With `allow`, events the allow list trusts are left out: stored events do
    not keep the stream's `_allowed` mark, so it is computed again here.
    """
    if not rules:
        return pl.DataFrame()
    tr = TimeRange(fetch_start(rules, start), end)
    fields = needed_fields(rules)
    if allow is not None:
        fields = sorted(set(fields) | set(allow.fields()))
    events: pl.DataFrame = pl.from_arrow(store.read_range(tr, fields))  # type: ignore[assignment]
    return allow(events) if allow is not None else events


class AllowFilter:
    """Drops events the allow list (`detect.allow` plus `lightsoc intel allow`) trusts."""

    def __init__(self, allow: dict[str, list[str]], state: Any = None) -> None:  # noqa: ANN401
        from lightsoc.enrich.allowlist import AllowListEnricher

        self.enricher = AllowListEnricher({"allow": allow, "state": state})

    def fields(self) -> list[str]:
        self.enricher.refresh()
        r = self.enricher.rules
        names = {*r.nets, *r.domains, *r.exact}
        return [n for n in names if n in schema.POLARS_SCHEMA]

    def __call__(self, events: pl.DataFrame) -> pl.DataFrame:
        from lightsoc.enrich.allowlist import ALLOWED

        marked = self.enricher.enrich(events)
        if ALLOWED not in marked.columns:
            return events
        return marked.filter(~pl.col(ALLOWED).fill_null(False)).drop(ALLOWED)

    @classmethod
    def for_config(cls, config: Config, state: Any = None) -> AllowFilter:  # noqa: ANN401
        return cls({k: list(v) for k, v in config.detect.allow.items()}, state)


def _matches(rule: CorrelationRule, events: pl.DataFrame) -> pl.DataFrame:
    """Rows of the referenced rules: timestamp, id, ref index, group fields, value."""
    from lightsoc.detect.sigma.values import add_lowered  # loaded with the rules

    parts = []
    for i, ref in enumerate(rule.refs):
        c = ref.compiled
        sub = events if c.rows is None else events.filter(c.rows.fill_null(False))
        if sub.height == 0:
            continue
        sub = add_lowered(sub, c.lowered).filter(c.expr.fill_null(False))
        if sub.height == 0:
            continue
        cols = [
            pl.col("@timestamp"),
            pl.col("event.id"),
            pl.lit(i, dtype=pl.Int32).alias(_REF),
            *(pl.col(f).cast(pl.Utf8).alias(f"__g{k}") for k, f in enumerate(ref.group.values())),
            (pl.col(ref.value) if ref.value else pl.lit(None)).alias("__value"),
            *(pl.col(f).cast(pl.Utf8).alias(f"__e_{f}") for f, _ in _FALLBACK),
        ]
        parts.append(sub.select(cols))
    if not parts:
        return pl.DataFrame()
    return pl.concat(parts, how="diagonal_relaxed")


def _compare(value: float, op: str, threshold: float) -> bool:
    return {
        "gt": value > threshold,
        "gte": value >= threshold,
        "lt": value < threshold,
        "lte": value <= threshold,
        "eq": value == threshold,
        "neq": value != threshold,
    }[op]


def _eval_tree(node: object, present: set[str]) -> bool:
    from sigma import correlations as sc  # loaded with the rules

    if isinstance(node, sc.SigmaRuleReference):
        return node.reference in present
    if isinstance(node, sc.CorrelationConditionAND):
        return all(_eval_tree(a, present) for a in node.args)
    if isinstance(node, sc.CorrelationConditionOR):
        return any(_eval_tree(a, present) for a in node.args)
    if isinstance(node, sc.CorrelationConditionNOT):
        return not _eval_tree(node.args[0], present)
    raise ValueError(f"unknown condition element {node!r}")


def _in_order(times: list[list[datetime]]) -> int:
    """How many of the rules matched one after another (greedy, earliest first)."""
    last: datetime | None = None
    n = 0
    for ts in times:
        nxt = next((t for t in ts if last is None or t >= last), None)
        if nxt is None:
            break
        last, n = nxt, n + 1
    return n


def evaluate(
    rule: CorrelationRule, events: pl.DataFrame, start: datetime, end: datetime
) -> list[AlertCandidate]:
    """Candidates of the windows overlapping [start, end) whose condition holds.

    `events` must cover the windows from their start (see `fetch`); windows
    that have not ended by `end` are judged only for monotone conditions.
    """
    if events.height == 0:
        return []
    hits = _matches(rule, events)
    if hits.height == 0:
        return []
    ngroups = len(rule.group_by)
    gcols = [f"__g{k}" for k in range(ngroups)]
    span_us = int(rule.timespan.total_seconds() * 1_000_000)
    ts_us = pl.col("@timestamp").dt.epoch("us")
    hits = hits.with_columns(
        ((ts_us // span_us) * span_us).cast(pl.Datetime("us", "UTC")).alias(_WS)
    ).filter(pl.all_horizontal([pl.col(g).is_not_null() for g in gcols]) if gcols else True)
    first_ws = window_start(start, rule.timespan)
    hits = hits.filter((pl.col(_WS) >= first_ws) & (pl.col("@timestamp") < end))
    if not rule.monotone:  # only windows that have ended
        hits = hits.filter(pl.col(_WS) + rule.timespan <= end)
    if hits.height == 0:
        return []
    nref = len(rule.refs)
    aggs: list[pl.Expr] = [
        pl.col("@timestamp").min().alias("first"),
        pl.col("@timestamp").max().alias("last"),
        pl.col("event.id").n_unique().alias("events"),
        pl.col("event.id").unique(maintain_order=True).head(SAMPLE_EVENT_IDS).alias("ids"),
        *(pl.col(f"__e_{f}").drop_nulls().first().alias(f"__e_{f}") for f, _ in _FALLBACK),
    ]
    if rule.type == "value_count":
        aggs.append(pl.col("__value").drop_nulls().n_unique().alias("measure"))
    elif rule.type == "value_sum":
        aggs.append(pl.col("__value").cast(pl.Float64, strict=False).sum().alias("measure"))
    elif rule.type == "value_avg":
        aggs.append(pl.col("__value").cast(pl.Float64, strict=False).mean().alias("measure"))
    elif rule.type in ("temporal", "temporal_ordered"):
        aggs.append(pl.col(_REF).unique().sort().alias("refs"))
        aggs.extend(
            pl.col("@timestamp").filter(pl.col(_REF) == i).sort().alias(f"__t{i}")
            for i in range(nref)
        )
    else:
        aggs.append(pl.col("event.id").n_unique().alias("measure"))
    groups = hits.group_by([*gcols, _WS], maintain_order=True).agg(aggs).sort(_WS, *gcols)
    out: list[AlertCandidate] = []
    for g in groups.iter_rows(named=True):
        measure = _measure(rule, g, nref)
        if measure is None or not _holds(rule, g, measure):
            continue
        out.append(_candidate(rule, g, gcols, measure))
    return out


def _measure(rule: CorrelationRule, g: dict[str, Any], nref: int) -> float | None:
    if rule.type == "temporal":
        return float(len(g["refs"]))
    if rule.type == "temporal_ordered":
        return float(_in_order([g[f"__t{i}"] for i in range(nref)]))
    m = g["measure"]
    return None if m is None else float(m)


def _holds(rule: CorrelationRule, g: dict[str, Any], measure: float) -> bool:
    if rule.expression is not None:
        present = {rule.refs[i].name for i in g["refs"]}
        return _eval_tree(rule.expression, present)
    return _compare(measure, rule.op, rule.threshold)


def _entity(rule: CorrelationRule, g: dict[str, Any], gcols: list[str]) -> tuple[str, str]:
    fields0 = list(rule.refs[0].group.values())
    for k, f in enumerate(fields0):
        etype = entity_type_of(f)
        if etype is not None and g[gcols[k]]:
            return etype, g[gcols[k]]
    for f, etype in _FALLBACK:
        if g.get(f"__e_{f}"):
            return etype, g[f"__e_{f}"]
    return "host", "unknown"


def _candidate(
    rule: CorrelationRule, g: dict[str, Any], gcols: list[str], measure: float
) -> AlertCandidate:
    etype, evalue = _entity(rule, g, gcols)
    group_key = ",".join(f"{name}={g[c]}" for name, c in zip(rule.group_by, gcols, strict=True))
    ws: datetime = g[_WS]
    we = ws + rule.timespan
    shown = int(measure) if float(measure).is_integer() else round(measure, 2)
    what = f"{rule.type} {shown} ({rule.op} {rule.threshold:g})"
    if rule.expression is not None:
        what = f"{rule.type}: {', '.join(sorted(rule.refs[i].name for i in g['refs']))}"
    return AlertCandidate(
        rule_id=rule.id,
        rule_name=rule.title,
        severity=rule.level,
        entity_type=etype,
        entity_value=evalue,
        first_seen=g["first"],
        last_seen=g["last"],
        count=int(g["events"]),
        score=rule.score,
        event_ids=[i for i in g["ids"] if i is not None],
        window=(group_key, ws.isoformat(), we.isoformat()),
        description=(
            f"{what} in {ws:%Y-%m-%d %H:%M:%S}..{we:%H:%M:%S} UTC"
            + (f" for {group_key}" if group_key else "")
        ),
        tags=["correlation", *rule.tags],
    )


@dataclass
class RunResult:
    """What one run over a time range did."""

    rules: int = 0
    windows: int = 0
    new: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)
    #: ids of the rules that failed (their watermark must not advance)
    failed: set[str] = field(default_factory=set)
    changed: list[Any] = field(default_factory=list)

    def add(self, other: RunResult) -> None:
        self.rules = max(self.rules, other.rules)
        self.windows += other.windows
        self.new += other.new
        self.updated += other.updated
        self.errors.extend(other.errors)
        self.failed |= other.failed
        self.changed.extend(other.changed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "windows": self.windows,
            "alerts_new": self.new,
            "alerts_updated": self.updated,
            "errors": list(self.errors),
        }


Alerts = Union["AlertStore", Callable[[], "AlertStore"]]


def run_rules(
    store: DuckDBEventStore,
    alerts: Alerts,
    rules: Sequence[CorrelationRule],
    start: datetime,
    end: datetime,
    allow: AllowFilter | None = None,
) -> RunResult:
    """Evaluate `rules` over [start, end) of the store and raise their alerts (idempotent).

    `alerts` may be a factory: it is called only when a window fires, so a
    clean import never opens the state store. Events `allow` trusts are not counted.
    """
    result = RunResult(rules=len(rules))
    if not rules or start >= end:
        return result
    events = fetch(store, rules, start, end, allow)
    for rule in rules:
        try:
            cands = evaluate(rule, events, start, end)
            if cands and callable(alerts) and not hasattr(alerts, "raise_alerts"):
                alerts = alerts()
            changed = alerts.raise_alerts(cands) if cands else []  # type: ignore[union-attr]
        except Exception as exc:  # one broken rule must not stop the others
            log.exception("correlation rule %s failed", rule.title)
            result.errors.append(f"{rule.title}: {type(exc).__name__}: {exc}")
            result.failed.add(rule.id)
            continue
        result.windows += len(cands)
        result.new += sum(1 for c in changed if c.change == "new")
        result.updated += sum(1 for c in changed if c.change != "new")
        result.changed.extend(changed)
    return result


def run_range(
    store: DuckDBEventStore,
    alerts: Alerts,
    rules: Sequence[CorrelationRule],
    start: datetime,
    end: datetime,
    step: timedelta = DEFAULT_STEP,
    allow: AllowFilter | None = None,
) -> RunResult:
    """`run_rules` over a long range in bounded steps (memory stays bounded).

    A step is at most `step` long and holds at most `MAX_STEP_EVENTS` events
    (halved until it does, down to `MIN_STEP`).

    A window cut by a step boundary is evaluated in both steps, the second
    time whole: the alert store adds only what the first did not count.
    """
    total = RunResult(rules=len(rules))
    if not rules:
        return total
    a = start
    while a < end:
        # skip stretches without events (an import may span years with gaps)
        nxt = store.search("", TimeRange(a, end), ["@timestamp"], 1, "asc")
        if nxt.num_rows == 0:
            break
        a = max(a, nxt.column("@timestamp")[0].as_py())
        b = min(end, a + step)
        while b - a > MIN_STEP and store.count("", TimeRange(a, b)) > MAX_STEP_EVENTS:
            b = a + (b - a) / 2
        total.add(run_rules(store, alerts, rules, a, b, allow))
        a = b
    return total


def run_imported(config: Config, stores: Stores, first: datetime, last: datetime) -> dict[str, Any]:
    """The ingest hook: the correlation rules over an import's time span [first, last].

    The state store is opened only if a window fires (a clean import creates none).
    Without rule paths (`detect.rules: []`, no imported rules) nothing is loaded:
    pySigma, the alert store and the outputs stay unimported (start-up time).
    """
    from lightsoc.detect.build import imported_dir

    if not config.detect.rules and not imported_dir(stores.data_dir).is_dir():
        return RunResult().as_dict()

    def alert_store() -> AlertStore:
        from lightsoc.alerts.store import AlertStore  # SQLAlchemy: only when a window fires

        return AlertStore.for_config(stores.state, config)

    try:
        from lightsoc.detect.correlation import load_for_config

        rules = load_for_config(config.detect.rules, stores.data_dir).rules
        if not rules:
            return RunResult().as_dict()
        # the state store's allow entries count only if it exists already
        has_state = stores.state_url != "sqlite" or (stores.data_dir / "state.sqlite").exists()
        state = stores.state if has_state else None
        res = run_range(
            stores.events,
            alert_store,
            rules,
            first,
            last + timedelta(microseconds=1),
            allow=AllowFilter.for_config(config, state),
        )
    except Exception as exc:  # the events are stored; `lightsoc detect` can redo this
        log.exception("correlation over the imported span failed")
        return {"errors": [f"{type(exc).__name__}: {exc}"]}
    summary = res.as_dict()
    if not res.changed or not config.alerts.outputs:
        return summary  # nothing to send (`send_once` would send nothing either)
    try:  # like the stream's alerts during the import, new ones go to the outputs
        from lightsoc.alerts.outputs.dispatcher import send_once

        sent = send_once(config.alerts, res.changed)
    except Exception as exc:  # a broken output never fails the import
        log.exception("sending the imported span's correlation alerts failed")
        summary["errors"] = [*summary.get("errors", []), f"outputs: {exc}"]
    else:
        if sent:
            summary["outputs"] = {k: v.get("sent", 0) for k, v in sent.items()}
    return summary
