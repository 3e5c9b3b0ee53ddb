"""`/api/v1/intel/...` and `/api/v1/allowlist`: intel feeds, their recent hits, the allow list.

Any role reads; an admin uploads, removes and edits. An upload is parsed by
the same loaders `lightsoc intel load` uses (`intel_formats.load_text_as`)
and stored with `IntelStore.replace_source`, which bumps the state store's
version counter: the running pipeline's intel matcher and allow list poll
it and reload within their `reload_seconds`. Hits are what the intel
enricher wrote into the events (`threat.indicator.*`,
`threat.enrichments.matched.*`), counted by the event store.
"""

# No `from __future__ import annotations`: FastAPI evaluates the route
# signatures, which name this function's locals.
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from lightsoc import schema
from lightsoc.output import event_rows, jsonable
from lightsoc.store.state_intel import CONFIDENCES, IntelStore
from lightsoc.timeutil import since_range
from lightsoc.web.security import Principal, RowId, client_ip

if TYPE_CHECKING:
    from lightsoc.store.base import EventStore
    from lightsoc.web.context import WebContext

#: the largest list one upload may carry (the maltrail `trails/` set is ~16 MB)
MAX_UPLOAD = 50 << 20
#: room for the multipart framing and the other fields around the file
_FORM_SLACK = 64 << 10
MAX_HITS = 500
HIT_WINDOWS = ("24h", "7d")
#: a source name typed in the UI: words, dots, dashes, colons, @, spaces (no slash)
SOURCE_NAME = re.compile(r"^\w[\w.:@ -]{0,199}$")
HIT_FIELDS = [
    "@timestamp",
    "event.id",
    "event.dataset",
    "source.ip",
    "destination.ip",
    "threat.indicator.name",
    "threat.indicator.type",
    "threat.indicator.provider",
    "threat.indicator.confidence",
    "threat.feed.name",
    "threat.enrichments.matched.field",
    "threat.enrichments.matched.atomic",
]
Format = Literal["auto", "text", "csv", "stix", "misp", "maltrail", "urlhaus", "ecs"]


class AllowEntry(BaseModel):
    """Body of POST /allowlist: a trusted value of one field (IP/CIDR, domain, exact)."""

    field: str = Field(min_length=1, max_length=200)
    value: str = Field(min_length=1, max_length=1000)
    comment: str | None = Field(default=None, max_length=1000)


def phrase(value: str) -> str:
    """`value` as a quoted phrase of the query language (no wildcards, escapes kept)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hits_query(feed: str | None = None) -> str:
    """Events the intel enricher flagged (of one feed if given)."""
    if feed:
        return f"threat.indicator.provider:{phrase(feed)}"
    return "_exists_:threat.indicator.provider"


def hit_counts(events: "EventStore", since: str) -> dict[str, int]:
    """Flagged events per feed (source name) since `since`: one aggregation in the store."""
    rows = events.top("threat.indicator.provider", hits_query(), since_range(since), 1000)
    return {str(v): int(c) for v, c in rows if v is not None}


def feeds(ctx: "WebContext") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every intel source with its counts by type and its hits in the last 24 h and 7 d;
    and the flagged events per window (feeds removed since included)."""
    out = IntelStore(ctx.state).sources()
    counts = {w: hit_counts(ctx.events, w) for w in HIT_WINDOWS}
    for f in out:
        f["hits"] = {w: counts[w].get(f["name"], 0) for w in HIT_WINDOWS}
    return out, {w: sum(counts[w].values()) for w in HIT_WINDOWS}


def hits(
    events: "EventStore",
    since: str = "24h",
    feed: str | None = None,
    limit: int = 50,
    top: int = 20,
) -> dict[str, Any]:
    """The last `limit` flagged events, totals per feed and the most hit values."""
    tr = since_range(since)
    q = hits_query(feed)
    recent = events.search(q, tr, HIT_FIELDS, limit, "desc")
    per_feed = events.top("threat.indicator.provider", q, tr, 1000)
    values = events.top("threat.enrichments.matched.atomic", q, tr, top)
    return {
        "since": since,
        "feed": feed,
        "total": sum(int(c) for _, c in per_feed),
        "by_feed": [{"feed": jsonable(v), "count": c} for v, c in per_feed if v is not None],
        "top_values": [{"value": jsonable(v), "count": c} for v, c in values if v is not None],
        "events": event_rows(recent),
    }


