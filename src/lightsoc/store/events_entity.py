"""Entity queries of the DuckDB event store: timeline, events by id, entity summary.

A mixin of `DuckDBEventStore` (it uses the store's `_cur` and `_events`): what
one IP, user, host or domain did, for the entity page and `lightsoc timeline`.
Column names come from the schema only; values travel as parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from lightsoc import schema
from lightsoc.store import page_copies
from lightsoc.store.base import EntitySummary, TimeRange
from lightsoc.store.query import quote_ident


class EntityQueries:
    """Needs `_cur()` (a cursor) and `_events(time_range)` (the events source SQL)."""

    def timeline(
        self,
        entity: str,
        time_range: TimeRange | None = None,
        limit: int = 1000,
        fields: Sequence[str] | None = None,
        order: str = "asc",
        datasets: Sequence[str] | None = None,
    ) -> pa.Table:
        """Every event whose entity fields hold `entity`, oldest first (or newest).

        Segments are read in that order a few at a time (`_segments`), each
        batch's first `limit` matches merged with the ones so far; once `limit`
        are found and no remaining segment can hold an earlier (later) event,
        the rest are never read. Only the keys of the matches are read then
        (file, row, time, offset): the filter is an OR over several columns,
        which DuckDB cannot push into the Parquet scan, so selecting the wanted
        columns there would decode them for every row. The `limit` chosen rows
        are then fetched by their row numbers.
        """
        where, params = _entity_where(entity, time_range)
        if datasets is not None:
            where += " AND coalesce(\"event.dataset\", 'unknown') IN (SELECT unnest(?))"
            params.append(list(datasets))
        desc = order == "desc"
        direction = "DESC" if desc else "ASC"
        sort = [(k, "descending" if desc else "ascending") for k in _TIMELINE_KEYS]
        sql = (
            f'SELECT "@timestamp", "log.offset", filename, file_row_number '  # noqa: S608
            f"FROM {_KEYED_EVENTS} AS events WHERE {where} "
            f'ORDER BY "@timestamp" {direction}, "log.offset" {direction} LIMIT ?'
        )

        def read(files: list[str]) -> pa.Table:
            return self._cur().sql(sql, params=[files, *params, int(limit)]).to_arrow_table()

        def merge(found: pa.Table, batch: pa.Table) -> pa.Table:
            # A stable sort keeps each batch's own order among full ties, as one query would.
            return pa.concat_tables([found, batch]).sort_by(sort).slice(0, limit)

        segments = self._segments(time_range, "desc" if desc else "asc")
        found = _read_in_steps(segments, read, merge, limit, desc, _TIMELINE_FIRST, 2)
        return self._rows_at(found, fields)

    def _rows_at(self, keys: pa.Table | None, fields: Sequence[str] | None) -> pa.Table:
        """The events at `keys` (filename, file_row_number), in that order, only `fields`."""
        what = _select_list(fields) if fields else "* EXCLUDE (filename, file_row_number)"
        if keys is None or keys.num_rows == 0:
            return pa.Table.from_batches([], self._fields_schema(fields))
        names = keys.column("filename").to_pylist()
        numbers = keys.column("file_row_number").to_pylist()
        pairs = list(zip(names, numbers, strict=True))
        if page_copies.covers(fields):
            schema = self._fields_schema(fields)
            found, missing = page_copies.take(pairs, fields, schema)  # type: ignore[arg-type]
            if missing:
                found = pa.concat_tables([found, self._rows_read(keys.take(missing), what)])
            return _in_order(found, pairs)
        return _in_order(self._rows_read(keys, what), pairs)

    def _fields_schema(self, fields: Sequence[str] | None) -> pa.Schema:
        """The Arrow schema the Parquet path returns for `fields` (page copies are cast to it)."""
        sql = f"SELECT {_select_list(fields)} FROM events_template WHERE FALSE"  # noqa: S608
        return self._cur().sql(sql).to_arrow_table().schema

    def _rows_read(self, keys: pa.Table, what: str) -> pa.Table:
        """The rows at `keys` from the segments' Parquet, with `filename` and `file_row_number`
        (in no particular order)."""
        names = keys.column("filename").to_pylist()
        numbers = keys.column("file_row_number").to_pylist()
        files = sorted(set(names))
        # One-column filters DuckDB pushes into the scan; the times skip row groups
        # (files are written in time order). They also let in a row of another
        # key's file, number or time: dropped at the end.
        sql = (
            f"SELECT {what}, filename, file_row_number FROM {_KEYED_EVENTS} AS events "  # noqa: S608
            "WHERE filename = ANY(?) AND file_row_number = ANY(?)"
        )
        params: list[Any] = [files, files, sorted(set(numbers))]
        if "@timestamp" in keys.column_names and keys.column("@timestamp").null_count == 0:
            sql += ' AND "@timestamp" = ANY(?)'
            params.append(sorted(set(keys.column("@timestamp").to_pylist())))
        table = self._cur().sql(sql, params=params).to_arrow_table()
        wanted = set(zip(names, numbers, strict=True))
        exact = [
            key in wanted
            for key in zip(
                table.column("filename").to_pylist(),
                table.column("file_row_number").to_pylist(),
                strict=True,
            )
        ]
        return table.filter(pa.array(exact, pa.bool_()))

    def events_by_id(
        self,
        ids: Sequence[str],
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
    ) -> pa.Table:
        """The events with these ids, oldest first (segments pruned by `time_range`)."""
        src, src_params = self._events(time_range)
        sql = (
            f"SELECT {_select_list(fields)} FROM {src} AS events "  # noqa: S608
            'WHERE "event.id" IN (SELECT unnest(?)) ORDER BY "@timestamp", "event.id"'
        )
        return self._cur().sql(sql, params=[*src_params, list(ids)]).to_arrow_table()

    def entity_summary(self, entity: str, time_range: TimeRange | None = None) -> EntitySummary:
        """One scan for counts per dataset, roles and enrichment; one more for intel hits."""
        src, src_params = self._events(time_range)
        where, params = _entity_where(entity, time_range)
        # Enrichment of whichever side (source/destination) the entity was on.
        side = {
            key: (
                f'CASE WHEN "source.ip" = $e THEN "source.{col}" '
                f'WHEN "destination.ip" = $e THEN "destination.{col}" END'
            )
            for key, col in _GEO.items()
        }
        roles = {
            role: " OR ".join(f"{_field(f)} = $e" for f in names) for role, names in _ROLES.items()
        }
        sql = (
            "SELECT coalesce(\"event.dataset\", 'unknown') AS ds, count(*), "  # noqa: S608
            'min("@timestamp"), max("@timestamp"), '
            + ", ".join(f"any_value({expr})" for expr in side.values())
            + ", "
            + ", ".join(f"count_if(coalesce({expr}, false))" for expr in roles.values())
            + f" FROM {src} AS events WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 1"
        )
        # DuckDB takes either `?` or `$name` placeholders in one statement, not both.
        sql, named = _named(sql, [*src_params, *params], entity)
        rows = self._cur().execute(sql, named).fetchall()
        out = EntitySummary(entity)
        for r in rows:
            _add_summary_row(out, r[0], r[1], r[2], r[3], r[4 : 4 + len(side)], r[4 + len(side) :])
        if out.total:
            out.intel = self._entity_intel(entity, time_range)
        return out

    def _entity_intel(self, entity: str, time_range: TimeRange | None) -> list[dict[str, Any]]:
        src, src_params = self._events(time_range)
        where, params = _entity_where(entity, time_range)
        cols = [_field(f) for f in _INTEL.values()]
        sql = (
            f'SELECT {", ".join(cols)}, count(*), max("@timestamp") '  # noqa: S608
            f'FROM {src} AS events WHERE {where} AND "threat.indicator.name" IS NOT NULL '
            "GROUP BY ALL ORDER BY count(*) DESC LIMIT 50"
        )
        rows = self._cur().execute(sql, [*src_params, *params]).fetchall()
        return [
            {
                **dict(zip(_INTEL, r[: len(_INTEL)], strict=True)),
                "events": int(r[-2]),
                "last_seen": r[-1],
            }
            for r in rows
        ]


#: the timeline's order, the same both ways (ties on the time by the offset in the log)
_TIMELINE_KEYS = ("@timestamp", "log.offset")
#: segments read by the timeline's first query; each next one reads twice as many
_TIMELINE_FIRST = 1
#: the events of the segment files `?` (as `_events`), with each row's file and number
_KEYED_EVENTS = (
    "(SELECT * FROM events_template UNION ALL BY NAME "
    "SELECT * FROM read_parquet(?, union_by_name=true, filename=true, file_row_number=true))"
)


def _in_order(table: pa.Table, pairs: list[tuple[str, int]]) -> pa.Table:
    """`table`'s rows in the order of `pairs` (filename, row number), without those columns."""
    at = {
        key: i
        for i, key in enumerate(
            zip(
                table.column("filename").to_pylist(),
                table.column("file_row_number").to_pylist(),
                strict=True,
            )
        )
    }
    picked = table.take([at[key] for key in pairs])
    return picked.drop_columns(["filename", "file_row_number"])


