"""Window models on a schedule: beaconing, DNS tunnelling, LDA suspicious connects.

A job runs every `interval` over the stored events of the last `lookback`
(`detect.ml.jobs.<kind>`), turns what its model flags into alert candidates
and raises them. The time a job last ran is a watermark in the state store
(`ml:<kind>`), so a restart neither reruns a job early nor skips one. Each
candidate names the day its run ended as its window: hourly reruns over an
overlapping day update one alert and never count a pair twice.

The same loop retrains the stream models when `detect.ml.retrain.<kind>` is on
(`retrain.RetrainJob`, watermark `ml:retrain-<kind>`): a run that keeps the
current model (too little data, a worse candidate) advances the watermark; a
run that fails is retried at the next tick, like a window job.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from lightsoc.alerts.model import AlertCandidate
from lightsoc.store.base import TimeRange

if TYPE_CHECKING:
    from lightsoc.alerts.store import AlertStore
    from lightsoc.config import Config, MLJobConfig
    from lightsoc.config_ml import RetrainConfig
    from lightsoc.detect.correlation_eval import AllowFilter
    from lightsoc.detect.ml.retrain import RetrainJob
    from lightsoc.store.events_duckdb import DuckDBEventStore
    from lightsoc.store.state import StateStore

log = logging.getLogger(__name__)

FLOW_DATASETS = ("netflow", "argus", "zeek.conn", "suricata.flow")
DNS_DATASETS = ("dns", "zeek.dns", "suricata.dns")
WEB_DATASETS = ("nginx.access", "apache.access", "zeek.http", "suricata.http")
#: how often the loop looks for due jobs (a job's own interval decides when it runs)
TICK = timedelta(minutes=1)

Candidates = Callable[[pl.DataFrame, datetime, datetime, "float | None"], list[AlertCandidate]]


def _datasets(*names: str) -> str:
    return "event.dataset:(" + " OR ".join(f'"{n}"' for n in names) + ")"


@dataclass(frozen=True)
class WindowJob:
    """A scheduled model: which stored events it reads and how it turns them into alerts."""

    kind: str
    query: str
    fields: tuple[str, ...]
    candidates: Candidates
    #: read from the start of the window `end - lookback` falls in (windowed models
    #: score whole windows, never a window's tail alone)
    align: timedelta | None = None


def _severity(score: float) -> str:
    return "high" if score >= 0.95 else "medium" if score >= 0.85 else "low"


def beacon_candidates(
    events: pl.DataFrame, start: datetime, end: datetime, threshold: float | None
) -> list[AlertCandidate]:
    """RITA beacon scores per (source, destination) of flows, DNS and web events."""
    from lightsoc.detect.ml import beacon

    out: list[AlertCandidate] = []
    if events.height == 0 or "event.dataset" not in events.columns:
        return out
    day = end.astimezone(UTC).date().isoformat()
    for kind, datasets in (("flow", FLOW_DATASETS), ("dns", DNS_DATASETS), ("web", WEB_DATASETS)):
        part = events.filter(pl.col("event.dataset").is_in(datasets))
        if part.height == 0:
            continue
        scored = beacon.score_beacons(part, kind, start, end)
        dst = beacon.destination_field(kind)
        hits = beacon.alerts(scored, beacon.THRESHOLD if threshold is None else threshold)
        for r in hits.iter_rows(named=True):  # alerts only: a handful of rows
            strobe = bool(r["is_strobe"])
            what = "strobe" if strobe else f"beacon score {r['score']:.3f}"
            out.append(
                AlertCandidate(
                    rule_id="ml-strobe" if strobe else "ml-beaconing",
                    rule_name="ML Strobe Connections" if strobe else "ML Beaconing",
                    severity="medium" if strobe else _severity(float(r["score"])),
                    entity_type="ip",
                    entity_value=str(r["source.ip"]),
                    first_seen=r["first_seen"] or start,
                    last_seen=r["last_seen"],
                    count=int(r["connections"] or 1),
                    score=None if strobe else round(float(r["score"]) * 100, 1),
                    window=(kind, str(r["source.ip"]), str(r[dst]), day),
                    description=(
                        f"{kind} {what}: {r['source.ip']} -> {r[dst]}, "
                        f"{r['connections']} connections in {start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC"
                    ),
                    tags=["ml", "beaconing", "attack.command-and-control", "attack.t1071"],
                )
            )
    return out


def tunnel_candidates(
    events: pl.DataFrame, start: datetime, end: datetime, threshold: float | None
) -> list[AlertCandidate]:
    """DNS tunnelling per (client, registered domain, hour)."""
    from lightsoc.detect.ml import tunnel

    if events.height == 0:
        return []
    th = tunnel.THRESHOLD if threshold is None else threshold
    scored = tunnel.score_window(events, tunnel.WINDOW, th)
    out = []
    for r in scored.filter(pl.col("is_tunnel")).iter_rows(named=True):
        ws: datetime = r["window_start"]
        out.append(
            AlertCandidate(
                rule_id="ml-dns-tunnelling",
                rule_name="ML DNS Tunnelling",
                severity=_severity(float(r["score"])),
                entity_type="ip",
                entity_value=str(r["source.ip"]),
                first_seen=ws,
                last_seen=min(end, ws + tunnel.WINDOW),
                count=int(r["queries"]),
                score=round(float(r["score"]) * 100, 1),
                window=(str(r["source.ip"]), str(r["domain"]), ws.isoformat()),
                description=(
                    f"DNS tunnelling score {r['score']:.3f}: {r['source.ip']} -> {r['domain']}, "
                    f"{r['queries']} queries, {r['distinct_subdomains']} distinct subdomains "
                    f"in the hour from {ws:%Y-%m-%d %H:%M} UTC"
                ),
                tags=["ml", "dns-tunnelling", "attack.exfiltration", "attack.t1048"],
            )
        )
    return out


JOBS: dict[str, WindowJob] = {
    "beacon": WindowJob(
        "beacon",
        _datasets(*FLOW_DATASETS, *DNS_DATASETS, *WEB_DATASETS),
        (
            "@timestamp",
            "event.dataset",
            "source.ip",
            "source.port",
            "source.bytes",
            "destination.ip",
            "destination.port",
            "destination.domain",
            "network.bytes",
            "network.direction",
            "dns.question.name",
            "dns.question.registered_domain",
            "url.domain",
            "http.response.body.bytes",
        ),
        beacon_candidates,
    ),
    "tunnel": WindowJob(
        "tunnel",
        _datasets(*DNS_DATASETS),
        (
            "@timestamp",
            "event.dataset",
            "source.ip",
            "source.bytes",
            "network.bytes",
            "dns.question.name",
            "dns.question.registered_domain",
            "dns.question.type",
            "dns.response_code",
            "dns.answers",
        ),
        tunnel_candidates,
        align=timedelta(hours=1),
    ),
}


def _connects_recorder(state: StateStore) -> Callable[..., None]:
    """Keeps each LDA run's top rows per record type; a failure there never stops the alerts."""
    from lightsoc.store.state_connects import ConnectsStore

    store = ConnectsStore(state)

    def record(
        kind: str, ranked: pl.DataFrame, start: datetime, end: datetime, records: int
    ) -> None:
        try:
            store.save_run(kind, ranked, start, end, records)
        except Exception:
            log.exception("ml lda: the %s results could not be kept for the UI", kind)

    return record


