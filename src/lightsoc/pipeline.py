"""Stage wiring: sources -> bus -> parse -> enrich -> store, in micro-batches.

Sources run in their own threads and publish raw batches to the bus (a
bounded queue: when storage falls behind, sources block — backpressure). One
processor thread parses and enriches each batch and hands it, in order, to one
writer thread that commits the batch's events, source offsets and counters in
one transaction, and only then acknowledges it. On stop the sources finish their current read, the bus is
drained, and everything read is committed.

A source whose `run` raises is reported in its metrics and restarted with
backoff (one-shot sources are not). A source whose format names no parser is
a `ValueError` when the pipeline is built, not a stream of failed batches.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import polars as pl

from lightsoc import registry, schema
from lightsoc.bus.base import Bus, RawBatch
from lightsoc.bus.memory import MemoryBus
from lightsoc.enrich.base import Enricher
from lightsoc.enrich.chain import apply as apply_enrichers
from lightsoc.parsers import get_parser, parse_records
from lightsoc.parsers.base import Parser
from lightsoc.sources.base import Source
from lightsoc.sources.lines import INVALID_UTF8, TRUNCATED
from lightsoc.store.base import EventStore, SourceCounters

log = logging.getLogger(__name__)


class Detector(Protocol):
    """A stream detector: flags rows of a batch (`rule.name`, `event.risk_score`)."""

    def detect(self, df: pl.DataFrame) -> pl.DataFrame: ...


@dataclass
class SourceSpec:
    """What the processor needs to know about a source to process its batches."""

    id: str
    type: str
    format: str = "auto"
    dataset: str | None = None
    tags: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageMetrics:
    batches: int = 0
    rows: int = 0
    seconds: float = 0.0

    def add(self, rows: int, seconds: float) -> None:
        self.batches += 1
        self.rows += rows
        self.seconds += seconds


@dataclass
class ProcessedBatch:
    #: ECS columns in schema order and types (stores take it as it is)
    events: pl.DataFrame
    counters: SourceCounters


class Processor:
    """parse -> enrich -> conform, one raw batch at a time (no per-event Python)."""

    def __init__(
        self,
        specs: dict[str, SourceSpec],
        enrichers: list[Enricher],
        detectors: list[Detector] | None = None,
    ) -> None:
        self.specs = specs
        self.enrichers = enrichers
        #: stream detectors (e.g. a Sigma `RuleSet`), run on each batch after enrichment
        self.detectors = list(detectors or [])
        self.detect_errors = 0
        self._parsers: dict[str, Parser] = {}
        self.host = socket.gethostname()
        self.stages = {name: StageMetrics() for name in ("parse", "enrich", "conform", "store")}
        self._stages_lock = threading.Lock()  # batches may be processed by several threads

    def check(self) -> None:
        """Fail early, naming the source, when a format names no parser."""
        for spec in self.specs.values():
            try:
                self.parser_for(spec)
            except KeyError:
                known = ", ".join(registry.names("parsers"))
                raise ValueError(
                    f"source {spec.id}: unknown format {spec.format!r} (known: {known})"
                ) from None

    def parser_for(self, spec: SourceSpec) -> Parser:
        parser = self._parsers.get(spec.id)
        if parser is None:
            parser = self._parsers[spec.id] = get_parser(spec.format, spec.options)
        return parser

    def process(self, raw: RawBatch) -> ProcessedBatch:
        spec = self.specs.get(raw.source) or SourceSpec(raw.source, raw.source_type)
        now = datetime.now(UTC)
        counters = SourceCounters(
            raw.source,
            raw.source_type,
            received=raw.records.height + raw.skipped,
            dropped=raw.dropped,
            bytes=raw.bytes,
            last_seen=now,
        )
        if raw.records.height == 0:
            return ProcessedBatch(pl.DataFrame(schema=schema.POLARS_SCHEMA), counters)
        t0 = time.perf_counter()
        df = (
            _decoded(raw.records)
            if raw.parsed
            else parse_records(raw.records, self.parser_for(spec))
        )
        t1 = time.perf_counter()
        self.add_stage("parse", df.height, t1 - t0)
        df = apply_enrichers(self.enrichers, df)
        t2 = time.perf_counter()
        self.add_stage("enrich", df.height, t2 - t1)
        if self.detectors:
            for detector in self.detectors:
                try:
                    df = detector.detect(df)
                except Exception:  # a rule bug must not turn parsed events into failures
                    log.exception("detector %s failed on a batch of %s", detector, raw.source)
                    with self._stages_lock:
                        self.detect_errors += 1
            t3 = time.perf_counter()
            self.add_stage("detect", df.height, t3 - t2)
            t2 = t3
        df = self._finish(df, spec, now)
        counters.events = df.height
        counters.parse_failures = int((~df["_parse_ok"]).sum())
        events = schema.conform(df)
        self.add_stage("conform", df.height, time.perf_counter() - t2)
        return ProcessedBatch(events, counters)

    def add_stage(self, stage: str, rows: int, seconds: float) -> None:
        with self._stages_lock:
            self.stages.setdefault(stage, StageMetrics()).add(rows, seconds)

    def fallback(self, raw: RawBatch) -> ProcessedBatch:
        """The batch as parse failures with their original text (last resort)."""
        now = datetime.now(UTC)
        spec = self.specs.get(raw.source) or SourceSpec(raw.source, raw.source_type)
        df = raw.records.with_columns(
            pl.lit("pipeline_error").alias("event.kind"),
            pl.lit(schema.PARSE_FAILURE).alias("_parse_failure_tag"),
            pl.lit(False).alias("_parse_ok"),
        )
        df = self._finish(df, spec, now)
        counters = SourceCounters(
            raw.source,
            raw.source_type,
            received=raw.records.height + raw.skipped,
            events=df.height,
            parse_failures=df.height,
            dropped=raw.dropped,
            bytes=raw.bytes,
            last_seen=now,
        )
        return ProcessedBatch(schema.conform(df), counters)

    def _finish(self, df: pl.DataFrame, spec: SourceSpec, now: datetime) -> pl.DataFrame:
        ts_type = schema.polars_type("@timestamp")
        now_lit = pl.lit(now).cast(ts_type)
        tag_exprs = [pl.lit(t) for t in spec.tags]
        tag_exprs.append(pl.col("_parse_failure_tag"))
        if TRUNCATED in df.columns:
            tag_exprs.append(pl.when(pl.col(TRUNCATED)).then(pl.lit("truncated")))
        if INVALID_UTF8 in df.columns:
            tag_exprs.append(pl.when(pl.col(INVALID_UTF8)).then(pl.lit("invalid_utf8")))
        dataset = pl.col("event.dataset") if "event.dataset" in df.columns else pl.lit(None)
        if spec.dataset:
            dataset = pl.lit(spec.dataset)
        ts = pl.col("@timestamp").cast(ts_type) if "@timestamp" in df.columns else now_lit
        return df.with_columns(
            pl.coalesce(ts, now_lit).alias("@timestamp"),
            now_lit.alias("event.ingested"),
            dataset.cast(pl.Utf8).alias("event.dataset"),
            pl.concat_list(tag_exprs).list.drop_nulls().alias("tags"),
            pl.lit(spec.id).alias("lightsoc.source"),
            pl.lit(self.host).alias("observer.name"),
        )


def _decoded(records: pl.DataFrame) -> pl.DataFrame:
    """A source-decoded batch with the parse-stage bookkeeping columns (and the Community
    IDs a capture source leaves to this thread: it is the one the import waits for)."""
    if "_flow" in records.columns:
        from lightsoc.sources.dns_events import with_community_ids

        records = with_community_ids(records)
    if "_parse_ok" not in records.columns:
        records = records.with_columns(pl.lit(True).alias("_parse_ok"))
    if "_parse_failure_tag" not in records.columns:
        tag = pl.when(~pl.col("_parse_ok")).then(pl.lit(schema.PARSE_FAILURE))
        records = records.with_columns(tag.alias("_parse_failure_tag"))
    return records


def run_source(src: Source, publish: Callable[[RawBatch], None]) -> None:
    """Run a source until it ends or is stopped; a failure is reported and the
    source restarted with backoff (one-shot sources are not)."""
    delay = 1.0
    while True:
        try:
            src.run(publish)
            return
        except Exception as exc:  # a broken source is reported, never fatal to others
            log.exception("source %s failed; restarting it in %.0f s", src.id, delay)
            src.metrics.errors += 1
            src.metrics.last_error = f"{type(exc).__name__}: {exc}"
        if getattr(src, "one_shot", False) or src.stop_event.wait(delay):
            return
        delay = min(delay * 2, 30.0)


def notify(raw: RawBatch, committed: bool) -> None:
    if raw.on_commit is None:
        return
    try:
        raw.on_commit(committed)
    except Exception:  # a waiting client's callback must not stop the writer
        log.exception("commit callback of source %s failed", raw.source)


class Pipeline:
    """Runs sources and the processor until stopped; reports metrics."""

    def __init__(
        self,
        store: EventStore,
        sources: list[Source],
        specs: dict[str, SourceSpec],
        enrichers: list[Enricher],
        *,
        bus: Bus | None = None,
        on_batch: Callable[[ProcessedBatch], None] | None = None,
        detectors: list[Detector] | None = None,
        alerting: Any = None,
        follow: bool = False,
        processor_threads: int = 1,
    ) -> None:
        self.store = store
        #: a processor of a shared bus: consume until stopped, not until the sources end
        self.follow = follow
        self.sources = sources
        self.bus = bus or MemoryBus()
        self.processor = Processor(specs, enrichers, detectors)
        self.processor.check()
        self.on_batch = on_batch
        #: the stream alerter `on_batch` feeds (its stats and outputs are closed on stop)
        self.alerting = alerting
        self._stopping = threading.Event()
        self._sources_done = threading.Event()
        self._threads: list[threading.Thread] = []
        # With several processor threads, batches are parsed side by side and stored in
        # the order they were consumed (the writer waits for each in turn).
        self._pool = (
            ThreadPoolExecutor(processor_threads, thread_name_prefix="processor")
            if processor_threads > 1
            else None
        )
        self._to_writer: queue.Queue[
            tuple[RawBatch, ProcessedBatch | Future[ProcessedBatch]] | None
        ] = queue.Queue(max(1, processor_threads - 1))  # + the one the dispatcher holds: N at work
        self._errors_lock = threading.Lock()
        self.errors = 0
        #: batches a shared bus delivered again after they were stored (skipped)
        self.redelivered = 0
        self.started = time.time()
        self.events_stored = 0

    # -- running ---------------------------------------------------------
    def start(self) -> None:
        for src in self.sources:
            t = threading.Thread(
                target=self._run_source, args=(src,), name=f"source-{src.id}", daemon=True
            )
            t.start()
            self._threads.append(t)
        self._watcher = threading.Thread(target=self._watch_sources, daemon=True)
        self._watcher.start()
        self._proc = threading.Thread(target=self._run_processor, name="processor", daemon=True)
        self._proc.start()
        self._writer = threading.Thread(target=self._run_writer, name="writer", daemon=True)
        self._writer.start()

    def _run_source(self, src: Source) -> None:
        run_source(src, self._publish)

    def _publish(self, batch: RawBatch) -> None:
        self.bus.publish(batch)

    def _watch_sources(self) -> None:
        for t in self._threads:
            t.join()
        self._sources_done.set()

    def _run_processor(self) -> None:
        """Parse/enrich batches and hand them to the writer, in order."""
        while True:
            if self.follow and self._stopping.is_set():
                self._to_writer.put(None)  # what is not consumed stays on the bus
                return
            raw = self.bus.consume(timeout=0.1)
            if raw is None:
                if not self.follow and self._sources_done.is_set() and self.bus.depth() == 0:
                    self._to_writer.put(None)
                    return
                continue
            if self._pool is not None:
                self._to_writer.put((raw, self._pool.submit(self._process, raw)))
            else:
                self._to_writer.put((raw, self._process(raw)))

    def _process(self, raw: RawBatch) -> ProcessedBatch:
        try:
            return self.processor.process(raw)
        except Exception:
            # A parser/enricher bug must not lose records: keep them as failures.
            log.exception("processing a batch of source %s failed; storing it raw", raw.source)
            self._count_error()
            return self.processor.fallback(raw)

    def _count_error(self) -> None:
        with self._errors_lock:
            self.errors += 1

    def _run_writer(self) -> None:
        """Store batches in arrival order; overlaps storage with the next parse."""
        while True:
            item = self._to_writer.get()
            if item is None:
                return
            raw, pending = item
            done = pending.result() if isinstance(pending, Future) else pending
            stored = self._store(raw, done)
            if stored is None:
                notify(raw, False)
                self._fail_pending()
                return
            self.bus.ack(raw)
            notify(raw, True)
            if not stored:  # a shared bus redelivered a batch stored before
                self.redelivered += 1
                continue
            self.events_stored += done.events.height
            if self.on_batch is not None:
                try:
                    self.on_batch(done)
                except Exception:  # a progress callback must not stop the writer
                    log.exception("on_batch callback failed")

    def _fail_pending(self) -> None:
        """The writer gave up: tell every waiting batch it was not committed."""
        while True:
            try:
                item = self._to_writer.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                notify(item[0], False)
        # (a shared bus keeps what was not consumed: it is redelivered, not failed)
        while not self.follow and (raw := self.bus.consume(timeout=0)) is not None:
            notify(raw, False)

    def _store(self, raw: RawBatch, done: ProcessedBatch) -> bool | None:
        """True once stored, False if its bus batch id was stored before, None
        if the pipeline gave up (stopping while storage fails)."""
        delay = 0.5
        while True:
            try:
                t0 = time.perf_counter()
                new = self.store.append(
                    done.events, raw.checkpoints, [done.counters], batch_id=raw.batch_id
                )
                self.processor.add_stage("store", done.events.height, time.perf_counter() - t0)
                return new is not False
            except Exception:
                # Not committed: offsets stay where they were. Retry (this blocks
                # the sources through the bus: backpressure, not loss).
                log.exception("storing a batch of source %s failed; retrying", raw.source)
                self._count_error()
                if self._stopping.is_set() and delay > 4:
                    return None  # give up on shutdown; a restart re-reads from the last commit
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop sources, drain the bus, commit everything read."""
        self._stopping.set()
        for src in self.sources:
            src.stop()
        self.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until sources have ended and the bus is drained."""
        self._proc.join(timeout)
        self._writer.join(timeout)
        done = not self._writer.is_alive()
        if done and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if done and self.alerting is not None:
            self.alerting.close()  # deliver what the last batches raised
        return done

    # -- metrics ---------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        return {
            "uptime_seconds": round(time.time() - self.started, 1),
            "events_stored": self.events_stored,
            "errors": self.errors,
            "redelivered": self.redelivered,
            "bus_depth": self.bus.depth(),
            "stages": {k: vars(v) for k, v in self.processor.stages.items()},
            "alerting": self.alerting.stats() if self.alerting is not None else {},
            "sources": {
                s.id: {
                    "type": s.type,
                    **s.metrics.as_dict(),
                    **({"senders": s.senders} if hasattr(s, "senders") else {}),
                }
                for s in self.sources
            },
        }
