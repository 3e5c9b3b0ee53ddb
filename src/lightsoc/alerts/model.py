"""The alert model: what a detector proposes (`AlertCandidate`), what is stored (`Alert`).

Plain dataclasses without database code, so outputs and the web layer can use
them cheaply. `Alert.as_dict()` is the one JSON shape of an alert everywhere
(CLI `--format json`, the API, alert outputs): ECS-style dotted keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SEVERITIES = ("informational", "low", "medium", "high", "critical")
ENTITY_TYPES = ("ip", "user", "host", "domain")
STATUSES = ("open", "acknowledged", "closed", "false_positive")
#: Statuses in which an alert is still being worked on: new hits update it.
ACTIVE_STATUSES = ("open", "acknowledged")

#: Score of a candidate that names none: the middle of its severity's band.
DEFAULT_SCORES = {
    "informational": 10.0,
    "low": 25.0,
    "medium": 50.0,
    "high": 75.0,
    "critical": 95.0,
}
#: An alert keeps this many event ids: the first half and the most recent rest.
EVENT_SAMPLE = 20
DEFAULT_SUPPRESSION = timedelta(hours=1)

#: Allowed status changes. Closing is not final: an analyst can reopen, or
#: decide later that a closed alert was a false positive (and the reverse).
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"acknowledged", "closed", "false_positive"}),
    "acknowledged": frozenset({"open", "closed", "false_positive"}),
    "closed": frozenset({"open", "false_positive"}),
    "false_positive": frozenset({"open", "closed"}),
}

ALERT_KEYS = (
    "id",
    "rule.id",
    "rule.name",
    "severity",
    "score",
    "entity.type",
    "entity.value",
    "first_seen",
    "last_seen",
    "count",
    "status",
    "assignee",
    "case_id",
    "event_ids",
    "description",
    "tags",
)


def severity_rank(severity: str) -> int:
    """0 (informational) .. 4 (critical); ValueError for anything else."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(
            f"unknown severity {severity!r}: use one of {', '.join(SEVERITIES)}"
        ) from None


