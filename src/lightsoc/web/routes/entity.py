"""/entity/{value}: everything about one IP, user, host or domain, and its API.

The summary (kind, first/last seen, counts per dataset, enrichment, intel
hits, triage score, alerts) comes from one grouped scan in the event store
(`EventStore.entity_summary`) and the alert store; the timeline merges the
entity's events (`EventStore.timeline`, newest first) with its alerts, a page
at a time. Entity values are attacker-controlled: they travel as query
parameters and are autoescaped on the page.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures' `Depends(sec....)`, which name this function's locals.
import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lightsoc.alerts.model import Alert, iso
from lightsoc.alerts.store import MAX_LIST
from lightsoc.output import jsonable
from lightsoc.store.base import EntitySummary, TimeRange
from lightsoc.timeutil import since_range
from lightsoc.web.api import json_response
from lightsoc.web.context import WebContext
from lightsoc.web.security import Principal

MAX_VALUE = 1000
MAX_TIMELINE = 1000
ALERTS_CHIP = "alerts"
SINCE_CHOICES = ("1h", "24h", "7d", "30d", "all")
#: what a timeline row shows of an event (the full event is one click away in search)
TIMELINE_FIELDS = [
    "@timestamp",
    "event.id",
    "event.dataset",
    "event.action",
    "event.outcome",
    "source.ip",
    "destination.ip",
    "destination.port",
    "user.name",
    "url.original",
    "dns.question.name",
    "rule.name",
    "threat.indicator.name",
    "message",
    "event.original",
]
SUMMARY_CHARS = 400


def entity_kind(value: str, summary: EntitySummary, alerts: list[Alert]) -> str:
    """ip, user, host or domain: an address parses; otherwise the alerts' entity type,
    then the fields the events hold it in."""
    try:
        ipaddress.ip_address(value)
        return "ip"
    except ValueError:
        pass
    if alerts:
        return alerts[0].entity_type
    roles = {k: n for k, n in summary.roles.items() if k != "ip" and n}
    if roles:
        return max(roles, key=lambda k: roles[k])
    return "domain" if "." in value and " " not in value else "user"


def address_scope(value: str) -> str | None:
    """private / public / loopback ... for an IP; None for anything else."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    for name in ("loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name
    return "public"


def _time_range(since: str, until: str | None = None) -> TimeRange:
    try:
        start = since_range(since).start
        end = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return TimeRange(start, end)


def _check_value(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_VALUE:
        raise HTTPException(400, f"an entity is 1 to {MAX_VALUE} characters")
    return value


def entity_data(ctx: WebContext, value: str, since: str) -> dict[str, Any]:
    """The entity summary as JSON-ready data (the API's answer and the page's values)."""
    tr = _time_range(since)
    summary = ctx.events.entity_summary(value, tr)
    alerts = ctx.alerts.find(entity=value, since=tr.start, limit=MAX_LIST)
    scores = ctx.alerts.entity_scores(1, entity_value=value)
    by_status: dict[str, int] = {}
    for a in alerts:
        by_status[a.status] = by_status.get(a.status, 0) + 1
    return {
        "entity": value,
        "kind": entity_kind(value, summary, alerts),
        "scope": address_scope(value),
        "since": since,
        "total": summary.total,
        "first_seen": jsonable(summary.first_seen),
        "last_seen": jsonable(summary.last_seen),
        "datasets": summary.datasets,
        "roles": summary.roles,
        "geo": summary.geo,
        "intel": [{k: jsonable(v) for k, v in hit.items()} for hit in summary.intel],
        "score": scores[0].as_dict() if scores else None,
        "alerts": {
            "total": len(alerts),
            "by_status": by_status,
            "items": [a.as_dict() for a in alerts[:100]],
        },
    }


def _summary_text(row: dict[str, Any]) -> str:
    text = row.get("message") or row.get("event.original") or ""
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS] + "…"


