"""The dashboard at /: rates, events by dataset and alerts by severity over time,
top talkers, sources health; `GET /api/v1/dashboard` gives all of it in one call.

The aggregation runs in the stores: one DuckDB query for every dataset's
series, one for every top-N list (both mostly from per-segment rollups, see
`lightsoc.store.rollups`), one SQL query for the alerts. The page's script
fetches the API again every 30 s while the tab is visible; the answer for a
range is kept `CACHE_SECONDS`, so open browsers share one computation.
"""

# No `from __future__ import annotations`: FastAPI evaluates the route signatures.
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from lightsoc.output import jsonable
from lightsoc.timeutil import parse_duration, since_range
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.routes.sources import Rates, quote_value, source_health
from lightsoc.web.security import Principal

NAV = NavItem(10, "/", "Dashboard")

#: top-N lists: field -> how a value links ("entity": /entity/{value}, else a search)
TOP_FIELDS = {
    "source.ip": "entity",
    "source.geo.country_iso_code": "search",
    "dns.question.registered_domain": "entity",
    "url.domain": "entity",
    "url.path": "search",
    "user.name": "entity",
}
TOP_N = 10
MAX_DATASETS = 10  # more are summed as "other"
OTHER = "other"
#: bucket sizes to choose from; a range gets the smallest giving <= ~100 buckets
STEPS = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400]
MAX_BUCKETS = 100
RANGES = ["15m", "1h", "24h", "7d", "30d", "all"]
#: how long an answer is reused for the same `since` (the page polls every 30 s)
CACHE_SECONDS = 10.0
CACHE_KEYS = 32  # distinct `since` values kept at most


def interval_for(seconds: float | None) -> int:
    """1 min for 15m and 1h, 15 min for 24h, 3 h for 7d, 12 h for 30d, 1 d for all."""
    if seconds is None:
        return 86400
    return next((s for s in STEPS if seconds / s <= MAX_BUCKETS), STEPS[-1])


def _ms(t: datetime | int) -> int:
    return int(t * 1000) if isinstance(t, int) else int(t.timestamp() * 1000)


def _filled(
    points: dict[int, int], start_ms: int | None, end_ms: int, step_ms: int
) -> list[list[int]]:
    """[[t_ms, n], ...] for every bucket of the range (zeros where nothing), so
    stacked series line up."""
    if not points and start_ms is None:
        return []
    first = min([*points, *([start_ms // step_ms * step_ms] if start_ms is not None else [])])
    return [[t, points.get(t, 0)] for t in range(first, end_ms + 1, step_ms)]


def link_for(field: str, value: Any) -> str:  # noqa: ANN401 - any event value
    """Where a top-N value leads: its entity page or a search for exactly it."""
    from urllib.parse import quote

    if TOP_FIELDS.get(field) == "entity":
        return f"/entity/{quote(str(value), safe='')}"
    return "/search?q=" + quote(f'{field}:"{quote_value(value)}"', safe="")


class Dashboard:
    """What the dashboard shows, computed in one round of store queries."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.rates = Rates()
        self.events_per_second()  # first sample at start-up
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def cached(self, since: str) -> dict[str, Any]:
        """`data(since)`, reused for `CACHE_SECONDS`; concurrent requests for the same
        range wait for one computation instead of each scanning the store."""
        with self._guard:
            lock = self._locks.setdefault(since, threading.Lock())
        with lock:
            hit = self._cache.get(since)
            if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
                return hit[1]
            answer = self.data(since)  # a bad `since` raises before anything is kept
            with self._guard:
                now = time.monotonic()
                self._cache = {k: v for k, v in self._cache.items() if now - v[0] < CACHE_SECONDS}
                if len(self._cache) < CACHE_KEYS:
                    self._cache[since] = (now, answer)
                if len(self._locks) > CACHE_KEYS:
                    self._locks = {k: v for k, v in self._locks.items() if k in self._cache}
            return answer

    def events_per_second(self) -> float | None:
        live = self.ctx.live_metrics() if self.ctx.live_metrics else None
        if not live:
            return None
        return self.rates.update({"stored": live.get("events_stored", 0)})["stored"]

    def data(self, since: str) -> dict[str, Any]:
        try:
            span = parse_duration(since)
            tr = since_range(since)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        interval = interval_for(span.total_seconds() if span is not None else None)
        step = interval * 1000
        now = datetime.now(UTC)
        start_ms = _ms(tr.start) if tr.start is not None else None
        end_ms = _ms(now) // step * step
        events = self.ctx.events

        by_value: dict[str, dict[int, int]] = {}
        for b, v, n in events.histogram_by(interval, "event.dataset", "", tr, MAX_DATASETS):
            name = OTHER if v is None else str(v)
            series = by_value.setdefault(name, {})
            series[_ms(b)] = series.get(_ms(b), 0) + n
        totals = {k: sum(s.values()) for k, s in by_value.items()}
        order = sorted(by_value, key=lambda k: (k == OTHER, -totals[k], k))

        alert_rows = self.ctx.alerts.severity_histogram(interval, tr.start)
        tops = events.top_many(list(TOP_FIELDS), "", tr, TOP_N)
        health = source_health(events, self.ctx.live_metrics() if self.ctx.live_metrics else None)
        return {
            "since": since,
            "generated": now.isoformat(),
            "events_per_second": self.events_per_second(),
            "total_events": sum(totals.values()),
            "by_dataset": {
                "interval": interval,
                "totals": {k: totals[k] for k in order},
                "series": {k: _filled(by_value[k], start_ms, end_ms, step) for k in order},
            },
            "alerts_by_severity": {
                "interval": interval,
                "totals": {sev: sum(n for _, n in pts) for sev, pts in alert_rows.items()},
                "series": {
                    sev: _filled({_ms(b): n for b, n in pts}, start_ms, end_ms, step)
                    for sev, pts in alert_rows.items()
                },
            },
            "top": {
                field: [
                    {"value": jsonable(v), "count": c, "link": link_for(field, v)} for v, c in rows
                ]
                for field, rows in tops.items()
            },
            "sources": [
                {
                    k: s.get(k)
                    for k in (
                        "id",
                        "type",
                        "events",
                        "parse_failures",
                        "dropped",
                        "last_seen",
                        "status",
                        "status_reason",
                        "status_message",
                        "status_fields",
                    )
                }
                for s in health["sources"]
            ],
        }


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    Auth = Annotated[Principal, Depends(ctx.security.require("viewer"))]
    board = Dashboard(ctx)

    @r.get("/api/v1/dashboard", tags=["dashboard"])
    def api_dashboard(_auth: Auth, since: str = "24h") -> dict[str, Any]:
        """Everything the dashboard shows for the range, in one call (at most
        `CACHE_SECONDS` old)."""
        return board.cached(since)

    @r.get("/", include_in_schema=False)
    def dashboard_page(
        request: Request,
        who: Annotated[Principal, Depends(ctx.security.page("viewer"))],
        since: str = "24h",
    ) -> HTMLResponse:
        if since not in RANGES:
            since = "24h"
        return ctx.render(request, "dashboard.html", who, since=since, top_fields=list(TOP_FIELDS))

    return r
