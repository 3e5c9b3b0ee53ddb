"""One-shot import of files through the real pipeline (`lightsoc ingest`)."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import psutil

from lightsoc.config import Config, FileSourceConfig
from lightsoc.pipeline import ProcessedBatch, SourceSpec
from lightsoc.runtime import Stores, build_pipeline
from lightsoc.sources.file import FileSource

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
    src_cfg = FileSourceConfig(
        # the file source takes globs: a name like `access[1].log` means itself here
        type="file",
        paths=[glob.escape(str(p)) for p in paths],
        format=fmt,
        dataset=dataset,
    )
    source = FileSource(
        source_id,
        src_cfg,
        checkpoints=stores.events.checkpoints(source_id),
        one_shot=True,
        batch_max_rows=config.pipeline.batch_max_rows,
    )
    source.spec = SourceSpec(source_id, "file", format=fmt, dataset=dataset)  # type: ignore[attr-defined]
    summary = IngestSummary(files=len(paths), bytes=sum(os.path.getsize(p) for p in paths))
    proc = psutil.Process()
    datasets: list[pl.Series] = []

    def on_batch(done: ProcessedBatch) -> None:
        summary.received += done.counters.received
        summary.events += done.counters.events
        summary.parse_failures += done.counters.parse_failures
        summary.peak_rss_mb = max(summary.peak_rss_mb, proc.memory_info().rss / 2**20)
        if done.events.height:
            datasets.append(done.events.get_column("event.dataset").value_counts())
        if on_progress is not None:
            on_progress(done.counters.bytes)

    pipeline = build_pipeline(config, stores, [source], on_batch=on_batch)
    t0 = time.perf_counter()
    pipeline.start()
    pipeline.wait()
    summary.seconds = time.perf_counter() - t0
    summary.skipped_empty = source.metrics.skipped_empty
    summary.peak_rss_mb = round(max(summary.peak_rss_mb, proc.memory_info().rss / 2**20), 1)
    if datasets:
        counts = pl.concat(datasets).group_by("event.dataset").agg(pl.col("count").sum())
        summary.by_dataset = {
            (k if k is not None else "unknown"): int(v)
            for k, v in counts.sort("count", descending=True).iter_rows()
        }
    if pipeline.errors:
        raise RuntimeError(f"{pipeline.errors} batch(es) failed during import; see the log")
    return summary
