"""An Elasticsearch-compatible surface so Beats, Logstash, Fluent Bit and the
official clients can ship straight into lightsoc.

Only ingest is real: `_bulk` (and single-document `_doc`/`_create`) store
`index`/`create` documents through the `json` parser (ECS fields and
`@timestamp` kept, unknown keys to `labels`, the document verbatim in
`event.original`); `event.dataset` is the document's own (`event.dataset`,
then `data_stream.dataset`) or else the target index name. `delete` and
`update` are answered with per-item errors: events are append-only. The
start-up calls of the shippers (cluster info, license, ILM policies, index
templates, ingest pipelines, nodes) get 200 and minimal JSON.

Every response outside /api/ carries `X-Elastic-Product: Elasticsearch`,
which the official clients require. Authentication: an ingest (or admin)
token as `Bearer`, `ApiKey` (raw, or base64 `id:token`) or HTTP Basic
password with any user name. Errors use Elasticsearch's error shape.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any

import orjson
import polars as pl
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lightsoc.sources.http import RECORD_ID, Busy, HttpSource, Unavailable
from lightsoc.sources.lines import ORIGINAL
from lightsoc.store.state import StateStore
from lightsoc.web.ingest import (
    BodyError,
    NotCommitted,
    check_ingest_token,
    read_body,
    request_slot,
    submit_and_wait,
)

ES_VERSION = "8.19.0"  # Beats refuse an Elasticsearch older than themselves
OPS = ("index", "create", "update", "delete")
CHALLENGE = 'Basic realm="lightsoc", ApiKey, Bearer realm="lightsoc"'
_SHARDS = {"total": 1, "successful": 1, "failed": 0}


class EsError(Exception):
    """An error answered in Elasticsearch's shape."""

    def __init__(
        self, status: int, type_: str, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason, self.headers = status, type_, reason, headers


def _error_body(status: int, type_: str, reason: str) -> dict[str, Any]:
    cause = {"type": type_, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


#: Where `/` goes for Elasticsearch clients: `/` itself is the UI's dashboard.
ES_ROOT = "/_es_root"


class ElasticProductHeader:
    """ASGI middleware: `X-Elastic-Product: Elasticsearch` on Elasticsearch paths.

    It also sends `GET /` with credentials in an `Authorization` header, and
    `HEAD /`, to the Elasticsearch root: browsers never send that header (they
    use the session cookie) and get the dashboard; Beats and ES clients always do.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/" and (
            scope["method"] == "HEAD" or any(k == b"authorization" for k, _ in scope["headers"])
        ):
            scope = {**scope, "path": ES_ROOT, "raw_path": ES_ROOT.encode()}
        # every Elasticsearch path has a `_` segment (`/_bulk`, `/logs/_doc`); pages do not
        if scope["path"].startswith("/api/") or "/_" not in scope["path"]:
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-elastic-product", b"Elasticsearch"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


# -- _bulk parsing ------------------------------------------------------------
@dataclass
class BulkItem:
    """One action of a bulk body, with its document line or the error to answer."""

    op: str
    index: str | None
    id: str | None = None
    doc: str | None = None
    dataset: str | None = None
    error: tuple[int, str, str] | None = None


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return orjson  # a sentinel: not JSON


def _action(value: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(value, dict) and len(value) == 1:
        ((op, meta),) = value.items()
        if op in OPS and isinstance(meta, dict):
            return op, meta
    return None


def _dataset(doc: dict[str, Any]) -> str | None:
    """The document's own dataset: `event.dataset`, then `data_stream.dataset` (nested or dotted)."""
    for outer in ("event", "data_stream"):
        nested = doc.get(outer)
        value = nested.get("dataset") if isinstance(nested, dict) else None
        value = value if value is not None else doc.get(f"{outer}.dataset")
        if isinstance(value, str) and value:
            return value
    return None


def parse_bulk(body: bytes, default_index: str | None) -> list[BulkItem]:
    """Action/source pairs of an NDJSON bulk body; a bad line is an item with an error.

    After a malformed action line the next line is taken as its document
    (and skipped) unless it is itself an action, so one bad pair is one item.
    """
    lines = [ln.rstrip(b"\r") for ln in body.split(b"\n")]
    lines = [ln for ln in lines if ln.strip()]
    items: list[BulkItem] = []
    i = 0
    while i < len(lines):
        n = i + 1
        parsed = _action(_loads(lines[i]))
        i += 1
        if parsed is None:
            reason = f"Malformed action/metadata line [{n}], expected one of {', '.join(OPS)}"
            items.append(BulkItem("index", default_index, error=(400, "parse_exception", reason)))
            if i < len(lines) and _action(_loads(lines[i])) is None:
                i += 1
            continue
        op, meta = parsed
        index = meta.get("_index", default_index)
        index = str(index) if index is not None else None
        doc_id = None if meta.get("_id") is None else str(meta["_id"])
        item = BulkItem(op, index, doc_id)
        items.append(item)
        if op in ("index", "create", "update"):
            if i >= len(lines):
                item.error = (400, "action_request_validation_exception", "source is missing")
                continue
            doc_line = lines[i]
            i += 1
            if op == "update":
                item.error = (
                    400,
                    "illegal_argument_exception",
                    "update is not supported: lightsoc stores events append-only",
                )
                continue
            fill_document(item, doc_line, n)
        else:
            item.error = (
                400,
                "illegal_argument_exception",
                "delete is not supported: lightsoc stores events append-only",
            )
    return items


def fill_document(item: BulkItem, doc_line: bytes, n: int = 1) -> BulkItem:
    """Check the document of an index/create action and keep it, or set the item's error."""
    doc = _loads(doc_line)
    if not isinstance(doc, dict):
        reason = f"failed to parse document of action line [{n}]: not a JSON object"
        item.error = (400, "document_parsing_exception", reason)
    elif item.index is None:
        item.error = (400, "action_request_validation_exception", "index is missing")
    else:
        item.doc = doc_line.decode("utf-8")  # orjson accepted it: valid UTF-8
        item.dataset = _dataset(doc) or item.index
    return item


def _records(items: list[BulkItem]) -> pl.DataFrame:
    stored = [it for it in items if it.error is None]
    return pl.DataFrame(
        {
            ORIGINAL: pl.Series([it.doc for it in stored], dtype=pl.Utf8),
            "event.dataset": pl.Series([it.dataset for it in stored], dtype=pl.Utf8),
            RECORD_ID: pl.Series([it.id for it in stored], dtype=pl.Utf8),
        }
    )


# -- the app ------------------------------------------------------------------
def install_es_compat(app: FastAPI, state: StateStore, source: HttpSource) -> None:
    """Add the Elasticsearch surface at root paths (all names start with `_`, or are `/`)."""
    app.add_middleware(ElasticProductHeader)
    seq = count()
    node = socket.gethostname()
    started = datetime.now(UTC).isoformat()

    @app.exception_handler(EsError)
    async def _es_error(_req: Request, exc: EsError) -> JSONResponse:
        return JSONResponse(
            _error_body(exc.status, exc.type, exc.reason), exc.status, headers=exc.headers
        )

    def es_auth(request: Request) -> None:
        info, allowed = check_ingest_token(state, request.headers.get("authorization"))
        if info is None:
            raise EsError(
                401,
                "security_exception",
                f"missing or invalid authentication credentials for REST request [{request.url.path}]",
                {"WWW-Authenticate": CHALLENGE},
            )
        if not allowed:
            raise EsError(
                403,
                "security_exception",
                f"action [{request.method} {request.url.path}] is unauthorized for token "
                f"[{info.name}] with scope [{info.scope}]; an ingest or admin token is needed",
            )

    router = APIRouter(dependencies=[Depends(es_auth)], include_in_schema=False)

    def info() -> dict[str, Any]:
        return {
            "name": node,
            "cluster_name": "lightsoc",
            "cluster_uuid": "lightsoc",
            "version": {
                "number": ES_VERSION,
                "build_flavor": "default",
                "build_type": "lightsoc",
                "build_hash": "lightsoc",
                "build_date": started,
                "build_snapshot": False,
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        }

    @router.get(ES_ROOT)
    def root() -> dict[str, Any]:
        return info()

    @router.head(ES_ROOT)
    def root_head() -> Response:
        return Response(media_type="application/json")

    license_ = {
        "uid": "lightsoc",
        "type": "basic",
        "mode": "basic",
        "status": "active",
        "issue_date": started,
        "issued_to": "lightsoc",
        "issuer": "lightsoc",
        "max_nodes": 1000,
    }

    @router.get("/_license")
    def license_info() -> dict[str, Any]:
        return {"license": license_}

    @router.get("/_xpack")
    def xpack() -> dict[str, Any]:
        on = {"available": True, "enabled": True}
        return {
            "build": {"hash": "lightsoc", "date": started},
            "license": license_,
            "features": {"ilm": on, "security": on, "monitoring": {**on, "enabled": False}},
        }

    @router.get("/_nodes")
    @router.get("/_nodes/{rest:path}")
    def nodes() -> dict[str, Any]:
        return {
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "cluster_name": "lightsoc",
            "nodes": {
                "lightsoc": {
                    "name": node,
                    "version": ES_VERSION,
                    "roles": ["master", "data", "ingest"],
                    "ingest": {"processors": []},
                }
            },
        }

    @router.get("/_cluster/health")
    def health() -> dict[str, Any]:
        return {"cluster_name": "lightsoc", "status": "green", "number_of_nodes": 1}

    @router.get("/_security/_authenticate")
    def authenticate() -> dict[str, Any]:
        return {"username": "lightsoc", "roles": ["ingest"], "enabled": True}

    async def acknowledge(request: Request) -> dict[str, Any]:
        await _read(request, 1 << 20)  # settings of a system lightsoc does not have
        return {"acknowledged": True}

    def described(kind: str) -> Any:
        def get(name: str) -> dict[str, Any]:
            if kind == "index_templates":
                return {"index_templates": [{"name": name, "index_template": {}}]}
            if kind == "data_streams":
                return {"data_streams": [{"name": name, "status": "GREEN"}]}
            return {name: {"version": 1, "modified_date": started, "policy": {"phases": {}}}}

        return get

    for path, kind in (
        ("/_ilm/policy/{name}", "policies"),
        ("/_index_template/{name}", "index_templates"),
        ("/_component_template/{name}", "component_templates"),
        ("/_template/{name}", "templates"),
        ("/_ingest/pipeline/{name}", "pipelines"),
        ("/_data_stream/{name}", "data_streams"),
    ):
        router.add_api_route(path, described(kind), methods=["GET"])
        router.add_api_route(path, lambda: Response(), methods=["HEAD"])
        router.add_api_route(path, acknowledge, methods=["PUT", "POST"])

    async def _read(request: Request, limit: int) -> bytes:
        try:
            return await read_body(request, limit)
        except BodyError as exc:
            raise EsError(exc.status, "parse_exception", exc.reason) from None

    async def store(items: list[BulkItem], nbytes: int) -> list[str]:
        """Submit the good items as one batch; their ids once committed."""
        if not any(it.error is None for it in items):
            return []
        records = await run_in_threadpool(_records, items)
        try:
            receipt = await submit_and_wait(source, records, "json", None, nbytes=nbytes)
        except Busy as exc:
            raise EsError(
                429, "es_rejected_execution_exception", str(exc), {"Retry-After": "5"}
            ) from None
        except (Unavailable, NotCommitted) as exc:
            raise EsError(503, "unavailable_shards_exception", str(exc)) from None
        return receipt.ids

    def answer(item: BulkItem, doc_id: str | None) -> dict[str, Any]:
        if item.error is not None:
            status, type_, reason = item.error
            out = {"_index": item.index, "_id": item.id, "status": status}
            return {**out, "error": {"type": type_, "reason": reason}}
        return {
            "_index": item.index,
            "_id": doc_id,
            "_version": 1,
            "result": "created",
            "_shards": _SHARDS,
            "_seq_no": next(seq),
            "_primary_term": 1,
            "status": 201,
        }

    async def bulk(request: Request, index: str | None) -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            async with request_slot(source):
                body = await _read(request, source.max_body_bytes)
                if not body.strip():
                    raise EsError(400, "parse_exception", "request body is required")
                items = await run_in_threadpool(parse_bulk, body, index)
                ids = iter(await store(items, len(body)))
        except Busy as exc:
            raise EsError(429, "es_rejected_execution_exception", str(exc)) from None
        out = [{it.op: answer(it, None if it.error else next(ids))} for it in items]
        return {
            "took": int((time.monotonic() - t0) * 1000),
            "errors": any(it.error is not None for it in items),
            "items": out,
        }

    @router.api_route("/_bulk", methods=["POST", "PUT"])
    async def bulk_any(request: Request) -> dict[str, Any]:
        return await bulk(request, None)

    @router.api_route("/{index}/_bulk", methods=["POST", "PUT"])
    async def bulk_index(index: str, request: Request) -> dict[str, Any]:
        return await bulk(request, index)

    async def one(request: Request, index: str, op: str, doc_id: str | None) -> JSONResponse:
        try:
            async with request_slot(source):
                body = await _read(request, source.max_body_bytes)
                item = fill_document(BulkItem(op, index, doc_id), body.strip())
                ids = await store([item], len(body))
        except Busy as exc:
            raise EsError(429, "es_rejected_execution_exception", str(exc)) from None
        if item.error is not None:
            raise EsError(*item.error)
        body = {k: v for k, v in answer(item, ids[0]).items() if k != "status"}
        return JSONResponse(body, status_code=201)

    @router.post("/{index}/_doc")
    async def doc_auto_id(index: str, request: Request) -> JSONResponse:
        return await one(request, index, "index", None)

    @router.api_route("/{index}/_doc/{doc_id}", methods=["POST", "PUT"])
    async def doc_with_id(index: str, doc_id: str, request: Request) -> JSONResponse:
        return await one(request, index, "index", doc_id)

    @router.api_route("/{index}/_create/{doc_id}", methods=["POST", "PUT"])
    async def doc_create(index: str, doc_id: str, request: Request) -> JSONResponse:
        return await one(request, index, "create", doc_id)

    app.include_router(router)