def load_upload(
    store: IntelStore,
    data: bytes,
    filename: str,
    source: str,
    fmt: str,
    confidence: str,
    expires: float | None,
    column: str | None,
) -> dict[str, Any]:
    """Parse and store one uploaded file exactly as `lightsoc intel load FILE` would."""
    from lightsoc.enrich.intel_formats import load_text_as

    # what intel_formats.load_file does with a file on disk, for bytes in memory
    text = data.decode("utf-8", errors="replace")
    result = load_text_as(fmt, text, Path(filename), column)
    summary = result.as_dict()
    stored = store.replace_source(
        source,
        result.format,
        confidence,
        result.indicators,
        expires=expires,
        files=[{k: v for k, v in summary.items() if k != "junk_samples"}],
    )
    return {
        "source": source,
        "confidence": confidence,
        "expires": expires,
        "stored": stored,
        **{k: summary[k] for k in ("format", "loaded", "junk", "skipped", "by_kind")},
        "junk_samples": summary["junk_samples"],
    }


def _form_text(form: Any, name: str, default: str = "", max_length: int = 200) -> str:  # noqa: ANN401
    value = form.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise HTTPException(422, f"{name}: expected a text field")
    if len(value) > max_length:
        raise HTTPException(422, f"{name}: at most {max_length} characters")
    return value.strip()


UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "source"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "source": {"type": "string", "maxLength": 200},
                        "format": {"type": "string", "enum": list(Format.__args__)},
                        "confidence": {"type": "string", "enum": list(CONFIDENCES)},
                        "expires": {"type": "string", "maxLength": 50},
                        "column": {"type": "string", "maxLength": 200},
                    },
                }
            }
        },
    }
}


