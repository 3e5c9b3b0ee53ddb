"""Alerts in the state store: deduplication, suppression, triage and history.

Deduplication is by (rule, entity). An alert's suppression window starts at
its first hit and lasts the rule's suppression (default 1 h; fixed when the
alert opens): hits inside it update the alert (count, last seen, event id
sample, severity escalation) instead of opening another; the first hit after
it opens a new alert, so a persistent attacker is re-announced once per
window. An alert an analyst closed or marked false positive absorbs hits in
its window silently: it is never reopened by them.

All times are event times (what the detector saw), never the wall clock, so
re-detection over historical data (`lightsoc detect --since`) gives the same
alerts as the live stream. Every query is SQLAlchemy Core with bound
parameters: entity values are attacker-controlled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from lightsoc.alerts.model import (
    DEFAULT_SUPPRESSION,
    SEVERITIES,
    STATUSES,
    TRANSITIONS,
    Alert,
    AlertCandidate,
    ChangedAlert,
    EntityScore,
    HistoryEntry,
    severity_rank,
    utc,
)
from lightsoc.alerts.raising import RaiseBatch, alert_from_row
from lightsoc.alerts.scoring import DEFAULT_HALF_LIFE, LOOKBACK_HALF_LIVES, entity_score
from lightsoc.store.state import StateStore
from lightsoc.store.state_alerts import alert_history, alert_lock, alerts

if TYPE_CHECKING:
    from lightsoc.config import Config

MAX_LIST = 10_000
# `raise_alerts` reports each alert once; a stronger change wins when one batch
# touches an alert several times.
_CHANGE_ORDER = {"suppressed": 0, "updated": 1, "new": 2}


class AlertNotFoundError(LookupError):
    """No alert with that id."""


class TransitionError(ValueError):
    """A status change the alert's current status does not allow."""


def _now() -> datetime:
    return datetime.now(UTC)


