"""Deployment state: leases (one active scheduler) and process heartbeats.

A lease is a row (name, holder, expires). A process holds it while `expires`
is in the future and renews it well before then; another process takes it
over only once it has expired, so after the holder dies a standby becomes
active within one lease time. Taking or renewing is one conditional UPDATE
(holder is me, or the lease has expired), which the database serialises: two
standbys racing for an expired lease cannot both win. Times are the callers'
clocks (UTC): hosts must keep them in sync (NTP) to well under the lease time.

Every process of a deployment writes a heartbeat row (role, host, pid,
events, rate, bus lag, ...) every few seconds; `lightsoc status` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import StateStore, metadata, migration, upsert

cluster_leases = sa.Table(
    "cluster_leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(300), nullable=False),
    sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
    sa.Column("acquired", sa.DateTime(timezone=True), nullable=False),
)

cluster_processes = sa.Table(
    "cluster_processes",
    metadata,
    sa.Column("id", sa.String(300), primary_key=True),
    sa.Column("role", sa.String(50), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat", sa.DateTime(timezone=True), nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False, default=0),
    sa.Column("events_per_second", sa.Float, nullable=False, default=0.0),
    sa.Column("lag", sa.BigInteger, nullable=True),
    sa.Column("detail", sa.JSON, nullable=True),
)

#: heartbeats older than this are forgotten (a process gone for good)
FORGET_AFTER = timedelta(days=1)


@migration("cluster_1")
def _cluster_1(conn: Connection) -> None:
    cluster_leases.create(conn, checkfirst=True)
    cluster_processes.create(conn, checkfirst=True)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Leases:
    """Named leases in the state store."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def acquire(self, name: str, holder: str, ttl: float, now: datetime | None = None) -> bool:
        """Take or renew `name` for `ttl` seconds; False while another holder's is valid."""
        now = now or datetime.now(UTC)
        expires = now + timedelta(seconds=ttl)
        t = cluster_leases
        with self.engine.begin() as conn:
            # the row exists from the first attempt on; absent rows take no lock
            upsert(
                conn,
                t,
                {"name": name, "holder": holder, "expires": now, "acquired": now},
                ["name"],
                {},
            )
            won = conn.execute(
                t.update()
                .where(t.c.name == name, sa.or_(t.c.holder == holder, t.c.expires <= now))
                .values(
                    holder=holder,
                    expires=expires,
                    # `acquired` moves only when the lease changes hands
                    acquired=sa.case((t.c.holder == holder, t.c.acquired), else_=now),
                )
            ).rowcount
        return bool(won)

    def release(self, name: str, holder: str) -> None:
        """Give the lease up at once (clean shutdown): a standby need not wait."""
        t = cluster_leases
        with self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.name == name, t.c.holder == holder)
                .values(expires=datetime(1970, 1, 1, tzinfo=UTC))
            )

    def holder(self, name: str, now: datetime | None = None) -> str | None:
        """Who holds `name` now (None if nobody does)."""
        now = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(cluster_leases.c.holder, cluster_leases.c.expires).where(
                    cluster_leases.c.name == name
                )
            ).first()
        if row is None or _utc(row.expires) <= now:
            return None
        return str(row.holder)


@dataclass
class ProcessBeat:
    """One process's heartbeat."""

    id: str
    role: str
    host: str
    pid: int
    started: datetime
    events: int = 0
    events_per_second: float = 0.0
    lag: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    heartbeat: datetime | None = None


class Heartbeats:
    """Write and list process heartbeats."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def beat(self, p: ProcessBeat, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        values = {
            "id": p.id,
            "role": p.role,
            "host": p.host,
            "pid": p.pid,
            "started": p.started,
            "heartbeat": now,
            "events": p.events,
            "events_per_second": p.events_per_second,
            "lag": p.lag,
            "detail": p.detail,
        }
        with self.engine.begin() as conn:
            upsert(conn, cluster_processes, values, ["id"])

    def remove(self, process_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(cluster_processes.delete().where(cluster_processes.c.id == process_id))

    def processes(self, now: datetime | None = None) -> list[ProcessBeat]:
        """Every process heard from in the last day, by role and host."""
        now = now or datetime.now(UTC)
        t = cluster_processes
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.heartbeat < now - FORGET_AFTER))
            rows = conn.execute(sa.select(t).order_by(t.c.role, t.c.host, t.c.pid)).all()
        return [
            ProcessBeat(
                id=r.id,
                role=r.role,
                host=r.host,
                pid=r.pid,
                started=_utc(r.started),
                events=int(r.events),
                events_per_second=float(r.events_per_second),
                lag=r.lag,
                detail=dict(r.detail or {}),
                heartbeat=_utc(r.heartbeat),
            )
            for r in rows
        ]
