"""Per-rule enable/disable of Sigma rules (built-in and imported), kept in the state store.

Sigma rules live in YAML files that lightsoc does not rewrite (the built-in
pack may be read-only package data), so whether one runs is a row here, by
rule id: no row means enabled. `detect.build.build_ruleset` leaves disabled
rules out. Every change bumps a version counter, like intel's, so a process
holding a rule set can tell that it is stale.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import StateStore, metadata, migration, upsert

rule_flags = sa.Table(
    "rule_flags",
    metadata,
    sa.Column("rule_id", sa.String(300), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("who", sa.String(200), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
)

#: one row, key "version": bumped by every change of a rule (flags, saved rules)
rule_meta = sa.Table(
    "rule_meta",
    metadata,
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)


@migration("rule_flags_1")
def _rule_flags_1(conn: Connection) -> None:
    for table in (rule_flags, rule_meta):
        table.create(conn, checkfirst=True)


def _bump(conn: Connection) -> None:
    upsert(
        conn, rule_meta, {"key": "version", "value": 1}, ["key"], {"value": rule_meta.c.value + 1}
    )


class RuleFlags:
    """Which Sigma rules are switched off, over a `StateStore`."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def set_enabled(self, rule_id: str, enabled: bool, who: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(rule_flags.delete().where(rule_flags.c.rule_id == rule_id))
            conn.execute(
                rule_flags.insert().values(rule_id=rule_id, enabled=enabled, who=who, updated=now)
            )
            _bump(conn)

    def disabled(self) -> set[str]:
        """Ids of the rules switched off."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(rule_flags.c.rule_id).where(sa.not_(rule_flags.c.enabled))
                ).scalars()
            )

    def bump(self) -> None:
        """Record a rule change made elsewhere (a rule file saved, a simple rule edited)."""
        with self.engine.begin() as conn:
            _bump(conn)

    def version(self) -> int:
        with self.engine.connect() as conn:
            v = conn.execute(
                sa.select(rule_meta.c.value).where(rule_meta.c.key == "version")
            ).scalar()
        return int(v or 0)
