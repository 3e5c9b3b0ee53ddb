"""Event store: Parquet segments with a DuckDB catalog, queried by DuckDB.

`<data_dir>/events.duckdb` is the catalog: which segment files are committed
(`lightsoc_segments`, with row counts and time bounds for pruning), source
checkpoints (file offsets) and cumulative per-source counters. The events
themselves are zstd Parquet files in `<data_dir>/events/` (`segments.py`).
A batch's segment file is made durable first; then one catalog transaction
commits the file, the batch's offsets and its counters together, so after a
crash the tail resumes exactly where the last committed batch ended: nothing
lost, nothing stored twice.

Why not DuckDB's own tables: on this 2-core target, DuckDB compressing wide
string rows on insert and checkpoint cost ~6 us/row, Parquet+zstd ~1 us/row
and a third of the disk; DuckDB reads the Parquet with min/max pruning and
answers top-N over 10M events in a fraction of a second. Small segments from
a slow tail are merged by `compact()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from lightsoc import schema
from lightsoc.store import compaction, events_agg, rollups
from lightsoc.store.base import (
    Checkpoint,
    EventStore,
    SourceCounters,
    StoreLockedError,
    TimeRange,
)
from lightsoc.store.compaction import SegmentMaintenance
from lightsoc.store.events_entity import EntityQueries, _field
from lightsoc.store.events_search import SearchQueries
from lightsoc.store.query import compile_query, quote_ident
from lightsoc.store.segments import SEGMENT_DIR, Segment, SegmentFiles

_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    schema.TS: "TIMESTAMPTZ",
    schema.STR_LIST: "VARCHAR[]",
}

# DuckDB's default is 80% of RAM; lightsoc shares the box with what it monitors.
# Queries larger than this spill to disk in the data directory.
DEFAULT_MEMORY_LIMIT = "256MB"


log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # v1: the event schema (never holds rows), segments, checkpoints, counters
    "CREATE TABLE IF NOT EXISTS events_template ({columns})",
    """CREATE TABLE IF NOT EXISTS lightsoc_segments (
        id VARCHAR PRIMARY KEY, file VARCHAR, rows BIGINT, min_ts TIMESTAMPTZ,
        max_ts TIMESTAMPTZ, created TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS lightsoc_checkpoints (
        source VARCHAR, stream VARCHAR, path VARCHAR, fingerprint VARCHAR,
        fingerprint_len BIGINT, generation INTEGER, "offset" BIGINT, done BOOLEAN,
        updated TIMESTAMPTZ, PRIMARY KEY (source, stream))""",
    """CREATE TABLE IF NOT EXISTS lightsoc_sources (
        source VARCHAR PRIMARY KEY, type VARCHAR, received BIGINT, events BIGINT,
        parse_failures BIGINT, dropped BIGINT, bytes BIGINT, last_seen TIMESTAMPTZ)""",
    # v2: per-segment rollups of the dashboard's aggregations (rollups.py)
    *rollups.MIGRATIONS,
    # v3: ids of batches committed from a shared bus (a redelivered batch is skipped)
    """CREATE TABLE IF NOT EXISTS lightsoc_batches (
        id VARCHAR PRIMARY KEY, committed TIMESTAMPTZ)""",
]

#: how long a bus batch id is remembered: far longer than any redelivery takes
BATCH_ID_DAYS = 7


def _ddl_columns() -> str:
    return ", ".join(f"{quote_ident(f.name)} {_DUCK_TYPES[f.type]}" for f in schema.FIELDS)


class DuckDBEventStore(SearchQueries, EntityQueries, SegmentMaintenance, EventStore):
    """Catalog in `path` (a DuckDB file), segments beside it; thread-safe via cursors."""

    def __init__(
        self,
        path: Path,
        *,
        read_only: bool = False,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        page_copies: bool = True,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        #: `maintain()` builds page copies (existing ones are read either way)
        self.page_copies = page_copies
        self._write_lock = threading.Lock()
        self._maint_lock = threading.RLock()  # one rewrite of segments at a time
        self._compaction: threading.Thread | None = None
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(
                str(self.path),
                read_only=read_only,
                config={"memory_limit": memory_limit, "preserve_insertion_order": False},
            )
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            msg = str(exc).lower()
            if "lock" in msg or "different configuration" in msg:
                raise StoreLockedError(f"{self.path} is in use by another process") from exc
            raise
        self._con.execute("SET TimeZone='UTC'")
        # Segment files never change once published (a rewrite is a new name), so their
        # footers can be kept: a query over N segments no longer parses N footers.
        self._con.execute("SET GLOBAL parquet_metadata_cache = true")
        self.files = SegmentFiles(self.path.parent / SEGMENT_DIR)
        if not read_only:
            self._migrate()
            self.files.ensure()
            orphans = self.files.remove_orphans(self._committed_files())
            if orphans:
                log.info("removed %d uncommitted segment file(s) left by a crash", len(orphans))

    # -- lifecycle -------------------------------------------------------
    def _migrate(self) -> None:
        cur = self._con.cursor()
        for stmt in MIGRATIONS:
            cur.execute(stmt.format(columns=_ddl_columns()))
        have = {
            r[0]
            for r in cur.execute("SELECT column_name FROM (DESCRIBE events_template)").fetchall()
        }
        for f in schema.FIELDS:  # older segments lack new fields: they read as null
            if f.name not in have:
                cur.execute(
                    f"ALTER TABLE events_template ADD COLUMN {quote_ident(f.name)} "
                    f"{_DUCK_TYPES[f.type]}"
                )

    def _committed_files(self) -> set[str]:
        return {r[0] for r in self._cur().execute("SELECT file FROM lightsoc_segments").fetchall()}

    def close(self) -> None:
        self.wait_compaction()
        self._con.close()

    def _cur(self) -> duckdb.DuckDBPyConnection:
        cur = self._con.cursor()
        cur.execute("SET TimeZone='UTC'")
        return cur

    @contextmanager
    def _snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor in a read transaction: the segment list and the rollups it reads
        are of one commit, even while compaction swaps segments."""
        cur = self._cur()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        finally:
            cur.execute("ROLLBACK")
            cur.close()

    # -- writes ----------------------------------------------------------
    def append(
        self,
        batch: pa.Table | pl.DataFrame,
        checkpoints: Sequence[Checkpoint] = (),
        counters: Iterable[SourceCounters] = (),
        *,
        batch_id: str = "",
    ) -> bool:
        """Insert events, advance checkpoints and add counters atomically.

        `batch` (Arrow or polars) holds any subset of the schema's columns (by
        name); absent ones are stored as null. A `batch_id` (a shared bus's
        batch) is committed with them; a batch whose id is already committed
        is skipped whole and False returned (redelivered after a crash).
        """
        names = batch.columns if isinstance(batch, pl.DataFrame) else batch.column_names
        unknown = [c for c in names if c not in schema.BY_NAME]
        if unknown:
            raise ValueError(f"not event fields: {', '.join(unknown)}")
        rows = batch.height if isinstance(batch, pl.DataFrame) else batch.num_rows
        with self._write_lock:
            if batch_id and self._has_batch(batch_id):
                return False
            segment = self.files.write(batch) if rows else None
            cur = self._cur()
            cur.execute("BEGIN TRANSACTION")
            try:
                if batch_id:
                    cur.execute("INSERT INTO lightsoc_batches VALUES (?, now())", [batch_id])
                if segment is not None:
                    self._add_segment(cur, segment)
                for cp in checkpoints:
                    cur.execute(
                        "INSERT OR REPLACE INTO lightsoc_checkpoints VALUES (?,?,?,?,?,?,?,?,now())",
                        [
                            cp.source,
                            cp.stream,
                            cp.path,
                            cp.fingerprint,
                            cp.fingerprint_len,
                            cp.generation,
                            cp.offset,
                            cp.done,
                        ],
                    )
                for c in counters:
                    cur.execute(
                        """INSERT INTO lightsoc_sources VALUES (?,?,?,?,?,?,?,?)
                        ON CONFLICT (source) DO UPDATE SET
                          type = excluded.type,
                          received = lightsoc_sources.received + excluded.received,
                          events = lightsoc_sources.events + excluded.events,
                          parse_failures = lightsoc_sources.parse_failures + excluded.parse_failures,
                          dropped = lightsoc_sources.dropped + excluded.dropped,
                          bytes = lightsoc_sources.bytes + excluded.bytes,
                          last_seen = greatest(lightsoc_sources.last_seen, excluded.last_seen)""",
                        [
                            c.source,
                            c.type,
                            c.received,
                            c.events,
                            c.parse_failures,
                            c.dropped,
                            c.bytes,
                            c.last_seen,
                        ],
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                if segment is not None:
                    self.files.discard([segment.file], now=True)
                raise
            self.files.purge()
        if self._small_segments() >= compaction.MERGE_AT:
            self._compact_soon()
        return True

    def _compact_soon(self) -> None:
        """Merge the small segments in a thread of its own: a merge can take seconds
        under load, and in the writer's thread it stalled ingestion that long (TCP
        senders blocked, UDP buffers filling)."""
        with self._write_lock:
            if self._compaction is not None and self._compaction.is_alive():
                return
            self._compaction = threading.Thread(
                target=self._compact_logged, name="store-compaction", daemon=True
            )
            self._compaction.start()

    def _compact_logged(self) -> None:
        try:
            self.compact()
        except Exception:  # the small segments stay; the next append tries again
            log.exception("merging small segments failed")

    def wait_compaction(self) -> None:
        """Wait for a merge started by `append` (tests, `close`)."""
        t = self._compaction
        if t is not None and t is not threading.current_thread():
            t.join()

    def _has_batch(self, batch_id: str) -> bool:
        cur = self._cur()
        return (
            cur.execute("SELECT 1 FROM lightsoc_batches WHERE id = ?", [batch_id]).fetchone()
            is not None
        )

    def forget_batches(self, days: int = BATCH_ID_DAYS) -> int:
        """Drop bus batch ids older than `days` (maintenance)."""
        with self._write_lock:
            cur = self._cur()
            (n,) = cur.execute(
                "SELECT count(*) FROM lightsoc_batches WHERE committed < now() - to_days(?)", [days]
            ).fetchone()
            cur.execute("DELETE FROM lightsoc_batches WHERE committed < now() - to_days(?)", [days])
            return int(n)

    @staticmethod
    def _add_segment(cur: duckdb.DuckDBPyConnection, seg: Segment) -> None:
        cur.execute(
            "INSERT INTO lightsoc_segments VALUES (?, ?, ?, ?, ?, now())",
            [seg.id, seg.file, seg.rows, seg.min_ts, seg.max_ts],
        )

    def checkpoints(self, source: str) -> dict[str, Checkpoint]:
        rows = (
            self._cur()
            .execute(
                'SELECT source, stream, path, fingerprint, fingerprint_len, generation, "offset", done '
                "FROM lightsoc_checkpoints WHERE source = ?",
                [source],
            )
            .fetchall()
        )
        return {r[1]: Checkpoint(*r) for r in rows}

    # -- reads -----------------------------------------------------------
    def _segments(self, tr: TimeRange | None, order: str = "") -> list[tuple[str, Any, Any]]:
        """(path, min_ts, max_ts) of committed segments overlapping the time range."""
        sql, params = "SELECT file, min_ts, max_ts FROM lightsoc_segments WHERE TRUE", []
        if tr is not None and tr.start is not None:
            sql += " AND max_ts >= ?"
            params.append(tr.start)
        if tr is not None and tr.end is not None:
            sql += " AND min_ts < ?"
            params.append(tr.end)
        sql += {"desc": " ORDER BY max_ts DESC", "asc": " ORDER BY min_ts"}.get(order, "")
        return [
            (self.files.path(f), lo, hi)
            for f, lo, hi in self._cur().execute(sql, params).fetchall()
        ]

    def _events(
        self, tr: TimeRange | None, files: list[str] | None = None
    ) -> tuple[str, list[Any]]:
        """FROM clause over the given segment files (default: all overlapping `tr`)."""
        if files is None:
            files = [f for f, _, _ in self._segments(tr)]
        if not files:
            return "events_template", []
        # The empty template supplies every schema column, even for old segments.
        return (
            "(SELECT * FROM events_template UNION ALL BY NAME "
            "SELECT * FROM read_parquet(?, union_by_name=true))",
            [files],
        )

    def _where(self, query: str, tr: TimeRange | None) -> tuple[str, list[Any]]:
        compiled = compile_query(query)
        sql, params = [compiled.sql], list(compiled.params)
        if tr is not None and tr.start is not None:
            sql.append('"@timestamp" >= ?')
            params.append(tr.start)
        if tr is not None and tr.end is not None:
            sql.append('"@timestamp" < ?')
            params.append(tr.end)
        return " AND ".join(f"({s})" for s in sql), params

    def _select(
        self,
        what: str,
        query: str,
        tr: TimeRange | None,
        tail: str = "",
        head_params: Sequence[Any] = (),
        tail_params: Sequence[Any] = (),
    ) -> tuple[str, list[Any]]:
        src, src_params = self._events(tr)
        where, params = self._where(query, tr)
        sql = f"SELECT {what} FROM {src} AS events WHERE {where} {tail}"  # noqa: S608
        return sql, [*head_params, *src_params, *params, *tail_params]

    def top(
        self, field: str, query: str = "", time_range: TimeRange | None = None, n: int = 10
    ) -> list[tuple[Any, int]]:
        """Top-N values of a field by event count."""
        col = _field(field)
        sql, params = self._select(
            f"{col} AS v, count(*) AS n",
            query,
            time_range,
            f"AND {col} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
            tail_params=[int(n)],
        )
        return [(r[0], int(r[1])) for r in self._cur().execute(sql, params).fetchall()]

    def histogram(
        self, interval_seconds: int, query: str = "", time_range: TimeRange | None = None
    ) -> list[tuple[datetime, int]]:
        """Event counts per time bucket of `interval_seconds`."""
        sql, params = self._select(
            'time_bucket(to_seconds(?), "@timestamp") AS b, count(*)',
            query,
            time_range,
            "GROUP BY 1 ORDER BY 1",
            head_params=[int(interval_seconds)],
        )
        return [(r[0], int(r[1])) for r in self._cur().execute(sql, params).fetchall()]

    def histogram_by(
        self,
        interval_seconds: int,
        field: str,
        query: str = "",
        time_range: TimeRange | None = None,
        limit: int = 10,
    ) -> list[tuple[datetime, Any, int]]:
        """Counts per (time bucket, value of `field`) for its `limit` most common
        values; other values and events without one are counted under None."""
        if not query.strip() and rollups.covers_histogram(int(interval_seconds), field):
            with self._snapshot() as cur:
                plan = rollups.plan(cur, self.files, time_range)
                return rollups.histogram_by(cur, plan, int(interval_seconds), time_range, limit)
        inner, params = self._select(
            f'time_bucket(to_seconds(?), "@timestamp") AS b, {_field(field)} AS v',
            query,
            time_range,
            head_params=[int(interval_seconds)],
        )
        sql = events_agg.histogram_by_sql(inner)
        rows = self._cur().execute(sql, [*params, int(limit)]).fetchall()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def top_many(
        self,
        fields: Sequence[str],
        query: str = "",
        time_range: TimeRange | None = None,
        n: int = 10,
    ) -> dict[str, list[tuple[Any, int]]]:
        """`top` of several fields at once, reading the events once."""
        names = list(dict.fromkeys(fields))
        if not names:
            return {}
        if not query.strip() and rollups.covers_top(names):
            with self._snapshot() as cur:
                plan = rollups.plan(cur, self.files, time_range)
                return rollups.top_many(cur, plan, names, time_range, int(n))
        cols = [_field(f) for f in names]
        inner, params = self._select(
            events_agg.top_many_what(cols), query, time_range, events_agg.top_many_tail(cols)
        )
        sql = events_agg.top_many_sql(inner, cols)
        rows = self._cur().execute(sql, [*params, int(n)]).fetchall()
        return events_agg.top_many_rows(names, rows, int(n))

    def stats(self) -> dict[str, Any]:
        cur = self._cur()
        src, src_params = self._events(None)
        failures = cur.execute(
            f"SELECT count(*) FROM {src} AS events "  # noqa: S608
            "WHERE list_contains(tags, 'parse_failure')",
            src_params,
        ).fetchone()[0]
        by_dataset = {
            (r[0] if r[0] is not None else "unknown"): int(r[1])
            for r in cur.execute(
                f'SELECT "event.dataset", count(*) FROM {src} AS events '  # noqa: S608
                "GROUP BY 1 ORDER BY 2 DESC",
                src_params,
            ).fetchall()
        }
        sources = self.source_counters()
        return {
            "events_total": self._total(),
            "parse_failures_total": int(failures),
            "by_dataset": by_dataset,
            "sources": sources,
            "segments": int(cur.execute("SELECT count(*) FROM lightsoc_segments").fetchone()[0]),
        }

    def source_counters(self) -> list[dict[str, Any]]:
        """The cumulative counters of every source (no event is read)."""
        return [
            {
                "id": r[0],
                "type": r[1],
                "received": int(r[2]),
                "events": int(r[3]),
                "parse_failures": int(r[4]),
                "dropped": int(r[5]),
                "bytes": int(r[6]),
                "last_seen": r[7].isoformat() if r[7] else None,
            }
            for r in self._cur()
            .execute("SELECT * FROM lightsoc_sources ORDER BY source")
            .fetchall()
        ]