def lda_job(state: StateStore | None, top: int, duplication: int) -> WindowJob:
    """Spot's suspicious connects: trains on the window and lists its rarest records.

    It reads the analysts' ratings and allow list from the state store, so it is
    built per deployment rather than kept in `JOBS`; each run's ranked rows are
    kept there too (`store.state_connects`) for the web UI's suspicious-connects page.
    """
    from lightsoc.detect.ml import lda_jobs

    run = functools.partial(
        lda_jobs.candidates,
        state=state,
        top=top,
        duplication=duplication,
        record=None if state is None else _connects_recorder(state),
    )
    query = _datasets(*FLOW_DATASETS, *DNS_DATASETS, *WEB_DATASETS)
    return WindowJob("lda", query, tuple(lda_jobs.FIELDS), run)


@dataclass
class JobRun:
    kind: str
    start: datetime
    end: datetime
    events: int = 0
    candidates: int = 0
    new: int = 0
    updated: int = 0
    error: str | None = None
    #: what a retraining run did (saved, or why the current model was kept)
    note: str | None = None


class MLJobs:
    """Runs the enabled window jobs when due; `run_due(now)` is one tick."""

    def __init__(
        self,
        events: DuckDBEventStore,
        state: StateStore,
        jobs: Sequence[tuple[WindowJob, MLJobConfig]],
        alerts: AlertStore,
        *,
        notify: Callable[[list[dict[str, Any]]], None] | None = None,
        allow: AllowFilter | None = None,
        retrain: Sequence[tuple[RetrainJob, RetrainConfig]] = (),
    ) -> None:
        from lightsoc.store.state_detect import WatermarkStore

        self.events = events
        self.state = state
        self.jobs = list(jobs)
        self.retrain = list(retrain)
        self.alerts = alerts
        self.watermarks = WatermarkStore(state)
        self.notify = notify
        self.allow = allow
        self.runs: list[JobRun] = []

    def run_due(
        self, now: datetime | None = None, stop: threading.Event | None = None
    ) -> list[JobRun]:
        """Run every job whose last run is at least its interval ago (or never ran); none
        starts once `stop` is set (the server is closing its stores)."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        marks = self.watermarks.get_all()
        # (watermark, interval, run): the window jobs first, then the retraining
        due: list[tuple[str, timedelta, Callable[[], JobRun]]] = [
            (f"ml:{j.kind}", c.interval, functools.partial(self.run_job, j, c, now))
            for j, c in self.jobs
        ]
        due += [
            (f"ml:retrain-{r.kind}", c.interval, functools.partial(self.run_retrain, r, c, now))
            for r, c in self.retrain
        ]
        done = []
        for mark, interval, run in due:
            if stop is not None and stop.is_set():
                break
            last = marks.get(mark)
            if last is not None and now - last < interval:
                continue
            done.append(run())
        return done

    def run_retrain(self, job: RetrainJob, cfg: RetrainConfig, end: datetime) -> JobRun:
        """One retraining over [end - lookback, end); the watermark advances unless it
        failed (keeping the current model for want of data is not a failure)."""
        run = JobRun(f"retrain-{job.kind}", end - cfg.lookback, end)
        try:
            out = job.run(self.events, self.state, cfg, run.start, end)
            run.events, run.note = out.events, out.reason
            self.watermarks.set_many([f"ml:{run.kind}"], end)
        except Exception as exc:  # a failed retraining keeps the current model
            log.exception("ml retrain %s failed; the current model stays", job.kind)
            run.error = f"{type(exc).__name__}: {exc}"
        self.runs = [*self.runs[-99:], run]
        return run

    def run_job(self, job: WindowJob, cfg: MLJobConfig, end: datetime) -> JobRun:
        """One run of `job` over [end - lookback, end); the watermark advances unless it failed."""
        start = end - cfg.lookback
        if job.align:
            step = job.align.total_seconds()
            start = datetime.fromtimestamp(start.timestamp() // step * step, UTC)
        run = JobRun(job.kind, start, end)
        try:
            fields = sorted(set(job.fields) | (set(self.allow.fields()) if self.allow else set()))
            table = self.events.read_range(TimeRange(run.start, end), fields, job.query)
            events: pl.DataFrame = pl.from_arrow(table)  # type: ignore[assignment]
            if self.allow is not None:
                events = self.allow(events)
            run.events = events.height
            cands = job.candidates(events, run.start, end, cfg.threshold)
            run.candidates = len(cands)
            changed = self.alerts.raise_alerts(cands) if cands else []
            run.new = sum(1 for c in changed if c.change == "new")
            run.updated = len(changed) - run.new
            if self.notify is not None:
                to_send = [c.alert.as_dict() for c in changed if c.notify]
                if to_send:
                    self.notify(to_send)
            self.watermarks.set_many([f"ml:{job.kind}"], end)
        except Exception as exc:  # one failing job must not stop the others
            log.exception("ml job %s failed", job.kind)
            run.error = f"{type(exc).__name__}: {exc}"
        self.runs = [*self.runs[-99:], run]
        return run

    def tick(self, stop: threading.Event | None = None) -> None:
        """The due jobs now, each logged (a failing job is logged by `run_job`)."""
        for run in self.run_due(stop=stop):
            if run.new or run.updated:
                log.info("ml %s: %d new, %d updated alert(s)", run.kind, run.new, run.updated)


def from_config(
    config: Config, events: DuckDBEventStore, state: StateStore, **kw: Any
) -> MLJobs | None:
    """The enabled jobs of `detect.ml.jobs` and `detect.ml.retrain` (None: none)."""
    from lightsoc.alerts.store import AlertStore
    from lightsoc.detect.correlation_eval import AllowFilter
    from lightsoc.detect.ml.retrain import KINDS as RETRAIN_KINDS
    from lightsoc.detect.ml.retrain import RetrainJob

    cfgs = config.detect.ml.jobs
    jobs = [(JOBS[k], getattr(cfgs, k)) for k in JOBS if getattr(cfgs, k).enabled]
    if cfgs.lda.enabled:
        jobs.append((lda_job(state, cfgs.lda.top, config.detect.ml.feedback_duplication), cfgs.lda))
    rcfgs = config.detect.ml.retrain
    retrain = [
        (RetrainJob(k, Path(config.data_dir)), getattr(rcfgs, k))
        for k in RETRAIN_KINDS
        if getattr(rcfgs, k).enabled
    ]
    if not jobs and not retrain:
        return None
    kw.setdefault("retrain", retrain)
    kw.setdefault("allow", AllowFilter.for_config(config, state))
    kw.setdefault("alerts", AlertStore.for_config(state, config))
    return MLJobs(events, state, jobs, **kw)
