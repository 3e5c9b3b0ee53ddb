"""State-store tables of people: users, browser sessions, the audit log.

`lightsoc.auth.users.UserStore` and `lightsoc.auth.audit.AuditLog` use them.
API tokens (`state.api_tokens`) gain an owner here: a token acts as its user.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import metadata, migration

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    # argon2id (RFC 9106) in PHC string form: salt and parameters inside
    sa.Column("password_hash", sa.String(300), nullable=False),
    sa.Column("locale", sa.String(20), nullable=False, default="en"),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("failed_logins", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_login", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    # sha256 of the cookie value: a stolen database holds no usable session
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
    sa.Column("client_ip", sa.String(64), nullable=True),
    sa.Index("ix_sessions_user", "user_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("client_ip", sa.String(64), nullable=True),
    sa.Column("detail", sa.JSON, nullable=True),
    sa.Index("ix_audit_at", "at"),
)


@migration("users_1")
def _users_1(conn: Connection) -> None:
    for table in (users, sessions, audit_log):
        table.create(conn, checkfirst=True)
    columns = {c["name"] for c in sa.inspect(conn).get_columns("api_tokens")}
    if "owner" not in columns:
        conn.execute(sa.text("ALTER TABLE api_tokens ADD COLUMN owner VARCHAR(200)"))
