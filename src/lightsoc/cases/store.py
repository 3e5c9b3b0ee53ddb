"""Cases in the state store: create, list, update, link alerts/events/entities, comment.

SQLAlchemy Core with bound parameters only, so the same code runs on SQLite
and PostgreSQL and attacker-controlled values (entity names, event summaries)
never reach SQL text. Linking an alert also sets the alert's own `case_id`
(through `AlertStore.set_case`, which records it in the alert's history); an
alert belongs to one case at a time, so linking it elsewhere moves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.alerts.model import SEVERITIES, iso, utc
from lightsoc.cases import ENTITY_KINDS
from lightsoc.store.state import StateStore
from lightsoc.store.state_cases import (
    case_alerts,
    case_comments,
    case_entities,
    case_events,
    cases,
)

if TYPE_CHECKING:
    from lightsoc.alerts.store import AlertStore

CASE_STATUSES = ("open", "in_progress", "closed")
MAX_LIST = 1000
TITLE_MAX = 300
NARRATIVE_MAX = 100_000
COMMENT_MAX = 10_000
#: Limits of one case, so a careless script cannot grow a page without bound.
MAX_EVENTS = 2000
MAX_ENTITIES = 500


class CaseNotFoundError(LookupError):
    """No case with that id."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Case:
    id: int
    title: str
    severity: str
    status: str
    owner: str | None
    narrative: str
    created_by: str
    created: datetime
    updated: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "owner": self.owner,
            "narrative": self.narrative,
            "created_by": self.created_by,
            "created": iso(self.created),
            "updated": iso(self.updated),
        }


@dataclass(frozen=True)
class CaseEvent:
    """What a case keeps of an event: enough for the storyboard."""

    event_id: str
    timestamp: datetime
    summary: str
    dataset: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "event.id": self.event_id,
            "@timestamp": iso(self.timestamp),
            "event.dataset": self.dataset,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class Comment:
    id: int
    case_id: int
    author: str
    body: str
    created: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "case_id": self.case_id,
            "author": self.author,
            "body": self.body,
            "created": iso(self.created),
        }


def _case(row: Any) -> Case:  # noqa: ANN401 - a SQLAlchemy row
    return Case(
        id=int(row.id),
        title=row.title,
        severity=row.severity,
        status=row.status,
        owner=row.owner,
        narrative=row.narrative,
        created_by=row.created_by,
        created=utc(row.created),
        updated=utc(row.updated),
    )


def _check(
    *,
    title: str | None = None,
    severity: str | None = None,
    status: str | None = None,
    narrative: str | None = None,
) -> None:
    if title is not None and not (0 < len(title.strip()) <= TITLE_MAX):
        raise ValueError(f"a case title is 1 to {TITLE_MAX} characters")
    if severity is not None and severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}: use one of {', '.join(SEVERITIES)}")
    if status is not None and status not in CASE_STATUSES:
        raise ValueError(f"unknown status {status!r}: use one of {', '.join(CASE_STATUSES)}")
    if narrative is not None and len(narrative) > NARRATIVE_MAX:
        raise ValueError(f"a narrative is at most {NARRATIVE_MAX} characters")