class AlertStore:
    """Alerts of one state store (SQLite or PostgreSQL)."""

    def __init__(
        self,
        state: StateStore,
        *,
        suppression: timedelta = DEFAULT_SUPPRESSION,
        rule_suppression: Mapping[str, timedelta] | None = None,
        half_life: timedelta = DEFAULT_HALF_LIFE,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if suppression <= timedelta(0) or half_life <= timedelta(0):
            raise ValueError("suppression and half-life must be positive")
        self.engine = state.engine
        self.suppression = suppression
        self.rule_suppression = dict(rule_suppression or {})
        self.half_life = half_life
        self.clock = clock

    @classmethod
    def for_config(cls, state: StateStore, config: Config | None = None) -> AlertStore:
        """An alert store with the config's `alerts.suppression`, `rule_suppression`, `half_life`."""
        if config is None:
            return cls(state)
        a = config.alerts
        return cls(
            state,
            suppression=a.suppression,
            rule_suppression=a.rule_suppression,
            half_life=a.half_life,
        )

    # -- raising ---------------------------------------------------------
    def raise_alerts(self, candidates: Sequence[AlertCandidate]) -> list[ChangedAlert]:
        """Store candidates (dedup, suppression, idempotent windows) in one transaction.

        Returns each alert that changed once, in first-touched order; candidates
        that changed nothing (a window raised before with no new events) are
        not in it. Invalid candidates raise ValueError before anything is written.
        """
        checked = [c.normalised() for c in candidates]
        if not checked:
            return []
        changed: dict[int, ChangedAlert] = {}
        now = utc(self.clock())
        with self.engine.begin() as conn:
            _lock(conn)
            for result in RaiseBatch(conn, self.suppression_for, now).run(checked):
                prev = changed.get(result.alert.id)
                if prev is None:
                    changed[result.alert.id] = result
                    continue
                stronger = max(prev.change, result.change, key=_CHANGE_ORDER.__getitem__)
                changed[result.alert.id] = ChangedAlert(
                    result.alert,
                    stronger,
                    escalated=(prev.escalated or result.escalated) and stronger != "new",
                    previous_severity=prev.previous_severity,
                )
        return list(changed.values())

    def suppression_for(self, cand: AlertCandidate) -> timedelta:
        return cand.suppression or self.rule_suppression.get(cand.rule_id) or self.suppression

    # -- reading ---------------------------------------------------------
    def get(self, alert_id: int) -> Alert:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise AlertNotFoundError(f"no alert {alert_id}")
        return alert_from_row(row)

    def find(
        self,
        *,
        since: datetime | None = None,
        statuses: Sequence[str] | None = None,
        min_severity: str | None = None,
        entity: str | None = None,
        rule_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Alert]:
        """Alerts seen since `since` (by last hit), most recent first."""
        where = _filters(since, statuses, min_severity, entity, rule_id)
        q = (
            sa.select(alerts)
            .where(*where)
            .order_by(alerts.c.last_seen.desc(), alerts.c.id.desc())
            .limit(max(1, min(limit, MAX_LIST)))
            .offset(max(0, offset))
        )
        with self.engine.connect() as conn:
            return [alert_from_row(r) for r in conn.execute(q)]

    def count(
        self,
        *,
        since: datetime | None = None,
        statuses: Sequence[str] | None = None,
        min_severity: str | None = None,
        entity: str | None = None,
        rule_id: str | None = None,
    ) -> int:
        where = _filters(since, statuses, min_severity, entity, rule_id)
        q = sa.select(sa.func.count()).select_from(alerts).where(*where)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def severity_histogram(
        self, interval_seconds: int, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, list[tuple[int, int]]]:
        """Alerts per severity and time bucket of their first hit, counted in the
        database: {severity: [(bucket start in epoch seconds, alerts)]}, oldest first."""
        iv = max(1, int(interval_seconds))
        col = alerts.c.first_seen
        if self.engine.dialect.name == "sqlite":
            epoch: Any = sa.cast(sa.func.strftime("%s", col), sa.BigInteger)
        else:  # PostgreSQL
            epoch = sa.cast(sa.func.floor(sa.extract("epoch", col)), sa.BigInteger)
        bucket = ((epoch // iv) * iv).label("b")
        q = sa.select(bucket, alerts.c.severity, sa.func.count()).group_by(
            bucket, alerts.c.severity
        )
        if since is not None:
            q = q.where(col >= utc(since))
        if until is not None:
            q = q.where(col < utc(until))
        out: dict[str, list[tuple[int, int]]] = {}
        with self.engine.connect() as conn:
            for b, sev, n in conn.execute(q.order_by(bucket)):
                out.setdefault(sev, []).append((int(b), int(n)))
        return out

    def history(self, alert_id: int) -> list[HistoryEntry]:
        q = (
            sa.select(alert_history)
            .where(alert_history.c.alert_id == alert_id)
            .order_by(alert_history.c.id)
        )
        with self.engine.connect() as conn:
            return [
                HistoryEntry(
                    alert_id=r.alert_id,
                    at=utc(r.at),
                    who=r.who,
                    action=r.action,
                    from_status=r.from_status,
                    to_status=r.to_status,
                    assignee=r.assignee,
                    note=r.note,
                )
                for r in conn.execute(q)
            ]

    # -- triage ------------------------------------------------------------
    def set_status(self, alert_id: int, status: str, who: str, note: str | None = None) -> Alert:
        """Acknowledge, close, mark false positive or reopen; recorded in the history.

        Setting the status an alert already has changes and records nothing.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        with self.engine.begin() as conn:
            _lock(conn)
            old = alert_from_row(_select_one(conn, alerts.c.id == alert_id, alert_id))
            if old.status == status:
                return old
            if status not in TRANSITIONS[old.status]:
                raise TransitionError(
                    f"alert {alert_id} is {old.status}; it cannot become {status}"
                )
            now = utc(self.clock())
            conn.execute(
                alerts.update().where(alerts.c.id == alert_id).values(status=status, updated=now)
            )
            self._record(conn, alert_id, now, who, status, old.status, status, old.assignee, note)
            return replace(old, status=status, updated=now)

    def assign(
        self, alert_id: int, assignee: str | None, who: str, note: str | None = None
    ) -> Alert:
        """Give the alert to `assignee` (None: unassign); recorded in the history."""
        if assignee is not None:
            assignee = assignee.strip() or None
        with self.engine.begin() as conn:
            _lock(conn)
            old = alert_from_row(_select_one(conn, alerts.c.id == alert_id, alert_id))
            if old.assignee == assignee:
                return old
            now = utc(self.clock())
            conn.execute(
                alerts.update()
                .where(alerts.c.id == alert_id)
                .values(assignee=assignee, updated=now)
            )
            action = "assign" if assignee else "unassign"
            self._record(conn, alert_id, now, who, action, old.status, old.status, assignee, note)
            return replace(old, assignee=assignee, updated=now)

    def set_case(self, alert_id: int, case_id: str | None, who: str) -> Alert:
        """Attach the alert to a case (None: detach); recorded in the history."""
        with self.engine.begin() as conn:
            _lock(conn)
            old = alert_from_row(_select_one(conn, alerts.c.id == alert_id, alert_id))
            if old.case_id == case_id:
                return old
            now = utc(self.clock())
            conn.execute(
                alerts.update().where(alerts.c.id == alert_id).values(case_id=case_id, updated=now)
            )
            self._record(
                conn, alert_id, now, who, "case", old.status, old.status, old.assignee, case_id
            )
            return replace(old, case_id=case_id, updated=now)

    @staticmethod
    def _record(
        conn: Connection,
        alert_id: int,
        at: datetime,
        who: str,
        action: str,
        from_status: str | None,
        to_status: str | None,
        assignee: str | None,
        note: str | None,
    ) -> None:
        conn.execute(
            alert_history.insert().values(
                alert_id=alert_id,
                at=at,
                who=who or "unknown",
                action=action if action not in STATUSES else _ACTION[action],
                from_status=from_status,
                to_status=to_status,
                assignee=assignee,
                note=note,
            )
        )

    # -- entity triage score ---------------------------------------------
    def entity_scores(
        self,
        top: int = 10,
        *,
        now: datetime | None = None,
        half_life: timedelta | None = None,
        entity_type: str | None = None,
        entity_value: str | None = None,
    ) -> list[EntityScore]:
        """The `top` entities by decayed combined score of their alerts (or only `entity_value`'s).

        False positives do not count; closed alerts do (a handled attacker is
        still the attacker), until their weight has decayed away.
        """
        half_life = half_life or self.half_life
        now = utc(now or self.clock())
        q = sa.select(
            alerts.c.entity_type,
            alerts.c.entity_value,
            alerts.c.score,
            alerts.c.severity_rank,
            alerts.c.last_seen,
        ).where(
            alerts.c.status != "false_positive",
            alerts.c.last_seen >= now - half_life * LOOKBACK_HALF_LIVES,
        )
        if entity_type is not None:
            q = q.where(alerts.c.entity_type == entity_type)
        if entity_value is not None:
            q = q.where(alerts.c.entity_value == entity_value)
        groups: dict[tuple[str, str], list[tuple[float, datetime, int]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                groups.setdefault((r.entity_type, r.entity_value), []).append(
                    (float(r.score), utc(r.last_seen), int(r.severity_rank))
                )
        scores = [
            EntityScore(
                entity_type=etype,
                entity_value=value,
                score=entity_score(((s, t) for s, t, _ in items), now, half_life),
                alerts=len(items),
                max_severity=SEVERITIES[max(rank for _, _, rank in items)],
                last_seen=max(t for _, t, _ in items),
            )
            for (etype, value), items in groups.items()
        ]
        scores.sort(key=lambda e: (-e.score, -e.last_seen.timestamp(), e.entity_value))
        return scores[: max(0, top)]


_ACTION = {
    "open": "reopen",
    "acknowledged": "acknowledge",
    "closed": "close",
    "false_positive": "false_positive",
}


def _lock(conn: Connection) -> None:
    """Take the alert write lock first (see `state_alerts.alert_lock`)."""
    conn.execute(
        alert_lock.update()
        .where(alert_lock.c.id == 1)
        .values(generation=alert_lock.c.generation + 1)
    )


def _select_one(conn: Connection, cond: Any, alert_id: int | None = None) -> Row[Any]:
    row = conn.execute(sa.select(alerts).where(cond)).first()
    if row is None:
        raise AlertNotFoundError(f"no alert {alert_id}")
    return row


def _filters(
    since: datetime | None,
    statuses: Sequence[str] | None,
    min_severity: str | None,
    entity: str | None,
    rule_id: str | None,
) -> list[Any]:
    where: list[Any] = []
    if since is not None:
        where.append(alerts.c.last_seen >= utc(since))
    if statuses:
        unknown = [s for s in statuses if s not in STATUSES]
        if unknown:
            raise ValueError(f"unknown status {unknown[0]!r}: use one of {', '.join(STATUSES)}")
        where.append(alerts.c.status.in_(list(statuses)))
    if min_severity:
        where.append(alerts.c.severity_rank >= severity_rank(min_severity))
    if entity is not None:
        where.append(alerts.c.entity_value == entity)
    if rule_id is not None:
        where.append(alerts.c.rule_id == rule_id)
    return where
