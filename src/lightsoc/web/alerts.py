"""Alerts API: list, read and triage alerts; per-entity triage scores.

Any role reads; analysts and admins change an alert (status, assignee), and
who did it is recorded in the alert's history and the audit log. Alert
fields (entity values, rule names) are attacker-influenced: they are returned
as JSON data only, never as HTML.
"""

# No `from __future__ import annotations`: FastAPI must resolve the local
# `Reader`/`Writer` dependency aliases in the route signatures.
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from lightsoc.alerts.model import EVENT_SAMPLE, SEVERITIES, STATUSES, Alert
from lightsoc.alerts.store import MAX_LIST, AlertNotFoundError, TransitionError
from lightsoc.output import event_rows
from lightsoc.store.base import TimeRange
from lightsoc.timeutil import parse_duration, since_range
from lightsoc.web.api import MAX_OFFSET
from lightsoc.web.security import Principal, RowId

if TYPE_CHECKING:
    from lightsoc.web.context import WebContext

MAX_BULK = 1000
EVENT_MARGIN = timedelta(days=1)
Status = Literal["open", "acknowledged", "closed", "false_positive"]


class StatusChange(BaseModel):
    """Body of POST /alerts/{id}/status: a new status and/or an assignee."""

    status: Status | None = None
    assignee: str | None = Field(default=None, max_length=200)
    #: set with `assignee: null` to take the alert away from whoever has it
    unassign: bool = False
    note: str | None = Field(default=None, max_length=10_000)


class BulkChange(BaseModel):
    """Body of POST /alerts/bulk: one status and/or assignee for up to 1000 alerts."""

    ids: list[RowId] = Field(min_length=1, max_length=MAX_BULK)
    status: Status | None = None
    assignee: str | None = Field(default=None, max_length=200)
    unassign: bool = False
    note: str | None = Field(default=None, max_length=10_000)


def alert_events(
    ctx: "WebContext", alert: Alert, limit: int = EVENT_SAMPLE
) -> list[dict[str, Any]]:
    """The alert's sample events from the event store (its `event_ids`), oldest first.

    The alert's first/last seen are event times: a day either side only
    narrows which segments are read.
    """
    ids = list(alert.event_ids)[: max(0, limit)]
    if not ids:
        return []
    tr = TimeRange(alert.first_seen - EVENT_MARGIN, alert.last_seen + EVENT_MARGIN)
    return event_rows(ctx.events.events_by_id(ids, tr))


def _statuses(status: str | None) -> list[str] | None:
    if not status:
        return None
    names = [s.strip() for s in status.split(",") if s.strip()]
    unknown = [s for s in names if s not in STATUSES]
    if unknown:
        raise HTTPException(400, f"unknown status {unknown[0]!r}: use one of {', '.join(STATUSES)}")
    return names


def _duration(text: str, name: str) -> timedelta | None:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise HTTPException(400, f"{name}: {exc}") from None


