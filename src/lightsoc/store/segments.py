"""Parquet segment files of the embedded event store.

Events live in zstd Parquet files under `<data_dir>/events/`; the DuckDB
catalog (see `events_duckdb`) says which files are committed. A segment is
written to `.tmp/`, fsynced and renamed into place *before* the catalog
transaction that commits it, so after a crash a file either is in the catalog
or is an orphan that `remove_orphans` deletes on the next start. Files
replaced by compaction or retention are unlinked only after a grace period,
so a query that listed them a moment ago can still read them.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow as pa

from lightsoc import schema
from lightsoc.store import page_copies

SEGMENT_DIR = "events"
TMP_DIR = ".tmp"
# Parquet settings: zstd is ~5x smaller than DuckDB's native strings here and
# several times cheaper to write; row groups carry min/max for pruning.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1  # as small as the default level 3 on logs, a quarter cheaper
ROW_GROUP_ROWS = 65536
#: columns every segment has, even when null (the time range and row identity)
ALWAYS_WRITTEN = frozenset({"@timestamp", "event.id"})
GRACE_SECONDS = 120.0


@dataclass(frozen=True)
class Segment:
    id: str
    file: str  # relative to the segment directory
    rows: int
    min_ts: datetime | None
    max_ts: datetime | None


class SegmentFiles:
    """Writes, lists and (after a grace period) deletes segment files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._doomed: list[tuple[float, Path]] = []
        self._lock = threading.Lock()

    def ensure(self) -> None:
        (self.root / TMP_DIR).mkdir(parents=True, exist_ok=True)

    def path(self, segment_file: str) -> str:
        return str(self.root / segment_file)

    def write(self, batch: pa.Table | pl.DataFrame) -> Segment:
        """Write a batch as a new durable segment file (not yet committed).

        Columns have their schema types. A column that is null in every row
        is left out: readers take the full schema from the store's template
        (`read_parquet(..., union_by_name=true)`, as for segments older than
        a field), and Parquet encodes an empty column at nearly the cost of
        a full one (a web batch has ~80 of them, ~40% of its write time).
        """
        df = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        df = schema.conform(df)
        if df.height:
            nulls = df.null_count().row(0)
            empty = [c for c, n in zip(df.columns, nulls, strict=True) if n == df.height]
            df = df.drop([c for c in empty if c not in ALWAYS_WRITTEN])
        seg_id = uuid.uuid4().hex
        name = f"seg-{seg_id}.parquet"
        tmp = self.root / TMP_DIR / name
        df.write_parquet(
            tmp,
            compression=COMPRESSION,
            compression_level=COMPRESSION_LEVEL,
            row_group_size=ROW_GROUP_ROWS,
            statistics=True,
        )
        _fsync(tmp)
        os.replace(tmp, self.root / name)
        _fsync_dir(self.root)
        ts = df.get_column("@timestamp")
        return Segment(seg_id, name, df.height, ts.min(), ts.max())  # type: ignore[arg-type]

    def temp_target(self) -> tuple[str, Path]:
        """A fresh segment name and the temporary path to write it at."""
        seg_id = uuid.uuid4().hex
        return seg_id, self.root / TMP_DIR / f"seg-{seg_id}.parquet"

    def publish(self, tmp: Path) -> str:
        """Move a finished temporary file into place; returns its segment file name."""
        _fsync(tmp)
        os.replace(tmp, self.root / tmp.name)
        _fsync_dir(self.root)
        return tmp.name

    def discard(self, files: Iterable[str], *, now: bool = False) -> None:
        """Delete files now (never committed) or after the grace period (replaced)."""
        due = time.monotonic() + (0 if now else GRACE_SECONDS)
        with self._lock:
            self._doomed.extend((due, self.root / f) for f in files)
        self.purge()

    def purge(self) -> None:
        now = time.monotonic()
        with self._lock:
            keep = []
            for due, path in self._doomed:
                if due <= now:
                    path.unlink(missing_ok=True)
                    page_copies.copy_path(path).unlink(missing_ok=True)
                else:
                    keep.append((due, path))
            self._doomed = keep

    def remove_orphans(self, committed: set[str]) -> list[str]:
        """Delete segment files the catalog does not know (a crash before commit)."""
        removed = []
        for p in self.root.glob("seg-*.parquet"):
            if p.name not in committed:
                p.unlink(missing_ok=True)
                removed.append(p.name)
        copies = {page_copies.copy_path(name).name for name in committed}
        for p in self.root.glob("seg-*.page*.arrow"):  # of gone segments, or an old version
            if p.name not in copies:
                p.unlink(missing_ok=True)
        for p in (self.root / TMP_DIR).glob("*"):
            p.unlink(missing_ok=True)
        return removed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
