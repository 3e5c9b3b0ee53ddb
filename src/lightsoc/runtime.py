"""Build a running lightsoc from a config: stores, sources, pipeline, server file.

`lightsoc run`, `demo` and `ingest` all go through here, so they share one
pipeline. The server file (`<data_dir>/run/server.json`, mode 0600) tells CLI
commands started with the same data directory where the running API is and
which token to use, because DuckDB lets only one process open the store.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightsoc import registry
from lightsoc.alerts.stream import LazyStreamAlerter, StreamAlerter
from lightsoc.client import (  # noqa: F401 - the server file's home is the client
    EVENTS_FILE,
    SERVER_FILE,
    read_server_file,
    remove_server_file,
    write_server_file,
)
from lightsoc.config import Config
from lightsoc.enrich.chain import build_enrichers
from lightsoc.pipeline import Pipeline, ProcessedBatch, SourceSpec
from lightsoc.sources.base import Source, all_one_shot
from lightsoc.store.base import EventStore
from lightsoc.store.events_duckdb import DuckDBEventStore

if TYPE_CHECKING:
    from lightsoc.detect.ml.stream import MLDetector
    from lightsoc.store.state import StateStore

log = logging.getLogger(__name__)


@dataclass
class Stores:
    """The event store, and the state store opened on first use (ingest needs none)."""

    events: DuckDBEventStore
    data_dir: Path
    state_url: str = "sqlite"
    _state: StateStore | None = field(default=None, repr=False)

    @property
    def state(self) -> StateStore:
        if self._state is None:
            from lightsoc.store.state import StateStore

            self._state = StateStore.for_data_dir(self.data_dir, self.state_url)
        return self._state

    def close(self) -> None:
        self.events.close()
        if self._state is not None:
            self._state.close()


def open_stores(data_dir: Path, config: Config | None = None, *, read_only: bool = False) -> Stores:
    """Open (creating if needed) the event and state stores of a data directory."""
    data_dir = Path(data_dir)
    if not read_only:
        data_dir.mkdir(parents=True, exist_ok=True)
    events_url = config.store.events if config else "duckdb"
    if events_url == "duckdb":
        events: EventStore = DuckDBEventStore(
            data_dir / EVENTS_FILE,
            read_only=read_only,
            page_copies=config.store.page_copies if config else True,
        )
    else:  # clickhouse://host:9000/db or chdb://DIR: shared by the processes of a deployment
        from lightsoc.store.events_clickhouse import ClickHouseEventStore

        events = ClickHouseEventStore(events_url)
    return Stores(events, data_dir, config.store.state if config else "sqlite")  # type: ignore[arg-type]


def source_specs(config: Config) -> dict[str, SourceSpec]:
    specs = {}
    for sid, sc in config.sources.items():
        specs[sid] = SourceSpec(
            id=sid,
            type=sc.type,
            format=getattr(sc, "format", "auto") or "auto",
            dataset=getattr(sc, "dataset", None),
            tags=list(getattr(sc, "tags", []) or []),
            # a kafka source's `options` are librdkafka settings, not parser options
            options={} if sc.type == "kafka" else dict(getattr(sc, "options", {}) or {}),
        )
    return specs


def check_format(name: str) -> str | None:
    """Why `name` is not a parser name (None if it is one)."""
    known = registry.names("parsers")
    if name in known:
        return None
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no parser named {name!r}; {hint}known: {', '.join(known)}"


def check_sources(config: Config) -> None:
    """Problems the schema cannot see (parser names) as a `ConfigError` naming the line."""
    for sid, sc in config.sources.items():
        fmt = getattr(sc, "format", None)
        problem = check_format(fmt) if fmt else None
        if problem:
            raise config.error(("sources", sid, "format"), problem)


def build_sources(config: Config, stores: Stores, *, one_shot: bool = False) -> list[Source]:
    check_sources(config)
    sources: list[Source] = []
    for sid, sc in config.sources.items():
        if sc.type not in registry.names("sources"):  # config validates before code lands
            log.warning("source %s: type %s is not implemented yet; skipped", sid, sc.type)
            continue
        cls = registry.get("sources", sc.type)
        sources.append(
            cls(
                sid,
                sc,
                checkpoints=stores.events.checkpoints(sid),
                one_shot=one_shot,
                batch_max_rows=config.pipeline.batch_max_rows,
            )
        )
        sources[-1].flush_seconds = config.pipeline.batch_max_ms / 1000
    return sources


def enrich_options(config: Config) -> dict[str, Any]:
    geo = config.enrich.geoip
    opts: dict[str, Any] = {
        "geoip": {
            k: str(v)
            for k, v in (("city_database", geo.city_database), ("asn_database", geo.asn_database))
            if v
        },
    }
    if config.enrich.networks:
        opts["networks"] = {k: list(v) for k, v in config.enrich.networks.items()}
    return opts


def build_pipeline(config: Config, stores: Stores, sources: list[Source], **kw: Any) -> Pipeline:
    from lightsoc.bus.memory import MemoryBus
    from lightsoc.detect.build import build_ruleset
    from lightsoc.enrich.intel import stream_options as intel_stream_options

    specs = source_specs(config)
    # `run`/`demo`: rules reload when changed; `ingest` builds them once
    live = None
    if "detectors" not in kw and not all_one_shot(sources):
        # only here: `detect.reload` imports the Sigma compiler and pySigma (~0.3 s),
        # which a one-shot `ingest` without rules must not pay for at start-up
        from lightsoc.detect.reload import live_ruleset

        live = live_ruleset(config, stores, sources)
    # simple DB rules: only from a state store that exists (ingest creates none)
    has_state = stores.state_url != "sqlite" or (stores.data_dir / "state.sqlite").exists()
    rules = (
        live
        if live is not None
        else build_ruleset(config, stores.data_dir, stores.state if has_state else None)
    )
    ml = ml_detector(config, stores.data_dir) if "detectors" not in kw else None
    # The ML detector stays even with no model loaded yet: a scheduled retrain can add one.
    kw.setdefault(
        "detectors", [d for d in (rules, ml) if d is not None and (len(d) or d is live or d is ml)]
    )
    levels = {r.id: r.level for r in rules.rules} | (ml.levels if ml else {})
    tags = {r.id: list(r.tags) for r in rules.rules} | (ml.tags if ml else {})
    if live is not None:
        live.follow(levels, tags)  # the alerter reads these same dicts
    alerting = stream_alerting(config, stores, levels, tags)
    progress = kw.pop("on_batch", None)

    def on_batch(done: ProcessedBatch) -> None:
        alerting(done)  # flagged events -> alerts, after their commit
        if progress is not None:
            progress(done)

    for src in sources:  # ad-hoc sources (ingest) bring their own spec
        specs.setdefault(src.id, getattr(src, "spec", None) or SourceSpec(src.id, src.type))
    return Pipeline(
        stores.events,
        sources,
        specs,
        build_enrichers(
            {**enrich_options(config), **intel_stream_options(config, stores, sources)}
        ),
        bus=kw.pop("bus", None) or MemoryBus(config.pipeline.queue_max_batches),
        on_batch=on_batch,
        alerting=alerting,
        processor_threads=config.pipeline.processor_threads or (2 if all_one_shot(sources) else 1),
        **kw,
    )


def ml_detector(config: Config, data_dir: Path) -> MLDetector | None:
    """The per-event models of `detect.ml.stream` (None when there are none)."""
    if not config.detect.ml.stream:
        return None
    from lightsoc.detect.ml.stream import MLDetector

    return MLDetector.load(config.detect.ml.stream, data_dir, config.detect.ml.thresholds)


def stream_alerting(
    config: Config,
    stores: Stores,
    levels: dict[str, str],
    tags: dict[str, list[str]] | None = None,
) -> LazyStreamAlerter:
    """Alerts from flagged events, sent to `alerts.outputs`; built on the first flagged batch."""

    def make() -> StreamAlerter:
        from lightsoc.alerts.outputs.dispatcher import Dispatcher
        from lightsoc.alerts.store import AlertStore

        outputs = Dispatcher.from_config(config.alerts) if config.alerts.outputs else None
        alerts = AlertStore.for_config(stores.state, config)
        return StreamAlerter(alerts, outputs, levels=lambda: levels, tags=lambda: tags or {})

    return LazyStreamAlerter(make)
