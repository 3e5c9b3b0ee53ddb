"""/search: the query box, histogram, results and saved searches; /api/v1/saved-searches.

The page is a shell rendered here (query, time range, columns, saved
searches, a bad query's message); `static/search.js` fetches the histogram
and the rows from /api/v1 and builds the table with textContent only.
Everything that defines a search lives in the URL, so it can be bookmarked.

Saved searches: anybody who can search saves their own (a private saved
search changes nothing another user sees); `shared` ones are listed for all,
so sharing needs the analyst role. The owner or an admin deletes.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures' `Depends(sec.require(...))`, which name this function's locals.
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from lightsoc import schema
from lightsoc.store.query import QueryError, compile_query
from lightsoc.store.state_searches import SavedSearches, SavedSearchLimitError
from lightsoc.timeutil import parse_duration
from lightsoc.web.api import MAX_OFFSET
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.security import Principal, RowId, client_ip

NAV = NavItem(20, "/search", "Search", "viewer")

DEFAULT_FIELDS = list(schema.SEARCH_PAGE_FIELDS)
PAGE_ROWS = 100
MAX_QUERY = 4000
MAX_FIELDS = 40
#: histogram bucket sizes (seconds); the smallest giving at most MAX_BARS bars wins
STEPS = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400, 604800]
MAX_BARS = 80
SINCE_CHOICES = ("15m", "1h", "24h", "7d", "30d", "all")


def bucket_seconds(span_seconds: float) -> int:
    """A round histogram interval for a time span (about MAX_BARS bars at most)."""
    for step in STEPS:
        if span_seconds / step <= MAX_BARS:
            return step
    return int(span_seconds // MAX_BARS) + 1


def parse_fields(text: str | None) -> tuple[list[str], list[str]]:
    """(known fields in order without duplicates, unknown names) of a `fields=` value."""
    if not text:
        return list(DEFAULT_FIELDS), []
    known: list[str] = []
    unknown: list[str] = []
    for name in (f.strip() for f in text.split(",")):
        if not name:
            continue
        target = known if name in schema.BY_NAME else unknown
        if name not in target:
            target.append(name)
    return known[:MAX_FIELDS] or list(DEFAULT_FIELDS), unknown


class SavedSearchIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    query: str = Field(default="", max_length=MAX_QUERY)
    since: str = Field(default="24h", max_length=20)
    fields: str = Field(default="", max_length=2000)
    shared: bool = False


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    sec = ctx.security
    saved = SavedSearches(ctx.state)
    Page = Annotated[Principal, Depends(sec.page("viewer"))]
    Auth = Annotated[Principal, Depends(sec.require("viewer"))]

    def histogram_interval(since: str) -> int:
        span = parse_duration(since)
        if span is not None:
            return bucket_seconds(span.total_seconds())
        # "all": the span of the stored events (two newest/oldest-first lookups)
        ends = [ctx.events.search("", None, ["@timestamp"], 1, order) for order in ("asc", "desc")]
        if any(t.num_rows == 0 for t in ends):
            return 3600
        first, last = (t.column("@timestamp")[0].as_py() for t in ends)
        return bucket_seconds(max((last - first).total_seconds(), 1.0))

    @r.get("/search", include_in_schema=False)
    def search_page(
        request: Request,
        who: Page,
        q: Annotated[str, Query(max_length=MAX_QUERY)] = "",
        since: Annotated[str, Query(max_length=20)] = "24h",
        fields: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> Response:
        error = None
        try:
            compile_query(q)
        except QueryError as exc:
            error = str(exc)
        try:
            interval = histogram_interval(since)
        except ValueError as exc:
            error, since, interval = str(exc), "24h", 1800
        columns, unknown = parse_fields(fields)
        if unknown and error is None:
            error = f"unknown field(s): {', '.join(unknown)}"
        fields_param = "" if columns == DEFAULT_FIELDS else ",".join(columns)
        base = {"q": q, "since": since} | ({"fields": fields_param} if fields_param else {})
        export = {
            fmt: "/api/v1/search/export?" + urlencode(base | {"format": fmt})
            for fmt in ("csv", "ndjson")
        }
        mine = saved.list(who.name)
        return ctx.render(
            request,
            "search.html",
            who,
            q=q,
            since=since,
            since_choices=SINCE_CHOICES,
            columns=columns,
            fields_param=fields_param,
            default_fields=",".join(DEFAULT_FIELDS),
            all_fields=[f.name for f in schema.FIELDS],
            interval=interval,
            page_rows=PAGE_ROWS,
            error=error,
            export=export,
            saved=[
                (
                    s,
                    "/search?"
                    + urlencode(
                        {"q": s.query, "since": s.since}
                        | ({"fields": s.fields} if s.fields else {})
                    ),
                )
                for s in mine
            ],
        )

    @r.get("/api/v1/saved-searches")
    def list_saved(
        who: Auth,
        limit: Annotated[int, Query(ge=1, le=500)] = 200,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """The caller's saved searches and everybody's shared ones, by name."""
        items = saved.list(who.name, limit, offset)
        return {
            "searches": [
                s.as_dict() | {"can_delete": s.owner == who.name or who.can("admin")} for s in items
            ],
            "limit": limit,
            "offset": offset,
        }

    @r.post("/api/v1/saved-searches", status_code=201)
    def create_saved(body: SavedSearchIn, request: Request, who: Auth) -> dict[str, Any]:
        """Save a search; any role saves its own, sharing it needs the analyst role."""
        if body.shared and not who.can("analyst"):
            raise HTTPException(403, "sharing a saved search needs the analyst role")
        compile_query(body.query)  # a bad query is a 400 with the compiler's message
        try:
            parse_duration(body.since)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        columns, unknown = parse_fields(body.fields)
        if unknown:
            raise HTTPException(400, f"unknown field(s): {', '.join(unknown)}")
        fields = "" if not body.fields.strip() or columns == DEFAULT_FIELDS else ",".join(columns)
        try:
            item = saved.create(
                who.name, body.name.strip() or "-", body.query, body.since, fields, body.shared
            )
        except SavedSearchLimitError as exc:
            raise HTTPException(409, str(exc)) from None
        ctx.audit.record(
            who.actor,
            "saved_search_create",
            str(item.id),
            client_ip=client_ip(request),
            shared=item.shared,
        )
        return item.as_dict() | {"can_delete": True}

    @r.delete("/api/v1/saved-searches/{search_id}", status_code=204)
    def delete_saved(search_id: RowId, request: Request, who: Auth) -> Response:
        """Delete a saved search: its owner or an admin."""
        item = saved.get(search_id)
        if item is None or (item.owner != who.name and not item.shared and not who.can("admin")):
            raise HTTPException(404, "no such saved search")
        if item.owner != who.name and not who.can("admin"):
            raise HTTPException(403, "only its owner or an admin deletes a saved search")
        saved.delete(search_id)
        ctx.audit.record(
            who.actor,
            "saved_search_delete",
            str(search_id),
            client_ip=client_ip(request),
            owner=item.owner,
        )
        return Response(status_code=204)

    return r
