"""State-store tables of cases (`lightsoc.cases.store.CaseStore` uses them).

A case gathers alerts, events and entities into one investigation with a
narrative and comments. Events are kept as their id, time and a short
summary, so the storyboard renders without reading the event store (and
survives the events' retention). SQLAlchemy Core types only: SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import metadata, migration

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("narrative", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_cases_status", "status", "updated"),
)

#: An alert belongs to at most one case (the alert row's `case_id` says which).
case_alerts = sa.Table(
    "case_alerts",
    metadata,
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("added", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("case_id", "alert_id"),
    sa.UniqueConstraint("alert_id", name="uq_case_alerts_alert"),
)

case_events = sa.Table(
    "case_events",
    metadata,
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("event_id", sa.String(200), nullable=False),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("dataset", sa.String(200), nullable=True),
    sa.Column("summary", sa.String(500), nullable=False),
    sa.Column("added", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("case_id", "event_id"),
)

case_entities = sa.Table(
    "case_entities",
    metadata,
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("value", sa.String(300), nullable=False),
    sa.PrimaryKeyConstraint("case_id", "kind", "value"),
)

case_comments = sa.Table(
    "case_comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_case_comments_case", "case_id", "id"),
)


@migration("cases_1")
def _cases_1(conn: Connection) -> None:
    for table in (cases, case_alerts, case_events, case_entities, case_comments):
        table.create(conn, checkfirst=True)
