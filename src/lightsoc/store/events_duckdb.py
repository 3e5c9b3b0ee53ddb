"""Event store on an embedded DuckDB file.

One wide `events` table with the ECS columns of `schema.FIELDS`. Source
checkpoints (file offsets) and cumulative per-source counters live in the same
database so that a batch's events, its offsets and its counters commit in one
transaction: after a crash the tail resumes exactly where the last committed
batch ended, so nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from lightsoc import schema
from lightsoc.store.base import (
    Checkpoint,
    EventStore,
    SourceCounters,
    StoreLockedError,
    TimeRange,
)
from lightsoc.store.query import compile_query, quote_ident

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

MIGRATIONS: list[str] = [
    # v1: events, checkpoints, per-source counters
    "CREATE TABLE IF NOT EXISTS events ({columns})",
    """CREATE TABLE IF NOT EXISTS lightsoc_checkpoints (
        source VARCHAR, stream VARCHAR, path VARCHAR, fingerprint VARCHAR,
        fingerprint_len BIGINT, generation INTEGER, "offset" BIGINT, done BOOLEAN,
        updated TIMESTAMPTZ, PRIMARY KEY (source, stream))""",
    """CREATE TABLE IF NOT EXISTS lightsoc_sources (
        source VARCHAR PRIMARY KEY, type VARCHAR, received BIGINT, events BIGINT,
        parse_failures BIGINT, dropped BIGINT, bytes BIGINT, last_seen TIMESTAMPTZ)""",
]


def _ddl_columns() -> str:
    return ", ".join(f"{quote_ident(f.name)} {_DUCK_TYPES[f.type]}" for f in schema.FIELDS)


class DuckDBEventStore(EventStore):
    """Events in `<data_dir>/events.duckdb`; thread-safe through per-call cursors."""

    def __init__(
        self, path: Path, *, read_only: bool = False, memory_limit: str = DEFAULT_MEMORY_LIMIT
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._write_lock = threading.Lock()
        try:
            self._con = duckdb.connect(
                str(self.path), read_only=read_only,
                config={"memory_limit": memory_limit, "preserve_insertion_order": False},
            )
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            msg = str(exc).lower()
            if "lock" in msg or "different configuration" in msg:
                raise StoreLockedError(f"{self.path} is in use by another process") from exc
            raise
        self._con.execute("SET TimeZone='UTC'")
        if not read_only:
            self._migrate()

    # -- lifecycle -------------------------------------------------------
    def _migrate(self) -> None:
        cur = self._con.cursor()
        for stmt in MIGRATIONS:
            cur.execute(stmt.format(columns=_ddl_columns()))
        have = {r[0] for r in cur.execute("SELECT column_name FROM (DESCRIBE events)").fetchall()}
        for f in schema.FIELDS:
            if f.name not in have:
                cur.execute(
                    f"ALTER TABLE events ADD COLUMN {quote_ident(f.name)} {_DUCK_TYPES[f.type]}"
                )

    def close(self) -> None:
        self._con.close()

    def _cur(self) -> duckdb.DuckDBPyConnection:
        cur = self._con.cursor()
        cur.execute("SET TimeZone='UTC'")
        return cur

    # -- writes ----------------------------------------------------------
    def append(
        self,
        batch: pa.Table,
        checkpoints: Sequence[Checkpoint] = (),
        counters: Iterable[SourceCounters] = (),
    ) -> None:
        """Insert events, advance checkpoints and add counters atomically.

        `batch` holds any subset of the schema's columns (by name); absent
        ones are stored as null.
        """
        unknown = [c for c in batch.column_names if c not in schema.BY_NAME]
        if unknown:
            raise ValueError(f"not event fields: {', '.join(unknown)}")
        with self._write_lock:
            cur = self._cur()
            cur.execute("BEGIN TRANSACTION")
            try:
                if batch.num_rows:
                    cur.register("_batch", batch)
                    cur.execute("INSERT INTO events BY NAME SELECT * FROM _batch")
                    cur.unregister("_batch")
                for cp in checkpoints:
                    cur.execute(
                        "INSERT OR REPLACE INTO lightsoc_checkpoints VALUES (?,?,?,?,?,?,?,?,now())",
                        [cp.source, cp.stream, cp.path, cp.fingerprint, cp.fingerprint_len,
                         cp.generation, cp.offset, cp.done],
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
                        [c.source, c.type, c.received, c.events, c.parse_failures, c.dropped,
                         c.bytes, c.last_seen],
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def checkpoints(self, source: str) -> dict[str, Checkpoint]:
        rows = self._cur().execute(
            'SELECT source, stream, path, fingerprint, fingerprint_len, generation, "offset", done '
            "FROM lightsoc_checkpoints WHERE source = ?",
            [source],
        ).fetchall()
        return {r[1]: Checkpoint(*r) for r in rows}

    def retention(self, days: int, *, now: datetime | None = None) -> int:
        """Delete events older than `days`; returns how many were deleted."""
        with self._write_lock:
            cur = self._cur()
            ref = "?::TIMESTAMPTZ" if now else "now()"
            params: list[Any] = [now] if now else []
            where = f'"@timestamp" < {ref} - to_days(?)'
            (n,) = cur.execute(f"SELECT count(*) FROM events WHERE {where}", [*params, days]).fetchone()  # noqa: S608
            if n:
                cur.execute(f"DELETE FROM events WHERE {where}", [*params, days])  # noqa: S608
            return int(n)

    # -- reads -----------------------------------------------------------
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

    def search(
        self,
        query: str = "",
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
        limit: int = 100,
        order: str = "desc",
    ) -> pa.Table:
        where, params = self._where(query, time_range)
        cols = _select_list(fields)
        direction = "ASC" if order == "asc" else "DESC"
        sql = f'SELECT {cols} FROM events WHERE {where} ORDER BY "@timestamp" {direction}, "event.id" LIMIT ?'  # noqa: S608
        return self._cur().sql(sql, params=[*params, int(limit)]).to_arrow_table()

    def count(self, query: str = "", time_range: TimeRange | None = None) -> int:
        where, params = self._where(query, time_range)
        return int(self._cur().execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0])  # noqa: S608

    def top(
        self, field: str, query: str = "", time_range: TimeRange | None = None, n: int = 10
    ) -> list[tuple[Any, int]]:
        """Top-N values of a field by event count."""
        col = _field(field)
        where, params = self._where(query, time_range)
        sql = f"SELECT {col} AS v, count(*) AS n FROM events WHERE {where} AND {col} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?"  # noqa: S608
        return [(r[0], int(r[1])) for r in self._cur().execute(sql, [*params, int(n)]).fetchall()]

    def histogram(
        self, interval_seconds: int, query: str = "", time_range: TimeRange | None = None
    ) -> list[tuple[datetime, int]]:
        """Event counts per time bucket of `interval_seconds`."""
        where, params = self._where(query, time_range)
        sql = f"""SELECT time_bucket(to_seconds(?), "@timestamp") AS b, count(*) FROM events
                  WHERE {where} GROUP BY 1 ORDER BY 1"""  # noqa: S608
        rows = self._cur().execute(sql, [int(interval_seconds), *params]).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def timeline(
        self, entity: str, time_range: TimeRange | None = None, limit: int = 1000,
        fields: Sequence[str] | None = None,
    ) -> pa.Table:
        """Every event whose entity fields hold `entity`, oldest first."""
        ors = " OR ".join(f"{_field(f)} = ?" for f in schema.ENTITY_FIELDS)
        params: list[Any] = [entity] * len(schema.ENTITY_FIELDS)
        where = [f"({ors})"]
        if time_range is not None and time_range.start is not None:
            where.append('"@timestamp" >= ?')
            params.append(time_range.start)
        if time_range is not None and time_range.end is not None:
            where.append('"@timestamp" < ?')
            params.append(time_range.end)
        sql = f'SELECT {_select_list(fields)} FROM events WHERE {" AND ".join(where)} ORDER BY "@timestamp", "log.offset" LIMIT ?'  # noqa: S608
        return self._cur().sql(sql, params=[*params, int(limit)]).to_arrow_table()

    def stats(self) -> dict[str, Any]:
        cur = self._cur()
        total, failures = cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE list_contains(tags, 'parse_failure')) FROM events"
        ).fetchone()
        by_dataset = {
            (r[0] if r[0] is not None else "unknown"): int(r[1])
            for r in cur.execute(
                'SELECT "event.dataset", count(*) FROM events GROUP BY 1 ORDER BY 2 DESC'
            ).fetchall()
        }
        sources = [
            {
                "id": r[0], "type": r[1], "received": int(r[2]), "events": int(r[3]),
                "parse_failures": int(r[4]), "dropped": int(r[5]), "bytes": int(r[6]),
                "last_seen": r[7].isoformat() if r[7] else None,
            }
            for r in cur.execute("SELECT * FROM lightsoc_sources ORDER BY source").fetchall()
        ]
        return {
            "events_total": int(total),
            "parse_failures_total": int(failures),
            "by_dataset": by_dataset,
            "sources": sources,
        }


def _field(name: str) -> str:
    if name not in schema.BY_NAME:
        raise ValueError(f"unknown field {name!r}")
    return quote_ident(name)


def _select_list(fields: Sequence[str] | None) -> str:
    if not fields:
        return "*"
    return ", ".join(_field(f) for f in fields)
