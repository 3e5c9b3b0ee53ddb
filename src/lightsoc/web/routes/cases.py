"""/cases and /cases/{id}: the case list, the create form and the storyboard.

The pages use plain forms (each carries the session's CSRF token) that post
back and redirect, and the same `CaseActions` the `/api/v1/cases` API uses,
so both audit alike. The narrative is markdown rendered without raw HTML and
with http(s)/relative links only (`lightsoc.cases.render_markdown`); comments
and everything from logs are autoescaped text.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures' `Depends(...)`, which name this function's locals.
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from lightsoc.alerts.model import SEVERITIES
from lightsoc.alerts.store import AlertNotFoundError
from lightsoc.cases import render_markdown
from lightsoc.cases.store import CASE_STATUSES, COMMENT_MAX, NARRATIVE_MAX, TITLE_MAX
from lightsoc.web.api import MAX_OFFSET
from lightsoc.web.cases_api import MAX_IDS, CaseActions, CaseCreate, CaseUpdate, create_cases_api
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.security import Principal, RowId

NAV = NavItem(50, "/cases", "Cases", "viewer")
PAGE_SIZE = 50
_IDS = re.compile(r"[\s,;]+")


def _alert_ids(text: str) -> list[int]:
    """`12, 13 14` -> [12, 13, 14]; anything but numbers is a 400."""
    parts = [p for p in _IDS.split(text.strip()) if p]
    if not all(p.isdigit() and len(p) < 12 for p in parts):
        raise HTTPException(400, "alert ids are numbers separated by commas or spaces")
    if len(parts) > MAX_IDS:
        raise HTTPException(400, f"at most {MAX_IDS} alerts at once")
    return [int(p) for p in parts]


def _back(case_id: int, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"/cases/{case_id}{anchor}", 303)


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    actions = CaseActions(ctx)
    Viewer = Annotated[Principal, Depends(ctx.security.page("viewer"))]
    Analyst = Annotated[Principal, Depends(ctx.security.page("analyst"))]
    limits = {"title": TITLE_MAX, "narrative": NARRATIVE_MAX, "comment": COMMENT_MAX}

    def new_form(
        request: Request,
        who: Principal,
        *,
        title: str = "",
        severity: str = "medium",
        alert_ids: str = "",
        entity: str = "",
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        return ctx.render(
            request,
            "cases/new.html",
            who,
            status_code,
            form={"title": title, "severity": severity, "alert_ids": alert_ids, "entity": entity},
            severities=SEVERITIES,
            limits=limits,
            error=error,
        )

    @r.get("/cases")
    def cases_page(
        request: Request,
        who: Viewer,
        status: Annotated[str | None, Query(max_length=20)] = None,
        owner: Annotated[str | None, Query(max_length=200)] = None,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Response:
        status = status if status in CASE_STATUSES else None
        owner = (owner or "").strip() or None
        found = actions.store.find(status=status, owner=owner, limit=PAGE_SIZE, offset=offset)
        return ctx.render(
            request,
            "cases.html",
            who,
            cases=found,
            total=actions.store.count(status=status, owner=owner),
            status=status,
            owner=owner or "",
            statuses=CASE_STATUSES,
            severities=SEVERITIES,
            limit=PAGE_SIZE,
            offset=offset,
            limits=limits,
        )

    @r.get("/cases/new")
    def new_case_page(
        request: Request,
        who: Analyst,
        alert_id: Annotated[list[RowId] | None, Query(max_length=MAX_IDS)] = None,
        entity: Annotated[str, Query(max_length=300)] = "",
    ) -> Response:
        """The create form, prefilled from alert and entity pages' links."""
        ids = list(dict.fromkeys(alert_id or []))
        title, severity = "", "medium"
        try:
            first = ctx.alerts.get(ids[0]) if ids else None
        except AlertNotFoundError:
            return new_form(
                request,
                who,
                alert_ids=" ".join(map(str, ids)),
                entity=entity,
                error=f"no alert {ids[0]}",
                status_code=404,
            )
        if first is not None:
            title = f"{first.rule_name} — {first.entity_value}"[:TITLE_MAX]
            severity = first.severity
        elif entity.strip():
            title = f"Investigation of {entity.strip()}"[:TITLE_MAX]
        return new_form(
            request,
            who,
            title=title,
            severity=severity,
            alert_ids=" ".join(map(str, ids)),
            entity=entity.strip(),
        )

    @r.post("/cases/new")
    def create_case(
        request: Request,
        who: Analyst,
        title: Annotated[str, Form(max_length=TITLE_MAX)] = "",
        severity: Annotated[str, Form(max_length=20)] = "medium",
        alert_ids: Annotated[str, Form(max_length=2000)] = "",
        entity: Annotated[str, Form(max_length=300)] = "",
    ) -> Response:
        again = {"title": title, "severity": severity, "alert_ids": alert_ids, "entity": entity}
        if not title.strip() or severity not in SEVERITIES:
            return new_form(
                request, who, **again, error="A case needs a title and a severity.", status_code=400
            )
        try:
            body = CaseCreate(
                title=title.strip(),
                severity=severity,  # type: ignore[arg-type]
                alert_ids=_alert_ids(alert_ids),
                entity=entity.strip() or None,
            )
            case = actions.create(body, who)
        except HTTPException as exc:
            return new_form(
                request, who, **again, error=str(exc.detail), status_code=exc.status_code
            )
        return _back(case.id)

    @r.get("/cases/{case_id}")
    def case_page(request: Request, case_id: RowId, who: Viewer) -> Response:
        detail = actions.detail(case_id)
        groups: dict[str, list[str]] = {}
        for e in detail["entities"]:
            groups.setdefault(e["kind"], []).append(e["value"])
        return ctx.render(
            request,
            "case.html",
            who,
            case=detail,
            entity_groups=groups,
            # Safe by construction: markdown-it renders with raw HTML off, escapes all
            # text and keeps only http(s)/relative links (see `render_markdown`).
            narrative_html=Markup(render_markdown(detail["narrative"])),  # noqa: S704
            severities=SEVERITIES,
            statuses=CASE_STATUSES,
            limits=limits,
            can_edit=who.can("analyst"),
        )

    @r.post("/cases/{case_id}/edit")
    def edit_case(
        case_id: RowId,
        who: Analyst,
        title: Annotated[str, Form(min_length=1, max_length=TITLE_MAX)],
        severity: Annotated[str, Form(max_length=20)],
        status: Annotated[str, Form(max_length=20)],
        owner: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        if severity not in SEVERITIES or status not in CASE_STATUSES:
            raise HTTPException(400, "unknown severity or status")
        change = CaseUpdate(
            title=title,
            severity=severity,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
            owner=owner.strip() or None,
            unassign=not owner.strip(),
        )
        actions.update(case_id, change, who)
        return _back(case_id)

    @r.post("/cases/{case_id}/narrative")
    def edit_narrative(
        case_id: RowId,
        who: Analyst,
        narrative: Annotated[str, Form(max_length=NARRATIVE_MAX)] = "",
    ) -> Response:
        actions.update(case_id, CaseUpdate(narrative=narrative), who)
        return _back(case_id, "#narrative")

    @r.post("/cases/{case_id}/comments")
    def add_comment(
        case_id: RowId,
        who: Analyst,
        body: Annotated[str, Form(min_length=1, max_length=COMMENT_MAX)],
    ) -> Response:
        actions.comment(case_id, body, who)
        return _back(case_id, "#comments")

    @r.post("/cases/{case_id}/alerts")
    def link_alerts(
        case_id: RowId, who: Analyst, alert_ids: Annotated[str, Form(max_length=2000)]
    ) -> Response:
        ids = _alert_ids(alert_ids)
        if ids:
            actions.add_alerts(case_id, ids, who)
        return _back(case_id, "#storyboard")

    @r.post("/cases/{case_id}/alerts/{alert_id}/unlink")
    def unlink_alert(case_id: RowId, alert_id: RowId, who: Analyst) -> Response:
        actions.remove_alert(case_id, alert_id, who)
        return _back(case_id, "#storyboard")

    @r.post("/cases/{case_id}/events/unlink")
    def unlink_event(
        case_id: RowId, who: Analyst, event_id: Annotated[str, Form(min_length=1, max_length=200)]
    ) -> Response:
        actions.remove_event(case_id, event_id, who)
        return _back(case_id, "#storyboard")

    # The pages stay out of the OpenAPI spec; the API beside them is in it.
    both = APIRouter()
    both.include_router(r)
    both.include_router(create_cases_api(ctx, actions))
    return both
