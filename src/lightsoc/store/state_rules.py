"""Simple detection rules kept in the state store ("field matches regex -> name, severity").

The reference deployment kept hand-written regex rules in MySQL and edited
them from a UI; these tables are that, compiled into the same `RuleSet` as the
Sigma rules (`lightsoc.detect.simple`). Exceptions are `field = value` pairs
that suppress a rule's match on an event. Every change bumps a version counter
(`rule_meta` key "simple_rules", next to the rule flags' "version"), so a
running pipeline can tell that its rule set is stale (`detect.reload`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import StateStore, metadata, migration, upsert
from lightsoc.store.state_rule_flags import rule_meta

MATCH_KINDS = ("regex", "contains", "equals")
#: the `rule_meta` row counting changes of simple rules
VERSION_KEY = "simple_rules"
SEVERITIES = ("informational", "low", "medium", "high", "critical")

simple_rules = sa.Table(
    "simple_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("field", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("pattern", sa.Text, nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
)

simple_rule_exceptions = sa.Table(
    "simple_rule_exceptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "rule_id", sa.Integer, sa.ForeignKey("simple_rules.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("field", sa.String(200), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
)


@migration("rules_1")
def _rules_1(conn: Connection) -> None:
    for table in (simple_rules, simple_rule_exceptions):
        table.create(conn, checkfirst=True)


def _bump(conn: Connection) -> None:
    """Count a change, in the transaction that makes it."""
    bumped = {"value": rule_meta.c.value + 1}
    upsert(conn, rule_meta, {"key": VERSION_KEY, "value": 1}, ["key"], bumped)


@dataclass
class SimpleRule:
    id: int
    name: str
    field: str
    kind: str
    pattern: str
    severity: str
    enabled: bool
    exceptions: list[tuple[str, str]] = field(default_factory=list)


class RulesStore:
    """CRUD for simple rules over a `StateStore`."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def add(self, name: str, field: str, kind: str, pattern: str, severity: str) -> int:
        if kind not in MATCH_KINDS:
            raise ValueError(f"match kind must be one of {', '.join(MATCH_KINDS)}")
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(simple_rules.c.id).where(simple_rules.c.name == name)
            ).first()
            if exists:
                raise ValueError(f"a rule named {name!r} exists already")
            res = conn.execute(
                simple_rules.insert().values(
                    name=name,
                    field=field,
                    kind=kind,
                    pattern=pattern,
                    severity=severity,
                    enabled=True,
                    created=now,
                    updated=now,
                )
            )
            _bump(conn)
            return int(res.inserted_primary_key[0])

    def _id(self, conn: Connection, name: str) -> int:
        row = conn.execute(sa.select(simple_rules.c.id).where(simple_rules.c.name == name)).first()
        if row is None:
            raise KeyError(f"no simple rule named {name!r}")
        return int(row[0])

    def set_enabled(self, name: str, enabled: bool) -> None:
        with self.engine.begin() as conn:
            rid = self._id(conn, name)
            conn.execute(
                simple_rules.update()
                .where(simple_rules.c.id == rid)
                .values(enabled=enabled, updated=datetime.now(UTC))
            )
            _bump(conn)

    def add_exception(self, name: str, field: str, value: str) -> None:
        with self.engine.begin() as conn:
            rid = self._id(conn, name)
            conn.execute(
                simple_rule_exceptions.insert().values(rule_id=rid, field=field, value=value)
            )
            _bump(conn)

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            rid = self._id(conn, name)
            conn.execute(
                simple_rule_exceptions.delete().where(simple_rule_exceptions.c.rule_id == rid)
            )
            conn.execute(simple_rules.delete().where(simple_rules.c.id == rid))
            _bump(conn)

    def version(self) -> int:
        """Changes so far (add, enable/disable, exception, remove); 0 before the first."""
        with self.engine.connect() as conn:
            v = conn.execute(
                sa.select(rule_meta.c.value).where(rule_meta.c.key == VERSION_KEY)
            ).scalar()
        return int(v or 0)

    def list(self, *, enabled_only: bool = False) -> list[SimpleRule]:
        q = sa.select(simple_rules).order_by(simple_rules.c.id)
        if enabled_only:
            q = q.where(simple_rules.c.enabled)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            exc = conn.execute(sa.select(simple_rule_exceptions)).all()
        by_rule: dict[int, list[tuple[str, str]]] = {}
        for e in exc:
            by_rule.setdefault(e.rule_id, []).append((e.field, e.value))
        return [
            SimpleRule(
                r.id,
                r.name,
                r.field,
                r.kind,
                r.pattern,
                r.severity,
                bool(r.enabled),
                by_rule.get(r.id, []),
            )
            for r in rows
        ]
