"""`POST /api/v1/ingest`: NDJSON or raw log lines into the `http` source.

The body is ECS JSON per line (`format=json`, the default for
`application/x-ndjson` and `application/json`) or raw lines in any parser's
format (`?format=nginx_combined`, `syslog`, `auto`, ...); `Content-Encoding:
gzip` is decoded with the same size limit as the body (a gzip bomb is a 413).
The answer comes only after the events are committed, so they are searchable
as soon as the client has it.

The shared pieces of both ingest surfaces live here too: token extraction
(Bearer, ApiKey, Basic with the token as password), bounded body reading and
the submit-then-wait-for-commit step.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import zlib
from collections.abc import AsyncIterator
from typing import Any

import polars as pl
from fastapi import APIRouter, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from lightsoc.runtime import check_format
from lightsoc.sources.http import Busy, HttpSource, Receipt, Unavailable
from lightsoc.sources.lines import OFFSET, split_lines
from lightsoc.store.state import TOKEN_PREFIX, StateStore, TokenInfo

MAX_LINE_BYTES = 1 << 20
#: how long a request may wait for one of the source's request slots
SLOT_TIMEOUT = 30.0
INGEST_SCOPES = ("ingest", "admin")
JSON_TYPES = ("application/x-ndjson", "application/json", "application/ndjson")


class BodyError(Exception):
    """The body cannot be taken: `status` 413 (too large), 400 (bad gzip) or 415."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class NotCommitted(Exception):
    """The pipeline did not confirm the batch (shutdown or storage failure): 503."""


# -- authentication ---------------------------------------------------------
def token_from_header(value: str | None) -> str | None:
    """The lightsoc token in an Authorization header: `Bearer T`, `ApiKey T`,
    `ApiKey base64(id:T)` or `Basic base64(any-user:T)`."""
    if not value:
        return None
    scheme, _, cred = value.strip().partition(" ")
    scheme, cred = scheme.lower(), cred.strip()
    if not cred:
        return None
    if scheme == "bearer":
        return cred
    if scheme == "apikey" and cred.startswith(TOKEN_PREFIX):
        return cred
    if scheme in ("apikey", "basic"):
        try:
            decoded = base64.b64decode(cred, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, secret = decoded.partition(":")
        return secret if sep else None
    return None


def check_ingest_token(state: StateStore, header: str | None) -> tuple[TokenInfo | None, bool]:
    """(token info, may ingest); info None means unauthenticated (401), False scope 403."""
    token = token_from_header(header)
    info = state.verify_token(token) if token else None
    return info, info is not None and info.scope in INGEST_SCOPES


# -- bodies -----------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decoded if gzip/deflate, at most `limit` bytes either way."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"request body larger than {limit} bytes")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater: Any = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    elif encoding in ("identity", ""):
        inflater = None
    else:
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r} (gzip, deflate)")
    parts: list[bytes] = []
    raw = size = 0
    try:
        async for chunk in request.stream():
            raw += len(chunk)
            if raw > limit:
                raise BodyError(413, f"request body larger than {limit} bytes")
            if inflater is not None:
                # max_length bounds the memory a small compressed chunk can expand to
                chunk = inflater.decompress(chunk, limit - size + 1)
                if inflater.unconsumed_tail:
                    raise BodyError(413, f"decoded request body larger than {limit} bytes")
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"decoded request body larger than {limit} bytes")
            parts.append(chunk)
        if inflater is not None:
            rest = inflater.flush()
            size += len(rest)
            if size > limit:
                raise BodyError(413, f"decoded request body larger than {limit} bytes")
            parts.append(rest)
            if not inflater.eof and raw:
                raise BodyError(400, f"truncated {encoding} body")
    except zlib.error as exc:
        raise BodyError(400, f"bad {encoding} body: {exc}") from None
    return b"".join(parts)


def lines_frame(body: bytes) -> tuple[pl.DataFrame, int]:
    """Records of a body of lines (the last one may lack its newline); (frame, empty lines)."""
    if body and not body.endswith(b"\n"):
        body += b"\n"
    frame, _, skipped = split_lines(body, 0, MAX_LINE_BYTES)
    return frame.drop(OFFSET), skipped


# -- submit and wait --------------------------------------------------------
@contextlib.asynccontextmanager
async def request_slot(source: HttpSource) -> AsyncIterator[None]:
    """Bound the bodies held at once: wait a little for a slot, then `Busy` (429)."""
    try:
        await asyncio.wait_for(source.slots.acquire(), SLOT_TIMEOUT)
    except TimeoutError:
        raise Busy("too many ingest requests in progress; retry later") from None
    try:
        yield
    finally:
        source.slots.release()


async def submit_and_wait(
    source: HttpSource,
    records: pl.DataFrame,
    fmt: str | None,
    dataset: str | None,
    *,
    skipped: int = 0,
    nbytes: int = 0,
) -> Receipt:
    """Parse and publish off the event loop, then wait (without blocking it) for the commit."""
    receipt = await run_in_threadpool(
        source.submit, records, fmt, dataset, skipped=skipped, nbytes=nbytes
    )
    committed = await receipt.wait_async()
    if not committed:
        raise NotCommitted(
            "the events were not confirmed as stored (server stopping or storage failing); "
            "retry later"
        )
    return receipt


# -- the endpoint -----------------------------------------------------------
def create_ingest_router(state: StateStore, source: HttpSource) -> APIRouter:
    router = APIRouter()

    def deny(request: Request) -> None:
        info, allowed = check_ingest_token(state, request.headers.get("authorization"))
        if info is None:
            raise HTTPException(
                401, "missing or invalid API token", headers={"WWW-Authenticate": "Bearer"}
            )
        if not allowed:
            raise HTTPException(403, f"token scope {info.scope!r} cannot ingest")

    @router.post("/api/v1/ingest")
    async def ingest(
        request: Request, format: str | None = None, dataset: str | None = None
    ) -> dict[str, Any]:
        """Store NDJSON (ECS JSON per line) or raw lines (`format`); answered after commit."""
        await run_in_threadpool(deny, request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fmt = format or ("json" if ctype in JSON_TYPES else source.default_format)
        problem = check_format(fmt)
        if problem:
            raise HTTPException(400, f"format: {problem}")
        try:
            async with request_slot(source):
                body = await read_body(request, source.max_body_bytes)
                records, skipped = await run_in_threadpool(lines_frame, body)
                if records.height == 0:
                    return {"received": skipped, "events": 0, "parse_failures": 0}
                receipt = await submit_and_wait(
                    source, records, fmt, dataset, skipped=skipped, nbytes=len(body)
                )
        except BodyError as exc:
            raise HTTPException(exc.status, exc.reason) from None
        except Busy as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": "5"}) from None
        except (Unavailable, NotCommitted) as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        return {
            "received": receipt.events + skipped,
            "events": receipt.events,
            "parse_failures": receipt.parse_failures,
        }

    return router


def create_ingest_app(state: StateStore, source: HttpSource) -> FastAPI:
    """Ingest only (NDJSON and the Elasticsearch surface), for a source's own `listen`."""
    from lightsoc.web.es_compat import install_es_compat

    app = FastAPI(title="lightsoc ingest", openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(create_ingest_router(state, source))
    install_es_compat(app, state, source)
    return app
