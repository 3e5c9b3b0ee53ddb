"""/alerts (the triage list) and /alerts/{id} (one alert with its events and history).

Filters live in the query string so a filtered list can be bookmarked. Any
role reads; the bulk actions and the triage form are shown to analysts and
admins only, and the API (`web.alerts`) refuses them to viewers anyway.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures' `Depends(sec.page(...))`, which name this function's locals.
from typing import Annotated, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from lightsoc.alerts.model import SEVERITIES, STATUSES
from lightsoc.alerts.store import AlertNotFoundError
from lightsoc.store.state_alerts import alerts as alerts_table
from lightsoc.timeutil import since_range
from lightsoc.web.alerts import alert_events
from lightsoc.web.api import MAX_OFFSET
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.security import Principal, RowId

NAV = NavItem(30, "/alerts", "Alerts", "viewer")

PAGE_SIZE = 50
SINCE_CHOICES = ("1h", "24h", "7d", "30d", "all")
#: the status filter's choices: one status, or the two still being worked on
STATUS_CHOICES = ("active", *STATUSES, "any")
MAX_RULES = 500


def _rules(ctx: WebContext) -> list[tuple[str, str]]:
    """(rule id, rule name) of every rule that has raised an alert, for the filter."""
    q = (
        sa.select(alerts_table.c.rule_id, sa.func.max(alerts_table.c.rule_name))
        .group_by(alerts_table.c.rule_id)
        .order_by(sa.func.max(alerts_table.c.rule_name))
        .limit(MAX_RULES)
    )
    with ctx.alerts.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(q)]


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    Page = Annotated[Principal, Depends(ctx.security.page("viewer"))]

    @r.get("/alerts")
    def alerts_page(
        request: Request,
        who: Page,
        severity: str = "",
        status: str = "active",
        rule: Annotated[str, Query(max_length=200)] = "",
        entity: Annotated[str, Query(max_length=1000)] = "",
        since: str = "24h",
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> HTMLResponse:
        severity = severity if severity in SEVERITIES else ""
        status = status if status in STATUS_CHOICES else "active"
        since = since if since in SINCE_CHOICES else "24h"
        statuses = {"active": ["open", "acknowledged"], "any": None}.get(status, [status])
        filters: dict[str, Any] = {
            "since": since_range(since).start,
            "statuses": statuses,
            "min_severity": severity or None,
            "entity": entity.strip() or None,
            "rule_id": rule or None,
        }
        total = ctx.alerts.count(**filters)
        rows = ctx.alerts.find(**filters, limit=PAGE_SIZE, offset=offset)
        query = {"severity": severity, "status": status, "rule": rule, "entity": entity}
        base = "/alerts?" + urlencode({**{k: v for k, v in query.items() if v}, "since": since})
        return ctx.render(
            request,
            "alerts.html",
            who,
            alerts=rows,
            total=total,
            offset=offset,
            limit=PAGE_SIZE,
            base=base,
            f={**query, "since": since},
            severities=SEVERITIES,
            status_choices=STATUS_CHOICES,
            since_choices=SINCE_CHOICES,
            rules=_rules(ctx),
            can_triage=who.can("analyst"),
        )

    @r.get("/alerts/{alert_id}")
    def alert_page(request: Request, alert_id: RowId, who: Page) -> HTMLResponse:
        try:
            alert = ctx.alerts.get(alert_id)
        except AlertNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        scores = ctx.alerts.entity_scores(1, entity_value=alert.entity_value)
        return ctx.render(
            request,
            "alert.html",
            who,
            a=alert,
            history=ctx.alerts.history(alert_id),
            events=alert_events(ctx, alert),
            score=scores[0] if scores else None,
            statuses=STATUSES,
            can_triage=who.can("analyst"),
        )

    return r
