"""/connects: the LDA job's suspicious connects, ranked, with Spot's analyst feedback.

The scheduled LDA job (`detect.ml.lda_jobs`) keeps its latest run's top rows
per record type in the state store (`store.state_connects`); this page and
`/api/v1/connects` list them. Any role reads; an analyst rates a row 1 (high
risk), 2 (medium) or 3 (benign) — stored with the row's words by
`FeedbackStore.rate_row`, so the next training replicates the benign ones —
or puts its pair on the allow list. Every change is audited. Row values are
log content: they are rendered autoescaped or sent as JSON, never as HTML.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures' `Depends(...)` aliases, which name this function's locals.
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from lightsoc.store.state_connects import MAX_LIST, ConnectsStore, as_result_row
from lightsoc.store.state_feedback import ANY, RECORD_TYPES, FeedbackStore
from lightsoc.web.context import NavItem, WebContext
from lightsoc.web.security import Principal, RowId, client_ip

NAV = NavItem(80, "/connects", "Suspicious connects", "viewer")
PAGE_SIZE = 50
TYPE_PATTERN = "^(flow|dns|web)$"
#: rating -> its label (the page translates it)
RATING_LABELS = {1: "High risk", 2: "Medium", 3: "Benign"}

RecordType = Literal["flow", "dns", "web"]


class RatingBody(BaseModel):
    """Body of POST /connects/{type}/{id}/rating."""

    rating: Literal[1, 2, 3]
    note: str | None = Field(default=None, max_length=2000)


class AllowBody(BaseModel):
    """Body of POST /connects/allow: an IP and a second IP, a domain or `*` (everything)."""

    a: str = Field(min_length=1, max_length=300)
    b: str = Field(default=ANY, min_length=1, max_length=300)
    #: null: every record type
    type: RecordType | None = None
    note: str | None = Field(default=None, max_length=2000)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def listing(store: ConnectsStore, record_type: str, limit: int, offset: int) -> dict[str, Any]:
    """What the page and GET /connects show: the run, its rows, their ratings and allow marks."""
    rows = store.rows(record_type, limit, offset)
    rated = store.ratings_for(record_type, rows)
    allowed = store.allowed_for(record_type, rows)
    runs = store.runs()
    out_rows = []
    for r in rows:
        ts = r["ts"]
        out_rows.append(
            {
                **r,
                "ts": _iso(ts),
                "hour": ts.hour if ts is not None else None,
                "rating": rated.get(r["id"]),
                "allowed": r["id"] in allowed,
            }
        )
    run = runs.get(record_type)
    return {
        "type": record_type,
        "run": run.as_dict() if run else None,
        "runs": {k: v.as_dict() for k, v in runs.items()},
        "total": store.count(record_type),
        "limit": limit,
        "offset": offset,
        "rows": out_rows,
    }


def allow_pair(row: dict[str, Any]) -> tuple[str, str] | None:
    """The pair "allow this pair" puts on the list for a row (what the job compares)."""
    first = row.get("doc_a") if row["record_type"] == "dns" else row.get("source_ip")
    first = first or row.get("doc_a")
    if row["record_type"] == "flow":
        second = row.get("destination_ip") or row.get("doc_b")
    else:  # dns: the query name; web: the URL's domain, else the server's IP
        second = row.get("domain") or row.get("destination_ip")
    if not first:
        return None
    return str(first), str(second) if second else ANY


def router(ctx: WebContext) -> APIRouter:
    sec = ctx.security
    Reader = Annotated[Principal, Depends(sec.require("viewer"))]
    Writer = Annotated[Principal, Depends(sec.require("analyst"))]
    Page = Annotated[Principal, Depends(sec.page("viewer"))]
    connects = ConnectsStore(ctx.state)
    feedback = FeedbackStore(ctx.state)
    r = APIRouter()

    # -- the page -------------------------------------------------------------------
    @r.get("/connects", include_in_schema=False)
    def page(
        request: Request,
        who: Page,
        type: Annotated[str, Query(pattern=TYPE_PATTERN)] = "flow",  # noqa: A002
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> Response:
        data = listing(connects, type, PAGE_SIZE, offset)
        for row in data["rows"]:
            pair = allow_pair(row)
            row["allow_a"], row["allow_b"] = pair if pair else (None, None)
        return ctx.render(
            request,
            "connects.html",
            who,
            data=data,
            types=RECORD_TYPES,
            rating_labels=RATING_LABELS,
            can_rate=who.can("analyst"),
            page_size=PAGE_SIZE,
        )

    # -- the API --------------------------------------------------------------------
    @r.get("/api/v1/connects")
    def list_connects(
        _auth: Reader,
        type: Annotated[str, Query(pattern=TYPE_PATTERN)] = "flow",  # noqa: A002
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = PAGE_SIZE,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> dict[str, Any]:
        """The last LDA run's most suspicious records of a type (1 = rarest), with their
        words, the rating their words have and whether their pair is allowed."""
        return listing(connects, type, limit, offset)

    @r.post("/api/v1/connects/{record_type}/{row_id}/rating")
    def rate(
        request: Request,
        record_type: RecordType,
        row_id: RowId,
        body: RatingBody,
        auth: Writer,
    ) -> dict[str, Any]:
        """Rate a listed row by its `id` (1 high risk, 2 medium, 3 benign): the rating keeps
        the row's documents and words, so the next training replicates a benign one."""
        row = connects.get(record_type, row_id)
        if row is None:
            raise HTTPException(404, "no such row in the last run (it may have been replaced)")
        try:
            rating_id = feedback.rate_row(
                record_type, as_result_row(row), body.rating, auth.actor, body.note or ""
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        ctx.audit.record(
            auth.actor,
            "connect_rating",
            str(rating_id),
            client_ip=client_ip(request),
            record_type=record_type,
            rating=body.rating,
            doc_a=row["doc_a"],
            word_a=row["word_a"],
            doc_b=row["doc_b"],
            word_b=row["word_b"],
        )
        return {
            "id": rating_id,
            "row_id": row_id,
            "record_type": record_type,
            "rating": body.rating,
            "user": auth.actor,
        }

    @r.get("/api/v1/connects/ratings")
    def list_ratings(
        _auth: Reader,
        type: Annotated[str | None, Query(pattern=TYPE_PATTERN)] = None,  # noqa: A002
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> dict[str, Any]:
        """Analysts' ratings, newest first (one record type or all)."""
        total, rows = connects.ratings(type, limit, offset)
        for row in rows:
            row["created"] = _iso(row["created"])
        return {"total": total, "ratings": rows}

    @r.delete("/api/v1/connects/ratings/{rating_id}", status_code=204)
    def delete_rating(request: Request, rating_id: RowId, auth: Writer) -> Response:
        """Withdraw a rating (the next training no longer replicates it)."""
        if not feedback.delete_rating(rating_id):
            raise HTTPException(404, f"no rating {rating_id}")
        ctx.audit.record(
            auth.actor, "connect_rating_delete", str(rating_id), client_ip=client_ip(request)
        )
        return Response(status_code=204)

    @r.get("/api/v1/connects/allow")
    def list_allowed(
        _auth: Reader,
        type: Annotated[str | None, Query(pattern=TYPE_PATTERN)] = None,  # noqa: A002
    ) -> dict[str, Any]:
        """The allow list: pairs the job leaves out of its results."""
        pairs = feedback.allowed(type)
        return {
            "allow": [
                {"id": p.id, "type": p.record_type, "a": p.value_a, "b": p.value_b, "note": p.note}
                for p in pairs[:MAX_LIST]
            ]
        }

    @r.post("/api/v1/connects/allow")
    def allow(request: Request, body: AllowBody, auth: Writer) -> dict[str, Any]:
        """Allow a pair (IP and IP, IP and domain, or IP and `*`): the next runs leave it out."""
        try:
            allow_id = feedback.allow(
                body.a, body.b, record_type=body.type, user=auth.actor, note=body.note
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        ctx.audit.record(
            auth.actor,
            "connect_allow",
            str(allow_id),
            client_ip=client_ip(request),
            record_type=body.type,
            a=body.a,
            b=body.b,
        )
        return {"id": allow_id, "type": body.type, "a": body.a.strip(), "b": body.b.strip().lower()}

    return r