def _timeline_complete(found: pa.Table, limit: int, nxt: tuple[Any, Any, Any], desc: bool) -> bool:
    """Whether `found` is final: `limit` rows, and the next segment (so every
    later one, in `_segments` order) only holds events after its last (before)."""
    if found.num_rows < limit:
        return False
    edge = found.column("@timestamp")[-1].as_py()
    bound = nxt[2] if desc else nxt[1]
    if edge is None or bound is None:
        return False
    return edge > bound if desc else edge < bound


def _read_in_steps(
    segments: Sequence[tuple[str, Any, Any]],
    read: Callable[[list[str]], pa.Table],
    merge: Callable[[pa.Table, pa.Table], pa.Table],
    limit: int,
    desc: bool,
    first: int,
    growth: int,
) -> pa.Table | None:
    """The first `limit` keys over `segments` (in `_segments` order), read in widening steps.

    `read(files)` gives the first `limit` matches in some files; `merge(found, part)`
    the first `limit` of both. Steps read `first` segments, then `growth` times as
    many each; they stop once `_timeline_complete` says no later segment can change
    the result. None if there is no segment.
    """
    found: pa.Table | None = None
    done, take = 0, first
    while done < len(segments):
        files = [f for f, _, _ in segments[done : done + take]]
        part = read(files)
        found = part if found is None else merge(found, part)
        done += len(files)
        if done < len(segments) and _timeline_complete(found, limit, segments[done], desc):
            break
        take *= growth
    return found


