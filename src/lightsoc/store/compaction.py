"""Segment upkeep for the Parquet event store: compaction and retention.

Both rewrite segments the same way: DuckDB copies the wanted rows of some
segments into one new file, the file is published, and one catalog
transaction swaps the old segments for the new one. Old files are deleted
after a grace period (readers may still be reading them); a crash at any
point leaves either the old or the new set committed, and the other files
become orphans that the next start removes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from lightsoc import schema
from lightsoc.store import page_copies, rollups
from lightsoc.store.query import quote_ident
from lightsoc.store.segments import ALWAYS_WRITTEN, Segment, SegmentFiles

# Compaction, two tiers. A slow tail commits a small segment every poll: once
# MERGE_AT segments are under SMALL_ROWS, a thread beside the writer merges them.
# Bulk batches make medium segments; `maintain()` (the server's background
# loop, never the ingest hot path) merges MEDIUM_MERGE_AT of those under
# MEDIUM_ROWS. Merged files hold up to TARGET_ROWS.
SMALL_ROWS = 16_384
MERGE_AT = 32
MEDIUM_ROWS = 262_144
MEDIUM_MERGE_AT = 8
TARGET_ROWS = 1_000_000


class SegmentMaintenance:
    """Mixin for the event store: needs `_cur`, `files`, `_write_lock`, `_maint_lock`,
    `_add_segment`.

    Rewrites run under `_maint_lock` (one at a time: retention and a merge must not
    rewrite the same files) and outside `_write_lock`, which only the catalog swap
    takes: appends go on while a segment is rewritten (they add segments, never
    change the ones being merged)."""

    files: SegmentFiles
    _write_lock: threading.Lock
    _maint_lock: threading.RLock
    page_copies: bool

    def _cur(self) -> duckdb.DuckDBPyConnection:  # pragma: no cover - provided by the store
        raise NotImplementedError

    @staticmethod
    def _add_segment(cur: duckdb.DuckDBPyConnection, seg: Segment) -> None:  # pragma: no cover
        raise NotImplementedError

    def forget_batches(self) -> int:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def _small_segments(self) -> int:
        return int(
            self._cur()
            .execute("SELECT count(*) FROM lightsoc_segments WHERE rows < ?", [SMALL_ROWS])
            .fetchone()[0]
        )

    def _rewrite(
        self, files: list[str], where: str = "TRUE", params: Sequence[Any] = ()
    ) -> Segment | None:
        """Copy the rows of `files` matching `where` into one new published segment."""
        seg_id, tmp = self.files.temp_target()
        paths = ", ".join(_sql_str(self.files.path(f)) for f in files)
        # Only the columns the files have (as `SegmentFiles.write` leaves out the all-null
        # ones; readers add the rest as null): with all ~100 schema columns, merging 32
        # small syslog segments (712k rows) took 13.6 s instead of 0.9 s.
        present = {
            r[0]
            for r in self._cur()
            .execute(f"DESCRIBE SELECT * FROM read_parquet([{paths}], union_by_name=true)")  # noqa: S608
            .fetchall()
        }
        cols = ", ".join(
            quote_ident(n) for n in schema.NAMES if n in present or n in ALWAYS_WRITTEN
        )
        # Paths are our own file names (quoted above); values stay parameters.
        self._cur().execute(
            f"COPY (SELECT {cols} FROM (SELECT * FROM events_template UNION ALL BY NAME "  # noqa: S608
            f"SELECT * FROM read_parquet([{paths}], union_by_name=true)) WHERE {where}) "
            f"TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 65536)",
            list(params),
        )
        rows, lo, hi = (
            self._cur()
            .execute(
                'SELECT count(*), min("@timestamp"), max("@timestamp") FROM read_parquet(?)',
                [str(tmp)],
            )
            .fetchone()
        )
        if not rows:
            tmp.unlink(missing_ok=True)
            return None
        return Segment(seg_id, self.files.publish(tmp), int(rows), lo, hi)

    def _replace(self, old: list[str], new: Segment | None) -> None:
        with self._write_lock:  # the catalog swap only (see the class docstring)
            cur = self._cur()
            cur.execute("BEGIN TRANSACTION")
            try:
                rollups.delete_for_files(cur, old)  # with their segments, in one commit
                cur.execute("DELETE FROM lightsoc_segments WHERE file IN (SELECT unnest(?))", [old])
                if new is not None:
                    self._add_segment(cur, new)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                if new is not None:
                    self.files.discard([new.file], now=True)
                raise
        self.files.discard(old)

    def maintain(self) -> int:
        """Background upkeep: merge medium segments once there are enough of them,
        then roll up and page-copy (a bounded number of) segments that lack them.
        Returns how many files were merged."""
        (n,) = (
            self._cur()
            .execute("SELECT count(*) FROM lightsoc_segments WHERE rows < ?", [MEDIUM_ROWS])
            .fetchone()
        )
        merged = self.compact(MEDIUM_ROWS) if n >= MEDIUM_MERGE_AT else 0
        rollups.build(self)
        if self.page_copies:
            page_copies.build(self)
        self.forget_batches()
        return merged

    def compact(self, below_rows: int = SMALL_ROWS) -> int:
        """Merge segments under `below_rows` (oldest first) into larger ones; returns
        how many files were merged."""
        merged = 0
        with self._maint_lock:
            rows = (
                self._cur()
                .execute(
                    "SELECT file, rows FROM lightsoc_segments WHERE rows < ? ORDER BY min_ts, created",
                    [below_rows],
                )
                .fetchall()
            )
            groups: list[list[str]] = [[]]
            size = 0
            for file, n in rows:
                if size + n > TARGET_ROWS and groups[-1]:
                    groups.append([])
                    size = 0
                groups[-1].append(file)
                size += n
            for group in groups:
                if len(group) > 1:
                    self._replace(group, self._rewrite(group))
                    merged += len(group)
        return merged

    def retention(self, days: int, *, now: datetime | None = None) -> int:
        """Delete events older than `days` (by @timestamp); returns how many."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=days)
        deleted = 0
        with self._maint_lock:
            expired = (
                self._cur()
                .execute("SELECT file, rows FROM lightsoc_segments WHERE max_ts < ?", [cutoff])
                .fetchall()
            )
            if expired:
                self._replace([f for f, _ in expired], None)
                deleted += sum(n for _, n in expired)
            straddling = (
                self._cur()
                .execute(
                    "SELECT file, rows FROM lightsoc_segments WHERE min_ts < ? AND max_ts >= ?",
                    [cutoff, cutoff],
                )
                .fetchall()
            )
            for file, n in straddling:
                new = self._rewrite([file], '"@timestamp" >= ?', [cutoff])
                self._replace([file], new)
                deleted += n - (new.rows if new else 0)
        return deleted


def _sql_str(value: str) -> str:
    """A SQL string literal (for our own file paths only)."""
    return "'" + value.replace("'", "''") + "'"
