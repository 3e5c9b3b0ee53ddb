"""/sources: every source and sender with rates, bytes, parse failures, drops, lag.

Counters come from the store's per-source totals (cumulative over restarts,
read without scanning events) merged with the running pipeline's live
metrics (`client.merged_stats`): lag, errors, drop reasons, senders. Rates
are deltas between samples taken when the page or API is asked.
"""

# No `from __future__ import annotations`: FastAPI evaluates the route signatures.
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from lightsoc import schema
from lightsoc.client import merged_stats
from lightsoc.store.base import EventStore
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.security import Principal

NAV = NavItem(90, "/sources", "Sources")

#: a source with nothing new for this long is "stale"
STALE_AFTER = timedelta(minutes=15)
#: a source whose records fail to parse at least this often is "failing"
FAILING_PARSE_SHARE = 0.5


class Rates:
    """Per-second rates of cumulative counters, from samples taken when asked.

    The rate is over the last minute when samples that old exist, never over
    less than `min_span` seconds (a refresh a moment after another would give
    noise); until then it is unknown (None).
    """

    def __init__(
        self,
        window: float = 60.0,
        min_span: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.min_span = min_span
        self.clock = clock
        self._samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=256)
        self._lock = threading.Lock()

    def update(self, counters: dict[str, float]) -> dict[str, float | None]:
        now = self.clock()
        with self._lock:
            # keep the newest sample older than the window: the base when no other is
            while len(self._samples) > 1 and now - self._samples[1][0] > self.window:
                self._samples.popleft()
            base = next(
                (s for s in self._samples if self.min_span <= now - s[0] <= self.window), None
            )
            if base is None and self._samples and now - self._samples[0][0] >= self.min_span:
                base = self._samples[0]
            self._samples.append((now, dict(counters)))
        out: dict[str, float | None] = {}
        for key, value in counters.items():
            old = base[1].get(key) if base is not None else None
            out[key] = None if old is None else max(0.0, value - old) / (now - base[0])
        return out


def status_of(src: dict[str, Any], now: datetime) -> tuple[str, str, dict[str, Any]]:
    """(status, why, why's fields): "failing" when the source reports an error or
    most records fail to parse; "stale" when nothing came recently; else "ok".
    `why` is an English message id with `{fields}` (the page translates it)."""
    if src.get("last_error"):
        return "failing", "Error: {error}", {"error": str(src["last_error"])}
    received = src.get("received") or 0
    failures = src.get("parse_failures") or 0
    if received and failures / received >= FAILING_PARSE_SHARE:
        fields = {"failures": failures, "received": received}
        return "failing", "{failures} of {received} records failed to parse", fields
    seen = src.get("last_seen")
    if not seen:
        return "stale", "Nothing received yet", {}
    last = datetime.fromisoformat(str(seen).replace("Z", "+00:00"))
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    if now - last > STALE_AFTER:
        minutes = int((now - last).total_seconds() // 60)
        return "stale", "Nothing new for {minutes} min", {"minutes": minutes}
    return "ok", "", {}


class _CountersOnly:
    """The part of `EventStore.stats()` that `merged_stats` needs, without an event scan."""

    def __init__(self, events: EventStore) -> None:
        self.events = events

    def stats(self) -> dict[str, Any]:
        return {"sources": self.events.source_counters()}


def source_health(
    events: EventStore, live: dict[str, Any] | None, now: datetime | None = None
) -> dict[str, Any]:
    """{"sources": [...], "pipeline": {...}}: store counters + live metrics + status."""
    now = now or datetime.now(UTC)
    out = merged_stats(_CountersOnly(events), live)  # type: ignore[arg-type]
    live_sources = (live or {}).get("sources", {})
    for src in out["sources"]:
        m = live_sources.get(src["id"], {})
        # why records were dropped or skipped: the source's own counters (malformed, ...)
        src["extra"] = {k: v for k, v in (m.get("extra") or {}).items() if v}
        src["live_received"] = m.get("received")
        src["status"], message, fields = status_of(src, now)
        src["status_reason"] = message.format(**fields)
        src["status_message"], src["status_fields"] = message, fields
        failures = f'lightsoc.source:"{quote_value(src["id"])}" AND tags:{schema.PARSE_FAILURE}'
        src["failures_query"] = failures
    out["sources"].sort(key=lambda s: s["id"])
    out.setdefault("pipeline", None)
    return out


def quote_value(value: object) -> str:
    """A value for inside a quoted phrase of the query language (backslash escapes)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    Auth = Annotated[Principal, Depends(ctx.security.require("viewer"))]
    rates = Rates()

    def health() -> dict[str, Any]:
        out = source_health(ctx.events, ctx.live_metrics() if ctx.live_metrics else None)
        counters: dict[str, float] = {}
        for src in out["sources"]:
            counters[f"e:{src['id']}"] = src["events"]
            counters[f"b:{src['id']}"] = src["bytes"]
        per_second = rates.update(counters)
        for src in out["sources"]:
            src["events_per_second"] = per_second.get(f"e:{src['id']}")
            src["bytes_per_second"] = per_second.get(f"b:{src['id']}")
        return out

    health()  # the first sample: rates are known from the first request 5 s later

    @r.get("/api/v1/sources", tags=["sources"])
    def api_sources(_auth: Auth) -> dict[str, Any]:
        """Every source: counters, live metrics, rates, senders, status ok/stale/failing."""
        return health()

    @r.get("/sources", include_in_schema=False)
    def sources_page(
        request: Request,
        who: Annotated[Principal, Depends(ctx.security.page("viewer"))],
    ) -> HTMLResponse:
        data = health()
        template = (
            "dashboard/sources_table.html" if request.headers.get("hx-request") else "sources.html"
        )
        return ctx.render(request, template, who, **data)

    return r