class CaseStore:
    """Cases of one state store (SQLite or PostgreSQL)."""

    def __init__(
        self,
        state: StateStore,
        alerts: AlertStore | None = None,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        from lightsoc.alerts.store import AlertStore

        self.engine = state.engine
        self.alerts = alerts or AlertStore(state)
        self.clock = clock

    # -- cases -------------------------------------------------------------
    def create(
        self,
        title: str,
        severity: str,
        created_by: str,
        *,
        owner: str | None = None,
        narrative: str = "",
    ) -> Case:
        _check(title=title, severity=severity, narrative=narrative)
        now = utc(self.clock())
        with self.engine.begin() as conn:
            res = conn.execute(
                cases.insert().values(
                    title=title.strip(),
                    severity=severity,
                    status="open",
                    owner=(owner or "").strip() or None,
                    narrative=narrative,
                    created_by=created_by,
                    created=now,
                    updated=now,
                )
            )
            case_id = int(res.inserted_primary_key[0])
        return self.get(case_id)

    def get(self, case_id: int) -> Case:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(cases).where(cases.c.id == case_id)).first()
        if row is None:
            raise CaseNotFoundError(f"no case {case_id}")
        return _case(row)

    def find(
        self,
        *,
        status: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Case]:
        """Cases, most recently updated first."""
        q = (
            sa.select(cases)
            .where(*self._filters(status, owner))
            .order_by(cases.c.updated.desc(), cases.c.id.desc())
            .limit(max(1, min(limit, MAX_LIST)))
            .offset(max(0, offset))
        )
        with self.engine.connect() as conn:
            return [_case(r) for r in conn.execute(q)]

    def count(self, *, status: str | None = None, owner: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(cases).where(*self._filters(status, owner))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    @staticmethod
    def _filters(status: str | None, owner: str | None) -> list[Any]:
        where: list[Any] = []
        if status:
            _check(status=status)
            where.append(cases.c.status == status)
        if owner:
            where.append(cases.c.owner == owner)
        return where

    def update(self, case_id: int, **changes: str | None) -> tuple[Case, dict[str, Any]]:
        """Change title/severity/status/owner/narrative; returns the case and what changed."""
        allowed = {"title", "severity", "status", "owner", "narrative"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)[0]!r}")
        given = {k: v for k, v in changes.items() if v is not None or k == "owner"}
        if "owner" in given:
            given["owner"] = (given["owner"] or "").strip() or None
        if "title" in given:
            _check(title=given["title"])
            given["title"] = str(given["title"]).strip()
        _check(
            severity=given.get("severity"),
            status=given.get("status"),
            narrative=given.get("narrative"),
        )
        old = self.get(case_id)
        diff = {k: v for k, v in given.items() if getattr(old, k) != v}
        if not diff:
            return old, {}
        with self.engine.begin() as conn:
            self._touch(conn, case_id, **diff)
        return self.get(case_id), diff

    def _touch(self, conn: Connection, case_id: int, **values: Any) -> None:  # noqa: ANN401
        conn.execute(
            cases.update().where(cases.c.id == case_id).values(updated=utc(self.clock()), **values)
        )

    # -- alerts ------------------------------------------------------------
    def link_alert(self, case_id: int, alert_id: int, who: str) -> bool:
        """Add an alert (moving it from another case); False if it was here already.

        AlertNotFoundError if there is no such alert."""
        self.get(case_id)
        self.alerts.get(alert_id)
        now = utc(self.clock())
        with self.engine.begin() as conn:
            here = conn.execute(
                sa.select(case_alerts.c.case_id).where(case_alerts.c.alert_id == alert_id)
            ).scalar()
            if here == case_id:
                return False
            if here is not None:
                conn.execute(case_alerts.delete().where(case_alerts.c.alert_id == alert_id))
                self._touch(conn, int(here))
            conn.execute(case_alerts.insert().values(case_id=case_id, alert_id=alert_id, added=now))
            self._touch(conn, case_id)
        self.alerts.set_case(alert_id, str(case_id), who)
        return True

    def unlink_alert(self, case_id: int, alert_id: int, who: str) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(
                case_alerts.delete().where(
                    case_alerts.c.case_id == case_id, case_alerts.c.alert_id == alert_id
                )
            ).rowcount
            if gone:
                self._touch(conn, case_id)
        if gone and self.alerts.get(alert_id).case_id == str(case_id):
            self.alerts.set_case(alert_id, None, who)
        return bool(gone)

    def alert_ids(self, case_id: int) -> list[int]:
        q = (
            sa.select(case_alerts.c.alert_id)
            .where(case_alerts.c.case_id == case_id)
            .order_by(case_alerts.c.alert_id)
        )
        with self.engine.connect() as conn:
            return [int(a) for a in conn.execute(q).scalars()]

    # -- events ------------------------------------------------------------
    def link_events(self, case_id: int, events: Iterable[CaseEvent]) -> int:
        """Add events (ones already here are skipped); returns how many were added."""
        self.get(case_id)
        now = utc(self.clock())
        with self.engine.begin() as conn:
            have = set(
                conn.execute(
                    sa.select(case_events.c.event_id).where(case_events.c.case_id == case_id)
                ).scalars()
            )
            rows = []
            for ev in events:
                if ev.event_id in have:
                    continue
                have.add(ev.event_id)
                rows.append(
                    {
                        "case_id": case_id,
                        "event_id": ev.event_id[:200],
                        "timestamp": utc(ev.timestamp),
                        "dataset": (ev.dataset or None) and ev.dataset[:200],
                        "summary": ev.summary[:500],
                        "added": now,
                    }
                )
            if len(have) > MAX_EVENTS:
                raise ValueError(f"a case holds at most {MAX_EVENTS} events")
            if rows:
                conn.execute(case_events.insert(), rows)
                self._touch(conn, case_id)
        return len(rows)

    def unlink_event(self, case_id: int, event_id: str) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(
                case_events.delete().where(
                    case_events.c.case_id == case_id, case_events.c.event_id == event_id
                )
            ).rowcount
            if gone:
                self._touch(conn, case_id)
        return bool(gone)

    def events(self, case_id: int) -> list[CaseEvent]:
        """The case's events, oldest first."""
        q = (
            sa.select(case_events)
            .where(case_events.c.case_id == case_id)
            .order_by(case_events.c.timestamp, case_events.c.event_id)
        )
        with self.engine.connect() as conn:
            return [
                CaseEvent(r.event_id, utc(r.timestamp), r.summary, r.dataset)
                for r in conn.execute(q)
            ]

    # -- entities ----------------------------------------------------------
    def add_entities(self, case_id: int, pairs: Sequence[tuple[str, str]]) -> int:
        """Add (kind, value) entities (repeats skipped); returns how many were added."""
        for kind, value in pairs:
            if kind not in ENTITY_KINDS:
                raise ValueError(f"unknown entity kind {kind!r}: use one of {ENTITY_KINDS}")
            if not value or len(value) > 300:
                raise ValueError("an entity value is 1 to 300 characters")
        self.get(case_id)
        with self.engine.begin() as conn:
            have = {
                (r.kind, r.value)
                for r in conn.execute(
                    sa.select(case_entities.c.kind, case_entities.c.value).where(
                        case_entities.c.case_id == case_id
                    )
                )
            }
            new = [p for p in dict.fromkeys(pairs) if p not in have]
            if len(have) + len(new) > MAX_ENTITIES:
                raise ValueError(f"a case holds at most {MAX_ENTITIES} entities")
            if new:
                conn.execute(
                    case_entities.insert(),
                    [{"case_id": case_id, "kind": k, "value": v} for k, v in new],
                )
                self._touch(conn, case_id)
        return len(new)

    def remove_entity(self, case_id: int, kind: str, value: str) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(
                case_entities.delete().where(
                    case_entities.c.case_id == case_id,
                    case_entities.c.kind == kind,
                    case_entities.c.value == value,
                )
            ).rowcount
            if gone:
                self._touch(conn, case_id)
        return bool(gone)

    def entities(self, case_id: int) -> list[tuple[str, str]]:
        """(kind, value) pairs, by kind then value."""
        q = (
            sa.select(case_entities.c.kind, case_entities.c.value)
            .where(case_entities.c.case_id == case_id)
            .order_by(case_entities.c.kind, case_entities.c.value)
        )
        with self.engine.connect() as conn:
            return [(r.kind, r.value) for r in conn.execute(q)]

    # -- comments ----------------------------------------------------------
    def add_comment(self, case_id: int, author: str, body: str) -> Comment:
        if not body.strip() or len(body) > COMMENT_MAX:
            raise ValueError(f"a comment is 1 to {COMMENT_MAX} characters")
        self.get(case_id)
        now = utc(self.clock())
        with self.engine.begin() as conn:
            res = conn.execute(
                case_comments.insert().values(
                    case_id=case_id, author=author[:200], body=body, created=now
                )
            )
            self._touch(conn, case_id)
        return Comment(int(res.inserted_primary_key[0]), case_id, author[:200], body, now)

    def comments(self, case_id: int) -> list[Comment]:
        """Comments, oldest first (newest last)."""
        q = (
            sa.select(case_comments)
            .where(case_comments.c.case_id == case_id)
            .order_by(case_comments.c.id)
        )
        with self.engine.connect() as conn:
            return [
                Comment(int(r.id), int(r.case_id), r.author, r.body, utc(r.created))
                for r in conn.execute(q)
            ]
