"""Cases API (`/api/v1/cases`) and the actions the case pages share with it.

Any role reads; analysts and admins create, edit, link and comment, and
every change goes to the audit log. Creating a case from alerts links them
and pulls in a sample of their events (what the storyboard shows) and the
entities those events name. Values come from logs and users: they are
returned as JSON data and rendered escaped, never as HTML.
"""

# No `from __future__ import annotations`: FastAPI must resolve the local
# `Reader`/`Writer` dependency aliases in the route signatures.
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from lightsoc.alerts.model import Alert, iso, utc
from lightsoc.alerts.store import AlertNotFoundError
from lightsoc.cases import (
    EVENT_FIELDS,
    entity_kind,
    event_entities,
    event_summary,
    unique,
)
from lightsoc.cases.store import (
    COMMENT_MAX,
    MAX_LIST,
    NARRATIVE_MAX,
    TITLE_MAX,
    Case,
    CaseEvent,
    CaseNotFoundError,
    CaseStore,
)
from lightsoc.output import event_rows
from lightsoc.store.base import TimeRange
from lightsoc.web.api import MAX_OFFSET
from lightsoc.web.security import Principal, RowId

if TYPE_CHECKING:
    from lightsoc.web.context import WebContext

Severity = Literal["informational", "low", "medium", "high", "critical"]
CaseStatus = Literal["open", "in_progress", "closed"]
EntityKind = Literal["ip", "host", "user", "domain"]
#: Events pulled in per alert: the first ones (how it started) and the last.
SAMPLE_HEAD, SAMPLE_TAIL = 5, 5
MAX_IDS = 100
_EVENT_CHUNK = 100
_MARGIN = timedelta(minutes=5)


class CaseCreate(BaseModel):
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    severity: Severity = "medium"
    alert_ids: list[RowId] = Field(default_factory=list, max_length=MAX_IDS)
    entity: str | None = Field(default=None, max_length=300)
    entity_type: EntityKind | None = None
    owner: str | None = Field(default=None, max_length=200)
    narrative: str = Field(default="", max_length=NARRATIVE_MAX)


class CaseUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    severity: Severity | None = None
    status: CaseStatus | None = None
    owner: str | None = Field(default=None, max_length=200)
    #: set to take the case away from its owner (`owner: null` alone changes nothing)
    unassign: bool = False
    narrative: str | None = Field(default=None, max_length=NARRATIVE_MAX)


class AlertLinks(BaseModel):
    alert_ids: list[RowId] = Field(min_length=1, max_length=MAX_IDS)


class EventLinks(BaseModel):
    event_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=MAX_IDS
    )


class EntityIn(BaseModel):
    kind: EntityKind
    value: str = Field(min_length=1, max_length=300)


class EntityLinks(BaseModel):
    entities: list[EntityIn] = Field(min_length=1, max_length=MAX_IDS)


class CommentIn(BaseModel):
    body: str = Field(min_length=1, max_length=COMMENT_MAX)