def timeline_page(
    ctx: WebContext,
    value: str,
    tr: TimeRange,
    datasets: list[str] | None,
    limit: int,
) -> dict[str, Any]:
    """One page of the merged timeline, newest first, ending before `tr.end`.

    A full page stops at its oldest timestamp, whose events are left to the
    next page (`next_until`), so events sharing a timestamp are never split
    across pages; alerts are placed at their first hit.
    """
    event_sets = None if datasets is None else [d for d in datasets if d != ALERTS_CHIP]
    with_alerts = datasets is None or ALERTS_CHIP in datasets
    rows: list[dict[str, Any]] = []
    if event_sets != []:
        table = ctx.events.timeline(
            value, tr, limit, TIMELINE_FIELDS, order="desc", datasets=event_sets
        )
        stamps: list[datetime] = table.column("@timestamp").to_pylist()
        rows = [
            {k: jsonable(v) for k, v in r.items() if v is not None and v != []}
            for r in table.to_pylist()
        ]
    else:
        stamps = []
    cut: datetime | None = None
    if rows and len(rows) >= limit:
        cut = stamps[-1]
        keep = [i for i, t in enumerate(stamps) if t != cut]
        if keep:  # else one timestamp fills the page: show it and go on below it
            rows = [rows[i] for i in keep]
            next_until = cut + timedelta(microseconds=1)
        else:
            next_until = cut
    items: list[dict[str, Any]] = [
        {"type": "event", "time": r["@timestamp"], "summary": _summary_text(r), "event": r}
        for r in rows
    ]
    if with_alerts:
        for a in ctx.alerts.find(entity=value, since=tr.start, limit=MAX_LIST):
            first = a.first_seen
            if (tr.end is not None and first >= tr.end) or (cut is not None and first <= cut):
                continue
            items.append({"type": "alert", "time": iso(first), "alert": a.as_dict()})
    items.sort(key=lambda i: i["time"], reverse=True)
    return {
        "entity": value,
        "items": items,
        "next_until": jsonable(next_until) if cut is not None else None,
    }


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    Reader = Annotated[Principal, Depends(ctx.security.require("viewer"))]
    Page = Annotated[Principal, Depends(ctx.security.page("viewer"))]

    @r.get("/api/v1/entities/{value:path}/timeline")
    def entity_timeline(
        value: str,
        _auth: Reader,
        since: str = "7d",
        until: str | None = None,
        datasets: Annotated[
            str | None, Query(max_length=4000, description="comma-separated; 'alerts' too")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_TIMELINE)] = 100,
    ) -> Response:
        """Events and alerts of the entity, newest first; page on with `until=next_until`."""
        value = _check_value(value)
        chosen = None if datasets is None else [d for d in datasets.split(",") if d]
        return json_response(timeline_page(ctx, value, _time_range(since, until), chosen, limit))

    @r.get("/api/v1/entities/{value:path}")
    def entity_summary(value: str, _auth: Reader, since: str = "7d") -> Response:
        """Kind, first/last seen, counts per dataset, enrichment, intel hits, score, alerts."""
        return json_response(entity_data(ctx, _check_value(value), since))

    @r.get("/entity", include_in_schema=False)
    def entity_search(who: Page, q: str = "") -> Response:
        """The search box: /entity?q=VALUE goes to /entity/VALUE."""
        from urllib.parse import quote

        value = q.strip()[:MAX_VALUE]
        return RedirectResponse(f"/entity/{quote(value, safe='')}" if value else "/alerts", 303)

    @r.get("/entity/{value:path}", include_in_schema=False)
    def entity_page(request: Request, value: str, who: Page, since: str = "7d") -> HTMLResponse:
        value = _check_value(value)
        if since not in SINCE_CHOICES:
            since = "7d"
        data = entity_data(ctx, value, since)
        return ctx.render(
            request, "entity.html", who, e=data, since=since, since_choices=SINCE_CHOICES
        )

    return r