def create_intel_api(ctx: "WebContext") -> APIRouter:
    """Feeds, hits and the allow list under /api/v1."""
    r = APIRouter(prefix="/api/v1", tags=["intel"])
    sec = ctx.security
    Viewer = Annotated[Principal, Depends(sec.require("viewer"))]
    Admin = Annotated[Principal, Depends(sec.require("admin"))]
    store = IntelStore(ctx.state)

    def check_since(since: str) -> str:
        try:
            since_range(since)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return since

    @r.get("/intel/feeds")
    def list_feeds(_who: Viewer) -> dict[str, Any]:
        """Intel sources: indicators by type, active count, loaded, expiry, hits 24 h / 7 d."""
        found, totals = feeds(ctx)
        return {"feeds": found, "hits_total": totals}

    async def size_guard(request: Request) -> None:
        """Refuse an oversized upload before its body is read (and before the CSRF
        check, which may parse a form): by its Content-Length."""
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_UPLOAD + _FORM_SLACK):
            raise HTTPException(413, f"the file is larger than {MAX_UPLOAD >> 20} MB")

    @r.post("/intel/feeds", status_code=201, openapi_extra=UPLOAD_SCHEMA)
    async def upload_feed(
        request: Request,
        _size: Annotated[None, Depends(size_guard)],
        who: Admin,
    ) -> dict[str, Any]:
        """Upload an IOC list (multipart: file, source, format, confidence, expires, column);
        a source of the same name is replaced."""
        if request.headers.get("content-length") is None:  # a chunked body is not spooled
            raise HTTPException(411, "send the upload with a Content-Length")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "send multipart/form-data with a `file` field")
        form = await request.form(max_files=1, max_fields=20)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, "file: an uploaded file is required")
            source = _form_text(form, "source")
            if not SOURCE_NAME.match(source):
                raise HTTPException(
                    422, "source: 1-200 letters, digits, spaces or . _ : @ - (no slash)"
                )
            fmt = _form_text(form, "format", "auto")
            if fmt not in Format.__args__:
                raise HTTPException(422, f"format: one of {', '.join(Format.__args__)}")
            confidence = _form_text(form, "confidence", "Medium")
            if confidence not in CONFIDENCES:
                raise HTTPException(422, f"confidence: one of {', '.join(CONFIDENCES)}")
            expires_text = _form_text(form, "expires", "", 50)
            column = _form_text(form, "column") or None
            expires = None
            if expires_text:
                from lightsoc.commands.intel import parse_expiry

                try:
                    expires = parse_expiry(expires_text)
                except ValueError as exc:
                    raise HTTPException(422, str(exc).replace("--expires", "expires")) from None
                if expires <= time.time():
                    raise HTTPException(422, "expires: that time is already past")
            data = await upload.read(MAX_UPLOAD + 1)
            if len(data) > MAX_UPLOAD:
                raise HTTPException(413, f"the file is larger than {MAX_UPLOAD >> 20} MB")
            filename = Path(upload.filename or "upload.txt").name[:200] or "upload.txt"
        finally:
            await form.close()
        from lightsoc.enrich.intel_formats import IntelFormatError

        try:
            summary = await run_in_threadpool(
                load_upload, store, data, filename, source, fmt, confidence, expires, column
            )
        except IntelFormatError as exc:
            raise HTTPException(422, str(exc)) from None
        ctx.audit.record(
            who.actor,
            "intel_feed_upload",
            source,
            client_ip=client_ip(request),
            file=filename,
            format=summary["format"],
            confidence=confidence,
            stored=summary["stored"],
            bytes=len(data),
        )
        return summary

    @r.delete("/intel/feeds/{name:path}", status_code=204)
    def delete_feed(name: str, request: Request, who: Admin) -> Response:
        """Remove a feed and all its indicators."""
        if not store.delete_source(name):
            raise HTTPException(404, f"no intel feed named {name!r}")
        ctx.audit.record(who.actor, "intel_feed_remove", name, client_ip=client_ip(request))
        return Response(status_code=204)

    @r.get("/intel/hits")
    def list_hits(
        _who: Viewer,
        since: str = "24h",
        feed: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_HITS)] = 50,
        top: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """Events flagged by intel since `since` (newest first), counts per feed, top values."""
        return hits(ctx.events, check_since(since), feed or None, limit, top)

    @r.get("/allowlist")
    def list_allow(_who: Viewer) -> dict[str, Any]:
        """Trusted clients/domains/values kept in the state store (`lightsoc intel allow`)."""
        return {"entries": store.allow_rows()}

    @r.post("/allowlist", status_code=201)
    def add_allow(body: AllowEntry, request: Request, who: Admin) -> dict[str, Any]:
        """Trust a value of a field: an IP or CIDR, a domain (and its subdomains), or exact."""
        from lightsoc.enrich.allowlist import EnrichConfigError, _Rules

        field, value = body.field.strip(), body.value.strip()
        if field not in schema.BY_NAME:
            raise HTTPException(422, f"unknown field {field!r}")
        try:
            _Rules({field: [value]})  # a bad CIDR is refused here, not in the pipeline
        except EnrichConfigError as exc:
            raise HTTPException(422, str(exc)) from None
        if not store.add_allow(field, value, body.comment or None):
            raise HTTPException(409, f"{field} {value} is already allowed")
        ctx.audit.record(
            who.actor,
            "allowlist_add",
            f"{field}={value}",
            client_ip=client_ip(request),
            comment=body.comment,
        )
        entry = next(e for e in store.allow_rows() if (e["field"], e["value"]) == (field, value))
        return entry

    @r.delete("/allowlist/{entry_id}", status_code=204)
    def remove_allow(entry_id: RowId, request: Request, who: Admin) -> Response:
        """Stop trusting an entry (by its id)."""
        entry = next((e for e in store.allow_rows() if e["id"] == entry_id), None)
        if entry is None or not store.remove_allow(entry["field"], entry["value"]):
            raise HTTPException(404, f"no allow-list entry {entry_id}")
        ctx.audit.record(
            who.actor,
            "allowlist_remove",
            f"{entry['field']}={entry['value']}",
            client_ip=client_ip(request),
        )
        return Response(status_code=204)

    return r
