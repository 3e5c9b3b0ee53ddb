"""One-shot import of files through the real pipeline (`lightsoc ingest`).

Packet captures (pcap/pcapng, recognised by their magic number, whatever
their name) are decoded by the `pcap` source (DNS events); every other file
goes through the `file` source and its parsers.
"""

from __future__ import annotations

import gc
import glob
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import psutil

from lightsoc.config import Config, FileSourceConfig, PcapSourceConfig
from lightsoc.pipeline import ProcessedBatch, SourceSpec
from lightsoc.runtime import Stores, build_pipeline
from lightsoc.sources.base import Source
from lightsoc.sources.file import FileSource
from lightsoc.sources.pcap_file import is_capture

INGEST_SOURCE = "ingest"


@dataclass
class IngestSummary:
    files: int = 0
    bytes: int = 0
    received: int = 0
    events: int = 0
    parse_failures: int = 0
    skipped_empty: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    by_dataset: dict[str, int] = field(default_factory=dict)
    #: counters of the packet captures imported (packets, dns_messages, malformed...)
    pcap: dict[str, int] = field(default_factory=dict)
    #: what the correlation rules raised over the imported time span
    correlation: dict[str, Any] = field(default_factory=dict)

    @property
    def lines_per_s(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["lines_per_s"] = round(self.lines_per_s)
        return d


def ingest(
    config: Config,
    stores: Stores,
    paths: Sequence[Path],
    *,
    fmt: str = "auto",
    dataset: str | None = None,
    source_id: str = INGEST_SOURCE,
    on_progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Read files to their end, parse, enrich and store; returns what happened.

    Files already imported under the same source id are skipped (their
    checkpoints say so), so running the same import twice stores nothing twice.
    """
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"not a readable file: {', '.join(missing)}")
    paths = list(dict.fromkeys(Path(p).resolve() for p in paths))  # each file once
    captures = [p for p in paths if is_capture(p)]
    texts = [p for p in paths if p not in captures]
    checkpoints = stores.events.checkpoints(source_id)
    sources: list[Source] = []
    if texts:
        src_cfg = FileSourceConfig(
            # the file source takes globs: a name like `access[1].log` means itself here
            type="file",
            paths=[glob.escape(str(p)) for p in texts],
            format=fmt,
            dataset=dataset,
        )
        sources.append(
            FileSource(
                source_id,
                src_cfg,
                checkpoints=checkpoints,
                one_shot=True,
                batch_max_rows=config.pipeline.batch_max_rows,
            )
        )
    if captures:  # the DNS decoder takes ~0.05 s to import: only for captures
        from lightsoc.sources.pcap import PcapSource
    for p in captures:
        sources.append(
            PcapSource(
                source_id,
                PcapSourceConfig(type="pcap", file=p),
                checkpoints=checkpoints,
                one_shot=True,
                batch_max_rows=config.pipeline.batch_max_rows,
            )
        )
    # one spec for the id: parsed (pcap) batches ignore its format, not its dataset
    spec = SourceSpec(source_id, sources[0].type, format=fmt, dataset=dataset)
    for src in sources:
        src.spec = spec  # type: ignore[attr-defined]
    summary = IngestSummary(files=len(paths), bytes=sum(os.path.getsize(p) for p in paths))
    proc = psutil.Process()
    datasets: list[pl.Series] = []
    span: list[Any] = []  # (min, max) event time of each stored batch

    def on_batch(done: ProcessedBatch) -> None:
        summary.received += done.counters.received
        summary.events += done.counters.events
        summary.parse_failures += done.counters.parse_failures
        summary.peak_rss_mb = max(summary.peak_rss_mb, proc.memory_info().rss / 2**20)
        if done.events.height:
            datasets.append(done.events.get_column("event.dataset").value_counts())
            ts = done.events.get_column("@timestamp")
            span.append((ts.min(), ts.max()))
        if on_progress is not None:
            on_progress(done.counters.bytes)

    pipeline = build_pipeline(config, stores, sources, on_batch=on_batch)
    # Start-up's objects (modules, rules, lookup tables) live until exit: out of the
    # collector's way, a full collection during the import does not walk them again.
    gc.freeze()
    t0 = time.perf_counter()
    pipeline.start()
    pipeline.wait()
    summary.seconds = time.perf_counter() - t0
    summary.skipped_empty = sum(s.metrics.skipped_empty for s in sources if s.type == "file")
    for src in sources:
        if src.type == "pcap":
            for k, v in src.metrics.extra.items():
                summary.pcap[k] = summary.pcap.get(k, 0) + v
    summary.peak_rss_mb = round(max(summary.peak_rss_mb, proc.memory_info().rss / 2**20), 1)
    if datasets:
        counts = pl.concat(datasets).group_by("event.dataset").agg(pl.col("count").sum())
        summary.by_dataset = {
            (k if k is not None else "unknown"): int(v)
            for k, v in counts.sort("count", descending=True).iter_rows()
        }
    if pipeline.errors:
        raise RuntimeError(f"{pipeline.errors} batch(es) failed during import; see the log")
    spans = [(a, b) for a, b in span if a is not None and b is not None]
    if spans:
        from lightsoc.detect.correlation_eval import run_imported

        summary.correlation = run_imported(
            config, stores, min(a for a, _ in spans), max(b for _, b in spans)
        )
    return summary