def create_alerts_router(ctx: "WebContext") -> APIRouter:
    """The /api/v1/alerts and /api/v1/entities routes over the state store's alerts."""
    store = ctx.alerts
    Reader = Annotated[Principal, Depends(ctx.security.require("viewer"))]
    Writer = Annotated[Principal, Depends(ctx.security.require("analyst"))]
    router = APIRouter(prefix="/api/v1")

    @router.get("/alerts")
    def list_alerts(
        _auth: Reader,
        since: str = "24h",
        status: str | None = None,
        severity: Annotated[str | None, Query(description="minimum severity")] = None,
        entity: str | None = None,
        rule: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Alerts whose last hit is within `since`, most recent first.

        `status` takes one status or a comma-separated list; `severity` is a
        minimum (`high` lists high and critical).
        """
        _duration(since, "since")
        if severity is not None and severity not in SEVERITIES:
            raise HTTPException(
                400, f"unknown severity {severity!r}: use one of {', '.join(SEVERITIES)}"
            )
        filters: dict[str, Any] = {
            "since": since_range(since).start,
            "statuses": _statuses(status),
            "min_severity": severity,
            "entity": entity,
            "rule_id": rule,
        }
        alerts = store.find(**filters, limit=limit, offset=offset)
        return {"total": store.count(**filters), "alerts": [a.as_dict() for a in alerts]}

    @router.get("/alerts/{alert_id}")
    def get_alert(alert_id: RowId, _auth: Reader) -> dict[str, Any]:
        """One alert with its triage history."""
        try:
            alert = store.get(alert_id)
        except AlertNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        return {**alert.as_dict(), "history": [h.as_dict() for h in store.history(alert_id)]}

    @router.post("/alerts/{alert_id}/status")
    def change_alert(alert_id: RowId, change: StatusChange, auth: Writer) -> dict[str, Any]:
        """Acknowledge, close, mark false positive, reopen and/or (un)assign."""
        if change.status is None and change.assignee is None and not change.unassign:
            raise HTTPException(400, "nothing to change: give a status, an assignee or unassign")
        who = auth.actor
        try:
            if change.status is not None:
                store.set_status(alert_id, change.status, who, change.note)
            if change.assignee is not None or change.unassign:
                store.assign(alert_id, change.assignee, who, change.note)
            alert = store.get(alert_id)
        except AlertNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        ctx.audit.record(
            who,
            "alert_change",
            str(alert_id),
            status=change.status,
            assignee=change.assignee,
            unassign=change.unassign,
        )
        return {**alert.as_dict(), "history": [h.as_dict() for h in store.history(alert_id)]}

    @router.get("/alerts/{alert_id}/events")
    def get_alert_events(alert_id: RowId, _auth: Reader) -> dict[str, Any]:
        """The alert's sample events (the ids it keeps), oldest first."""
        try:
            alert = store.get(alert_id)
        except AlertNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        events = alert_events(ctx, alert)
        return {"alert_id": alert_id, "event_ids": list(alert.event_ids), "events": events}

    @router.post("/alerts/bulk")
    def bulk_change(change: BulkChange, auth: Writer) -> dict[str, Any]:
        """One status and/or assignee for many alerts; each is changed, recorded in its
        history and audited on its own, and one that cannot change is reported, not fatal."""
        if change.status is None and change.assignee is None and not change.unassign:
            raise HTTPException(400, "nothing to change: give a status, an assignee or unassign")
        who = auth.actor
        changed: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for alert_id in dict.fromkeys(change.ids):  # once each, in the order given
            try:
                if change.status is not None:
                    store.set_status(alert_id, change.status, who, change.note)
                if change.assignee is not None or change.unassign:
                    store.assign(alert_id, change.assignee, who, change.note)
                alert = store.get(alert_id)
            except AlertNotFoundError as exc:
                errors.append({"id": alert_id, "status": 404, "detail": str(exc)})
                continue
            except TransitionError as exc:
                errors.append({"id": alert_id, "status": 409, "detail": str(exc)})
                continue
            ctx.audit.record(
                who,
                "alert_change",
                str(alert_id),
                status=change.status,
                assignee=change.assignee,
                unassign=change.unassign,
                bulk=True,
            )
            changed.append(alert.as_dict())
        return {"changed": changed, "errors": errors}

    @router.get("/entities/scores")
    def entity_scores(
        _auth: Reader,
        top: Annotated[int, Query(ge=1, le=MAX_LIST)] = 10,
        half_life: str = "24h",
        entity_type: Annotated[
            str | None, Query(alias="type", pattern="^(ip|user|host|domain)$")
        ] = None,
    ) -> dict[str, Any]:
        """Entities ranked by the decayed combination of their alerts' scores."""
        hl = _duration(half_life, "half_life")
        if hl is None or hl <= timedelta(0):
            raise HTTPException(400, "half_life: must be a positive duration")
        scores = store.entity_scores(top, half_life=hl, entity_type=entity_type)
        return {"half_life": half_life, "entities": [e.as_dict() for e in scores]}

    return router
