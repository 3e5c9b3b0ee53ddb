"""Alerts from the stream: the flagged events of each stored batch become alerts.

Stream detectors (Sigma rules, intel matches, models) only mark events
(`rule.name`, `rule.id`, `event.risk_score`). After a batch is committed, the
pipeline hands it here: its flagged rows are grouped by (rule, entity) with
polars, each group becomes one `AlertCandidate`, the alert store deduplicates
them, and the alerts that are new or escalated go to the outputs. Raising
after the commit means an alert never points at an event that is not stored.

The entity is the first of `source.ip` (ip), `user.name` (user),
`dns.question.registered_domain` (domain) and `host.name` (host) an event has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from lightsoc.alerts.model import AlertCandidate

if TYPE_CHECKING:
    from lightsoc.alerts.outputs.dispatcher import Dispatcher
    from lightsoc.alerts.store import AlertStore
    from lightsoc.pipeline import ProcessedBatch

log = logging.getLogger(__name__)

#: (event field, entity type), in order of preference
ENTITY_FIELDS = (
    ("source.ip", "ip"),
    ("user.name", "user"),
    ("dns.question.registered_domain", "domain"),
    ("host.name", "host"),
)
SAMPLE_EVENT_IDS = 20
RAISE_CHUNK = 200
BACKGROUND_DUTY = 0.25
#: while the alert store fails, its candidates are retried with backoff ...
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
#: ... up to this many (then the oldest are dropped and counted)
MAX_RETRY_CANDIDATES = 100_000


def severity_for_score(score: float | None) -> str:
    """Sigma's levels by the score they map to (critical 90, high 75, medium 50, low 25)."""
    s = score or 0.0
    for floor, name in ((90, "critical"), (75, "high"), (50, "medium"), (25, "low")):
        if s >= floor:
            return name
    return "informational"


def candidates_from_events(
    events: pl.DataFrame,
    levels: Mapping[str, str] | None = None,
    tags: Mapping[str, Sequence[str]] | None = None,
) -> list[AlertCandidate]:
    """One candidate per (rule, entity) among the events that carry `rule.name`.

    `levels`/`tags`: per rule id, the severity and tags its alerts carry.
    """
    if "rule.name" not in events.columns or events.height == 0:
        return []
    cols = events.columns
    entity_value = pl.coalesce(
        [pl.col(f).cast(pl.Utf8) for f, _ in ENTITY_FIELDS if f in cols] or [pl.lit(None)]
    )
    entity_type = pl.lit(None, dtype=pl.Utf8)
    for field, etype in reversed([(f, t) for f, t in ENTITY_FIELDS if f in cols]):
        entity_type = (
            pl.when(pl.col(field).is_not_null()).then(pl.lit(etype)).otherwise(entity_type)
        )
    rule_ids = pl.col("rule.id") if "rule.id" in cols else pl.col("rule.name")
    score = pl.col("event.risk_score") if "event.risk_score" in cols else pl.lit(None)
    flagged = (
        events.filter(pl.col("rule.name").list.len() > 0)
        .select(
            pl.col("@timestamp"),
            pl.col("event.id"),
            score.cast(pl.Float64).alias("score"),
            entity_type.alias("etype"),
            entity_value.alias("evalue"),
            pl.col("rule.name").alias("rname"),
            pl.coalesce(rule_ids, pl.col("rule.name")).alias("rid"),
        )
        .filter(pl.col("evalue").is_not_null())
    )
    if flagged.height == 0:
        return []
    groups = (
        flagged.explode(["rname", "rid"])
        .group_by("rid", "rname", "etype", "evalue", maintain_order=True)
        .agg(
            pl.col("@timestamp").min().alias("first"),
            pl.col("@timestamp").max().alias("last"),
            pl.len().alias("count"),
            pl.col("score").max().alias("score"),
            pl.col("event.id").head(SAMPLE_EVENT_IDS).alias("ids"),
        )
    )
    levels = levels or {}
    tags = tags or {}
    return [
        AlertCandidate(
            rule_id=g["rid"],
            rule_name=g["rname"],
            severity=levels.get(g["rid"]) or severity_for_score(g["score"]),
            entity_type=g["etype"],
            entity_value=g["evalue"],
            first_seen=g["first"],
            last_seen=g["last"],
            count=g["count"],
            score=g["score"],
            event_ids=[i for i in g["ids"] if i is not None],
            tags=list(tags.get(g["rid"], ())),
        )
        for g in groups.iter_rows(named=True)
    ]


