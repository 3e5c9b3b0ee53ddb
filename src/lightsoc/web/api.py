"""REST API under /api/v1: search (and its export), timeline, aggregations, stats, OpenAPI.

Every endpoint but /health requires a principal (a bearer token or a
session; see `web.security`). The query language is compiled to
parameterised SQL by the store; a bad query is a 400 with the compiler's
message.
"""

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import pyarrow as pa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from lightsoc import __version__, schema
from lightsoc.client import merged_stats
from lightsoc.output import event_rows, jsonable
from lightsoc.store.base import TimeRange
from lightsoc.timeutil import since_range
from lightsoc.web.security import Principal, client_ip

if TYPE_CHECKING:
    from lightsoc.store.base import EventStore
    from lightsoc.web.context import WebContext

MAX_LIMIT = 10_000
MAX_OFFSET = 100_000  # deeper pages: narrow the query or export
EXPORT_MAX_ROWS = 100_000
TOTAL_CAP = 10_000  # a search's total is exact up to this many events, then "10,000+"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:  # noqa: ANN401 - a cell of any column type
    """A CSV cell; text a spreadsheet would run as a formula gets a leading `'`."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return jsonable(value)
    if isinstance(value, list):
        value = json.dumps(jsonable(value), ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def export_csv(batches: Iterator[pa.RecordBatch], names: list[str] | None) -> Iterator[str]:
    """A header row, then one row per event, a batch at a time."""
    columns = names or [f.name for f in schema.FIELDS]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    yield buf.getvalue()
    for batch in batches:
        buf.seek(0)
        buf.truncate()
        data = [batch.column(c).to_pylist() for c in columns]
        writer.writerows([csv_cell(v) for v in row] for row in zip(*data, strict=True))
        yield buf.getvalue()


def export_ndjson(batches: Iterator[pa.RecordBatch]) -> Iterator[str]:
    """One JSON object per line, without null fields."""
    for batch in batches:
        rows = event_rows(pa.Table.from_batches([batch]))
        yield "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def search_total(
    events: "EventStore", q: str, tr: TimeRange, rows: int, limit: int, offset: int
) -> tuple[int, bool]:
    """The total of a search page that holds `rows` events, and whether it is capped.

    A short page already tells the total (no second scan); otherwise the count
    stops at TOTAL_CAP (`total` is then a lower bound and `capped` is true).
    """
    if rows < limit and (rows > 0 or offset == 0):
        return offset + rows, False
    n = events.count(q, tr, limit=TOTAL_CAP + 1)
    if n > TOTAL_CAP:
        return max(TOTAL_CAP, offset + rows), True
    return n, False


def json_response(data: Any) -> Response:  # noqa: ANN401 - any JSON-ready value
    """`data` (JSON-ready: `event_rows`/`jsonable` values) as orjson bytes.

    Returned as is, large answers skip FastAPI's `jsonable_encoder`, which walks
    every value of every event again (longer than the query for a big timeline).
    """
    return Response(orjson.dumps(data), media_type="application/json")


def create_api_router(ctx: "WebContext", openapi: Callable[[], dict[str, Any]]) -> APIRouter:
    """Search, timeline, aggregations, stats and the OpenAPI spec; any role reads."""
    router = APIRouter(prefix="/api/v1")
    events = ctx.events
    Auth = Annotated[Principal, Depends(ctx.security.require("viewer"))]

    def time_range(since: str, until: str | None = None) -> TimeRange:
        try:
            tr = since_range(since)
            end = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        return TimeRange(tr.start, end)

    def field_list(fields: str | None) -> list[str] | None:
        if not fields:
            return None
        names = [f.strip() for f in fields.split(",") if f.strip()]
        unknown = [f for f in names if f not in schema.BY_NAME]
        if unknown:
            raise HTTPException(400, f"unknown field(s): {', '.join(unknown)}")
        return names

    @router.get("/openapi.json", include_in_schema=False)
    def openapi_spec(_auth: Auth) -> dict[str, Any]:
        return openapi()

    @router.get("/me")
    def me(who: Auth) -> dict[str, Any]:
        """Who is asking; with a session also its CSRF token (for scripts of the UI)."""
        return {
            "name": who.name,
            "role": who.role,
            "locale": who.locale,
            "via": who.via,
            "token": who.token_name,
            "csrf": who.csrf,
        }

    @router.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @router.get("/search")
    def search(
        _auth: Auth,
        q: str = "",
        since: str = "24h",
        until: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        fields: str | None = None,
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Response:
        tr = time_range(since, until)
        table = events.search(q, tr, field_list(fields), limit, order, offset)
        total, capped = search_total(events, q, tr, table.num_rows, limit, offset)
        return json_response(
            {
                "total": total,
                "total_capped": capped,
                "offset": offset,
                "events": event_rows(table),
            }
        )

    @router.get("/search/export")
    def search_export(
        request: Request,
        who: Auth,
        q: str = "",
        since: str = "24h",
        until: str | None = None,
        fields: str | None = None,
        format: Annotated[str, Query(pattern="^(csv|ndjson)$")] = "csv",  # noqa: A002
        limit: Annotated[int, Query(ge=1, le=EXPORT_MAX_ROWS)] = EXPORT_MAX_ROWS,
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    ) -> StreamingResponse:
        """Matching events as a CSV or NDJSON download, streamed, at most EXPORT_MAX_ROWS."""
        names = field_list(fields)
        # compiles the query first: a bad query is a 400, not a broken download
        batches = events.search_batches(q, time_range(since, until), names, limit, order)
        ctx.audit.record(
            who.actor, "search_export", q[:500], client_ip=client_ip(request), format=format
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        body = export_csv(batches, names) if format == "csv" else export_ndjson(batches)
        return StreamingResponse(
            body,
            media_type="text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson",
            headers={
                "Content-Disposition": f'attachment; filename="lightsoc-search-{stamp}.{format}"'
            },
        )

    @router.get("/timeline/{entity:path}")
    def timeline(
        entity: str,
        _auth: Auth,
        since: str = "7d",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
    ) -> Response:
        table = events.timeline(entity, time_range(since), limit)
        return json_response({"entity": entity, "events": event_rows(table)})

    @router.get("/aggregate/top")
    def top(
        _auth: Auth,
        field: str,
        q: str = "",
        since: str = "24h",
        n: Annotated[int, Query(ge=1, le=1000)] = 10,
    ) -> dict[str, Any]:
        if field not in schema.BY_NAME:
            raise HTTPException(400, f"unknown field {field!r}")
        rows = events.top(field, q, time_range(since), n)
        return {"field": field, "buckets": [{"value": jsonable(v), "count": c} for v, c in rows]}

    @router.get("/aggregate/histogram")
    def histogram(
        _auth: Auth,
        interval: Annotated[int, Query(ge=1)] = 3600,
        q: str = "",
        since: str = "24h",
    ) -> dict[str, Any]:
        rows = events.histogram(interval, q, time_range(since))
        return {
            "interval": interval,
            "buckets": [{"time": jsonable(t), "count": c} for t, c in rows],
        }

    @router.get("/stats")
    def stats(_auth: Auth) -> dict[str, Any]:
        return merged_stats(events, ctx.live_metrics() if ctx.live_metrics else None)

    return router
