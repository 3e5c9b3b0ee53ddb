"""Audit log of security-relevant actions: logins, user/token/rule/output changes,
alert status changes. Append-only; read by admins in the UI and the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from lightsoc.store.state import StateStore
from lightsoc.store.state_users import audit_log

MAX_LIST = 1000


class AuditLog:
    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        *,
        client_ip: str | None = None,
        **detail: Any,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                audit_log.insert().values(
                    at=datetime.now(UTC),
                    actor=actor[:200],
                    action=action,
                    target=target,
                    client_ip=client_ip,
                    detail=detail or None,
                )
            )

    @staticmethod
    def _filtered(q: sa.Select, actor: str | None, action: str | None) -> sa.Select:
        if actor:
            q = q.where(audit_log.c.actor == actor)
        if action:
            q = q.where(audit_log.c.action.startswith(action, autoescape=True))
        return q

    def count(self, *, actor: str | None = None, action: str | None = None) -> int:
        """How many entries `find` would page through with the same filters."""
        q = self._filtered(sa.select(sa.func.count()).select_from(audit_log), actor, action)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar() or 0

    def find(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Entries, newest first; `action` matches a prefix (`login` finds `login_failed`)."""
        q = self._filtered(sa.select(audit_log), actor, action).order_by(audit_log.c.id.desc())
        q = q.limit(min(limit, MAX_LIST)).offset(offset)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        for row in rows:
            if row["at"].tzinfo is None:  # SQLite gives naive UTC back
                row["at"] = row["at"].replace(tzinfo=UTC)
        return rows
