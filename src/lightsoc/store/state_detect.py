"""Scheduled detection state: per-rule watermarks (how far a rule has been run).

The scheduler records, after each successful step, the end of the range it
evaluated for each rule; after a restart it resumes from there, so a
downtime is caught up instead of skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import StateStore, metadata, migration, upsert

detect_watermarks = sa.Table(
    "detect_watermarks",
    metadata,
    sa.Column("rule_id", sa.String(200), primary_key=True),
    sa.Column("watermark", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
)


@migration("detect_1")
def _detect_1(conn: Connection) -> None:
    detect_watermarks.create(conn, checkfirst=True)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class WatermarkStore:
    """Read and advance rule watermarks (event time, UTC)."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def get_all(self) -> dict[str, datetime]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(detect_watermarks.c.rule_id, detect_watermarks.c.watermark)
            )
            return {r.rule_id: _utc(r.watermark) for r in rows}

    def set_many(self, rule_ids: list[str], watermark: datetime) -> None:
        """Set the watermark of these rules (never moves one backwards)."""
        now = datetime.now(UTC)
        wm = _utc(watermark)
        t = detect_watermarks
        with self.engine.begin() as conn:
            for rid in rule_ids:
                # insert-if-absent then advance-only update: two schedulers starting the
                # same rule never collide on the key (PostgreSQL locks no absent row)
                upsert(conn, t, {"rule_id": rid, "watermark": wm, "updated": now}, ["rule_id"], {})
                conn.execute(
                    t.update()
                    .where(t.c.rule_id == rid, t.c.watermark < wm)
                    .values(watermark=wm, updated=now)
                )
