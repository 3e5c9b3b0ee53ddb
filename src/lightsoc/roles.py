"""`lightsoc run --role collect|process|schedule|web`: one deployment, several processes.

- **collect** runs the configured sources and publishes their raw batches to
  the shared bus (`bus: redis://...` or `kafka://...`). A source's offsets are
  committed (in `<data_dir>/collector.duckdb`) only once the bus has taken the
  batch, and an http sender is answered then: a collector killed at any point
  re-reads from the last batch the bus holds. Records are parsed elsewhere.
- **process** consumes the bus, parses, enriches, detects and stores, and
  acknowledges a batch only after it is stored. Any number may run; the store
  skips a batch it has stored before (a processor killed between storing and
  acknowledging gets its batch redelivered, by batch id).
- **schedule** runs correlation rules and ML jobs while it holds the
  `scheduler` lease in the state store; standbys wait and take over when the
  holder stops renewing it. It opens the event store only while active. The
  upkeep of a shared event store (retention) is its job too; the embedded
  store's single processor does its own.
- **web** serves the UI and API over the shared stores; its http ingest hands
  batches to the bus. It runs no store maintenance and no scheduler.

Every role writes a heartbeat to the state store (`lightsoc status`).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from lightsoc.bus.base import Bus, RawBatch
from lightsoc.heartbeat import HEARTBEAT_SECONDS, Heartbeat, process_id  # noqa: F401
from lightsoc.pipeline import notify, run_source

if TYPE_CHECKING:
    from pathlib import Path

    from lightsoc.config import Config
    from lightsoc.sources.base import Source
    from lightsoc.store.events_duckdb import DuckDBEventStore
    from lightsoc.store.state import StateStore

log = logging.getLogger(__name__)

COLLECTOR_CATALOG = "collector.duckdb"
SCHEDULER_LEASE = "scheduler"
LEASE_SECONDS = 15.0
#: a publish that waits this long (bus full or down) is retried, and counted
PUBLISH_WAIT_SECONDS = 5.0
MODEL_SYNC_SECONDS = 30.0

ROLES = ("all", "collect", "process", "schedule", "web")


def shared_bus(url: str, consumer: str | None = None) -> Bus:
    """The bus of `bus:` (a Redis stream or a Kafka topic)."""
    scheme = url.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        from lightsoc.bus.redis import RedisBus

        return RedisBus(url, consumer=consumer)
    if scheme == "kafka":
        from lightsoc.bus.kafka import KafkaBus

        return KafkaBus(url)
    raise ValueError(f"bus: {url!r} is not a shared bus (redis://... or kafka://...)")


def consumer_name(config: Config) -> str:
    """Stable per host and data directory: a restarted processor re-reads its own
    unacknowledged batches at once instead of waiting for them to be reclaimed."""
    where = hashlib.sha256(str(config.data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{where}"


class HandOff(Bus):
    """What a collector's sources publish to: the shared bus, then the offsets.

    A batch's checkpoints are committed after the bus has it, in the source's own
    thread, so a source's offsets only move over batches the bus holds. While
    the bus is full or down the source waits (backpressure). A batch that cannot
    be handed over before shutdown is not committed, and nothing later of that
    source is either: a restart re-reads it.
    """

    def __init__(self, bus: Bus, catalog: DuckDBEventStore | None) -> None:
        self.bus = bus
        self.catalog = catalog
        self.stopping = threading.Event()
        self.published = 0
        self.records = 0
        self.waits = 0
        self._gave_up: set[str] = set()
        self._lock = threading.Lock()

    def publish(self, batch: RawBatch, timeout: float | None = None) -> bool:
        checkpoints, batch.checkpoints = batch.checkpoints, []
        if batch.source in self._gave_up:
            notify(batch, False)
            return False
        if _nothing_to_send(batch):  # e.g. a new file announced: only its offset moves
            if checkpoints and self.catalog is not None:
                self.catalog.append(pl.DataFrame(), checkpoints)
            notify(batch, True)
            return True
        while not self.bus.publish(batch, timeout=timeout or PUBLISH_WAIT_SECONDS):
            self.waits += 1
            if timeout is not None:  # a request's own deadline (http): it answers "busy"
                notify(batch, False)
                return False
            if self.stopping.is_set():
                self._gave_up.add(batch.source)
                log.warning(
                    "source %s: a batch was not handed to the bus before stop", batch.source
                )
                notify(batch, False)
                return False
        if checkpoints and self.catalog is not None:
            self.catalog.append(pl.DataFrame(), checkpoints)
        with self._lock:
            self.published += 1
            self.records += batch.records.height
        notify(batch, True)
        return True

    def consume(self, timeout: float) -> RawBatch | None:  # pragma: no cover - publish only
        raise NotImplementedError("a collector does not consume")

    def ack(self, batch: RawBatch) -> None:  # pragma: no cover - publish only
        raise NotImplementedError("a collector does not consume")


def _nothing_to_send(batch: RawBatch) -> bool:
    return not (batch.records.height or batch.skipped or batch.dropped or batch.bytes)


class Collector:
    """The collect role: sources -> shared bus."""

    def __init__(self, sources: list[Source], handoff: HandOff) -> None:
        self.sources = sources
        self.handoff = handoff
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        from lightsoc.sources.http import HttpSource

        for src in self.sources:
            if isinstance(src, HttpSource):
                src.attach(self.handoff)
            t = threading.Thread(
                target=run_source,
                args=(src, self._publish),
                name=f"source-{src.id}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def _publish(self, batch: RawBatch) -> None:
        self.handoff.publish(batch)

    def stop(self, timeout: float = 30.0) -> None:
        self.handoff.stopping.set()
        for src in self.sources:
            src.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def metrics(self) -> dict[str, Any]:
        return {
            "published_batches": self.handoff.published,
            "published_records": self.handoff.records,
            "publish_waits": self.handoff.waits,
            "sources": {s.id: {"type": s.type, **s.metrics.as_dict()} for s in self.sources},
        }


class WebFront:
    """What `server.serve` needs of a pipeline, for a web-only process: its http
    ingest hands batches to the shared bus (answered once the bus has them);
    processors store them."""

    def __init__(self, config: Config, bus: Bus) -> None:
        from lightsoc.runtime import source_specs

        self.bus = HandOff(bus, None)
        self.sources: list[Source] = []
        self.processor = _Specs(source_specs(config))
        self.events_stored = 0
        self.started = time.time()

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 30.0) -> None:
        self.bus.stopping.set()
        for src in self.sources:
            src.stop()

    def metrics(self) -> dict[str, Any]:
        return {
            "uptime_seconds": round(time.time() - self.started, 1),
            "events_stored": 0,
            "errors": 0,
            "bus_depth": 0,
            "published_batches": self.bus.published,
            "stages": {},
            "alerting": {},
            "sources": {s.id: {"type": s.type, **s.metrics.as_dict()} for s in self.sources},
        }


class _Specs:
    def __init__(self, specs: dict[str, Any]) -> None:
        self.specs = specs


# -- running a role ----------------------------------------------------------
def run_collect(config: Config, stop: threading.Event, say: Callable[[str], None]) -> None:
    """Sources -> bus until `stop` is set."""
    from lightsoc.runtime import Stores, build_sources
    from lightsoc.server import _IngestListener
    from lightsoc.sources.http import HttpSource
    from lightsoc.store.events_duckdb import DuckDBEventStore

    config.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = DuckDBEventStore(config.data_dir / COLLECTOR_CATALOG)
    stores = Stores(catalog, config.data_dir, config.store.state)  # type: ignore[arg-type]
    bus = shared_bus(config.bus)
    try:
        sources = build_sources(config, stores)
        handoff = HandOff(bus, catalog)
        collector = Collector(sources, handoff)
        listeners = [
            _IngestListener(config, stores, s)
            for s in sources
            if isinstance(s, HttpSource) and s.listen
        ]
        heartbeat = Heartbeat(
            stores.state, "collect", lambda: (handoff.records, None, collector.metrics())
        )
        heartbeat.start()
        collector.start()
        for listener in listeners:
            listener.start()
        say(f"collecting {len(sources)} source(s) to {_safe_url(config.bus)}; Ctrl-C stops")
        stop.wait()
        say("stopping: finishing reads and handing them to the bus ...")
        for listener in listeners:
            listener.stop()
        collector.stop()
        heartbeat.stop()
        say(f"stopped; {handoff.records} records handed to the bus in this run")
    finally:
        bus.close()
        stores.close()


def run_process(config: Config, stop: threading.Event, say: Callable[[str], None]) -> None:
    """Bus -> parse, enrich, detect -> store until `stop` is set."""
    from lightsoc.runtime import build_pipeline, open_stores
    from lightsoc.server import _maintenance_loop

    stores = open_stores(config.data_dir, config)
    bus = shared_bus(config.bus, consumer=consumer_name(config))
    try:
        pipeline = build_pipeline(config, stores, [], bus=bus, follow=True)
        upkeep_stop = threading.Event()
        # the embedded store has one writer, this processor: it compacts and expires
        # its own segments; a shared store's upkeep is the active scheduler's
        upkeep = threading.Thread(
            target=_maintenance_loop if _embedded(stores) else lambda *a: None,
            args=(stores, config.store.retention_days, upkeep_stop),
            name="maintenance",
            daemon=True,
        )
        models = threading.Thread(
            target=_sync_models, args=(stores.state, config.data_dir, upkeep_stop), daemon=True
        )
        heartbeat = Heartbeat(
            stores.state,
            "process",
            lambda: (pipeline.events_stored, bus.depth(), _process_detail(pipeline)),
        )
        heartbeat.start()
        upkeep.start()
        models.start()
        pipeline.start()
        say(f"processing batches from {_safe_url(config.bus)}; Ctrl-C stops")
        stop.wait()
        say("stopping: storing the batches in hand ...")
        pipeline.stop()
        upkeep_stop.set()
        upkeep.join(60)
        heartbeat.stop()
        say(f"stopped; {pipeline.events_stored} events stored in this run")
        say(_bus_summary(pipeline.redelivered, bus.metrics()))
    finally:
        bus.close()
        stores.close()


def _bus_summary(redelivered: int, m: dict[str, Any]) -> str:
    """The bus side of a processor's run, for whoever reconciles counts after a failover."""
    keys = ("consumed", "acked", "reclaimed", "bad_messages", "errors")
    figures = ", ".join(f"{k} {m[k]}" for k in keys if k in m)
    return f"bus: {figures or 'no figures'}; {redelivered} batches stored before were skipped"