class StreamAlerter:
    """`Pipeline(on_batch=...)` callback: stored, flagged events -> alerts -> outputs."""

    def __init__(
        self,
        store: AlertStore,
        dispatcher: Dispatcher | None = None,
        *,
        levels: Callable[[], Mapping[str, str]] | None = None,
        tags: Callable[[], Mapping[str, Sequence[str]]] | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.levels = levels
        self.tags = tags
        self.raised = 0
        self.notified = 0
        self.errors = 0
        #: share of the time spent raising; the rest sleeps (the background alerter lowers it)
        self.duty = 1.0

    def __call__(self, done: ProcessedBatch) -> None:
        self.raise_for(done.events)

    def raise_for(
        self, events: pl.DataFrame, pending: Sequence[AlertCandidate] = ()
    ) -> list[AlertCandidate]:
        """Raise alerts for the flagged rows of `events` (and notify the outputs),
        after the `pending` candidates of an earlier failed call. Returns the
        candidates not raised because the alert store failed (counted in
        `errors`): the caller may retry them; the raised ones are committed."""
        try:
            candidates = list(pending) + candidates_from_events(
                events,
                self.levels() if self.levels else None,
                self.tags() if self.tags else None,
            )
        except Exception:  # a broken rule's flags must not stop alerting on the others
            self.errors += 1
            log.exception("building alerts for a batch failed")
            return list(pending)
        changed = []
        left: list[AlertCandidate] = []
        # short transactions: API token checks and analysts' writes are not kept waiting
        for i in range(0, len(candidates), RAISE_CHUNK):
            t0 = time.perf_counter()
            try:
                changed += self.store.raise_alerts(candidates[i : i + RAISE_CHUNK])
            except Exception as exc:  # the events are stored; a broken store must not stop ingest
                self.errors += 1
                log.warning("raising alerts failed (state store unreachable?): %s", exc)
                log.debug("raising alerts failed", exc_info=True)
                left = candidates[i:]
                break
            if self.duty < 1.0:  # leave the CPU (and the GIL) to ingest
                time.sleep((time.perf_counter() - t0) * (1.0 / self.duty - 1.0))
        self.raised += len(changed)
        to_send = [c.alert.as_dict() for c in changed if c.notify]
        if to_send and self.dispatcher is not None:
            self.dispatcher.notify(to_send)
            self.notified += len(to_send)
        return left

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alerts_changed": self.raised,
            "notified": self.notified,
            "errors": self.errors,
        }
        if self.dispatcher is not None:
            out["outputs"] = self.dispatcher.stats()
        return out


def has_flagged(events: pl.DataFrame) -> bool:
    return "rule.name" in events.columns and bool((events["rule.name"].list.len() > 0).any())


#: what alerting needs of a flagged event (the rest of the row is not kept in memory)
ALERT_COLUMNS = (
    "@timestamp",
    "event.id",
    "rule.name",
    "rule.id",
    "event.risk_score",
    *(f for f, _ in ENTITY_FIELDS),
)


