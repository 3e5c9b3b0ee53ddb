"""The last suspicious-connects run per record type, kept for the web UI.

The LDA job (`detect.ml.lda_jobs.candidates`) raises one alert per connection
pair but the ranked records themselves — score, suspicion and the words that
made each record rare — live only in the run's memory. `ConnectsStore.save_run`
keeps the top rows of the latest run of each record type (flow, dns, web), so
the `/connects` page can list them and an analyst can rate a row with the very
words the model saw. A run replaces the previous one of its type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import StateStore, metadata, migration
from lightsoc.store.state_feedback import RECORD_TYPES, lda_allow, lda_feedback

#: rows kept per record type and run (the page pages through them)
KEEP = 250
MAX_LIST = 500

lda_connects = sa.Table(
    "lda_connects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_type", sa.String(10), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("suspicion", sa.Float, nullable=True),
    sa.Column("doc_a", sa.String(64), nullable=False),
    sa.Column("word_a", sa.String(400), nullable=False),
    sa.Column("doc_b", sa.String(64), nullable=True),
    sa.Column("word_b", sa.String(400), nullable=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=True),
    sa.Column("event_id", sa.String(200), nullable=True),
    sa.Column("source_ip", sa.String(64), nullable=True),
    sa.Column("source_port", sa.Integer, nullable=True),
    sa.Column("destination_ip", sa.String(64), nullable=True),
    sa.Column("destination_port", sa.Integer, nullable=True),
    sa.Column("transport", sa.String(20), nullable=True),
    # dns: the question name; web: the URL's domain
    sa.Column("domain", sa.String(300), nullable=True),
    sa.Column("url", sa.String(2000), nullable=True),
    # a few more fields to show (bytes, query type, HTTP method/status ...)
    sa.Column("detail", sa.JSON, nullable=True),
    sa.Index("ix_lda_connects_type_rank", "record_type", "rank"),
)

lda_connect_runs = sa.Table(
    "lda_connect_runs",
    metadata,
    sa.Column("record_type", sa.String(10), primary_key=True),
    sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    # records of this type in the window, and how many the run ranked (allow list applied)
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("ranked", sa.Integer, nullable=False),
)


@migration("connects_1")
def _connects_1(conn: Connection) -> None:
    for table in (lda_connects, lda_connect_runs):
        table.create(conn, checkfirst=True)


#: result column -> detail key, per what a record type shows
DETAIL = {
    "flow": ("network.bytes", "network.packets", "source.bytes", "destination.bytes"),
    "dns": ("dns.question.type", "dns.response_code"),
    "web": (
        "http.request.method",
        "http.response.status_code",
        "user_agent.original",
    ),
}


@dataclass(frozen=True)
class ConnectsRun:
    record_type: str
    ran_at: datetime
    window_start: datetime
    window_end: datetime
    events: int
    ranked: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_type": self.record_type,
            "ran_at": self.ran_at.isoformat(),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "events": self.events,
            "ranked": self.ranked,
        }


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: Any, size: int) -> str | None:  # noqa: ANN401
    return None if value is None else str(value)[:size]


def _int(value: Any) -> int | None:  # noqa: ANN401
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:  # noqa: ANN401
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


def _check_type(record_type: str) -> None:
    if record_type not in RECORD_TYPES:
        raise ValueError(f"record type must be one of {', '.join(RECORD_TYPES)}")


def _row(record_type: str, r: dict[str, Any]) -> dict[str, Any]:
    """One result row of `run_suspicious_connects` as a table row."""
    detail = {}
    for key in DETAIL[record_type]:
        v = r.get(key)
        if v is not None:
            detail[key] = v if isinstance(v, int | float) else str(v)[:400]
    ts = r.get("@timestamp")
    return {
        "record_type": record_type,
        "rank": int(r["rank"]),
        "score": _float(r.get("score")),
        "suspicion": _float(r.get("suspicion")),
        "doc_a": _text(r.get("lda.doc_a"), 64) or "",
        "word_a": _text(r.get("lda.word_a"), 400) or "",
        "doc_b": _text(r.get("lda.doc_b"), 64),
        "word_b": _text(r.get("lda.word_b"), 400),
        "ts": _utc(ts) if isinstance(ts, datetime) else None,
        "event_id": _text(r.get("event.id"), 200),
        "source_ip": _text(r.get("source.ip"), 64),
        "source_port": _int(r.get("source.port")),
        "destination_ip": _text(r.get("destination.ip"), 64),
        "destination_port": _int(r.get("destination.port")),
        "transport": _text(r.get("network.transport"), 20),
        "domain": _text(r.get("dns.question.name") or r.get("url.domain"), 300),
        "url": _text(r.get("url.original"), 2000),
        "detail": detail or None,
    }


def as_result_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row keyed like a `run_suspicious_connects` row (what `rate_row` takes)."""
    return {
        "lda.doc_a": row["doc_a"],
        "lda.word_a": row["word_a"],
        "lda.doc_b": row.get("doc_b"),
        "lda.word_b": row.get("word_b"),
        "@timestamp": row.get("ts"),
        "source.ip": row.get("source_ip"),
        "destination.ip": row.get("destination_ip"),
        "destination.port": row.get("destination_port"),
        "network.transport": row.get("transport"),
        "dns.question.name": row.get("domain") if row.get("record_type") == "dns" else None,
        "url.domain": row.get("domain") if row.get("record_type") == "web" else None,
    }