def _sync_models(state: StateStore, data_dir: Path, stop: threading.Event) -> None:
    """Install the models the scheduler (or `ml train`) shared, every 30 s."""
    from lightsoc.store.state_models import sync_models

    have: dict[str, int] = {}
    while True:
        try:
            sync_models(state, data_dir, have)
        except Exception as exc:  # the state store is down: look again later
            log.warning("ml: shared models not synced: %s", type(exc).__name__)
        if stop.wait(MODEL_SYNC_SECONDS):
            return


def _process_detail(pipeline: Any) -> dict[str, Any]:  # noqa: ANN401
    m = pipeline.metrics()
    return {k: m[k] for k in ("errors", "redelivered", "uptime_seconds")}


def run_schedule(config: Config, stop: threading.Event, say: Callable[[str], None]) -> None:
    """Correlation rules and ML jobs while this process holds the scheduler lease."""
    from lightsoc.store.state import StateStore
    from lightsoc.store.state_cluster import Leases

    state = StateStore.for_data_dir(config.data_dir, config.store.state)
    leases = Leases(state)
    active = threading.Event()
    heartbeat = Heartbeat(state, "schedule", lambda: (0, None, {"active": active.is_set()}))
    me = heartbeat.me.id
    heartbeat.start()
    try:
        say(f"scheduler {me}: waiting for the {SCHEDULER_LEASE!r} lease; Ctrl-C stops")
        while not stop.is_set():
            if _try_lease(leases, me):
                say(f"scheduler {me}: active")
                active.set()
                _run_active(config, leases, me, stop)
                active.clear()
                if not stop.is_set():
                    say(f"scheduler {me}: lost the lease; standing by")
            else:
                stop.wait(LEASE_SECONDS / 3)
    finally:
        try:
            leases.release(SCHEDULER_LEASE, me)
        except Exception:
            log.warning("scheduler lease not released", exc_info=True)
        heartbeat.stop()
        state.close()


