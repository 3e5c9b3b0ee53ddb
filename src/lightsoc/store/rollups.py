"""Per-segment rollups: the dashboard's aggregations without reading every event.

Segments are immutable, so their counts can be computed once. For each
committed segment the catalog keeps events per (minute, `event.dataset`) and
per (hour, field, value) for the dashboard's top-N fields. A dashboard query
then reads the rollups of the segments that have one and scans live only the
segments without (the newest, not rolled up yet) plus the edges of the range
that cut a bucket (the part of the first minute / hour inside the range, and
the last one): the answer is exactly that of a scan.

Rollups are built off the ingest path by `maintain()` (a bounded number of
rows per call, newest segments first), one catalog transaction per segment;
compaction and retention delete a segment's rollups with the segment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from lightsoc.store import events_agg
from lightsoc.store.base import TimeRange
from lightsoc.store.query import quote_ident

log = logging.getLogger(__name__)

#: bump when what a rollup holds changes: rollups of another version are rebuilt
VERSION = 1
#: the histogram rollup's field (the dashboard's "events by dataset")
HIST_FIELD = "event.dataset"
#: the top-N rollup's fields (the dashboard's top lists); all strings
TOP_FIELDS = (
    "source.ip",
    "source.geo.country_iso_code",
    "dns.question.registered_domain",
    "url.domain",
    "url.path",
    "user.name",
)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
#: rows rolled up per `build()` call at most (a 1M-row segment takes ~2-4 s)
BUILD_ROWS_PER_CALL = 2_000_000

MIGRATIONS: list[str] = [
    # which segments have rollups (of which VERSION)
    """CREATE TABLE IF NOT EXISTS lightsoc_rollups (
        segment VARCHAR PRIMARY KEY, version INTEGER, built TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS lightsoc_rollup_minutes (
        segment VARCHAR, minute TIMESTAMPTZ, dataset VARCHAR, n BIGINT)""",
    """CREATE TABLE IF NOT EXISTS lightsoc_rollup_top (
        segment VARCHAR, hour TIMESTAMPTZ, field VARCHAR, value VARCHAR, n BIGINT)""",
    # the same summed over the segment: a range covering it reads ~3x fewer rows
    """CREATE TABLE IF NOT EXISTS lightsoc_rollup_top_segment (
        segment VARCHAR, field VARCHAR, value VARCHAR, n BIGINT)""",
]

_SRC = (
    "(SELECT * FROM events_template UNION ALL BY NAME "
    "SELECT * FROM read_parquet(?, union_by_name=true))"
)
_TS = quote_ident("@timestamp")


def covers_top(fields: Sequence[str]) -> bool:
    return bool(fields) and all(f in TOP_FIELDS for f in fields)


def covers_histogram(interval_seconds: int, field: str) -> bool:
    """Minute rollups give exactly the buckets of a whole number of minutes."""
    return field == HIST_FIELD and interval_seconds >= 60 and interval_seconds % 60 == 0


# -- building ------------------------------------------------------------------
def _minutes_sql() -> str:
    return (
        f"SELECT date_trunc('minute', {_TS}) AS minute, "  # noqa: S608
        f"{quote_ident(HIST_FIELD)} AS dataset, count(*) AS n FROM {_SRC} GROUP BY 1, 2"
    )


def _top_sql() -> str:
    parts = [
        f"SELECT date_trunc('hour', {_TS}) AS hour, ? AS field, {quote_ident(f)} AS value, "  # noqa: S608
        f"count(*) AS n FROM {_SRC} WHERE {quote_ident(f)} IS NOT NULL GROUP BY 1, 3"
        for f in TOP_FIELDS
    ]
    return " UNION ALL ".join(parts)


def build_one(cur: duckdb.DuckDBPyConnection, lock: threading.Lock, seg_id: str, path: str) -> bool:
    """Roll up one segment: read it without a lock, then commit in one transaction
    under the writer's lock (only if the segment is still committed, so a segment
    compacted away meanwhile leaves nothing behind). True if committed."""
    minutes = cur.sql(_minutes_sql(), params=[path]).to_arrow_table()
    top_params: list[Any] = []
    for f in TOP_FIELDS:
        top_params += [f, path]
    top = cur.sql(_top_sql(), params=top_params).to_arrow_table()
    with lock:
        cur.execute("BEGIN TRANSACTION").fetchall()
        try:
            alive = cur.execute("SELECT 1 FROM lightsoc_segments WHERE id = ?", [seg_id]).fetchall()
            if alive:
                _delete(cur, [seg_id])
                cur.register("_rollup_minutes", minutes)
                cur.register("_rollup_top", top)
                cur.execute(
                    "INSERT INTO lightsoc_rollup_minutes SELECT ?, minute, dataset, n "
                    "FROM _rollup_minutes",
                    [seg_id],
                ).fetchall()
                cur.execute(
                    "INSERT INTO lightsoc_rollup_top SELECT ?, hour, field, value, n FROM _rollup_top",
                    [seg_id],
                ).fetchall()
                cur.execute(
                    "INSERT INTO lightsoc_rollup_top_segment SELECT ?, field, value, sum(n) "
                    "FROM _rollup_top GROUP BY field, value",
                    [seg_id],
                ).fetchall()
                cur.execute(
                    "INSERT INTO lightsoc_rollups VALUES (?, ?, now())", [seg_id, VERSION]
                ).fetchall()
            cur.execute("COMMIT").fetchall()
        except BaseException:
            cur.execute("ROLLBACK").fetchall()
            raise
        finally:
            for name in ("_rollup_minutes", "_rollup_top"):
                cur.unregister(name)
    return bool(alive)


def pending(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    """(segment id, file, rows) of segments without a current rollup, newest first."""
    return cur.execute(
        "SELECT s.id, s.file, s.rows FROM lightsoc_segments s "
        "LEFT JOIN lightsoc_rollups r ON r.segment = s.id AND r.version = ? "
        "WHERE r.segment IS NULL ORDER BY s.max_ts DESC, s.created DESC",
        [VERSION],
    ).fetchall()


def _delete(cur: duckdb.DuckDBPyConnection, seg_ids: list[str]) -> None:
    for table in (
        "lightsoc_rollups",
        "lightsoc_rollup_minutes",
        "lightsoc_rollup_top",
        "lightsoc_rollup_top_segment",
    ):
        sql = f"DELETE FROM {table} WHERE segment IN (SELECT unnest(?))"  # noqa: S608
        cur.execute(sql, [seg_ids]).fetchall()


def delete_for_files(cur: duckdb.DuckDBPyConnection, files: list[str]) -> None:
    """Drop the rollups of the segments stored in `files` (in the caller's transaction)."""
    ids = [
        r[0]
        for r in cur.execute(
            "SELECT id FROM lightsoc_segments WHERE file IN (SELECT unnest(?))", [files]
        ).fetchall()
    ]
    if ids:
        _delete(cur, ids)


def sweep_orphans(cur: duckdb.DuckDBPyConnection, lock: threading.Lock) -> None:
    """Drop rollups of an older VERSION or whose segment is gone (`delete_for_files`
    keeps them consistent; this is the safety net). Under the writer's lock, so it
    never races compaction deleting the same rows."""
    ids = [
        r[0]
        for r in cur.execute(
            "SELECT segment FROM lightsoc_rollups WHERE version <> ? "
            "OR segment NOT IN (SELECT id FROM lightsoc_segments)",
            [VERSION],
        ).fetchall()
    ]
    if not ids:
        return
    with lock:
        cur.execute("BEGIN TRANSACTION").fetchall()
        try:
            _delete(cur, ids)
            cur.execute("COMMIT").fetchall()
        except BaseException:
            cur.execute("ROLLBACK").fetchall()
            raise


# -- querying ------------------------------------------------------------------
@dataclass
class Plan:
    """Which segments of a range are read from rollups and which are scanned."""

    rolled: list[tuple[str, str, datetime, datetime]]  # (id, path, min_ts, max_ts)
    live_files: list[str]  # paths of segments without one


@dataclass
class Rollup:
    """How one aggregation reads its rollups: `bucketed` selects rows `(t|f, v, n)`
    of bucket column `tcol` matching `{cond}`; `whole` (optional) the same from
    per-segment totals; `head` are parameters before the condition, `extra` an
    `AND ...` condition with parameters `extra_params`."""

    bucketed: str
    tcol: str
    step: timedelta
    whole: str = ""
    head: tuple[Any, ...] = ()
    extra: str = ""
    extra_params: tuple[Any, ...] = ()


def plan(cur: duckdb.DuckDBPyConnection, files: Any, tr: TimeRange | None) -> Plan:  # noqa: ANN401
    sql = (
        "SELECT s.id, s.file, s.min_ts, s.max_ts, r.segment IS NOT NULL FROM lightsoc_segments s "
        "LEFT JOIN lightsoc_rollups r ON r.segment = s.id AND r.version = ? WHERE TRUE"
    )
    params: list[Any] = [VERSION]
    if tr is not None and tr.start is not None:
        sql += " AND s.max_ts >= ?"
        params.append(tr.start)
    if tr is not None and tr.end is not None:
        sql += " AND s.min_ts < ?"
        params.append(tr.end)
    p = Plan([], [])
    for seg_id, file, lo, hi, has in cur.execute(sql, params).fetchall():
        if has:
            p.rolled.append((seg_id, files.path(file), lo, hi))
        else:
            p.live_files.append(files.path(file))
    return p


def _ceil(t: datetime, step: timedelta) -> datetime:
    floor = _floor(t, step)
    return floor if floor == t else floor + step


def _floor(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=t.tzinfo)
    return t - (t - epoch) % step


def _parts(p: Plan, tr: TimeRange | None, r: Rollup, live: str) -> tuple[list[str], list[Any]]:
    """UNION ALL parts and their parameters, counting exactly the range's events.

    Rolled segments: their rollup rows of whole buckets, from `lo` to `hi`; where
    the range cuts a bucket, the cut part is scanned live and added, or (when it
    is more than half the bucket) the whole bucket is taken and the part outside
    the range is scanned and subtracted. A rolled segment wholly between `lo` and
    `hi` is read from its per-segment totals when `r.whole` has them. Segments
    without rollups are scanned live over the range. `live` selects from `{src}`
    (one parameter: the files) with the time condition `{cond}`.
    """
    start = tr.start if tr is not None else None
    end = tr.end if tr is not None else None
    every = p.live_files + [f for _, f, _, _ in p.rolled]
    sql: list[str] = []
    params: list[Any] = []
    if not p.rolled:
        return _live(live, every, start, end)
    lo = hi = None
    add: list[tuple[datetime, datetime, int]] = []  # live edges: (from, to, sign)
    if start is not None:
        lo = _ceil(start, r.step)
        if lo - start > r.step / 2:
            lo -= r.step
            add.append((lo, start, -1))
        elif lo > start:
            add.append((start, lo, 1))
    if end is not None:
        hi = _floor(end, r.step)
        if end - hi > r.step / 2:
            hi += r.step
            add.append((end, hi, -1))
        elif end > hi:
            add.append((hi, end, 1))
    if lo is not None and hi is not None and hi <= lo:
        return _live(live, every, start, end)  # no whole bucket inside the range

    def inside(a: datetime, b: datetime) -> bool:
        return (lo is None or a >= lo) and (hi is None or b < hi)

    whole = [s for s, _, a, b in p.rolled if r.whole and inside(a, b)]
    cut = [s for s, _, a, b in p.rolled if not (r.whole and inside(a, b))]
    if whole:
        sql.append(r.whole.format(cond=f"segment IN (SELECT unnest(?)) {r.extra}"))
        params += [*r.head, whole, *r.extra_params]
    if cut:
        cond, cparams = f"segment IN (SELECT unnest(?)) {r.extra}", [cut, *r.extra_params]
        for op, bound in ((">=", lo), ("<", hi)):
            if bound is not None:
                cond += f" AND {r.tcol} {op} ?"
                cparams.append(bound)
        sql.append(r.bucketed.format(cond=cond))
        params += [*r.head, *cparams]
    for a, b, sign in add:
        s, e = _live(live, [f for _, f, x, y in p.rolled if y >= a and x < b], a, b)
        sql += [f"SELECT * REPLACE (-n AS n) FROM ({q})" for q in s] if sign < 0 else s  # noqa: S608
        params += e
    s, e = _live(live, p.live_files, start, end)
    return sql + s, params + e


def _live(
    live: str, paths: list[str], lo: datetime | None, hi: datetime | None
) -> tuple[list[str], list[Any]]:
    if not paths:
        return [], []
    conds, params = ["TRUE"], []
    if lo is not None:
        conds.append(f"{_TS} >= ?")
        params.append(lo)
    if hi is not None:
        conds.append(f"{_TS} < ?")
        params.append(hi)
    n = live.count("{cond}")
    return [live.format(src=_SRC, cond=" AND ".join(conds))], [paths, *params] * n


def histogram_by(
    cur: duckdb.DuckDBPyConnection, p: Plan, interval: int, tr: TimeRange | None, limit: int
) -> list[tuple[datetime, Any, int]]:
    """`DuckDBEventStore.histogram_by` of `event.dataset` with an empty query."""
    rollup = Rollup(
        "SELECT minute AS t, dataset AS v, n FROM lightsoc_rollup_minutes WHERE {cond}",
        "minute",
        MINUTE,
    )
    live = (
        f"SELECT {_TS} AS t, {quote_ident(HIST_FIELD)} AS v, count(*) AS n FROM {{src}} "  # noqa: S608
        f"WHERE {{cond}} GROUP BY 1, 2"
    )
    parts, params = _parts(p, tr, rollup, live)
    if not parts:
        return []
    sql = events_agg.histogram_by_counts_sql(" UNION ALL ".join(parts))
    rows = cur.execute(sql, [int(interval), *params, int(limit)]).fetchall()
    return [(r[0], r[1], int(r[2])) for r in rows]


def top_many(
    cur: duckdb.DuckDBPyConnection,
    p: Plan,
    names: list[str],
    tr: TimeRange | None,
    n: int,
) -> dict[str, list[tuple[Any, int]]]:
    """`DuckDBEventStore.top_many` of rolled-up fields with an empty query."""
    # rollup rows name their field: its index in `names`, as the live parts say
    rollup = Rollup(
        "SELECT list_position(?, field) - 1 AS f, value AS v, n FROM lightsoc_rollup_top "
        "WHERE {cond}",
        "hour",
        HOUR,
        whole="SELECT list_position(?, field) - 1 AS f, value AS v, n "
        "FROM lightsoc_rollup_top_segment WHERE {cond}",
        head=(names,),
        extra="AND field IN (SELECT unnest(?))",
        extra_params=(names,),
    )
    # live: one scan, a grouping set per field; the row's field from its grouping id
    cols = [quote_ident(name) for name in names]
    k = len(cols)
    which = " ".join(f"WHEN {(1 << k) - 1 - (1 << (k - 1 - i))} THEN {i}" for i in range(k))
    live = (
        f"SELECT f, v, n FROM (SELECT CASE gid {which} END AS f, "  # noqa: S608
        f"{'coalesce(' + ', '.join(cols) + ')' if k > 1 else cols[0]} AS v, n "
        f"FROM (SELECT {events_agg.top_many_what(cols)} FROM {{src}} WHERE {{cond}} "
        f"{events_agg.top_many_tail(cols)})) WHERE v IS NOT NULL"
    )
    parts, params = _parts(p, tr, rollup, live)
    out: dict[str, list[tuple[Any, int]]] = {name: [] for name in names}
    if not parts:
        return out
    rows = cur.execute(
        events_agg.top_counts_sql(" UNION ALL ".join(parts)), [*params, int(n)]
    ).fetchall()
    for f, v, c in rows:
        out[names[int(f)]].append((v, int(c)))
    return out


def build(store: Any, max_rows: int = BUILD_ROWS_PER_CALL) -> int:  # noqa: ANN401
    """Roll up segments without rollups, newest first, until `max_rows` rows were read
    (at least one segment); returns how many segments were rolled up."""
    cur = store._cur()
    sweep_orphans(cur, store._write_lock)
    done = rows = 0
    t0 = time.monotonic()
    for seg_id, file, n in pending(cur):
        if done and rows + n > max_rows:
            break
        if build_one(cur, store._write_lock, seg_id, store.files.path(file)):
            done += 1
        rows += n
    if done:
        log.info("rollups: %d segment(s), %d rows in %.1f s", done, rows, time.monotonic() - t0)
    return done