def _phrase(value: str) -> str:
    """A query-language phrase: the value travels as data, quotes and backslashes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sample(alert: Alert) -> list[str]:
    ids = alert.event_ids
    if len(ids) <= SAMPLE_HEAD + SAMPLE_TAIL:
        return list(ids)
    return [*ids[:SAMPLE_HEAD], *ids[-SAMPLE_TAIL:]]


class CaseActions:
    """What a case page or API call does: store changes plus the audit trail."""

    def __init__(self, ctx: "WebContext") -> None:
        self.ctx = ctx
        self.store = CaseStore(ctx.state, ctx.alerts)

    # -- reading -------------------------------------------------------------
    def get(self, case_id: int) -> Case:
        try:
            return self.store.get(case_id)
        except CaseNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None

    def detail(self, case_id: int) -> dict[str, Any]:
        """The case with its alerts, events, entities, comments and storyboard."""
        case = self.get(case_id)
        alerts = []
        for alert_id in self.store.alert_ids(case_id):
            try:
                alerts.append(self.ctx.alerts.get(alert_id))
            except AlertNotFoundError:  # removed behind our back: show the rest
                continue
        events = self.store.events(case_id)
        return {
            **case.as_dict(),
            "alerts": [a.as_dict() for a in alerts],
            "events": [e.as_dict() for e in events],
            "entities": [{"kind": k, "value": v} for k, v in self.store.entities(case_id)],
            "comments": [c.as_dict() for c in self.store.comments(case_id)],
            "storyboard": storyboard(alerts, events),
        }

    # -- events from the event store -------------------------------------------
    def fetch_events(
        self, event_ids: Sequence[str], time_range: TimeRange | None = None
    ) -> list[dict[str, Any]]:
        """The stored events with these ids (only the fields a case keeps)."""
        found: list[dict[str, Any]] = []
        ids = list(dict.fromkeys(event_ids))
        for i in range(0, len(ids), _EVENT_CHUNK):
            chunk = ids[i : i + _EVENT_CHUNK]
            query = "event.id:(" + " OR ".join(_phrase(e) for e in chunk) + ")"
            table = self.ctx.events.search(query, time_range, list(EVENT_FIELDS), len(chunk), "asc")
            found.extend(event_rows(table))
        return found

    def keep_events(self, case_id: int, rows: Iterable[dict[str, Any]]) -> tuple[int, int]:
        """Keep these events and the entities they name; (events added, entities added)."""
        kept, pairs = [], []
        for row in rows:
            ts = row.get("@timestamp")
            if not row.get("event.id") or not ts:
                continue
            when = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
            kept.append(
                CaseEvent(str(row["event.id"]), when, event_summary(row), row.get("event.dataset"))
            )
            pairs.extend(event_entities(row))
        added = self.store.link_events(case_id, kept)
        return added, self.store.add_entities(case_id, unique(pairs))

    def link_alerts(self, case_id: int, alert_ids: Sequence[int], who: str) -> list[int]:
        """Link alerts and pull in their sample events and entities; the ids newly linked."""
        alerts = []
        for alert_id in dict.fromkeys(alert_ids):
            try:
                alerts.append(self.ctx.alerts.get(alert_id))
            except AlertNotFoundError as exc:
                raise HTTPException(404, str(exc)) from None
        linked = [a.id for a in alerts if self.store.link_alert(case_id, a.id, who)]
        if not alerts:
            return linked
        span = TimeRange(
            min(a.first_seen for a in alerts) - _MARGIN,
            max(a.last_seen for a in alerts) + _MARGIN,
        )
        ids = [e for a in alerts for e in _sample(a)]
        try:
            self.store.add_entities(
                case_id, unique((a.entity_type, a.entity_value) for a in alerts)
            )
            self.keep_events(case_id, self.fetch_events(ids, span))
        except ValueError as exc:  # the case is full: the alerts stay linked
            raise HTTPException(400, str(exc)) from None
        return linked

    # -- changes -----------------------------------------------------------------
    def create(self, body: CaseCreate, who: Principal) -> Case:
        try:
            case = self.store.create(
                body.title, body.severity, who.actor, owner=body.owner, narrative=body.narrative
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        linked = self.link_alerts(case.id, body.alert_ids, who.actor)
        entity = (body.entity or "").strip()
        if entity:
            self.store.add_entities(case.id, [(body.entity_type or entity_kind(entity), entity)])
        self.ctx.audit.record(
            who.actor, "case_create", str(case.id), alert_ids=linked, entity=entity or None
        )
        return self.store.get(case.id)

    def update(self, case_id: int, body: CaseUpdate, who: Principal) -> Case:
        self.get(case_id)
        changes: dict[str, str | None] = {
            k: getattr(body, k)
            for k in ("title", "severity", "status", "narrative")
            if getattr(body, k) is not None
        }
        if body.owner is not None or body.unassign:
            changes["owner"] = body.owner
        try:
            case, diff = self.store.update(case_id, **changes)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        if diff:
            # The narrative can be long: the audit log names the change, not the text.
            detail = {k: ("(edited)" if k == "narrative" else v) for k, v in diff.items()}
            self.ctx.audit.record(who.actor, "case_update", str(case_id), **detail)
        return case

    def add_alerts(self, case_id: int, alert_ids: Sequence[int], who: Principal) -> list[int]:
        self.get(case_id)
        linked = self.link_alerts(case_id, alert_ids, who.actor)
        self.ctx.audit.record(who.actor, "case_link_alerts", str(case_id), alert_ids=linked)
        return linked

    def remove_alert(self, case_id: int, alert_id: int, who: Principal) -> None:
        self.get(case_id)
        if not self.store.unlink_alert(case_id, alert_id, who.actor):
            raise HTTPException(404, f"alert {alert_id} is not in case {case_id}")
        self.ctx.audit.record(who.actor, "case_unlink_alert", str(case_id), alert_id=alert_id)

    def add_events(self, case_id: int, event_ids: Sequence[str], who: Principal) -> int:
        self.get(case_id)
        rows = self.fetch_events(event_ids)
        missing = set(event_ids) - {str(r.get("event.id")) for r in rows}
        if missing:
            raise HTTPException(404, f"no event {sorted(missing)[0]!r}")
        try:
            added, _ = self.keep_events(case_id, rows)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        self.ctx.audit.record(
            who.actor, "case_link_events", str(case_id), event_ids=list(event_ids)[:20]
        )
        return added

    def remove_event(self, case_id: int, event_id: str, who: Principal) -> None:
        self.get(case_id)
        if not self.store.unlink_event(case_id, event_id):
            raise HTTPException(404, f"event {event_id!r} is not in case {case_id}")
        self.ctx.audit.record(who.actor, "case_unlink_event", str(case_id), event_id=event_id)

    def add_entities(self, case_id: int, pairs: Sequence[tuple[str, str]], who: Principal) -> int:
        self.get(case_id)
        try:
            added = self.store.add_entities(case_id, pairs)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        self.ctx.audit.record(who.actor, "case_entities", str(case_id), added=added)
        return added

    def comment(self, case_id: int, body: str, who: Principal) -> dict[str, Any]:
        self.get(case_id)
        try:
            made = self.store.add_comment(case_id, who.actor, body)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        self.ctx.audit.record(who.actor, "case_comment", str(case_id), comment_id=made.id)
        return made.as_dict()


def storyboard(alerts: Sequence[Alert], events: Sequence[CaseEvent]) -> list[dict[str, Any]]:
    """Alerts (at their first hit) and events merged in time order; an event
    comes before the alert it raised at the same instant."""
    items: list[tuple[datetime, int, dict[str, Any]]] = []
    for a in alerts:
        item = {
            "kind": "alert",
            "at": iso(a.first_seen),
            "alert_id": a.id,
            "rule.name": a.rule_name,
            "severity": a.severity,
            "entity.type": a.entity_type,
            "entity.value": a.entity_value,
            "count": a.count,
            "last_seen": iso(a.last_seen),
        }
        items.append((utc(a.first_seen), 1, item))
    for e in events:
        item = {
            "kind": "event",
            "at": iso(e.timestamp),
            "event.id": e.event_id,
            "event.dataset": e.dataset,
            "summary": e.summary,
        }
        items.append((utc(e.timestamp), 0, item))
    items.sort(key=lambda t: (t[0], t[1]))
    return [item for _, _, item in items]


def create_cases_api(ctx: "WebContext", actions: CaseActions) -> APIRouter:
    """The /api/v1/cases routes."""
    Reader = Annotated[Principal, Depends(ctx.security.require("viewer"))]
    Writer = Annotated[Principal, Depends(ctx.security.require("analyst"))]
    router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

    @router.get("")
    def list_cases(
        _auth: Reader,
        status: CaseStatus | None = None,
        owner: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Cases, most recently updated first."""
        found = actions.store.find(status=status, owner=owner, limit=limit, offset=offset)
        return {
            "total": actions.store.count(status=status, owner=owner),
            "cases": [c.as_dict() for c in found],
        }

    @router.post("", status_code=201)
    def create_case(body: CaseCreate, auth: Writer) -> dict[str, Any]:
        """A case from alerts (their entities and sample events come along) and/or an entity."""
        return actions.detail(actions.create(body, auth).id)

    @router.get("/{case_id}")
    def get_case(case_id: RowId, _auth: Reader) -> dict[str, Any]:
        """The case with linked alerts, events, entities, comments and the storyboard."""
        return actions.detail(case_id)

    @router.patch("/{case_id}")
    def update_case(case_id: RowId, body: CaseUpdate, auth: Writer) -> dict[str, Any]:
        actions.update(case_id, body, auth)
        return actions.detail(case_id)

    @router.post("/{case_id}/alerts")
    def link_alerts(case_id: RowId, body: AlertLinks, auth: Writer) -> dict[str, Any]:
        linked = actions.add_alerts(case_id, body.alert_ids, auth)
        return {"linked": linked, "case": actions.detail(case_id)}

    @router.delete("/{case_id}/alerts/{alert_id}")
    def unlink_alert(case_id: RowId, alert_id: RowId, auth: Writer) -> dict[str, Any]:
        actions.remove_alert(case_id, alert_id, auth)
        return actions.detail(case_id)

    @router.post("/{case_id}/events")
    def link_events(case_id: RowId, body: EventLinks, auth: Writer) -> dict[str, Any]:
        added = actions.add_events(case_id, body.event_ids, auth)
        return {"added": added, "case": actions.detail(case_id)}

    @router.delete("/{case_id}/events/{event_id}")
    def unlink_event(
        case_id: RowId, event_id: Annotated[str, Path(max_length=200)], auth: Writer
    ) -> dict[str, Any]:
        actions.remove_event(case_id, event_id, auth)
        return actions.detail(case_id)

    @router.post("/{case_id}/entities")
    def add_entities(case_id: RowId, body: EntityLinks, auth: Writer) -> dict[str, Any]:
        pairs = [(e.kind, e.value.strip()) for e in body.entities]
        return {"added": actions.add_entities(case_id, pairs, auth)}

    @router.post("/{case_id}/comments", status_code=201)
    def add_comment(case_id: RowId, body: CommentIn, auth: Writer) -> dict[str, Any]:
        return actions.comment(case_id, body.body, auth)

    return router