def _try_lease(leases: Any, me: str) -> bool | None:  # noqa: ANN401
    """True: held (taken or renewed); False: another holds it; None: unreachable."""
    try:
        return bool(leases.acquire(SCHEDULER_LEASE, me, LEASE_SECONDS))
    except Exception:
        log.warning("scheduler lease: state store unreachable", exc_info=True)
        return None


def _run_active(config: Config, leases: Any, me: str, stop: threading.Event) -> None:  # noqa: ANN401
    """Run the scheduler until `stop`, or until the lease could not be renewed
    before it ran out (another scheduler may hold it by then)."""
    from lightsoc.detect.scheduler import start_background
    from lightsoc.runtime import open_stores
    from lightsoc.server import _maintenance_loop

    stores = open_stores(config.data_dir, config)
    lost = threading.Event()
    try:
        thread = start_background(config, config.data_dir, stores, lost)
        upkeep = threading.Thread(  # retention of a shared store: once, not per processor
            target=_maintenance_loop if not _embedded(stores) else lambda *a: None,
            args=(stores, config.store.retention_days, lost),
            name="maintenance",
            daemon=True,
        )
        upkeep.start()
        held_until = time.monotonic() + LEASE_SECONDS
        while not stop.wait(LEASE_SECONDS / 3):
            held = _try_lease(leases, me)
            if held:
                held_until = time.monotonic() + LEASE_SECONDS
            elif held is False or time.monotonic() >= held_until - LEASE_SECONDS / 6:
                # taken over, or not renewable before it runs out: never two active
                break
        lost.set()
        thread.join(60)
        upkeep.join(60)
    finally:
        stores.close()


