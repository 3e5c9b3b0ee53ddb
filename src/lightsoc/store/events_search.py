"""Search queries of the DuckDB event store: pages of matches, exports, counts.

A mixin of `DuckDBEventStore` (it uses the store's `_cur`, `_segments`,
`_events`, `_where`, `_select` and the entity mixin's `_rows_at`). A page is
read in two phases, as the timeline: the sort keys and row addresses of the
matches, newest segment first in widening steps, then the page's rows by
address with only the asked columns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from lightsoc.store import page_copies
from lightsoc.store.base import TimeRange
from lightsoc.store.events_entity import _KEYED_EVENTS, _read_in_steps, _select_list

#: a search with at most this many matches reads their sort keys from the page copies
FEW_MATCHES = 256
#: ... if at most this many of its segments lack a copy (the newest, not copied yet)
FEW_UNCOPIED = 2
#: a few-match search's total answers `count` of the same query and time range this
#: long (the API counts right after the page; a fixed `since` range differs each request)
TOTAL_TTL_SECONDS = 5.0
#: segments read by a search's first step (then 4x as many, and so on): the newest
#: segment alone usually holds a page of a common value
SEARCH_FIRST_SEGMENTS = 1


class SearchQueries:
    """Needs the store's `_cur`, `_segments`, `_events`, `_where`, `_select`, `_rows_at`."""

    def search(
        self,
        query: str = "",
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
        limit: int = 100,
        order: str = "desc",
        offset: int = 0,
    ) -> pa.Table:
        """The newest (or oldest) `limit` matching events, after skipping `offset`.

        Two phases, as the timeline. First only the sort keys and row addresses
        of the matches are read, segments newest first in widening steps: once
        `offset + limit` are found and no remaining segment can hold a newer
        event, the older segments are never read. Then the page's rows are
        fetched by address, only `fields`: selecting the columns in the first
        phase would decode them for every match of every step.
        """
        order = "asc" if order == "asc" else "desc"
        segments = self._segments(time_range, order)
        need = int(offset) + int(limit)
        where, params = self._where(query, time_range)
        keys = None
        if page_copies.covers(fields):
            found = self._few_keys([f for f, _, _ in segments], where, params)
            if found is not None:
                keys = _top_rows(found, order, need)
                self._note_total(query, time_range, found.num_rows)
        if keys is None:
            keys = _read_in_steps(
                segments,
                lambda files: self._search_keys(files, where, params, need, order),
                lambda found, part: _top_rows(pa.concat_tables([found, part]), order, need),
                need,
                order == "desc",
                SEARCH_FIRST_SEGMENTS,
                4,
            )
        page = None if keys is None else keys.slice(int(offset), int(limit))
        return self._rows_at(page, fields)

    def _note_total(self, query: str, tr: TimeRange | None, total: int) -> None:
        """Remember a search's exact total for `count` of the same request."""
        totals: dict[tuple[Any, ...], tuple[float, int]] = self.__dict__.setdefault(
            "_recent_totals", {}
        )
        now = time.monotonic()
        for key in [k for k, (at, _) in totals.items() if now - at > TOTAL_TTL_SECONDS]:
            totals.pop(key, None)
        if len(totals) < 256:
            totals[self._total_key(query, tr)] = (now, total)

    def _recent_total(self, query: str, tr: TimeRange | None) -> int | None:
        totals = self.__dict__.get("_recent_totals")
        if not totals:
            return None
        at, total = totals.get(self._total_key(query, tr), (0.0, None))
        return total if time.monotonic() - at <= TOTAL_TTL_SECONDS else None

    def _total_key(self, query: str, tr: TimeRange | None) -> tuple[Any, ...]:
        """The query, its range and the catalog's state: an append, a compaction or
        retention in between is a miss."""
        catalog = (
            self._cur()
            .execute("SELECT count(*), sum(rows), max(created) FROM lightsoc_segments")
            .fetchone()
        )
        return (query, None if tr is None else tr.start, None if tr is None else tr.end, catalog)

    def _few_keys(self, files: list[str], where: str, params: list[Any]) -> pa.Table | None:
        """The keys of every match when the query has at most FEW_MATCHES in all
        `files`, else None (the stepped path answers).

        A rare value's matches are spread over most row groups: reading their sort
        keys from Parquet decodes a chunk of `@timestamp` and `event.id` per match.
        Only the row addresses are read here (the scan stops past FEW_MATCHES), and
        the keys come from the page copies' batches.
        """
        if not files or sum(not page_copies.copy_path(f).exists() for f in files) > FEW_UNCOPIED:
            return None
        sql = (
            f"SELECT filename, file_row_number FROM {_KEYED_EVENTS} AS events "  # noqa: S608
            f"WHERE {where} LIMIT ?"
        )
        found = self._cur().sql(sql, params=[files, *params, FEW_MATCHES + 1]).to_arrow_table()
        if found.num_rows > FEW_MATCHES:
            return None
        pairs = list(
            zip(
                found.column("filename").to_pylist(),
                found.column("file_row_number").to_pylist(),
                strict=True,
            )
        )
        sort_keys = ["@timestamp", "event.id"]
        keys, missing = page_copies.take(pairs, sort_keys, self._fields_schema(sort_keys))
        if missing:  # segments without a copy yet (the newest, small ones)
            rows = self._rows_read(found.take(missing), _select_list(sort_keys))
            keys = pa.concat_tables([keys, rows])
        return keys

    def _search_keys(
        self, files: list[str], where: str, params: list[Any], limit: int, order: str
    ) -> pa.Table:
        """Sort keys and addresses of the first `limit` matches in `files`."""
        sql = (
            f'SELECT "@timestamp", "event.id", filename, file_row_number '  # noqa: S608
            f"FROM {_KEYED_EVENTS} AS events WHERE {where} "
            f'ORDER BY "@timestamp" {order.upper()}, "event.id" LIMIT ?'
        )
        return self._cur().sql(sql, params=[files, *params, int(limit)]).to_arrow_table()

    def _search_sql(
        self,
        query: str,
        tr: TimeRange | None,
        fields: Sequence[str] | None,
        limit: int,
        order: str,
        files: list[str] | None,
        offset: int = 0,
    ) -> tuple[str, list[Any]]:
        src, src_params = self._events(tr, files)
        where, params = self._where(query, tr)
        sql = (
            f"SELECT {_select_list(fields)} FROM {src} AS events WHERE {where} "  # noqa: S608
            f'ORDER BY "@timestamp" {order.upper()}, "event.id" LIMIT ? OFFSET ?'
        )
        return sql, [*src_params, *params, int(limit), int(offset)]

    def search_batches(
        self,
        query: str = "",
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
        limit: int = 100_000,
        order: str = "desc",
        batch_rows: int = 10_000,
    ) -> Iterator[pa.RecordBatch]:
        """The matching events in record batches, read as they are consumed.

        The query is compiled before the first batch (a bad query raises at
        once); its own cursor, so the stream survives other requests.
        """
        order = "asc" if order == "asc" else "desc"
        sql, params = self._search_sql(query, time_range, fields, limit, order, None)
        cur = self._cur()
        reader = cur.sql(sql, params=params).to_arrow_reader(batch_rows)
        return _batches(cur, reader)

    def read_range(
        self, time_range: TimeRange, fields: Sequence[str] | None = None, query: str = ""
    ) -> pa.Table:
        """Every event of the time range matching `query` (only `fields`), oldest first:
        for scheduled detection."""
        sql, params = self._select(
            _select_list(fields), query, time_range, 'ORDER BY "@timestamp", "event.id"'
        )
        return self._cur().sql(sql, params=params).to_arrow_table()

    def count(
        self, query: str = "", time_range: TimeRange | None = None, limit: int | None = None
    ) -> int:
        """Matching events; with `limit`, min(count, limit): the scan stops at `limit`."""
        recent = self._recent_total(query, time_range)  # the page's search just counted it
        if recent is not None:
            return recent if limit is None else min(recent, int(limit))
        whole = time_range is None or (time_range.start is None and time_range.end is None)
        if not query.strip() and whole:
            total = self._total()
            return total if limit is None else min(total, int(limit))
        if limit is None:
            sql, params = self._select("count(*)", query, time_range)
        else:  # LIMIT without ORDER BY: DuckDB stops reading once it has `limit` rows
            inner, params = self._select(
                "1", query, time_range, "LIMIT ?", tail_params=[int(limit)]
            )
            sql = f"SELECT count(*) FROM ({inner})"  # noqa: S608 - our own SQL
        return int(self._cur().execute(sql, params).fetchone()[0])

    def _total(self) -> int:
        return int(
            self._cur()
            .execute("SELECT coalesce(sum(rows), 0) FROM lightsoc_segments")
            .fetchone()[0]
        )


def _top_rows(table: pa.Table, order: str, n: int) -> pa.Table:
    """The first `n` rows in search order (as the SQL's ORDER BY: nulls last)."""
    keys = [
        ("@timestamp", "descending" if order == "desc" else "ascending", "at_end"),
        ("event.id", "ascending", "at_end"),
    ]
    return table.take(pc.sort_indices(table, sort_keys=keys)[:n])


def _batches(
    cur: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader
) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    finally:
        cur.close()
