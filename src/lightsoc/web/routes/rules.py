"""/rules: the rules the server runs, their alert counts, a Sigma editor and simple rules.

The page renders the same listing `GET /api/v1/rules` returns; its script
calls the API (`web.rules_api`) to validate, test, save and switch rules.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures' `Depends(sec.page(...))`, which name this function's locals.
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from lightsoc import schema
from lightsoc.store.state_rules import MATCH_KINDS, SEVERITIES
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.rules_api import check_since, create_rules_router
from lightsoc.web.security import Principal

NAV = NavItem(60, "/rules", "Rules", "viewer")

EXAMPLE = """title: SQL Injection Probe In Query String
id: 00000000-0000-4000-8000-000000000001
status: experimental
logsource:
    category: webserver
detection:
    selection:
        cs-uri-query|contains:
            - 'union select'
            - 'union%20select'
            - "' or 1=1"
            - '%27%20or%201=1'
    condition: selection
level: high
"""


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    api = create_rules_router(ctx)
    r.include_router(api)
    listing = api.listing  # type: ignore[attr-defined]

    @r.get("/rules", response_class=HTMLResponse)
    def rules_page(
        request: Request,
        who: Annotated[Principal, Depends(ctx.security.page("viewer"))],
        since: str = "7d",
    ) -> HTMLResponse:
        check_since(since)
        data = listing(since)
        stream = [x for x in data["rules"] if x["kind"] != "simple"]
        simple = [x for x in data["rules"] if x["kind"] == "simple"]
        return ctx.render(
            request,
            "rules.html",
            who,
            since=since,
            rules=stream,
            simple=simple,
            failures=data["failures"],
            fields=[f for f in schema.NAMES if schema.POLARS_SCHEMA[f] == pl.Utf8],
            kinds=MATCH_KINDS,
            severities=SEVERITIES,
            example=EXAMPLE,
            is_admin=who.can("admin"),
            can_test=who.can("analyst"),
        )

    return r