class ConnectsStore:
    """The latest run's ranked rows per record type, over a `StateStore`."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def save_run(
        self,
        record_type: str,
        ranked: pl.DataFrame,
        window_start: datetime,
        window_end: datetime,
        events: int,
        *,
        keep: int = KEEP,
        now: datetime | None = None,
    ) -> int:
        """Replace the stored run of `record_type` by the first `keep` rows of `ranked`."""
        _check_type(record_type)
        rows = [_row(record_type, r) for r in ranked.head(keep).iter_rows(named=True)]
        run = {
            "record_type": record_type,
            "ran_at": now or datetime.now(UTC),
            "window_start": _utc(window_start),
            "window_end": _utc(window_end),
            "events": int(events),
            "ranked": ranked.height,
        }
        with self.engine.begin() as conn:
            conn.execute(lda_connects.delete().where(lda_connects.c.record_type == record_type))
            if rows:
                conn.execute(lda_connects.insert(), rows)
            conn.execute(
                lda_connect_runs.delete().where(lda_connect_runs.c.record_type == record_type)
            )
            conn.execute(lda_connect_runs.insert().values(**run))
        return len(rows)

    def runs(self) -> dict[str, ConnectsRun]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(lda_connect_runs)).mappings().all()
        return {
            r["record_type"]: ConnectsRun(
                r["record_type"],
                _utc(r["ran_at"]),  # type: ignore[arg-type]
                _utc(r["window_start"]),  # type: ignore[arg-type]
                _utc(r["window_end"]),  # type: ignore[arg-type]
                r["events"],
                r["ranked"],
            )
            for r in rows
        }

    def count(self, record_type: str) -> int:
        _check_type(record_type)
        q = sa.select(sa.func.count()).where(lda_connects.c.record_type == record_type)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar() or 0

    def rows(self, record_type: str, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Stored rows of `record_type`, most suspicious first."""
        _check_type(record_type)
        q = (
            sa.select(lda_connects)
            .where(lda_connects.c.record_type == record_type)
            .order_by(lda_connects.c.rank, lda_connects.c.id)
            .limit(max(0, min(limit, MAX_LIST)))
            .offset(max(0, offset))
        )
        with self.engine.connect() as conn:
            out = [dict(r) for r in conn.execute(q).mappings()]
        for r in out:
            r["ts"] = _utc(r["ts"])
        return out

    def get(self, record_type: str, row_id: int) -> dict[str, Any] | None:
        _check_type(record_type)
        q = sa.select(lda_connects).where(
            lda_connects.c.record_type == record_type, lda_connects.c.id == row_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None:
            return None
        out = dict(row)
        out["ts"] = _utc(out["ts"])
        return out

    # -- what the UI shows beside the rows -------------------------------------------
    def ratings_for(self, record_type: str, rows: list[dict[str, Any]]) -> dict[int, dict]:
        """The latest rating of each row's words (same documents and words), by row id.

        The training replicates a rating by its words, so a rating covers every
        row with the same words, whichever row it was given on.
        """
        docs = sorted({r["doc_a"] for r in rows})
        if not docs:
            return {}
        q = (
            sa.select(lda_feedback)
            .where(lda_feedback.c.record_type == record_type, lda_feedback.c.doc_a.in_(docs))
            .order_by(lda_feedback.c.id)
        )
        with self.engine.connect() as conn:
            found = {
                (f["doc_a"], f["word_a"], f["doc_b"], f["word_b"]): dict(f)
                for f in conn.execute(q).mappings()
            }  # later ids win: the latest rating of the words
        out = {}
        for r in rows:
            f = found.get((r["doc_a"], r["word_a"], r["doc_b"], r["word_b"]))
            if f is not None:
                out[r["id"]] = {"id": f["id"], "rating": f["rating"], "user": f["user"]}
        return out

    def allowed_for(self, record_type: str, rows: list[dict[str, Any]]) -> set[int]:
        """Ids of `rows` whose pair is on the allow list (the next run leaves them out).

        A display hint: a pair whose values are both among a row's IPs and
        domain (or whose second value is ``*``) marks it; the job applies the
        exact rule (`lda_feedback.allowed_mask`).
        """
        q = sa.select(lda_allow.c.value_a, lda_allow.c.value_b).where(
            lda_allow.c.record_type.is_(None) | (lda_allow.c.record_type == record_type)
        )
        with self.engine.connect() as conn:
            pairs = [(a.lower(), b.lower()) for a, b in conn.execute(q)]
        out: set[int] = set()
        if not pairs:
            return out
        for r in rows:
            keys = ("source_ip", "destination_ip", "doc_a", "doc_b", "domain")
            values = {str(r[k]).lower() for k in keys if r.get(k)}
            if any(a in values and (b == "*" or b in values - {a}) for a, b in pairs):
                out.add(r["id"])
        return out

    def ratings(
        self, record_type: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        """Ratings, newest first (all record types, or one), and how many there are."""
        where = [] if record_type is None else [lda_feedback.c.record_type == record_type]
        q = (
            sa.select(lda_feedback)
            .where(*where)
            .order_by(lda_feedback.c.id.desc())
            .limit(max(0, min(limit, MAX_LIST)))
            .offset(max(0, offset))
        )
        n = sa.select(sa.func.count()).select_from(lda_feedback).where(*where)
        with self.engine.connect() as conn:
            total = conn.execute(n).scalar() or 0
            rows = [dict(r) for r in conn.execute(q).mappings()]
        for r in rows:
            r["created"] = _utc(r["created"])
        return total, rows