_GEO = {
    "country": "geo.country_iso_code",
    "city": "geo.city_name",
    "as_number": "as.number",
    "as_org": "as.organization.name",
    "zone": "zone",
}
_ROLES = {
    "ip": ("source.ip", "destination.ip"),
    "user": ("user.name", "user.target.name"),
    "host": ("host.name",),
    "domain": (
        "source.domain",
        "destination.domain",
        "url.domain",
        "dns.question.name",
        "dns.question.registered_domain",
    ),
}
_INTEL = {
    "indicator": "threat.indicator.name",
    "type": "threat.indicator.type",
    "provider": "threat.indicator.provider",
    "feed": "threat.feed.name",
    "field": "threat.enrichments.matched.field",
}


def _add_summary_row(
    out: EntitySummary,
    dataset: str,
    n: int,
    first: Any,
    last: Any,
    geo: Sequence[Any],
    roles: Sequence[int],
) -> None:
    """Fold one dataset's row of an entity summary into `out`: `geo` values in
    `_GEO` order (the first non-null of each wins), `roles` counts in `_ROLES` order."""
    out.datasets[dataset] = int(n)
    out.total += int(n)
    if first is not None:
        out.first_seen = first if out.first_seen is None else min(out.first_seen, first)
    if last is not None:
        out.last_seen = last if out.last_seen is None else max(out.last_seen, last)
    for key, value in zip(_GEO, geo, strict=True):
        if value is not None and key not in out.geo:
            out.geo[key] = value
    for role, count in zip(_ROLES, roles, strict=True):
        out.roles[role] = out.roles.get(role, 0) + int(count)


def _entity_where(entity: str, tr: TimeRange | None) -> tuple[str, list[Any]]:
    """Events whose entity fields (`schema.ENTITY_FIELDS`) hold `entity`, in `tr`."""
    ors = " OR ".join(f"{_field(f)} = ?" for f in schema.ENTITY_FIELDS)
    params: list[Any] = [entity] * len(schema.ENTITY_FIELDS)
    where = [f"({ors})"]
    if tr is not None and tr.start is not None:
        where.append('"@timestamp" >= ?')
        params.append(tr.start)
    if tr is not None and tr.end is not None:
        where.append('"@timestamp" < ?')
        params.append(tr.end)
    return " AND ".join(where), params


def _named(sql: str, params: list[Any], entity: str) -> tuple[str, dict[str, Any]]:
    """`?` placeholders renumbered as `$p0, $p1...` beside `$e` (the entity)."""
    parts = sql.split("?")
    out = parts[0]
    for i, part in enumerate(parts[1:]):
        out += f"$p{i}{part}"
    named = {f"p{i}": v for i, v in enumerate(params)}
    named["e"] = entity
    return out, named


def _field(name: str) -> str:
    if name not in schema.BY_NAME:
        raise ValueError(f"unknown field {name!r}")
    return quote_ident(name)


def _select_list(fields: Sequence[str] | None) -> str:
    if not fields:
        return "*"
    return ", ".join(_field(f) for f in fields)
