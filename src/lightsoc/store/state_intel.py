"""State-store tables of threat intelligence, allow lists and the domain-lookup cache.

An intel *source* is one named load (`lightsoc intel load --source NAME`); a
reload replaces all of that source's indicators in one transaction, so a
stream matcher never sees half a list. Every change bumps a version counter
that running processes poll to reload. Times are epoch seconds (floats):
comparable the same way on SQLite and PostgreSQL, no time-zone round trips.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import StateStore, metadata, migration, upsert

CONFIDENCES = ("Low", "Medium", "High")
_CHUNK = 5000

intel_sources = sa.Table(
    "intel_sources",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("format", sa.String(50), nullable=False),
    sa.Column("confidence", sa.String(10), nullable=False),
    sa.Column("expires", sa.Float, nullable=True),
    sa.Column("loaded", sa.Float, nullable=False),
    sa.Column("files", sa.JSON, nullable=False),  # per-file loaded/junk/skipped counts
    sa.Column("indicators", sa.Integer, nullable=False),
)

intel_indicators = sa.Table(
    "intel_indicators",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # ip, cidr, domain, url, hash
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("expires", sa.Float, nullable=True),
    sa.Index("ix_intel_indicators_source", "source"),
    sa.Index("ix_intel_indicators_value", "kind", "value"),
)

#: one row: the version counter matchers poll (bumped by every intel/allow change)
intel_meta = sa.Table(
    "intel_meta",
    metadata,
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)

#: allow-list entries kept in the database (the config's `detect.allow` adds to them)
intel_allow = sa.Table(
    "intel_allow",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("field", sa.String(200), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("field", "value", name="uq_intel_allow"),
)

#: domain-check API answers with their expiry (the lookup TTL cache)
intel_lookups = sa.Table(
    "intel_lookups",
    metadata,
    sa.Column("domain", sa.String(300), primary_key=True),
    sa.Column("malicious", sa.Boolean, nullable=False),
    sa.Column("verdict", sa.Text, nullable=True),
    sa.Column("checked", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)


@migration("intel_1")
def _intel_1(conn: Connection) -> None:
    for table in (intel_sources, intel_indicators, intel_meta, intel_allow, intel_lookups):
        table.create(conn, checkfirst=True)


@dataclass(frozen=True)
class IndicatorRow:
    kind: str
    value: str
    source: str
    confidence: str
    label: str | None
    expires: float | None


def _bump(conn: Connection) -> None:
    bumped = {"value": intel_meta.c.value + 1}
    upsert(conn, intel_meta, {"key": "version", "value": 1}, ["key"], bumped)


class IntelStore:
    """Intel, allow-list and lookup-cache operations on a `StateStore`."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self.engine = state.engine

    # -- sources and indicators ----------------------------------------------
    def replace_source(
        self,
        name: str,
        fmt: str,
        confidence: str,
        indicators: Iterable[Any],
        *,
        expires: float | None = None,
        files: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Replace source `name` with `indicators` (objects with kind/value/label/expires).

        Duplicates are stored once. Returns the number of indicators stored.
        """
        if confidence not in CONFIDENCES:
            raise ValueError(f"confidence must be one of {', '.join(CONFIDENCES)}")
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for ind in indicators:
            key = (ind.kind, ind.value)
            if key in rows:
                continue
            end = ind.expires.timestamp() if getattr(ind, "expires", None) else None
            if expires is not None:
                end = expires if end is None else min(end, expires)
            rows[key] = {
                "source": name,
                "kind": ind.kind,
                "value": ind.value,
                "label": ind.label,
                "expires": end,
            }
        values = list(rows.values())
        with self.engine.begin() as conn:
            conn.execute(intel_indicators.delete().where(intel_indicators.c.source == name))
            conn.execute(intel_sources.delete().where(intel_sources.c.name == name))
            conn.execute(
                intel_sources.insert().values(
                    name=name,
                    format=fmt,
                    confidence=confidence,
                    expires=expires,
                    loaded=time.time(),
                    files=[dict(f) for f in files],
                    indicators=len(values),
                )
            )
            for i in range(0, len(values), _CHUNK):
                conn.execute(intel_indicators.insert(), values[i : i + _CHUNK])
            _bump(conn)
        return len(values)

    def delete_source(self, name: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(intel_indicators.delete().where(intel_indicators.c.source == name))
            gone = conn.execute(intel_sources.delete().where(intel_sources.c.name == name)).rowcount
            _bump(conn)
        return bool(gone)

    def sources(self, now: float | None = None) -> list[dict[str, Any]]:
        """Each source with its counts by kind, active (unexpired) count and expiry."""
        now = time.time() if now is None else now
        t = intel_indicators
        with self.engine.connect() as conn:
            srcs = conn.execute(sa.select(intel_sources).order_by(intel_sources.c.name)).all()
            kinds = conn.execute(
                sa.select(t.c.source, t.c.kind, sa.func.count()).group_by(t.c.source, t.c.kind)
            ).all()
            active = dict(
                conn.execute(
                    sa.select(t.c.source, sa.func.count())
                    .where(sa.or_(t.c.expires.is_(None), t.c.expires > now))
                    .group_by(t.c.source)
                ).all()
            )
        by_kind: dict[str, dict[str, int]] = {}
        for source, kind, n in kinds:
            by_kind.setdefault(source, {})[kind] = n
        return [
            {
                "name": s.name,
                "format": s.format,
                "confidence": s.confidence,
                "indicators": s.indicators,
                "active": active.get(s.name, 0),
                "by_kind": by_kind.get(s.name, {}),
                "expires": s.expires,
                "expired": s.expires is not None and s.expires <= now,
                "loaded": s.loaded,
                "files": s.files,
            }
            for s in srcs
        ]

    def version(self) -> int:
        with self.engine.connect() as conn:
            v = conn.execute(
                sa.select(intel_meta.c.value).where(intel_meta.c.key == "version")
            ).scalar()
        return int(v or 0)

    def active_indicators(self, now: float | None = None) -> list[IndicatorRow]:
        """Every unexpired indicator with its source's confidence."""
        now = time.time() if now is None else now
        t, s = intel_indicators, intel_sources
        q = (
            sa.select(t.c.kind, t.c.value, t.c.source, s.c.confidence, t.c.label, t.c.expires)
            .join(s, s.c.name == t.c.source)
            .where(sa.or_(t.c.expires.is_(None), t.c.expires > now))
        )
        with self.engine.connect() as conn:
            return [IndicatorRow(*r) for r in conn.execute(q)]

    def next_expiry(self, now: float | None = None) -> float | None:
        """When the next still-active indicator expires (the matcher reloads then)."""
        now = time.time() if now is None else now
        t = intel_indicators
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(t.c.expires)).where(t.c.expires > now)
            ).scalar()

    # -- allow list --------------------------------------------------------------
    def add_allow(self, field: str, value: str, comment: str | None = None) -> bool:
        """Add an allow-list entry; False if it was already there."""
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(intel_allow.c.id).where(
                    intel_allow.c.field == field, intel_allow.c.value == value
                )
            ).first()
            if exists:
                return False
            conn.execute(
                intel_allow.insert().values(
                    field=field, value=value, comment=comment, created=time.time()
                )
            )
            _bump(conn)
        return True

    def remove_allow(self, field: str, value: str) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(
                intel_allow.delete().where(
                    intel_allow.c.field == field, intel_allow.c.value == value
                )
            ).rowcount
            _bump(conn)
        return bool(gone)

    def allow_entries(self) -> dict[str, list[str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(intel_allow.c.field, intel_allow.c.value).order_by(intel_allow.c.id)
            ).all()
        out: dict[str, list[str]] = {}
        for field, value in rows:
            out.setdefault(field, []).append(value)
        return out

    def allow_rows(self) -> list[dict[str, Any]]:
        """Every allow-list entry with its id, comment and creation time (oldest first)."""
        t = intel_allow
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.id, t.c.field, t.c.value, t.c.comment, t.c.created).order_by(t.c.id)
            ).all()
        return [dict(r._mapping) for r in rows]

    # -- domain lookup cache -------------------------------------------------------
    def cached_lookups(
        self, domains: Sequence[str], now: float | None = None
    ) -> dict[str, tuple[bool, str | None]]:
        """Unexpired cached answers `{domain: (malicious, verdict)}` for `domains`."""
        now = time.time() if now is None else now
        out: dict[str, tuple[bool, str | None]] = {}
        t = intel_lookups
        with self.engine.connect() as conn:
            for i in range(0, len(domains), 500):
                chunk = list(domains[i : i + 500])
                for d, mal, verdict in conn.execute(
                    sa.select(t.c.domain, t.c.malicious, t.c.verdict).where(
                        t.c.domain.in_(chunk), t.c.expires > now
                    )
                ):
                    out[d] = (bool(mal), verdict)
        return out

    def store_lookups(
        self, answers: Mapping[str, tuple[bool, str | None]], ttl: float, now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        if not answers:
            return
        t = intel_lookups
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.domain.in_(list(answers))))
            conn.execute(
                t.insert(),
                [
                    {
                        "domain": d,
                        "malicious": mal,
                        "verdict": verdict,
                        "checked": now,
                        "expires": now + ttl,
                    }
                    for d, (mal, verdict) in answers.items()
                ],
            )
