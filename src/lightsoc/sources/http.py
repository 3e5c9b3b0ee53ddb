"""`http` source: records submitted by the web server (NDJSON ingest, Elasticsearch `_bulk`).

The source has no socket of its own: request handlers call `submit`, which
parses the records in the caller's thread with the request's format and
publishes them as one source-decoded `RawBatch` (`parsed=True`). Parsing here
rather than in the processor is what lets every request pick its own format
without a spec per format and without touching the processor, and it tells
the client its parse failures in the response.

`submit` returns a `Receipt` that completes when the pipeline's writer has
committed the batch (`on_commit(True)`) or given up on it (`False`); handlers
answer only then, so a 200 means the events are stored and searchable.
Backpressure: the bus is bounded, `submit` waits for room at most
`publish_timeout` seconds and then raises `Busy` (the handler answers 429);
the number of requests holding a body at once is bounded by `slots`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from lightsoc import schema
from lightsoc.bus.base import Bus, RawBatch
from lightsoc.parsers import get_parser, parse_records
from lightsoc.parsers.base import Parser
from lightsoc.pipeline import SourceSpec
from lightsoc.registry import register
from lightsoc.sources.base import Publish, Source
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 32 << 20
PUBLISH_TIMEOUT = 30.0
COMMIT_TIMEOUT = 300.0
MAX_CONCURRENT_REQUESTS = 4
#: a per-record id given by the submitter (Elasticsearch `_id`), preferred for `event.id`
RECORD_ID = "_record_id"
_START_NS = time.time_ns()


class Busy(Exception):
    """The bus stayed full: the client should retry later (429)."""


class Unavailable(Exception):
    """The source is stopped (server shutting down) or not attached to a pipeline (503)."""


class Receipt:
    """Completes when the writer committed (True) or gave up on (False) a batch."""

    def __init__(self, ids: list[str], events: int, parse_failures: int) -> None:
        self.ids = ids
        self.events = events
        self.parse_failures = parse_failures
        self.committed: bool | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[bool], None]] = []

    def complete(self, committed: bool) -> None:
        with self._lock:
            if self.committed is not None:
                return
            self.committed = committed
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for cb in callbacks:
            cb(committed)

    def add_done_callback(self, cb: Callable[[bool], None]) -> None:
        with self._lock:
            if self.committed is None:
                self._callbacks.append(cb)
                return
        cb(self.committed)

    def wait(self, timeout: float | None = None) -> bool | None:
        """Blocking wait: True committed, False given up, None still pending."""
        self._done.wait(timeout)
        return self.committed

    async def wait_async(self, timeout: float = COMMIT_TIMEOUT) -> bool | None:
        """The same without blocking the event loop (the writer thread wakes the loop)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()

        def settle(ok: bool) -> None:
            if not fut.done():
                fut.set_result(ok)

        def from_writer(ok: bool) -> None:
            try:
                loop.call_soon_threadsafe(settle, ok)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        self.add_done_callback(from_writer)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None


@dataclass
class Prepared:
    """A parsed batch ready to publish, and what the response reports."""

    batch: RawBatch
    receipt: Receipt


