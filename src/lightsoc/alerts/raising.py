"""Raise a batch of alert candidates with a handful of statements.

A flood of flagged events means thousands of candidates per second, nearly
all of them hits on alerts that are already open. Going to the database per
candidate (look up the window, look up the alert, update it, read it back)
cost about a millisecond each and made alerting the slowest stage of an
import. Under the alert write lock nobody else changes alerts, so a batch
reads every alert and window it can touch in two queries, applies the
candidates in order in memory (the same rules as one at a time: see
`AlertStore`), inserts the alerts it opens and writes every change back with
one executemany per table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from lightsoc.alerts.model import (
    ACTIVE_STATUSES,
    Alert,
    AlertCandidate,
    ChangedAlert,
    dedup_key,
    merge_sample,
    severity_rank,
    utc,
    window_key,
)
from lightsoc.store.state_alerts import alert_windows, alerts

# Bound parameters per IN list: well under SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500

_UPDATE = (
    alerts.update()
    .where(alerts.c.id == sa.bindparam("b_id"))
    .values(
        # an expression, not the sum in memory: no update is lost whoever else writes
        count=alerts.c.count + sa.bindparam("b_add"),
        first_seen=sa.bindparam("b_first_seen"),
        last_seen=sa.bindparam("b_last_seen"),
        score=sa.bindparam("b_score"),
        severity=sa.bindparam("b_severity"),
        severity_rank=sa.bindparam("b_severity_rank"),
        event_ids=sa.bindparam("b_event_ids", type_=alerts.c.event_ids.type),
        tags=sa.bindparam("b_tags", type_=alerts.c.tags.type),
        description=sa.bindparam("b_description"),
        updated=sa.bindparam("b_updated"),
    )
)
_WINDOW_UPDATE = (
    alert_windows.update()
    .where(alert_windows.c.key == sa.bindparam("b_key"))
    .values(count=sa.bindparam("b_count"), raised=sa.bindparam("b_raised"))
)


@dataclass
class _Window:
    alert_id: int
    count: int
    new: bool
    dirty: bool = False


def alert_from_row(row: Row[Any]) -> Alert:
    return Alert(
        id=int(row.id),
        rule_id=row.rule_id,
        rule_name=row.rule_name,
        severity=row.severity,
        score=float(row.score),
        entity_type=row.entity_type,
        entity_value=row.entity_value,
        first_seen=utc(row.first_seen),
        last_seen=utc(row.last_seen),
        count=int(row.count),
        status=row.status,
        assignee=row.assignee,
        case_id=row.case_id,
        event_ids=list(row.event_ids or []),
        description=row.description or "",
        tags=list(row.tags or []),
        suppress_until=utc(row.suppress_until),
        updated=utc(row.updated),
    )


class RaiseBatch:
    """One `raise_alerts` call; the caller holds the alert write lock on `conn`."""

    def __init__(
        self,
        conn: Connection,
        suppression_for: Callable[[AlertCandidate], timedelta],
        now: datetime,
    ) -> None:
        self.conn = conn
        self.suppression_for = suppression_for
        self.now = now
        self.alerts: dict[int, Alert] = {}
        self.by_key: dict[str, list[int]] = {}
        self.windows: dict[str, _Window] = {}
        self.added: dict[int, int] = {}  # alert id -> hits to add to its stored count
        self.opened: dict[int, str] = {}  # negative id of an alert to insert -> dedup key

    def run(self, cands: Sequence[AlertCandidate]) -> list[ChangedAlert]:
        """Apply normalised candidates in order: what each changed (None: nothing)."""
        self._prefetch(cands)
        out = [r for r in map(self._raise_one, cands) if r is not None]
        ids = self._flush()
        return [
            replace(r, alert=replace(r.alert, id=ids[r.alert.id])) if r.alert.id < 0 else r
            for r in out
        ]

    # -- reading everything the batch can touch ------------------------------
    def _prefetch(self, cands: Sequence[AlertCandidate]) -> None:
        wkeys = {window_key(c.rule_id, c.window) for c in cands if c.window is not None}
        for chunk in _chunks(wkeys):
            rows = self.conn.execute(
                sa.select(
                    alert_windows.c.key, alert_windows.c.alert_id, alert_windows.c.count
                ).where(alert_windows.c.key.in_(chunk))
            )
            for r in rows:
                self.windows[r.key] = _Window(int(r.alert_id), int(r.count), new=False)
        first = min(c.first_seen for c in cands)
        last = max(c.last_seen for c in cands if c.last_seen is not None)
        keys = {dedup_key(c.rule_id, c.entity_type, c.entity_value) for c in cands}
        # Every alert a candidate could fall into: its (rule, entity) with a
        # suppression window overlapping the batch's span, or a window's alert.
        for chunk in _chunks(keys):
            self._load(
                alerts.c.dedup_key.in_(chunk),
                alerts.c.first_seen <= last,
                alerts.c.suppress_until > first,
            )
        missing = {w.alert_id for w in self.windows.values()} - self.alerts.keys()
        for chunk in _chunks(missing):
            self._load(alerts.c.id.in_(chunk))

    def _load(self, *where: Any) -> None:
        for row in self.conn.execute(sa.select(alerts).where(*where)):
            if int(row.id) in self.alerts:
                continue
            self._remember(alert_from_row(row), row.dedup_key)

    def _remember(self, alert: Alert, key: str) -> None:
        self.alerts[alert.id] = alert
        self.by_key.setdefault(key, []).append(alert.id)

    # -- the rules, one candidate at a time, in memory -------------------------
    def _raise_one(self, c: AlertCandidate) -> ChangedAlert | None:
        assert c.last_seen is not None  # normalised
        wkey = window_key(c.rule_id, c.window) if c.window is not None else None
        if wkey is not None and wkey in self.windows:
            seen = self.windows[wkey]
            # The same window again: only events it did not count before are new.
            extra = c.count - seen.count
            if extra <= 0:
                return None
            seen.count, seen.dirty = c.count, True
            return self._absorb(self.alerts[seen.alert_id], c, extra)
        key = dedup_key(c.rule_id, c.entity_type, c.entity_value)
        open_ = [
            a
            for a in (self.alerts[i] for i in self.by_key.get(key, ()))
            if a.first_seen <= c.last_seen and a.suppress_until is not None
            if a.suppress_until > c.first_seen
        ]
        if open_:
            current = max(open_, key=lambda a: (a.first_seen, a.id))
            result = self._absorb(current, c, c.count)
        else:
            result = ChangedAlert(self._insert(c, key), "new")
        if wkey is not None:
            self.windows[wkey] = _Window(result.alert.id, c.count, new=True)
        return result

    def _insert(self, c: AlertCandidate, key: str) -> Alert:
        """Open an alert in memory; `_flush` stores it (a negative id until then)."""
        assert c.last_seen is not None and c.score is not None
        alert = Alert(
            id=-(len(self.opened) + 1),
            rule_id=c.rule_id,
            rule_name=c.rule_name,
            severity=c.severity,
            score=c.score,
            entity_type=c.entity_type,
            entity_value=c.entity_value,
            first_seen=c.first_seen,
            last_seen=c.last_seen,
            count=c.count,
            status="open",
            event_ids=merge_sample([], list(c.event_ids)),
            description=c.description,
            tags=sorted(set(c.tags)),
            suppress_until=c.first_seen + self.suppression_for(c),
            updated=self.now,
        )
        self.opened[alert.id] = key
        self._remember(alert, key)
        return alert

    def _absorb(self, old: Alert, c: AlertCandidate, add: int) -> ChangedAlert:
        """Fold a candidate's hits into an existing alert (its status is left alone)."""
        assert c.last_seen is not None and c.score is not None
        escalated = severity_rank(c.severity) > severity_rank(old.severity)
        new = replace(
            old,
            count=old.count + add,
            first_seen=min(old.first_seen, c.first_seen),
            last_seen=max(old.last_seen, c.last_seen),
            score=max(old.score, c.score),
            event_ids=merge_sample(old.event_ids, list(c.event_ids)),
            tags=sorted(set(old.tags) | set(c.tags)),
            severity=c.severity if escalated else old.severity,
            description=old.description or c.description,
            updated=self.now,
        )
        self.alerts[old.id] = new
        if old.id > 0:  # an alert this batch opened is stored in its final state
            self.added[old.id] = self.added.get(old.id, 0) + add
        active = old.status in ACTIVE_STATUSES
        return ChangedAlert(
            new,
            "updated" if active else "suppressed",
            escalated=escalated and active,
            previous_severity=old.severity if escalated else None,
        )

    # -- writing back ------------------------------------------------------------
    def _flush(self) -> dict[int, int]:
        """Write the batch; returns the stored id of each alert it opened."""
        ids = self._insert_opened()
        if self.added:
            self.conn.execute(
                _UPDATE,
                [
                    {
                        "b_id": a.id,
                        "b_add": add,
                        "b_first_seen": a.first_seen,
                        "b_last_seen": a.last_seen,
                        "b_score": a.score,
                        "b_severity": a.severity,
                        "b_severity_rank": severity_rank(a.severity),
                        "b_event_ids": a.event_ids,
                        "b_tags": a.tags,
                        "b_description": a.description,
                        "b_updated": a.updated,
                    }
                    for a, add in ((self.alerts[i], n) for i, n in self.added.items())
                ],
            )
        inserts = [
            {
                "key": k,
                "alert_id": ids.get(w.alert_id, w.alert_id),
                "count": w.count,
                "raised": self.now,
            }
            for k, w in self.windows.items()
            if w.new
        ]
        if inserts:
            self.conn.execute(alert_windows.insert(), inserts)
        updates = [
            {"b_key": k, "b_count": w.count, "b_raised": self.now}
            for k, w in self.windows.items()
            if w.dirty and not w.new
        ]
        if updates:
            self.conn.execute(_WINDOW_UPDATE, updates)
        return ids

    def _insert_opened(self) -> dict[int, int]:
        if not self.opened:
            return {}
        rows = [
            {
                "dedup_key": key,
                "rule_id": a.rule_id,
                "rule_name": a.rule_name,
                "severity": a.severity,
                "severity_rank": severity_rank(a.severity),
                "score": a.score,
                "entity_type": a.entity_type,
                "entity_value": a.entity_value,
                "first_seen": a.first_seen,
                "last_seen": a.last_seen,
                "suppress_until": a.suppress_until,
                "count": a.count,
                "status": a.status,
                "event_ids": a.event_ids,
                "description": a.description,
                "tags": a.tags,
                "created": self.now,
                "updated": self.now,
            }
            for a, key in ((self.alerts[i], k) for i, k in self.opened.items())
        ]
        # one statement for all of them; ids come back in the order of `rows`
        stmt = alerts.insert().returning(alerts.c.id, sort_by_parameter_order=True)
        stored = [int(r.id) for r in self.conn.execute(stmt, rows)]
        return dict(zip(self.opened, stored, strict=True))


def _chunks(items: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(items)
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]
