"""Reads of the ClickHouse event store: search, counts, aggregations, entity queries.

A mixin of `ClickHouseEventStore` (it uses `engine`, `db` and `dialect`).
Every read says `FINAL`: replayed events (same time and `event.id`) are
collapsed by the ReplacingMergeTree before its background merge too. The SQL
avoids features the 18.x servers lack (CTEs, GROUPING SETS, ILIKE), so one
text serves chdb and old servers. Values travel as `?` parameters; LIMIT and
OFFSET are `int()` literals (old servers take no parameters there).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lightsoc import schema
from lightsoc.store.base import EntitySummary, TimeRange
from lightsoc.store.events_clickhouse_engine import Engine
from lightsoc.store.events_entity import _GEO, _INTEL, _ROLES, _add_summary_row
from lightsoc.store.query import Compiled
from lightsoc.store.query_clickhouse import Dialect, micros, qi, storage_name
from lightsoc.store.query_dialect import _c, _p

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: DuckDB's `time_bucket` origin for sub-month widths (a Monday): buckets match it
_ORIGIN_US = micros(datetime(2000, 1, 3, tzinfo=UTC))
_LISTS = [f.name for f in schema.FIELDS if f.type == schema.STR_LIST]
_TS = "`@timestamp`"
_DAY = 86_400_000_000


#: pages up to this many rows are read in two steps (keys, then rows: `_page`)
PAGE_KEYS_MAX = 10_000


def _plist(values: Sequence[Any]) -> list[str | Compiled]:
    """`?, ?, ...` of these values (for an IN list)."""
    out: list[str | Compiled] = []
    for i, v in enumerate(values):
        out += [", " if i else "", _p(v)]
    return out


def to_datetime(us: int | None) -> datetime | None:
    """Int64 microseconds since the epoch as an aware UTC datetime."""
    return None if us is None else _EPOCH + timedelta(microseconds=int(us))


def _time_bounds(tr: TimeRange | None) -> list[Compiled]:
    """`@timestamp` within `tr` (start inclusive, end exclusive), one condition per bound."""
    out = []
    if tr is not None and tr.start is not None:
        out.append(_c(f"{_TS} >= ", _p(micros(tr.start))))
    if tr is not None and tr.end is not None:
        out.append(_c(f"{_TS} < ", _p(micros(tr.end))))
    return out


def _check(name: str) -> str:
    if name not in schema.BY_NAME:
        raise ValueError(f"unknown field {name!r}")
    return name


def _value(name: str, v: Any) -> Any:
    return to_datetime(v) if schema.BY_NAME[name].type == schema.TS else v


class ClickHouseReads:
    """Needs `engine` (an `Engine`), `db` and `dialect` (a `Dialect`)."""

    engine: Engine
    db: str
    dialect: Dialect

    # -- building blocks -------------------------------------------------
    @property
    def _src(self) -> str:
        return f"`{self.db}`.events FINAL"

    def _where(self, query: str, tr: TimeRange | None) -> Compiled:
        parts = [self.dialect.compile(query), *_time_bounds(tr)]
        out: list[str | Compiled] = []
        for i, part in enumerate(parts):
            out += [" AND " if i else "", "(", part, ")"]
        return _c(*out)

    def _rows(self, sql: Compiled, fields: Sequence[str] | None) -> pa.Table:
        """Run a row query selecting `_columns(fields)`; the result in ECS types."""
        return self._convert(self.engine.query(sql.sql, sql.params), fields)

    def _page(
        self, where: Compiled, tail: str, fields: Sequence[str] | None, limit: int
    ) -> pa.Table:
        """The rows of `SELECT ... WHERE where tail` (`tail`: ORDER BY and LIMIT) in two steps.

        First only the keys of the page (`_ts`, `_key`), reading just the columns
        the filter and the order need; then the page's rows by key, which the
        primary key narrows to a few granules. One step would make FINAL read
        every selected column of every part in range at once (on 18.x servers
        a read buffer per column and part: gigabytes over a month of parts).
        """
        cols, src = self._columns(fields), self._src
        if limit > PAGE_KEYS_MAX:
            return self._rows(_c(f"SELECT {cols} FROM {src} WHERE ", where, tail), fields)  # noqa: S608
        sql = _c(f"SELECT `_ts`, `_key` FROM {src} WHERE ", where, tail)  # noqa: S608
        keys = self.engine.query(sql.sql, sql.params)
        stamps, ids = keys.column("_ts").to_pylist(), keys.column("_key").to_pylist()
        if not stamps:
            return self._rows(Compiled(f"SELECT {cols} FROM {src} WHERE 0", []), fields)  # noqa: S608
        sql = _c(
            f"SELECT {cols}, `_ts`, `_key` FROM {src} WHERE `_ts` IN (",  # noqa: S608
            *_plist(sorted(set(stamps))),
            ") AND `_key` IN (",
            *_plist(sorted(set(ids))),
            ")",
        )
        table = self.engine.query(sql.sql, sql.params)
        at = {
            key: i
            for i, key in enumerate(
                zip(table.column("_ts").to_pylist(), table.column("_key").to_pylist(), strict=True)
            )
        }
        # a key gone in between (retention) is left out, not an error
        picked = [at[k] for k in zip(stamps, ids, strict=True) if k in at]
        return self._convert(table.take(picked), fields)

    def _convert(self, table: pa.Table, fields: Sequence[str] | None) -> pa.Table:
        """A result selecting `_columns(fields)` in the ECS names and types."""
        names = [_check(f) for f in fields] if fields else schema.NAMES
        arrays = []
        nulls = table.column("_list_nulls") if "_list_nulls" in table.column_names else None
        for name in names:
            typ = schema.BY_NAME[name].type
            col = table.column(storage_name(name))
            if typ == schema.TS:
                col = col.cast(pa.int64()).cast(typ)
            else:
                col = col.cast(typ)
            if typ == schema.STR_LIST and nulls is not None and table.num_rows:
                bit = pa.scalar(1 << _LISTS.index(name), pa.uint8())
                isnull = pc.not_equal(pc.bit_wise_and(nulls, bit), pa.scalar(0, pa.uint8()))
                col = pc.if_else(isnull, pa.scalar(None, typ), col)
            arrays.append(col)
        return pa.Table.from_arrays(
            arrays, schema=pa.schema([pa.field(n, schema.BY_NAME[n].type) for n in names])
        )

    @staticmethod
    def _columns(fields: Sequence[str] | None) -> str:
        names = [_check(f) for f in fields] if fields else schema.NAMES
        cols = list(dict.fromkeys(qi(n) for n in names))
        if any(n in _LISTS for n in names):
            cols.append("`_list_nulls`")
        return ", ".join(cols)

    # -- search ----------------------------------------------------------
    def search(
        self,
        query: str = "",
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
        limit: int = 100,
        order: str = "desc",
        offset: int = 0,
    ) -> pa.Table:
        """The newest (or oldest) `limit` matching events after `offset`; ties by `event.id`."""
        d = "ASC" if order == "asc" else "DESC"
        where = self._where(query, time_range)
        limit, offset = max(int(limit), 0), max(int(offset), 0)
        tail = f" ORDER BY {_TS} {d} NULLS LAST, `event.id` ASC NULLS LAST LIMIT {offset}, {limit}"
        return self._page(where, tail, fields, limit)

    def read_range(
        self, time_range: TimeRange, fields: Sequence[str] | None = None, query: str = ""
    ) -> pa.Table:
        """Every event of the time range matching `query` (only `fields`), oldest first."""
        sql = _c(
            f"SELECT {self._columns(fields)} FROM {self._src} WHERE ",  # noqa: S608
            self._where(query, time_range),
            f" ORDER BY {_TS} ASC NULLS LAST, `event.id` ASC NULLS LAST",
        )
        return self._rows(sql, fields)

    def count(
        self, query: str = "", time_range: TimeRange | None = None, limit: int | None = None
    ) -> int:
        """Matching events; with `limit`, min(count, limit) (the scan stops there)."""
        where = self._where(query, time_range)
        if limit is None:
            sql = _c(f"SELECT count() FROM {self._src} WHERE ", where)  # noqa: S608
        else:
            sql = _c(
                f"SELECT count() FROM (SELECT 1 FROM {self._src} WHERE ",  # noqa: S608
                where,
                f" LIMIT {max(int(limit), 0)})",
            )
        t = self.engine.query(sql.sql, sql.params)
        return int(t.column(0)[0].as_py())

    # -- aggregations ----------------------------------------------------
    def top(
        self, field: str, query: str = "", time_range: TimeRange | None = None, n: int = 10
    ) -> list[tuple[Any, int]]:
        """Top-N values of a field by event count; ties by value."""
        col = qi(_check(field))
        sql = _c(
            f"SELECT {col} AS v, count() AS n FROM {self._src} WHERE ",  # noqa: S608
            self._where(query, time_range),
            f" AND isNotNull({col}) GROUP BY v ORDER BY n DESC, v LIMIT {max(int(n), 0)}",
        )
        t = self.engine.query(sql.sql, sql.params)
        return [(_value(field, r["v"]), int(r["n"])) for r in t.to_pylist()]

    def top_many(
        self,
        fields: Sequence[str],
        query: str = "",
        time_range: TimeRange | None = None,
        n: int = 10,
    ) -> dict[str, list[tuple[Any, int]]]:
        """`top` of each field (one scan each: old servers have no GROUPING SETS)."""
        names = list(dict.fromkeys(fields))
        for name in names:
            _check(name)
        return {name: self.top(name, query, time_range, n) for name in names}

    def _bucket(self, interval_seconds: int) -> Compiled:
        """The start of the `interval_seconds` bucket of `@timestamp`, as DuckDB's
        `time_bucket` (origin 2000-01-03 UTC), in microseconds."""
        w = int(interval_seconds) * 1_000_000
        if w <= 0:
            raise ValueError("interval_seconds must be positive")
        # toInt64: old servers type a literal by its value (UInt32 for an hour's
        # microseconds) and the sum would wrap around in that type.
        return _c(
            f"({_TS} - modulo(modulo({_TS} - toInt64(",
            _p(_ORIGIN_US),
            "), toInt64(",
            _p(w),
            ")) + toInt64(",
            _p(w),
            "), toInt64(",
            _p(w),
            ")))",
        )

    def histogram(
        self, interval_seconds: int, query: str = "", time_range: TimeRange | None = None
    ) -> list[tuple[datetime, int]]:
        """Event counts per time bucket of `interval_seconds`."""
        sql = _c(
            "SELECT ",
            self._bucket(interval_seconds),
            f" AS b, count() AS n FROM {self._src} WHERE ",  # noqa: S608
            self._where(query, time_range),
            " GROUP BY b ORDER BY b",
        )
        t = self.engine.query(sql.sql, sql.params)
        return [(to_datetime(r["b"]), int(r["n"])) for r in t.to_pylist()]

    def histogram_by(
        self,
        interval_seconds: int,
        field: str,
        query: str = "",
        time_range: TimeRange | None = None,
        limit: int = 10,
    ) -> list[tuple[datetime, Any, int]]:
        """Counts per (bucket, value) for the `limit` most common values of `field`;
        other values and events without one count under None."""
        col = qi(_check(field))
        grouped = _c(
            "SELECT ",
            self._bucket(interval_seconds),
            f" AS b, {col} AS v, count() AS n FROM {self._src} WHERE ",  # noqa: S608
            self._where(query, time_range),
            " GROUP BY b, v",
        )
        # Two reads of the (small) grouped counts: old servers have no WITH subqueries.
        sql = _c(
            "SELECT b, if(v IN (SELECT v FROM (SELECT v, sum(n) AS s FROM (",
            grouped,
            f") WHERE isNotNull(v) GROUP BY v ORDER BY s DESC, v LIMIT {max(int(limit), 0)})), "
            "v, NULL) AS tv, sum(n) AS c FROM (",
            grouped,
            ") GROUP BY b, tv ORDER BY b, c DESC, tv",
        )
        t = self.engine.query(sql.sql, sql.params)
        return [(to_datetime(r["b"]), _value(field, r["tv"]), int(r["c"])) for r in t.to_pylist()]

    # -- entities --------------------------------------------------------
    def _entity_where(self, entity: str, tr: TimeRange | None) -> Compiled:
        ors = [_c(qi(f), " = ", _p(entity)) for f in schema.ENTITY_FIELDS]
        out: list[str | Compiled] = ["("]
        for i, o in enumerate(ors):
            out += [" OR " if i else "", o]
        out.append(")")
        for bound in _time_bounds(tr):
            out += [" AND ", bound]
        return _c(*out)

    def timeline(
        self,
        entity: str,
        time_range: TimeRange | None = None,
        limit: int = 1000,
        fields: Sequence[str] | None = None,
        order: str = "asc",
        datasets: Sequence[str] | None = None,
    ) -> pa.Table:
        """Events whose entity fields hold `entity`, oldest first (or newest);
        ties by `log.offset`; only of `datasets` if given ("unknown": none)."""
        d = "DESC" if order == "desc" else "ASC"
        where = self._entity_where(entity, time_range)
        if datasets is not None:
            if datasets:
                items = _plist([str(ds) for ds in datasets])
                where = _c(where, " AND ifNull(`event.dataset`, 'unknown') IN (", *items, ")")
            else:
                where = _c(where, " AND 0")
        limit = max(int(limit), 0)
        tail = f" ORDER BY {_TS} {d} NULLS LAST, `log.offset` {d} NULLS LAST LIMIT {limit}"
        return self._page(where, tail, fields, limit)

    def events_by_id(
        self,
        ids: Sequence[str],
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
    ) -> pa.Table:
        """The events with these ids, oldest first.

        As in the DuckDB store `time_range` only narrows what is read: whole UTC
        days (partitions) around it, not an exact filter.
        """
        ids = list(dict.fromkeys(str(i) for i in ids))
        if not ids:
            return self.search("", time_range, fields, limit=0)
        where = _c("`event.id` IN (", *_plist(ids), ")")
        if time_range is not None and time_range.start is not None:
            where = _c(where, " AND `_ts` >= ", _p(micros(time_range.start) // _DAY * _DAY))
        if time_range is not None and time_range.end is not None:
            where = _c(where, " AND `_ts` < ", _p((micros(time_range.end) // _DAY + 1) * _DAY))
        sql = _c(
            f"SELECT {self._columns(fields)} FROM {self._src} WHERE ",  # noqa: S608
            where,
            f" ORDER BY {_TS} ASC NULLS LAST, `event.id` ASC NULLS LAST",
        )
        return self._rows(sql, fields)

    def entity_summary(self, entity: str, time_range: TimeRange | None = None) -> EntitySummary:
        """One scan for counts per dataset, roles and enrichment; one more for intel hits."""
        e = _p(entity)
        geo = [
            _c(
                "any(multiIf(`source.ip` = ",
                e,
                f", {qi('source.' + col)}, `destination.ip` = ",
                e,
                f", {qi('destination.' + col)}, NULL))",
            )
            for col in _GEO.values()
        ]
        roles = []
        for names in _ROLES.values():
            ors: list[str | Compiled] = []
            for i, f in enumerate(names):
                ors += [" OR " if i else "", _c(qi(f), " = ", e)]
            roles.append(_c("countIf(ifNull(", *ors, ", 0))"))
        what: list[str | Compiled] = [
            "SELECT ifNull(`event.dataset`, 'unknown') AS ds, count() AS n, ",
            f"min({_TS}) AS first, max({_TS}) AS last",
        ]
        for i, x in enumerate([*geo, *roles]):
            what += [", ", x, f" AS x{i}"]
        sql = _c(
            *what,
            f" FROM {self._src} WHERE ",  # noqa: S608
            self._entity_where(entity, time_range),
            " GROUP BY ds ORDER BY n DESC, ds",
        )
        t = self.engine.query(sql.sql, sql.params)
        out = EntitySummary(entity)
        for row in t.to_pylist():
            r = list(row.values())
            geo, roles = r[4 : 4 + len(_GEO)], r[4 + len(_GEO) :]
            _add_summary_row(out, r[0], r[1], to_datetime(r[2]), to_datetime(r[3]), geo, roles)
        if out.total:
            out.intel = self._entity_intel(entity, time_range)
        return out

    def _entity_intel(self, entity: str, time_range: TimeRange | None) -> list[dict[str, Any]]:
        cols = ", ".join(qi(f) for f in _INTEL.values())
        sql = _c(
            f"SELECT {cols}, count() AS n, max({_TS}) AS last FROM {self._src} WHERE ",  # noqa: S608
            self._entity_where(entity, time_range),
            f" AND isNotNull(`threat.indicator.name`) GROUP BY {cols} ORDER BY n DESC LIMIT 50",
        )
        t = self.engine.query(sql.sql, sql.params)
        out = []
        for row in t.to_pylist():
            r = list(row.values())
            out.append(
                {
                    **dict(zip(_INTEL, r[: len(_INTEL)], strict=True)),
                    "events": int(r[-2]),
                    "last_seen": to_datetime(r[-1]),
                }
            )
        return out