def utc(value: datetime) -> datetime:
    """Aware UTC; a naive time is taken as UTC (SQLite returns naive times)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """`2026-11-29T10:00:00Z`, the timestamp format of events in JSON."""
    return None if value is None else utc(value).isoformat().replace("+00:00", "Z")


def dedup_key(rule_id: str, entity_type: str, entity_value: str) -> str:
    """Fixed-length key of (rule, entity): indexable whatever the entity's length."""
    raw = json.dumps([rule_id, entity_type, entity_value], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


def window_key(rule_id: str, window: str | Sequence[Any]) -> str:
    """Key of one (rule, group key, window) a correlation rule raised."""
    parts = [window] if isinstance(window, str) else [str(p) for p in window]
    raw = json.dumps([rule_id, *parts], ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def merge_sample(old: Sequence[str], new: Sequence[str], size: int = EVENT_SAMPLE) -> list[str]:
    """Bounded event id sample: the first ids (how it started) plus the latest ones."""
    seen = dict.fromkeys(old)
    seen.update(dict.fromkeys(new))
    ids = list(seen)
    if len(ids) <= size:
        return ids
    head = size // 2
    return ids[:head] + ids[len(ids) - (size - head) :]


@dataclass
class AlertCandidate:
    """What a detector proposes; `AlertStore.raise_alerts` dedups it into an `Alert`.

    `window` identifies one evaluation of a windowed rule (group key and window
    bounds, e.g. ``("source.ip=10.0.0.5", "2026-11-29T10:00Z", "2026-11-29T10:05Z")``):
    raising the same window again never counts twice. `suppression` overrides
    the store's per-rule window for deduplication.
    """

    rule_id: str
    rule_name: str
    severity: str
    entity_type: str
    entity_value: str
    first_seen: datetime
    last_seen: datetime | None = None
    count: int = 1
    score: float | None = None
    event_ids: Sequence[str] = ()
    window: str | Sequence[Any] | None = None
    description: str = ""
    tags: Sequence[str] = ()
    suppression: timedelta | None = None

    def normalised(self) -> AlertCandidate:
        """A checked copy: known severity/entity type, UTC times, score in 0..100."""
        severity = str(self.severity).lower()
        severity_rank(severity)
        etype = str(self.entity_type).lower()
        if etype not in ENTITY_TYPES:
            raise ValueError(
                f"unknown entity type {self.entity_type!r}: use one of {', '.join(ENTITY_TYPES)}"
            )
        if not self.rule_id or not self.entity_value:
            raise ValueError("an alert needs a rule id and an entity value")
        if self.count < 1:
            raise ValueError(f"alert count must be at least 1, got {self.count}")
        first = utc(self.first_seen)
        last = utc(self.last_seen) if self.last_seen is not None else first
        first, last = min(first, last), max(first, last)
        score = DEFAULT_SCORES[severity] if self.score is None else float(self.score)
        return AlertCandidate(
            rule_id=str(self.rule_id),
            rule_name=str(self.rule_name or self.rule_id),
            severity=severity,
            entity_type=etype,
            entity_value=str(self.entity_value),
            first_seen=first,
            last_seen=last,
            count=int(self.count),
            score=min(100.0, max(0.0, score)),
            event_ids=[str(e) for e in self.event_ids],
            window=self.window,
            description=str(self.description or ""),
            tags=[str(t) for t in self.tags],
            suppression=self.suppression,
        )


@dataclass
class Alert:
    """A stored alert (DESIGN section 6)."""

    id: int
    rule_id: str
    rule_name: str
    severity: str
    score: float
    entity_type: str
    entity_value: str
    first_seen: datetime
    last_seen: datetime
    count: int
    status: str = "open"
    assignee: str | None = None
    case_id: str | None = None
    event_ids: list[str] = field(default_factory=list)
    description: str = ""
    tags: list[str] = field(default_factory=list)
    suppress_until: datetime | None = None
    updated: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data with the dotted keys of `ALERT_KEYS`."""
        return {
            "id": self.id,
            "rule.id": self.rule_id,
            "rule.name": self.rule_name,
            "severity": self.severity,
            "score": round(self.score, 2),
            "entity.type": self.entity_type,
            "entity.value": self.entity_value,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "count": self.count,
            "status": self.status,
            "assignee": self.assignee,
            "case_id": self.case_id,
            "event_ids": list(self.event_ids),
            "description": self.description,
            "tags": list(self.tags),
        }


@dataclass
class ChangedAlert:
    """One alert `raise_alerts` touched and how.

    `change` is ``new`` (notify), ``updated`` (an active alert absorbed more
    hits) or ``suppressed`` (absorbed by an alert an analyst already closed or
    marked false positive: recorded, never reopened). `escalated` is set when
    the hits raised the alert's severity: outputs notify on `new` or `escalated`.
    """

    alert: Alert
    change: str
    escalated: bool = False
    previous_severity: str | None = None

    @property
    def notify(self) -> bool:
        return self.change == "new" or self.escalated


@dataclass(frozen=True)
class HistoryEntry:
    """One analyst action on an alert (status change or assignment)."""

    alert_id: int
    at: datetime
    who: str
    action: str
    from_status: str | None
    to_status: str | None
    assignee: str | None
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "at": iso(self.at),
            "who": self.who,
            "action": self.action,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "assignee": self.assignee,
            "note": self.note,
        }


@dataclass(frozen=True)
class EntityScore:
    """Triage score of one entity from its recent alerts (see `scoring.entity_score`)."""

    entity_type: str
    entity_value: str
    score: float
    alerts: int
    max_severity: str
    last_seen: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity.type": self.entity_type,
            "entity.value": self.entity_value,
            "score": round(self.score, 2),
            "alerts": self.alerts,
            "max_severity": self.max_severity,
            "last_seen": iso(self.last_seen),
        }
