"""The web application: the REST API, the UI's pages and static files, in one app.

Every response carries a strict Content-Security-Policy (scripts and styles
from this site only, nothing inline, no framing); API errors are
`application/problem+json`; a page asked for without a session redirects to
the login page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lightsoc import __version__
from lightsoc.auth.audit import AuditLog
from lightsoc.auth.users import UserStore
from lightsoc.store.query import QueryError
from lightsoc.web import routes
from lightsoc.web.alerts import create_alerts_router
from lightsoc.web.api import create_api_router
from lightsoc.web.context import STATIC_DIR, WebContext
from lightsoc.web.security import LoginRequiredError, Security

if TYPE_CHECKING:
    from lightsoc.alerts.store import AlertStore
    from lightsoc.config import Config
    from lightsoc.sources.http import HttpSource
    from lightsoc.store.base import EventStore
    from lightsoc.store.state import StateStore

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
PROBLEM_JSON = "application/problem+json"


class SecurityHeaders:
    """ASGI middleware: the headers above on every response; pages and API
    answers (event data) are never cached, static files are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control"]
                headers += SECURITY_HEADERS
                headers.append(
                    (b"cache-control", b"public, max-age=86400" if static else b"no-store")
                )
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:  # noqa: ANN401
    """An RFC 9457 problem document; `detail` kept as FastAPI gives it (a string or a list)."""
    from http import HTTPStatus

    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def create_app(
    events: EventStore,
    state: StateStore,
    *,
    live_metrics: Callable[[], dict[str, Any]] | None = None,
    ingest: HttpSource | None = None,
    alerts: AlertStore | None = None,
    cookie_secure: str = "auto",
    login_limit: int = 20,
    config: Config | None = None,
) -> FastAPI:
    """The whole web app; with an `ingest` source also POST /api/v1/ingest and the
    Elasticsearch-compatible surface at root paths (`/_bulk`, ...)."""
    from lightsoc.alerts.store import AlertStore

    app = FastAPI(
        title="lightsoc",
        version=__version__,
        # The spec is served behind authentication; no Swagger UI (it loads from a CDN).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    users = UserStore(state)
    audit = AuditLog(state)
    ctx = WebContext(
        events=events,
        state=state,
        alerts=alerts or AlertStore(state),
        users=users,
        audit=audit,
        security=Security(
            state, users, audit, cookie_secure=cookie_secure, login_limit=login_limit
        ),
        live_metrics=live_metrics,
        config=config,
    )
    app.state.web = ctx
    app.state.config = config

    @app.exception_handler(QueryError)
    async def _query_error(_req: Request, exc: QueryError) -> JSONResponse:
        return problem(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        from fastapi.encoders import jsonable_encoder

        return problem(422, jsonable_encoder(exc.errors()))

    @app.exception_handler(LoginRequiredError)
    async def _login(req: Request, _exc: LoginRequiredError) -> RedirectResponse:
        target = req.url.path + (f"?{req.url.query}" if req.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)

    app.include_router(create_api_router(ctx, app.openapi))
    app.include_router(create_alerts_router(ctx))
    for module in routes.load():
        if hasattr(module, "NAV"):
            ctx.nav.append(module.NAV)
        app.include_router(module.router(ctx))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    if ingest is not None:
        from lightsoc.web.es_compat import install_es_compat
        from lightsoc.web.ingest import create_ingest_router

        app.include_router(create_ingest_router(state, ingest))
        install_es_compat(app, state, ingest)  # after /api/v1 and the pages: never shadows them
    app.add_middleware(SecurityHeaders)
    return app
