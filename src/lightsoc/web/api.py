"""REST API under /api/v1 (FastAPI, OpenAPI at /api/v1/openapi.json).

Every endpoint but /health requires a bearer token from the state store.
The query language is compiled to parameterised SQL by the store; a bad query
is a 400 with the compiler's message.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lightsoc import __version__, schema
from lightsoc.client import merged_stats
from lightsoc.output import event_rows, jsonable
from lightsoc.store.base import EventStore, TimeRange
from lightsoc.store.query import QueryError
from lightsoc.store.state import StateStore, TokenInfo
from lightsoc.timeutil import since_range
from lightsoc.web.alerts import create_alerts_router

if TYPE_CHECKING:
    from lightsoc.alerts.store import AlertStore
    from lightsoc.sources.http import HttpSource

_bearer = HTTPBearer(auto_error=False)
MAX_LIMIT = 10_000


def create_app(
    events: EventStore,
    state: StateStore,
    *,
    live_metrics: Callable[[], dict[str, Any]] | None = None,
    ingest: "HttpSource | None" = None,
    alerts: "AlertStore | None" = None,
) -> FastAPI:
    """The API; with an `ingest` source also POST /api/v1/ingest and the
    Elasticsearch-compatible surface at root paths (`/`, `/_bulk`, ...)."""
    app = FastAPI(
        title="lightsoc",
        version=__version__,
        # The spec is served below behind the token; no Swagger UI (it loads from a CDN).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    def auth(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenInfo:
        info = state.verify_token(creds.credentials) if creds else None
        if info is None:
            raise HTTPException(
                401, "missing or invalid API token", headers={"WWW-Authenticate": "Bearer"}
            )
        if info.scope not in ("admin", "read"):
            raise HTTPException(403, f"token scope {info.scope!r} cannot read")
        return info

    Auth = Annotated[TokenInfo, Depends(auth)]

    @app.exception_handler(QueryError)
    async def _query_error(_req: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

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

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi(_auth: Auth) -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/search")
    def search(
        _auth: Auth,
        q: str = "",
        since: str = "24h",
        until: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        fields: str | None = None,
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    ) -> dict[str, Any]:
        tr = time_range(since, until)
        table = events.search(q, tr, field_list(fields), limit, order)
        return {"total": events.count(q, tr), "events": event_rows(table)}

    @app.get("/api/v1/timeline/{entity:path}")
    def timeline(
        entity: str,
        _auth: Auth,
        since: str = "7d",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
    ) -> dict[str, Any]:
        table = events.timeline(entity, time_range(since), limit)
        return {"entity": entity, "events": event_rows(table)}

    @app.get("/api/v1/aggregate/top")
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

    @app.get("/api/v1/aggregate/histogram")
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

    @app.get("/api/v1/stats")
    def stats(_auth: Auth) -> dict[str, Any]:
        return merged_stats(events, live_metrics() if live_metrics else None)

    app.include_router(create_alerts_router(state, alerts))

    if ingest is not None:
        from lightsoc.web.es_compat import install_es_compat
        from lightsoc.web.ingest import create_ingest_router

        app.include_router(create_ingest_router(state, ingest))
        install_es_compat(app, state, ingest)  # after /api/v1: never shadows it
    return app
