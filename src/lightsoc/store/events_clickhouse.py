"""Event store on ClickHouse: many processors writing to one database (scale-out).

The same `EventStore` contract as `DuckDBEventStore`, on either engine of
`events_clickhouse_engine` (chdb in-process, or a server over the native
protocol). Reads live in `events_clickhouse_read`, the query dialect in
`query_clickhouse`.

Table design (`_events_ddl`):
- `ReplacingMergeTree` `PARTITION BY` the UTC day, `ORDER BY (_ts, _key)`:
  `_ts` is `@timestamp` (Int64 microseconds, 0 when absent) and `_key` is
  `event.id` (a random id when absent, so id-less events never collapse). Time
  ranges prune partitions and granules by the leading `_ts`; searches and
  timelines sort by time, which is the table's order. Entity filters are an OR
  over ten columns that no single sort key serves; on servers that have them,
  bloom-filter skip indexes on the IP, user, host and domain columns do.
- Times are Int64 microseconds, not DateTime64: 18.x servers have no
  DateTime64, integers compare exactly, and Arrow casts them to timestamps for free.
- Idempotent inserts: a replayed event (same `@timestamp` and `event.id`) has
  the same sorting key, so the engine keeps one; every read says `FINAL`, so it
  is seen once even before the background merge. Servers >= 22.2 also get
  `insert_deduplication_token` (the batch key) with a non-replicated dedup
  window, so a replayed block is usually not written at all.
- No multi-statement transactions: a batch writes events, then checkpoints, then
  counters, then its batch id. Each is safe to repeat: checkpoints are a
  ReplacingMergeTree keyed by (source, stream) with an insert version;
  counters are one row per (source, batch key), replaced on replay and summed
  at read. A crash anywhere means the batch is replayed and converges; only the
  batch id, written last, makes `append` skip it.
- Retention drops whole day partitions and deletes the boundary day's older rows.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lightsoc import schema
from lightsoc.store.base import Checkpoint, EventStore, SourceCounters
from lightsoc.store.events_clickhouse_engine import Engine, open_engine
from lightsoc.store.events_clickhouse_read import ClickHouseReads, to_datetime
from lightsoc.store.query_clickhouse import Dialect, micros, qi, storage_name

log = logging.getLogger(__name__)

_CH_TYPES = {
    schema.STR: "Nullable(String)",
    schema.I64: "Nullable(Int64)",
    schema.I32: "Nullable(Int32)",
    schema.F64: "Nullable(Float64)",
    schema.TS: "Nullable(Int64)",  # microseconds since the epoch, UTC
    schema.STR_LIST: "Array(String)",
}
LIST_FIELDS = [f.name for f in schema.FIELDS if f.type == schema.STR_LIST]
DAY_US = 86_400_000_000
#: entity columns with a bloom-filter skip index (servers >= 20.1)
INDEXED = ("source.ip", "destination.ip", "user.name", "host.name", "dns.question.name")
#: a mutation (the boundary day's delete) must finish within this
MUTATION_WAIT_S = 120.0
#: how many recent insert blocks a non-replicated table remembers for dedup
DEDUP_WINDOW = 10_000


def _supports(version: tuple[int, ...], since: tuple[int, int]) -> bool:
    return version[:2] >= since


def _events_ddl(db: str, version: tuple[int, ...]) -> str:
    cols = [f"{qi(f.name)} {_CH_TYPES[f.type]}" for f in schema.FIELDS]
    cols += ["`_ts` Int64", "`_key` String", "`_list_nulls` UInt8"]
    if _supports(version, (20, 1)):
        cols += [
            f"INDEX `ix_{storage_name(n).replace('.', '_')}` {qi(n)} TYPE bloom_filter GRANULARITY 4"
            for n in INDEXED
        ]
    settings = ["index_granularity = 8192"]
    if _supports(version, (22, 2)):
        settings.append(f"non_replicated_deduplication_window = {DEDUP_WINDOW}")
    return (
        f"CREATE TABLE IF NOT EXISTS `{db}`.events ({', '.join(cols)}) "
        f"ENGINE = ReplacingMergeTree PARTITION BY intDiv(`_ts`, {DAY_US}) "
        f"ORDER BY (`_ts`, `_key`) SETTINGS {', '.join(settings)}"
    )


def _migrations(db: str, version: tuple[int, ...]) -> list[list[str]]:
    """Statements of each schema version, in order (v1 first)."""
    return [
        [
            _events_ddl(db, version),
            f"""CREATE TABLE IF NOT EXISTS `{db}`.lightsoc_checkpoints (
                source String, stream String, path String, fingerprint String,
                fingerprint_len Int64, generation Int64, `offset` Int64, done UInt8,
                updated Int64, version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (source, stream)""",
            f"""CREATE TABLE IF NOT EXISTS `{db}`.lightsoc_source_counts (
                source String, batch String, type String, received Int64, events Int64,
                parse_failures Int64, dropped Int64, bytes Int64, last_seen Nullable(Int64),
                version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (source, batch)""",
            f"""CREATE TABLE IF NOT EXISTS `{db}`.lightsoc_batches (
                id String, committed Int64
            ) ENGINE = ReplacingMergeTree ORDER BY id""",
        ],
    ]


class ClickHouseEventStore(ClickHouseReads, EventStore):
    """`url`: `chdb://<dir>` (in-process) or `clickhouse://host:9000/db` (a server)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = open_engine(url)
        self.db = self.engine.db
        self.version = self.engine.version
        self.dialect = Dialect(json_functions=_supports(self.version, (20, 1)))
        self._write_lock = threading.Lock()
        self._migrate()

    # -- lifecycle -------------------------------------------------------
    def _migrate(self) -> None:
        e, db = self.engine, self.db
        e.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        e.execute(
            f"CREATE TABLE IF NOT EXISTS `{db}`.lightsoc_migrations "
            "(version UInt32, applied Int64) ENGINE = MergeTree ORDER BY version"
        )
        sql = f"SELECT max(version) FROM `{db}`.lightsoc_migrations"  # noqa: S608 - our db name
        have = int(self._scalar(sql) or 0)
        for v, stmts in enumerate(_migrations(db, self.version), start=1):
            if v <= have:
                continue
            for stmt in stmts:
                e.execute(stmt)
            e.insert(
                f"`{db}`.lightsoc_migrations",
                pa.table(
                    {
                        "version": pa.array([v], pa.uint32()),
                        "applied": pa.array([micros(datetime.now(UTC))], pa.int64()),
                    }
                ),
                {},
            )
        cols = self.engine.query(
            "SELECT name FROM system.columns WHERE database = ? AND table = 'events'", [db]
        )
        present = set(cols.column(0).to_pylist())
        for f in schema.FIELDS:  # fields added to the schema later read as null in old rows
            if storage_name(f.name) not in present:
                e.execute(f"ALTER TABLE `{db}`.events ADD COLUMN {qi(f.name)} {_CH_TYPES[f.type]}")

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        t = self.engine.query(sql, params)
        return t.column(0)[0].as_py() if t.num_rows else None

    def close(self) -> None:
        self.engine.close()

    # -- writes ----------------------------------------------------------
    def append(
        self,
        batch: pa.Table | pl.DataFrame,
        checkpoints: Sequence[Checkpoint] = (),
        counters: Iterable[SourceCounters] = (),
        *,
        batch_id: str = "",
    ) -> bool:
        """Insert events, then checkpoints, counters and the batch id (see the module doc).

        False if `batch_id` was stored before (the batch is skipped whole).
        """
        names = batch.columns if isinstance(batch, pl.DataFrame) else batch.column_names
        unknown = [c for c in names if c not in schema.BY_NAME]
        if unknown:
            raise ValueError(f"not event fields: {', '.join(unknown)}")
        df = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        table = schema.to_arrow(df)
        counters = list(counters)
        key = batch_id or _batch_key(table, checkpoints, counters)
        db = self.db
        with self._write_lock:
            if batch_id and self._has_batch(batch_id):
                return False
            if table.num_rows:
                settings: dict[str, Any] = {}
                if _supports(self.version, (22, 2)):
                    settings["insert_deduplication_token"] = key
                self.engine.insert(f"`{db}`.events", _to_rows(table), settings)
            version = time.time_ns()
            if checkpoints:
                cps = list(checkpoints)
                now = micros(datetime.now(UTC))
                self.engine.insert(
                    f"`{db}`.lightsoc_checkpoints",
                    pa.table(
                        {
                            "source": pa.array([c.source for c in cps], pa.string()),
                            "stream": pa.array([c.stream for c in cps], pa.string()),
                            "path": pa.array([c.path for c in cps], pa.string()),
                            "fingerprint": pa.array([c.fingerprint for c in cps], pa.string()),
                            "fingerprint_len": pa.array(
                                [c.fingerprint_len for c in cps], pa.int64()
                            ),
                            "generation": pa.array([c.generation for c in cps], pa.int64()),
                            "offset": pa.array([c.offset for c in cps], pa.int64()),
                            "done": pa.array([int(c.done) for c in cps], pa.uint8()),
                            "updated": pa.array([now] * len(cps), pa.int64()),
                            "version": pa.array([version] * len(cps), pa.uint64()),
                        }
                    ),
                    {},
                )
            if counters:
                self.engine.insert(
                    f"`{db}`.lightsoc_source_counts", _counter_rows(counters, key, version), {}
                )
            if batch_id:
                self.engine.insert(
                    f"`{db}`.lightsoc_batches",
                    pa.table(
                        {
                            "id": [batch_id],
                            "committed": pa.array([micros(datetime.now(UTC))], pa.int64()),
                        }
                    ),
                    {},
                )
        return True

    def _has_batch(self, batch_id: str) -> bool:
        sql = f"SELECT count() FROM `{self.db}`.lightsoc_batches WHERE id = ?"  # noqa: S608
        return bool(self._scalar(sql, [batch_id]))

    def forget_batches(self, days: int = 7) -> int:
        """Drop bus batch ids older than `days` (maintenance)."""
        cutoff = micros(datetime.now(UTC) - timedelta(days=days))
        tbl = f"`{self.db}`.lightsoc_batches"
        with self._write_lock:
            n = int(self._scalar(f"SELECT count() FROM {tbl} FINAL WHERE committed < ?", [cutoff]))  # noqa: S608
            if n:
                self.engine.execute(f"ALTER TABLE {tbl} DELETE WHERE committed < ?", [cutoff])  # noqa: S608
                self._wait_mutations("lightsoc_batches")
        return n

    def maintain(self) -> int:
        """Background upkeep, as `DuckDBEventStore.maintain`: ClickHouse merges its
        parts itself; only old batch ids are forgotten. Returns 0 (nothing merged here)."""
        self.forget_batches()
        return 0

    def checkpoints(self, source: str) -> dict[str, Checkpoint]:
        t = self.engine.query(
            "SELECT source, stream, path, fingerprint, fingerprint_len, generation, `offset`, done "  # noqa: S608
            f"FROM `{self.db}`.lightsoc_checkpoints FINAL WHERE source = ?",
            [source],
        )
        out = {}
        for r in t.to_pylist():
            cp = Checkpoint(
                r["source"],
                r["stream"],
                r["path"],
                r["fingerprint"],
                int(r["fingerprint_len"]),
                int(r["generation"]),
                int(r["offset"]),
                bool(r["done"]),
            )
            out[cp.stream] = cp
        return out

    # -- upkeep ----------------------------------------------------------
    def retention(self, days: int, *, now: datetime | None = None) -> int:
        """Delete events older than `days` (by @timestamp); returns how many.

        Whole UTC days before the cutoff are dropped as partitions (cheap, no
        rewrite); the cutoff's own day loses its older rows by a mutation.
        """
        now = now or datetime.now(UTC)
        cutoff = micros(now - timedelta(days=days))
        db = self.db
        with self._write_lock:
            deleted = int(
                self._scalar(f"SELECT count() FROM `{db}`.events FINAL WHERE `_ts` < ?", [cutoff])  # noqa: S608
                or 0
            )
            if not deleted:
                return 0
            parts = self.engine.query(
                "SELECT DISTINCT partition FROM system.parts "
                "WHERE database = ? AND table = 'events' AND active",
                [db],
            )
            boundary = cutoff // DAY_US
            for p in parts.column(0).to_pylist():
                day = int(str(p).strip("'"))
                if day < boundary:  # the whole day lies before the cutoff
                    self.engine.execute(f"ALTER TABLE `{db}`.events DROP PARTITION {day}")
            if cutoff % DAY_US:
                self.engine.execute(f"ALTER TABLE `{db}`.events DELETE WHERE `_ts` < ?", [cutoff])
                self._wait_mutations("events")
        return deleted

    def _wait_mutations(self, table: str) -> None:
        """Block until the table's mutations are done (18.x has no `mutations_sync`)."""
        deadline = time.monotonic() + MUTATION_WAIT_S
        while True:
            pending = self._scalar(
                "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0",
                [self.db, table],
            )
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ClickHouse mutation on {self.db}.{table} not done in time")
            time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        src = f"`{self.db}`.events FINAL"
        t = self.engine.query(
            f"SELECT count(), countIf(has({qi('tags')}, 'parse_failure')) FROM {src}"  # noqa: S608
        )
        total, failures = (int(x) for x in t.to_pylist()[0].values())
        rows = self.engine.query(
            f"SELECT {qi('event.dataset')} AS ds, count() AS n FROM {src} "  # noqa: S608
            "GROUP BY ds ORDER BY n DESC, ds"
        ).to_pylist()
        parts = self._scalar(
            "SELECT count() FROM system.parts WHERE database = ? AND table = 'events' AND active",
            [self.db],
        )
        return {
            "events_total": total,
            "parse_failures_total": failures,
            "by_dataset": {
                (r["ds"] if r["ds"] is not None else "unknown"): int(r["n"]) for r in rows
            },
            "sources": self.source_counters(),
            "segments": int(parts or 0),
        }

    def source_counters(self) -> list[dict[str, Any]]:
        """Cumulative counters per source: the sum of its batches' rows."""
        t = self.engine.query(
            "SELECT source, argMax(type, version) AS type, sum(received) AS received, "  # noqa: S608
            "sum(events) AS events, sum(parse_failures) AS parse_failures, "
            "sum(dropped) AS dropped, sum(bytes) AS bytes, max(last_seen) AS last_seen "
            f"FROM `{self.db}`.lightsoc_source_counts FINAL GROUP BY source ORDER BY source"
        )
        out = []
        for r in t.to_pylist():
            last = to_datetime(r["last_seen"])
            out.append(
                {
                    "id": r["source"],
                    "type": r["type"],
                    **{
                        k: int(r[k])
                        for k in ("received", "events", "parse_failures", "dropped", "bytes")
                    },
                    "last_seen": last.isoformat() if last else None,
                }
            )
        return out


def _batch_key(
    table: pa.Table, checkpoints: Sequence[Checkpoint], counters: list[SourceCounters]
) -> str:
    """A key that a replay of the same batch reproduces (without a bus batch id):
    its checkpoints, counters and event ids."""
    h = hashlib.sha256()
    h.update(repr((list(checkpoints), counters)).encode())
    h.update("\n".join(str(i) for i in table.column("event.id").to_pylist()).encode())
    return "k-" + h.hexdigest()[:40]


def _to_rows(table: pa.Table) -> pa.Table:
    """A full-schema batch as the events table's columns (times as microseconds,
    lists never null: the nulls go to the `_list_nulls` bit mask)."""
    cols: dict[str, pa.Array | pa.ChunkedArray] = {}
    nulls = pa.array([0] * table.num_rows, pa.uint8())
    for f in schema.FIELDS:
        col = table.column(f.name).combine_chunks()
        if f.type == schema.TS:
            col = col.cast(pa.int64())
        elif f.type == schema.STR_LIST:
            bit = 1 << LIST_FIELDS.index(f.name)
            isnull = pc.is_null(col)
            nulls = pc.bit_wise_or(
                nulls, pc.if_else(isnull, pa.scalar(bit, pa.uint8()), pa.scalar(0, pa.uint8()))
            )
            # Offsets without the validity bitmap: a null list becomes [] (null lists hold no values).
            col = pa.ListArray.from_arrays(col.offsets, col.values.cast(pa.string()))
        cols[storage_name(f.name)] = col
    ts = table.column("@timestamp").combine_chunks().cast(pa.int64())
    cols["_ts"] = pc.fill_null(ts, 0)
    ids = table.column("event.id").combine_chunks()
    if ids.null_count:
        ids = pa.array(
            [i if i is not None else "~" + uuid.uuid4().hex for i in ids.to_pylist()], pa.string()
        )
    cols["_key"] = ids
    cols["_list_nulls"] = nulls
    return pa.table(cols)


def _counter_rows(items: list[SourceCounters], key: str, version: int) -> pa.Table:
    """One row per source (the row key is (source, batch)): a batch's counters summed."""
    merged: dict[str, SourceCounters] = {}
    for c in items:
        m = merged.setdefault(c.source, SourceCounters(c.source, c.type))
        m.type = c.type
        m.received += c.received
        m.events += c.events
        m.parse_failures += c.parse_failures
        m.dropped += c.dropped
        m.bytes += c.bytes
        if c.last_seen is not None and (m.last_seen is None or c.last_seen > m.last_seen):
            m.last_seen = c.last_seen
    counters = list(merged.values())
    return pa.table(
        {
            "source": pa.array([c.source for c in counters], pa.string()),
            "batch": pa.array([key] * len(counters), pa.string()),
            "type": pa.array([c.type for c in counters], pa.string()),
            "received": pa.array([c.received for c in counters], pa.int64()),
            "events": pa.array([c.events for c in counters], pa.int64()),
            "parse_failures": pa.array([c.parse_failures for c in counters], pa.int64()),
            "dropped": pa.array([c.dropped for c in counters], pa.int64()),
            "bytes": pa.array([c.bytes for c in counters], pa.int64()),
            "last_seen": pa.array(
                [micros(c.last_seen) if c.last_seen else None for c in counters], pa.int64()
            ),
            "version": pa.array([version] * len(counters), pa.uint64()),
        }
    )