@register("sources", "http")
class HttpSource(Source):
    """An in-process source the web server submits request bodies to."""

    type = "http"

    def __init__(
        self,
        source_id: str,
        config: Any = None,
        *,
        checkpoints: dict[str, Checkpoint] | None = None,
        one_shot: bool = False,
        batch_max_rows: int = 65536,  # a request is one batch: one transaction, one answer
        implicit: bool = False,
    ) -> None:
        super().__init__(source_id, config, checkpoints=checkpoints or {})
        self.one_shot = one_shot
        #: created by the server rather than configured (hidden from stats until used)
        self.implicit = implicit
        self.listen = getattr(config, "listen", None)
        self.default_format = getattr(config, "format", None) or "auto"
        self.max_body_bytes = int(getattr(config, "max_body_bytes", DEFAULT_MAX_BODY_BYTES))
        self.spec = SourceSpec(
            id=source_id,
            type=self.type,
            format=self.default_format,
            dataset=getattr(config, "dataset", None),
            tags=list(getattr(config, "tags", []) or []),
        )
        self.publish_timeout = PUBLISH_TIMEOUT
        #: requests holding a body at once (bounds memory; more wait, then 429)
        self.slots = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        self._bus: Bus | None = None
        self._parsers: dict[str, Parser] = {}
        self._parsers_lock = threading.Lock()
        self._next_seq = 0
        self._seq_lock = threading.Lock()
        raw = f"{source_id}|http|{_START_NS}".encode()
        self._prefix = hashlib.blake2b(raw, digest_size=8).hexdigest() + "-"

    # -- pipeline side ---------------------------------------------------
    def attach(self, bus: Bus) -> None:
        """Publish to this bus (with a timeout: a full bus must not hold a request forever)."""
        self._bus = bus

    def run(self, publish: Publish) -> None:
        """Nothing to read: requests submit. Runs until stopped so the pipeline stays up."""
        if not self.one_shot:
            self.stop_event.wait()

    # -- request side ----------------------------------------------------
    def parser(self, fmt: str) -> Parser:
        """The parser of a format (KeyError if unknown), one instance per format."""
        with self._parsers_lock:
            p = self._parsers.get(fmt)
            if p is None:
                p = self._parsers[fmt] = get_parser(fmt)
            return p

    def prepare(
        self,
        records: pl.DataFrame,
        fmt: str | None = None,
        dataset: str | None = None,
        *,
        skipped: int = 0,
        nbytes: int = 0,
    ) -> Prepared:
        """Parse `records` (`event.original`, optional `event.dataset`, `RECORD_ID`).

        `dataset` overrides every record's `event.dataset`; a per-record
        `event.dataset` column wins over the parser's.
        """
        fmt = fmt or self.default_format
        n = records.height
        with self._seq_lock:
            first, self._next_seq = self._next_seq, self._next_seq + n
        generated = pl.Series("_gen", [f"{self._prefix}{first + i}" for i in range(n)], pl.Utf8)
        given = records[RECORD_ID] if RECORD_ID in records.columns else None
        records = records.drop(RECORD_ID, strict=False)
        parser = self.parser(fmt)
        try:
            df = parse_records(records, parser)
        except Exception:  # a parser bug must not lose what the client sent
            log.exception("source %s: parser %s failed; keeping the records raw", self.id, fmt)
            df = records.with_columns(
                pl.lit("pipeline_error").alias("event.kind"),
                pl.lit(schema.PARSE_FAILURE).alias("_parse_failure_tag"),
                pl.lit(False).alias("_parse_ok"),
            )
        parsed_id = df["event.id"] if "event.id" in df.columns else None
        ids = [c for c in (given, parsed_id, generated) if c is not None]
        df = df.with_columns(pl.coalesce(ids).cast(pl.Utf8).alias("event.id"))
        if dataset:
            df = df.with_columns(pl.lit(dataset).alias("event.dataset"))
        failures = int((~df["_parse_ok"]).sum()) if n else 0
        receipt = Receipt(df["event.id"].to_list(), n, failures)
        batch = RawBatch(
            source=self.id,
            source_type=self.type,
            records=df,
            bytes=nbytes,
            skipped=skipped,
            parsed=True,
            on_commit=receipt.complete,
        )
        return Prepared(batch, receipt)

    def publish(self, prepared: Prepared) -> Receipt:
        """Queue a prepared batch; `Busy` if the bus stays full, `Unavailable` if stopped."""
        if self.stop_event.is_set() or self._bus is None:
            raise Unavailable("ingest is not running (server stopping or starting)")
        if not self._bus.publish(prepared.batch, timeout=self.publish_timeout):
            raise Busy("the pipeline is busy; retry later")
        m = self.metrics
        m.received += prepared.batch.records.height + prepared.batch.skipped
        m.bytes += prepared.batch.bytes
        m.skipped_empty += prepared.batch.skipped
        m.last_seen = datetime.now(UTC)
        return prepared.receipt

    def submit(
        self,
        records: pl.DataFrame,
        fmt: str | None = None,
        dataset: str | None = None,
        *,
        skipped: int = 0,
        nbytes: int = 0,
    ) -> Receipt:
        """Parse and publish (blocking, bounded); wait on the receipt for the commit."""
        return self.publish(self.prepare(records, fmt, dataset, skipped=skipped, nbytes=nbytes))