class LazyStreamAlerter:
    """Stream alerting off the writer thread, built on the first flagged batch.

    The writer only hands over the flagged rows' few alerting columns; a
    worker thread groups everything queued since its last pass into
    candidates and raises them in one go. So a flood of flagged events (a
    brute force from thousands of addresses) slows alerting, never ingest;
    past `max_pending_rows` queued rows, further rows are counted in
    `dropped_rows` and logged, not raised (their events are stored with
    `rule.name`, so `lightsoc search` still finds them). A clean import never
    opens the state store or starts the outputs. `close()` raises what is
    queued (up to `close_seconds`), then flushes and stops the outputs.

    While the alert store fails (a state store outage), what it refused is
    retried with backoff, and rows queued meanwhile wait: alerts are late,
    not lost (beyond `MAX_RETRY_CANDIDATES`, the oldest are counted and dropped).
    """

    def __init__(
        self,
        make: Callable[[], StreamAlerter],
        *,
        max_pending_rows: int = 1_000_000,
        close_seconds: float = 30.0,
    ) -> None:
        self._make = make
        self.alerter: StreamAlerter | None = None
        self.max_pending_rows = max_pending_rows
        self.close_seconds = close_seconds
        self.dropped_rows = 0
        #: alerts given up on because the alert store stayed down (see MAX_RETRY_CANDIDATES)
        self.dropped_candidates = 0
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def __call__(self, done: ProcessedBatch) -> None:
        if not has_flagged(done.events):
            return
        ev = done.events
        rows = ev.filter(pl.col("rule.name").list.len() > 0).select(
            [c for c in ALERT_COLUMNS if c in ev.columns]
        )
        with self._cond:
            if self._closed:
                return
            if self._pending_rows + rows.height > self.max_pending_rows:
                if not self.dropped_rows:
                    log.warning("stream alerting is behind: flagged rows are not raised as alerts")
                self.dropped_rows += rows.height
                return
            self._pending.append(rows)
            self._pending_rows += rows.height
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alerting", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        retry: list[AlertCandidate] = []  # raised into a failing store: tried again
        backoff = False
        delay = RETRY_FIRST_SECONDS
        while True:
            with self._cond:
                if backoff:  # rows queued meanwhile join the next attempt
                    self._cond.wait(delay)
                else:
                    while not self._pending and not self._closed:
                        self._cond.wait()
                if not self._pending and not retry:
                    return
                frames, self._pending, self._pending_rows = self._pending, [], 0
            rows = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
            if self.alerter is None and not self._build():
                with self._cond:  # the rows wait in the queue for the next attempt
                    self._pending.insert(0, rows)
                    self._pending_rows += rows.height
                backoff, delay = True, min(delay * 2, RETRY_MAX_SECONDS)
                continue
            assert self.alerter is not None
            try:
                retry = self.alerter.raise_for(rows, retry) or []
            except Exception:  # never let alerting die silently with rows queued
                log.exception("stream alerting failed for %d rows", rows.height)
                retry = []
            if len(retry) > MAX_RETRY_CANDIDATES:
                log.warning("alert store down too long: %d alerts not raised", len(retry))
                self.dropped_candidates += len(retry) - MAX_RETRY_CANDIDATES
                retry = retry[-MAX_RETRY_CANDIDATES:]
            backoff = bool(retry)
            delay = min(delay * 2, RETRY_MAX_SECONDS) if retry else RETRY_FIRST_SECONDS

    def _build(self) -> bool:
        """Make the alerter (it opens the alert store); False while that fails."""
        try:
            self.alerter = self._make()
        except Exception:  # e.g. the state store is down at the first flagged batch
            log.warning("stream alerting is not ready; retrying", exc_info=True)
            return False
        # a flood is grouped into fewer, larger passes instead of starving ingest
        self.alerter.duty = BACKGROUND_DUTY
        return True

    def stats(self) -> dict[str, Any]:
        out = self.alerter.stats() if self.alerter else {}
        with self._cond:
            out.update(pending_rows=self._pending_rows, dropped_rows=self.dropped_rows)
            if self.dropped_candidates:
                out["dropped_alerts"] = self.dropped_candidates
        return out

    def close(self, timeout: float | None = None) -> None:
        """Raise what is queued, then flush and stop the outputs (once)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            if self.alerter is not None:
                self.alerter.duty = 1.0  # ingest is over: the backlog at full speed
            self._cond.notify_all()
            thread = self._thread
        wait = self.close_seconds if timeout is None else timeout
        if thread is not None:
            thread.join(wait)
            if thread.is_alive():
                log.warning(
                    "stream alerting did not finish in %.0f s; the rest is not raised", wait
                )
                return
        if self.alerter is not None and self.alerter.dispatcher is not None:
            self.alerter.dispatcher.flush(wait)
            self.alerter.dispatcher.close()
