"""Analyst feedback on suspicious connects and the allow list of known-benign pairs.

Apache Spot's analysts rate each suspicious connect 1 (high risk), 2
(medium) or 3 (benign); the next training replicates the benign ones so that
similar records stop surfacing. A rating keeps what identifies the record (IPs,
port, protocol, hour) and the words the model saw for it, so the replication
does not depend on the original events still being stored.

The allow list holds pairs that never appear in the results: two IPs (either
direction) or an IP and a domain; ``*`` as the second value allows everything
an IP does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import StateStore, metadata, migration

RATINGS = (1, 2, 3)
BENIGN = 3
RECORD_TYPES = ("flow", "dns", "web")
ANY = "*"

lda_feedback = sa.Table(
    "lda_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_type", sa.String(10), nullable=False),
    sa.Column("rating", sa.Integer, nullable=False),
    # the record: its documents (IPs) and the words the model gave it
    sa.Column("doc_a", sa.String(64), nullable=False),
    sa.Column("word_a", sa.String(400), nullable=False),
    sa.Column("doc_b", sa.String(64), nullable=True),
    sa.Column("word_b", sa.String(400), nullable=True),
    # identifying fields, for the analyst and the UI
    sa.Column("source_ip", sa.String(64), nullable=True),
    sa.Column("destination_ip", sa.String(64), nullable=True),
    sa.Column("destination_port", sa.Integer, nullable=True),
    sa.Column("transport", sa.String(20), nullable=True),
    sa.Column("domain", sa.String(300), nullable=True),
    sa.Column("hour", sa.Integer, nullable=True),
    sa.Column("user", sa.String(200), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

lda_allow = sa.Table(
    "lda_allow",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # null = every record type
    sa.Column("record_type", sa.String(10), nullable=True),
    sa.Column("value_a", sa.String(300), nullable=False),
    sa.Column("value_b", sa.String(300), nullable=False),
    sa.Column("user", sa.String(200), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("record_type", "value_a", "value_b", name="uq_lda_allow_pair"),
)


@migration("feedback_1")
def _feedback_1(conn: Connection) -> None:
    for table in (lda_feedback, lda_allow):
        table.create(conn, checkfirst=True)


@dataclass(frozen=True)
class AllowPair:
    id: int
    record_type: str | None
    value_a: str
    value_b: str
    note: str | None


def _check_type(record_type: str) -> None:
    if record_type not in RECORD_TYPES:
        raise ValueError(f"record type must be one of {', '.join(RECORD_TYPES)}")


class FeedbackStore:
    """Ratings of suspicious connects and the allow list, over a `StateStore`."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    # -- ratings -----------------------------------------------------------
    def rate(
        self,
        record_type: str,
        rating: int,
        *,
        doc_a: str,
        word_a: str,
        doc_b: str | None = None,
        word_b: str | None = None,
        source_ip: str | None = None,
        destination_ip: str | None = None,
        destination_port: int | None = None,
        transport: str | None = None,
        domain: str | None = None,
        hour: int | None = None,
        user: str | None = None,
        note: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Record a rating (1 high risk, 2 medium, 3 benign); returns its id."""
        _check_type(record_type)
        if rating not in RATINGS:
            raise ValueError("rating must be 1 (high risk), 2 (medium) or 3 (benign)")
        if not doc_a or not word_a:
            raise ValueError("a rating needs the record's document (IP) and word")
        with self.engine.begin() as conn:
            res = conn.execute(
                lda_feedback.insert().values(
                    record_type=record_type,
                    rating=rating,
                    doc_a=doc_a,
                    word_a=word_a,
                    doc_b=doc_b,
                    word_b=word_b,
                    source_ip=source_ip,
                    destination_ip=destination_ip,
                    destination_port=destination_port,
                    transport=transport,
                    domain=domain,
                    hour=hour,
                    user=user,
                    note=note,
                    created=now or datetime.now(UTC),
                )
            )
            return int(res.inserted_primary_key[0])

    def rate_row(
        self, record_type: str, row: dict, rating: int, user: str | None = None, note: str = ""
    ) -> int:
        """Rate one row of `run_suspicious_connects`' result as it was returned."""
        ts = row.get("@timestamp")
        return self.rate(
            record_type,
            rating,
            doc_a=row["lda.doc_a"],
            word_a=row["lda.word_a"],
            doc_b=row.get("lda.doc_b"),
            word_b=row.get("lda.word_b"),
            source_ip=row.get("source.ip"),
            destination_ip=row.get("destination.ip"),
            destination_port=row.get("destination.port"),
            transport=row.get("network.transport"),
            domain=row.get("dns.question.name") or row.get("url.domain"),
            hour=ts.hour if isinstance(ts, datetime) else None,
            user=user,
            note=note or None,
        )

    def ratings(self, record_type: str, rating: int | None = None) -> pl.DataFrame:
        """The ratings of a record type (one rating, or all), oldest first."""
        _check_type(record_type)
        q = (
            sa.select(lda_feedback)
            .where(lda_feedback.c.record_type == record_type)
            .order_by(lda_feedback.c.id)
        )
        if rating is not None:
            q = q.where(lda_feedback.c.rating == rating)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        schema = {c.name: pl.Utf8 for c in lda_feedback.columns}
        schema.update(
            id=pl.Int64,
            rating=pl.Int64,
            destination_port=pl.Int64,
            hour=pl.Int64,
            created=pl.Datetime("us", "UTC"),
        )
        return pl.DataFrame([dict(r) for r in rows], schema=schema, orient="row")

    def delete_rating(self, rating_id: int) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(lda_feedback.delete().where(lda_feedback.c.id == rating_id)).rowcount
            )

    # -- allow list --------------------------------------------------------
    def allow(
        self,
        value_a: str,
        value_b: str = ANY,
        *,
        record_type: str | None = None,
        user: str | None = None,
        note: str | None = None,
    ) -> int:
        """Allow a pair (IP, IP), (IP, domain) or (IP, ``*``); returns its id (idempotent)."""
        if record_type is not None:
            _check_type(record_type)
        a, b = value_a.strip(), value_b.strip().lower()
        if not a:
            raise ValueError("an allow-list entry needs an IP")
        with self.engine.begin() as conn:
            cond = [lda_allow.c.value_a == a, lda_allow.c.value_b == b]
            cond.append(
                lda_allow.c.record_type.is_(None)
                if record_type is None
                else lda_allow.c.record_type == record_type
            )
            row = conn.execute(sa.select(lda_allow.c.id).where(*cond)).first()
            if row is not None:
                return int(row[0])
            res = conn.execute(
                lda_allow.insert().values(
                    record_type=record_type,
                    value_a=a,
                    value_b=b,
                    user=user,
                    note=note,
                    created=datetime.now(UTC),
                )
            )
            return int(res.inserted_primary_key[0])

    def allowed(self, record_type: str | None = None) -> list[AllowPair]:
        """Allow-list pairs that apply to `record_type` (those for every type included)."""
        q = sa.select(lda_allow).order_by(lda_allow.c.id)
        if record_type is not None:
            q = q.where(
                lda_allow.c.record_type.is_(None) | (lda_allow.c.record_type == record_type)
            )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [AllowPair(r.id, r.record_type, r.value_a, r.value_b, r.note) for r in rows]

    def remove_allow(self, allow_id: int) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(lda_allow.delete().where(lda_allow.c.id == allow_id)).rowcount)
