"""State-store tables of alerts (`lightsoc.alerts.store.AlertStore` uses them).

SQLAlchemy Core types only, so the same tables work on SQLite and PostgreSQL.
Times are stored as UTC; SQLite gives them back naive (see `alerts.model.utc`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import metadata, migration

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # sha256 of (rule id, entity type, entity value): the deduplication key
    sa.Column("dedup_key", sa.String(64), nullable=False),
    sa.Column("rule_id", sa.String(300), nullable=False),
    sa.Column("rule_name", sa.String(500), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    # 0 informational .. 4 critical: "at least high" is a range query
    sa.Column("severity_rank", sa.SmallInteger, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("entity_type", sa.String(20), nullable=False),
    sa.Column("entity_value", sa.Text, nullable=False),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    # end of the suppression window, fixed when the alert opens
    sa.Column("suppress_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("assignee", sa.String(200), nullable=True),
    sa.Column("case_id", sa.String(100), nullable=True),
    sa.Column("event_ids", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_alerts_dedup", "dedup_key", "first_seen"),
    sa.Index("ix_alerts_last_seen", "last_seen"),
    sa.Index("ix_alerts_status", "status", "last_seen"),
)

#: Windows of correlation rules already raised, with the count each contributed:
#: a rerun over the same window adds only what is new (late events), never twice.
alert_windows = sa.Table(
    "alert_windows",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("raised", sa.DateTime(timezone=True), nullable=False),
)

alert_history = sa.Table(
    "alert_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("who", sa.String(200), nullable=False),
    sa.Column("action", sa.String(30), nullable=False),
    sa.Column("from_status", sa.String(20), nullable=True),
    sa.Column("to_status", sa.String(20), nullable=True),
    sa.Column("assignee", sa.String(200), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("ix_alert_history_alert", "alert_id", "id"),
)

#: One row, written first in every `raise_alerts` transaction: it serialises
#: concurrent writers (SQLite takes its write lock at once instead of failing a
#: read-then-write upgrade; PostgreSQL row-locks it), so two processes never
#: both open the same (rule, entity) alert.
alert_lock = sa.Table(
    "alert_lock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)


@migration("alerts_1")
def _alerts_1(conn: Connection) -> None:
    for table in (alerts, alert_windows, alert_history, alert_lock):
        table.create(conn, checkfirst=True)
    conn.execute(alert_lock.insert().values(id=1, generation=0))