def _embedded(stores: Any) -> bool:  # noqa: ANN401
    from lightsoc.store.events_duckdb import DuckDBEventStore

    return isinstance(stores.events, DuckDBEventStore)


def _safe_url(url: str) -> str:
    """A bus URL without its secrets (a password in the user part or the query)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("?", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    base, q, query = rest.partition("?")
    params = [
        f"{k}=***" if any(w in k.lower() for w in ("password", "secret", "key")) else f"{k}={v}"
        for k, _, v in (p.partition("=") for p in query.split("&") if p)
    ]
    return f"{scheme}{sep}{base}{q}{'&'.join(params)}"


def run_web(config: Config, say: Callable[[str], None]) -> None:
    """The web UI and API (and http ingest to the bus) until SIGINT/SIGTERM."""
    from lightsoc.runtime import open_stores
    from lightsoc.server import serve

    stores = open_stores(config.data_dir, config)
    bus = shared_bus(config.bus)
    try:
        front = WebFront(config, bus)
        heartbeat = Heartbeat(
            stores.state, "web", lambda: (front.bus.records, None, front.metrics())
        )
        heartbeat.start()
        try:
            serve(config, config.data_dir, stores, front, say=say, background=False)  # type: ignore[arg-type]
        finally:
            heartbeat.stop()
    finally:
        bus.close()
        stores.close()
