"""/settings: your profile, password and tokens; for admins also users, every token,
the audit log, alert outputs (with a test button), retention and internal networks.

The page is rendered here from the same functions the API uses
(`web.settings_api`); its forms call that API from static/settings.js.
"""

# No `from __future__ import annotations`: FastAPI evaluates the route signatures.
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from lightsoc.auth import ROLES
from lightsoc.web.api import MAX_OFFSET
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.security import Principal
from lightsoc.web.settings_api import (
    AUDIT_PAGE,
    MAX_RETENTION_DAYS,
    config_of,
    create_settings_api_router,
    describe_outputs,
    retention_info,
)

NAV = NavItem(100, "/settings", "Settings", "viewer")


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    r.include_router(create_settings_api_router(ctx))
    Page = Annotated[Principal, Depends(ctx.security.page("viewer"))]

    @r.get("/settings", include_in_schema=False)
    def settings_page(
        request: Request,
        who: Page,
        actor: Annotated[str, Query(max_length=200)] = "",
        action: Annotated[str, Query(max_length=60)] = "",
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> HTMLResponse:
        me = ctx.users.get(who.name)
        values: dict[str, object] = {
            "me": me,
            "my_tokens": ctx.state.list_tokens(who.name) if me else [],
            "roles": ROLES,
            "is_admin": who.can("admin"),
        }
        if who.can("admin"):
            config = config_of(request)
            audit_base = f"/settings?{_query(actor=actor, action=action)}"
            values.update(
                users=ctx.users.list(),
                all_tokens=ctx.state.list_tokens(),
                audit=ctx.audit.find(actor=actor, action=action, limit=AUDIT_PAGE, offset=offset),
                audit_total=ctx.audit.count(actor=actor, action=action),
                audit_actor=actor,
                audit_action=action,
                audit_offset=offset,
                audit_limit=AUDIT_PAGE,
                audit_base=audit_base,
                outputs=describe_outputs(config),
                retention=retention_info(ctx, config),
                max_retention=MAX_RETENTION_DAYS,
                networks=config.enrich.networks if config else {},
                has_config=config is not None,
            )
        return ctx.render(request, "settings.html", who, **values)

    return r


def _query(**params: str) -> str:
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in params.items() if v})
