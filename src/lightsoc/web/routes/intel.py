"""/intel: threat-intel feeds with their recent hits, uploads, and the allow list.

Any role reads; an admin uploads and removes feeds and edits the trusted
clients/domains (the page's script calls the `/api/v1` endpoints of
`web.intel_api`, which also live in this router).
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures' `Depends(...)`, which name this function's locals.
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from lightsoc.store.state_intel import CONFIDENCES, IntelStore
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.intel_api import (
    HIT_WINDOWS,
    MAX_UPLOAD,
    Format,
    create_intel_api,
    feeds,
    hits,
    hits_query,
)
from lightsoc.web.security import Principal

NAV = NavItem(70, "/intel", "Intel", "viewer")
#: fields offered for a new allow-list entry (any schema field is accepted)
ALLOW_FIELDS = (
    "source.ip",
    "destination.ip",
    "client.ip",
    "dns.question.name",
    "url.domain",
    "destination.domain",
    "user.name",
    "host.name",
)
RECENT = 50


def epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    r.include_router(create_intel_api(ctx))

    @r.get("/intel", response_class=HTMLResponse, include_in_schema=False)
    def intel_page(
        request: Request,
        who: Annotated[Principal, Depends(ctx.security.page("viewer"))],
        since: Annotated[str, Query(pattern="^(24h|7d)$")] = "24h",
    ) -> HTMLResponse:
        sources, totals = feeds(ctx)
        for f in sources:
            f["loaded_at"] = epoch(f["loaded"])
            f["expires_at"] = epoch(f["expires"])
        recent = hits(ctx.events, since, None, RECENT)
        return ctx.render(
            request,
            "intel.html",
            who,
            feeds=sources,
            windows=HIT_WINDOWS,
            totals=totals,
            since=since,
            recent=recent,
            allow=IntelStore(ctx.state).allow_rows(),
            allow_fields=ALLOW_FIELDS,
            formats=Format.__args__,
            confidences=CONFIDENCES,
            max_upload_mb=MAX_UPLOAD >> 20,
            admin=who.can("admin"),
            epoch=epoch,
            hits_query=hits_query,
        )

    return r
