"""`redis` source: consume a Redis stream with a consumer group.

The group is created with `XGROUP CREATE <stream> <group> 0 MKSTREAM` (an
existing group is kept), so a new group reads what the stream already holds.
On every (re)connect the source first re-reads the entries still pending for
its own consumer name (delivered before a crash or restart, never acked),
then claims entries idle longer than `claim_idle_seconds` from other (dead)
consumers with `XAUTOCLAIM`; the claim is repeated periodically. Then it reads
new entries with `XREADGROUP ... BLOCK`, up to `batch_max_rows` per batch or
`flush_seconds` (`pipeline.batch_max_ms`) after the first buffered entry. Give each instance a fixed
`consumer` name so a restart re-reads its pending entries at once; with the
default (hostname-pid) they are claimed after `claim_idle_seconds`.

The record text is the entry's `field` (default `message`); an entry without
that field is stored as the JSON object of all its fields. Entry ids are
acknowledged (`XACK`) only after the batch's events are committed; a batch the
pipeline gave up on stays pending and is delivered again after a restart:
at-least-once. `event.id` is `<hash of source id and stream>-<entry id>`, the
same on every delivery. Acks are sent from the source's own thread; on stop
the source waits (up to `DRAIN_SECONDS`) until every published batch is
answered, so a clean stop leaves nothing pending.

When Redis goes away the error is counted (`metrics.errors`,
`extra.reconnects`) and the source reconnects with backoff; entries already
read are published, never dropped. `senders` holds per-stream counters
(received, bytes, last_seen, pending, lag). redis-py is imported lazily: every
CLI start imports all source modules.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import polars as pl

from lightsoc.bus.base import RawBatch
from lightsoc.registry import register
from lightsoc.sources.base import Publish, Source
from lightsoc.sources.lines import INVALID_UTF8, TRUNCATED, lines_from_list
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

BLOCK_IDLE_MS = 1000  # nothing in flight: wake up now and then to see `stop`
BLOCK_BUSY_MS = 100  # batches in flight: wake up soon to send their acks
INFO_SECONDS = 5.0
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
DRAIN_SECONDS = 15.0
ACK_CHUNK = 10_000


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


@register("sources", "redis")
class RedisStreamSource(Source):
    type = "redis"

    def __init__(
        self,
        source_id: str,
        config: Any,
        *,
        checkpoints: dict[str, Checkpoint],
        one_shot: bool = False,  # a stream has no end: ignored
        batch_max_rows: int = 65536,
    ) -> None:
        super().__init__(source_id, config, checkpoints=checkpoints)
        self.batch_max_rows = max(1, batch_max_rows)
        self.url: str = config.url
        self.stream: str = config.stream
        self.group: str = config.group
        self.consumer: str = config.consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.field = str(getattr(config, "field", "message")).encode()
        self.claim_idle_ms = int(float(getattr(config, "claim_idle_seconds", 60.0)) * 1000)
        self.max_bytes = int(getattr(config, "max_message_bytes", 1 << 20))
        raw = f"{source_id}|{self.stream}".encode()
        self.prefix = hashlib.blake2b(raw, digest_size=8).hexdigest() + "-"
        #: per stream: received, bytes, last_seen, pending, lag; replaced, never mutated
        self.senders: dict[str, dict[str, Any]] = {}
        for key in ("invalid_utf8", "acked", "claimed", "reconnects", "pending", "lag"):
            self.metrics.extra[key] = 0
        self._client: Any = None
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self._to_ack: list[bytes] = []  # committed, XACK not sent yet (under _lock)
        self._given_up: list[bytes] = []  # not committed: left pending (under _lock)
        #: ids read and not yet acked or given up (source thread only): a pending
        #: re-read or a claim must not publish them a second time
        self._inflight: set[bytes] = set()
        self._seq = 0
        self._next_claim = 0.0
        self._next_info = 0.0
        self._reset_buffer()

    # -- buffering -------------------------------------------------------
    def _reset_buffer(self) -> None:
        self._ids: list[bytes] = []  # every entry of the batch (acked together)
        self._msgs: list[bytes] = []
        self._msg_ids: list[str] = []
        self._bytes = 0
        self._skipped = 0
        self._first = 0.0

    def _take(self, entries: list[Any]) -> int:
        """Buffer entries (skipping those already in flight); returns how many were new."""
        new = 0
        for eid, fields in entries:
            if eid in self._inflight:
                continue
            new += 1
            self._inflight.add(eid)
            self._ids.append(eid)
            if not self._first:
                self._first = time.monotonic()
            if not fields:  # deleted from the stream while pending: only acked
                self._skipped += 1
                continue
            value = fields.get(self.field)
            if value is None:
                doc = {_text(k): _text(v) for k, v in fields.items()}
                value = json.dumps(doc, ensure_ascii=False).encode()
            self._bytes += len(value)
            if value == b"" or value == b"\r":
                self._skipped += 1
                continue
            self._msgs.append(value[: self.max_bytes + 2])  # enough for `lines` to flag it
            self._msg_ids.append(_text(eid))
        return new

    def _flush(self, publish: Publish) -> None:
        if not self._ids:
            return
        first = self._seq
        self._seq += len(self._msgs)
        frame = lines_from_list(self._msgs, list(range(first, self._seq)), self.max_bytes)
        records = frame.with_columns(
            (pl.lit(self.prefix) + pl.Series("i", self._msg_ids, pl.Utf8)).alias("event.id")
        )
        rows = len(self._ids)
        now = datetime.now(UTC)
        m = self.metrics
        m.received += rows
        m.bytes += self._bytes
        m.skipped_empty += self._skipped
        if records.height:
            m.truncated += int(records[TRUNCATED].sum())
            m.extra["invalid_utf8"] += int(records[INVALID_UTF8].sum())
            m.last_seen = now
        old = self.senders.get(self.stream, {})
        self.senders = {
            self.stream: {
                **old,
                "received": old.get("received", 0) + rows,
                "bytes": old.get("bytes", 0) + self._bytes,
                "last_seen": now.isoformat(),
            }
        }
        batch = RawBatch(
            source=self.id,
            source_type=self.type,
            records=records,
            bytes=self._bytes,
            skipped=self._skipped,
            on_commit=functools.partial(self._committed, list(self._ids)),
        )
        self._reset_buffer()
        publish(batch)

    def _committed(self, ids: list[bytes], committed: bool) -> None:
        """Called by the pipeline's writer: queue the ids for the source thread."""
        with self._lock:
            (self._to_ack if committed else self._given_up).extend(ids)
        self._answered.set()

    # -- Redis -----------------------------------------------------------
    def _connect(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries inside redis-py: the loop below backs off and counts them.
        return redis.Redis.from_url(
            self.url,
            socket_timeout=BLOCK_IDLE_MS / 1000 + 10,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )

    def _setup(self, publish: Publish) -> None:
        """Create the group, re-read our own pending entries, claim abandoned ones."""
        import redis

        c = self._client
        try:
            c.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        start: bytes | str = "0"
        while True:
            resp = c.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=self.batch_max_rows
            )
            entries = resp[0][1] if resp else []
            if not entries:
                break
            self._take(entries)
            self._flush(publish)
            start = entries[-1][0]
        self._claim(publish)

    def _claim(self, publish: Publish) -> None:
        """Take over entries another consumer left pending for too long."""
        start: bytes | str = "0-0"
        while True:
            resp = self._client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=start,
                count=self.batch_max_rows,
            )
            self.metrics.extra["claimed"] += self._take(resp[1])
            self._flush(publish)
            start = resp[0]
            if start in (b"0-0", "0-0"):
                break
        self._next_claim = time.monotonic() + max(1.0, min(self.claim_idle_ms / 2000, 30.0))

    def _ack(self) -> None:
        with self._lock:
            ids, self._to_ack = self._to_ack, []
            given_up, self._given_up = self._given_up, []
        self._inflight.difference_update(given_up)  # stay pending: delivered after a restart
        if not ids:
            return
        try:
            for i in range(0, len(ids), ACK_CHUNK):
                self._client.xack(self.stream, self.group, *ids[i : i + ACK_CHUNK])
        except Exception:
            with self._lock:  # XACK is idempotent: retry them all after a reconnect
                self._to_ack[:0] = ids
            raise
        self._inflight.difference_update(ids)
        self.metrics.extra["acked"] += len(ids)

    def _info(self) -> None:
        """Pending entries and lag of our group (cheap: one XINFO GROUPS)."""
        self._next_info = time.monotonic() + INFO_SECONDS
        for g in self._client.xinfo_groups(self.stream):
            name = g.get("name")
            if (name.decode() if isinstance(name, bytes) else name) != self.group:
                continue
            pending, lag = int(g.get("pending") or 0), g.get("lag")
            self.metrics.extra["pending"] = pending
            self.metrics.extra["lag"] = int(lag or 0)
            old = self.senders.get(self.stream, {"received": 0, "bytes": 0, "last_seen": None})
            self.senders = {self.stream: {**old, "pending": pending, "lag": lag}}

    def _read(self, publish: Publish) -> None:
        if self._ids:
            left = self._first + self.flush_seconds - time.monotonic()
            block = max(1, int(left * 1000))
        else:
            block = BLOCK_BUSY_MS if self._inflight else BLOCK_IDLE_MS
        resp = self._client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.batch_max_rows - len(self._ids),
            block=block,
        )
        if resp:
            self._take(resp[0][1])
        if self._ids and (
            len(self._ids) >= self.batch_max_rows
            or time.monotonic() - self._first >= self.flush_seconds
        ):
            self._flush(publish)

    # -- running ---------------------------------------------------------
    def run(self, publish: Publish) -> None:
        import redis

        self._client = self._connect()
        try:
            self._serve(publish, redis.RedisError)
        finally:
            try:
                self._flush(publish)  # what was read is stored, not dropped
                self._drain(redis.RedisError)
            finally:
                self._client.close()
                self._client = None

    def _serve(self, publish: Publish, redis_error: type[Exception]) -> None:
        delay = RETRY_MIN_SECONDS
        ready = False
        while not self.stop_event.is_set():
            try:
                self._ack()
                if not ready:
                    self._setup(publish)
                    ready, delay = True, RETRY_MIN_SECONDS
                    self.metrics.last_error = None
                    log.info("source %s: consuming %s as %s", self.id, self.stream, self.consumer)
                now = time.monotonic()
                if now >= self._next_claim:
                    self._claim(publish)
                if now >= self._next_info:
                    self._info()
                self._read(publish)
            except redis_error as exc:  # Redis went away (or lost our group): reconnect
                self._flush(publish)
                ready = False
                self.metrics.extra["reconnects"] += 1
                self._error(f"redis {self.stream}: {type(exc).__name__}: {exc} (reconnecting)")
                self.stop_event.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _drain(self, redis_error: type[Exception]) -> None:
        """On stop: wait until published batches are answered and ack them."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while True:
            self._answered.clear()
            try:
                self._ack()
            except redis_error as exc:
                self._error(f"redis {self.stream}: acknowledging on stop: {exc}")
                time.sleep(0.2)
            if not self._inflight or time.monotonic() >= deadline:
                break
            self._answered.wait(0.1)
        if self._inflight:
            log.warning(
                "source %s: %d entries stay pending (redelivered after a restart)",
                self.id,
                len(self._inflight),
            )

    def _error(self, msg: str) -> None:
        self.metrics.errors += 1
        if msg != self.metrics.last_error:  # a repeated error is counted, logged once
            self.metrics.last_error = msg
            log.warning("source %s: %s", self.id, msg)
