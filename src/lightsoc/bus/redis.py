"""Redis Streams bus: collectors `XADD` raw batches, processors read them in a group.

URL: `redis://host:port/db?stream=lightsoc:raw&group=lightsoc-processors&maxlen=2000&claim_idle=30`
(or `rediss://`); those four parameters are the defaults (`claim_idle` in seconds). One stream entry per
batch, its only field `b` holding `codec.encode(batch)`.

Delivery is at-least-once. A processor acknowledges (`XACK`) a batch only after
its events are stored; a processor killed between storing and `XACK` gets the
batch delivered again (to itself after a restart with the same consumer name,
which first re-reads its own pending entries; to another processor once the
entry has been idle `claim_idle_seconds`, via `XAUTOCLAIM`). A publish whose
reply was lost is retried and may add the batch twice. Duplicates are removed
by the event store (`event.id` / `batch_id`), not here. `claim_idle_seconds`
must exceed the longest time a batch spends between `consume` and `ack`, or a
slow processor's batch is taken over and stored twice (deduplicated, wasted).

Bounded, never lossy: the stream holds at most `maxlen` entries; a publish that
finds it full trims what every group has acknowledged, then waits for room
(backpressure on the collector). How, and the group depth: `bus.redis_trim`.
Acks also trim now and then. Entries that are not raw batches are copied with
an `error` field to `<stream>:dead` and acknowledged (counted in
`bad_messages`, never fatal).

Persistence: give Redis `appendonly yes`. With `appendfsync everysec` (the
default) a host crash can lose up to a second of accepted batches and acks
(lost acks mean redeliveries); a Redis process crash or restart loses nothing.
While Redis is away, publish and consume retry with backoff and count errors;
no exception escapes them. Needs Redis >= 7.0 (`XAUTOCLAIM` with deleted ids,
`XINFO GROUPS` lag). redis-py is imported lazily: the CLI imports every module.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lightsoc.bus import codec
from lightsoc.bus.base import Bus, RawBatch
from lightsoc.bus.redis_trim import ADD_IF_ROOM, _text, group_depth, trim_acknowledged

log = logging.getLogger(__name__)

DEFAULT_STREAM = "lightsoc:raw"
DEFAULT_GROUP = "lightsoc-processors"
#: a batch unacknowledged this long is taken over by another processor (`claim_idle=`)
DEFAULT_CLAIM_IDLE_SECONDS = 30.0
DEFAULT_MAXLEN = 2000
FIELD = b"b"
BLOCK_MAX_MS = 1000  # a blocked read wakes up at least this often (to see `close`)
FULL_POLL_SECONDS = 0.05  # a full stream is polled this often
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
DEPTH_CACHE_SECONDS = 1.0
TRIM_EVERY_ACKS = 100
TRIM_EVERY_SECONDS = 5.0


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL for redis-py without our parameters, and our parameters."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"bus url {url!r}: expected redis://host:port/db or rediss://...")
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("stream", "group", "maxlen", "claim_idle"):
            ours[key] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class RedisBus(Bus):
    """A bus on one Redis stream with one consumer group of processors."""

    def __init__(
        self,
        url: str,
        *,
        consumer: str | None = None,
        claim_idle_seconds: float | None = None,
        max_len: int | None = None,
        stream: str | None = None,
        group: str | None = None,
        socket_timeout: float = 10.0,
    ) -> None:
        self._url, params = parse_url(url)
        self.stream = stream or params.get("stream") or DEFAULT_STREAM
        self.group = group or params.get("group") or DEFAULT_GROUP
        self.dead_stream = f"{self.stream}:dead"
        try:
            self.max_len = int(
                max_len if max_len is not None else params.get("maxlen", DEFAULT_MAXLEN)
            )
        except ValueError:
            raise ValueError(f"bus url {url!r}: maxlen must be a whole number") from None
        if self.max_len < 1:
            raise ValueError(f"bus url {url!r}: maxlen must be at least 1")
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        if claim_idle_seconds is None:
            try:
                claim_idle_seconds = float(params.get("claim_idle", DEFAULT_CLAIM_IDLE_SECONDS))
            except ValueError:
                raise ValueError(f"bus url {url!r}: claim_idle must be seconds") from None
        if claim_idle_seconds <= 0:
            raise ValueError(f"bus url {url!r}: claim_idle must be more than 0 seconds")
        self.claim_idle_ms = max(1, int(claim_idle_seconds * 1000))
        self._claim_every = min(max(claim_idle_seconds / 2, 0.1), 30.0)
        self._socket_timeout = max(socket_timeout, BLOCK_MAX_MS / 1000 + 1)
        self._client: Any = None
        self._add_script: Any = None
        self._closed = threading.Event()
        self._lock = threading.Lock()  # counters, in-flight ids, ids to ack
        self._read_lock = threading.Lock()  # group setup and the read cursors
        self._ack_lock = threading.Lock()  # one XACK at a time: counts stay exact
        counters = "published consumed acked reclaimed bad_messages errors backpressure_waits"
        self._metrics: dict[str, Any] = dict.fromkeys([*counters.split(), "trimmed"], 0)
        self._metrics["last_error"] = None
        #: consumed and not acked yet: a re-read or a claim must not return them again
        self._inflight: set[str] = set()
        self._to_ack: list[str] = []  # acked by the caller, XACK not sent yet
        self._ready = False  # group created and own pending re-read scheduled
        self._pending_from: str | None = None  # cursor over our own pending entries
        self._claim_from = "0-0"
        self._next_claim = 0.0
        self._retry_at = 0.0  # consume side: no Redis call before this (backoff)
        self._retry_delay = RETRY_MIN_SECONDS
        self._acks_since_trim = 0
        self._next_trim = time.monotonic() + TRIM_EVERY_SECONDS
        self._depth = 0
        self._depth_at = float("-inf")

    # -- plumbing --------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries inside redis-py: callers back off and count the errors.
        client = redis.Redis.from_url(
            self._url,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )
        self._add_script = client.register_script(ADD_IF_ROOM)
        return client

    @staticmethod
    def _redis_error() -> type[Exception]:
        import redis

        return redis.RedisError

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._metrics[key] += n

    def _error(self, what: str, exc: Exception) -> None:
        msg = f"redis bus {self.stream}: {what}: {type(exc).__name__}: {exc}"
        with self._lock:
            self._metrics["errors"] += 1
            repeated = msg == self._metrics["last_error"]
            self._metrics["last_error"] = msg
        if not repeated:  # a repeated error is counted, logged once
            log.warning("%s", msg)

    def _recovered(self) -> None:
        with self._lock:
            self._metrics["last_error"] = None

    # -- publishing ------------------------------------------------------
    def publish(self, batch: RawBatch, timeout: float | None = None) -> bool:
        """XADD the batch once the stream has room; False after `timeout` or `close`.

        Raises `codec.CodecError` for a batch too big to encode (the caller's to split).
        """
        data = codec.encode(batch)
        redis_error = self._redis_error()
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        delay, waited, failed = RETRY_MIN_SECONDS, False, False
        while not self._closed.is_set():
            try:
                added = self._add(data) or (self._trim() > 0 and self._add(data))
                if added:
                    self._count("published")
                    if failed:
                        self._recovered()
                    return True
                if not waited:
                    waited = True
                    self._count("backpressure_waits")
                pause = FULL_POLL_SECONDS
            except redis_error as exc:
                if self._closed.is_set():
                    return False
                failed = True
                self._error("publishing (retrying)", exc)
                pause, delay = delay, min(delay * 2, RETRY_MAX_SECONDS)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                pause = min(pause, left)
            self._closed.wait(pause)
        return False

    def _add(self, data: bytes) -> bool:
        client = self.client
        return (
            self._add_script(keys=[self.stream], args=[self.max_len, data], client=client)
            is not None
        )

    def _trim(self) -> int:
        """XTRIM MINID the entries every group has acknowledged; how many went."""
        n = trim_acknowledged(self.client, self.stream)
        if n:
            self._count("trimmed", n)
        return n

    # -- consuming -------------------------------------------------------
    def consume(self, timeout: float) -> RawBatch | None:
        """Own pending entries first, then claimed ones, then new ones."""
        redis_error = self._redis_error()
        deadline = time.monotonic() + max(0.0, timeout)
        while not self._closed.is_set():
            wait = self._retry_at - time.monotonic()
            if wait > 0:  # backing off after an error
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._closed.wait(min(wait, left))
                continue
            try:
                self._flush_acks()
                got = self._step(deadline)
            except redis_error as exc:
                if self._closed.is_set():  # close() cut the blocked read short
                    return None
                self._ready = False  # set the group up again, re-read our own pending
                self._error("consuming (reconnecting)", exc)
                self._retry_at = time.monotonic() + self._retry_delay
                self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_SECONDS)
                continue
            if isinstance(got, RawBatch):
                return got
            if got is None and time.monotonic() >= deadline:
                return None
            # got is False: a bad entry was set aside; look at the next one at once
        return None

    def _step(self, deadline: float) -> RawBatch | bool | None:
        """One entry: a batch, False for a bad entry, None for nothing new."""
        entry: tuple[Any, Any] | None = None
        reclaimed = False
        with self._read_lock:
            if not self._ready:
                self._setup()
            if self._pending_from is not None:
                entry = self._own_pending()
            if entry is None and (
                self._claim_from != "0-0" or time.monotonic() >= self._next_claim
            ):
                entry = self._claim_one()
                reclaimed = entry is not None
        if entry is None:
            left_ms = int((deadline - time.monotonic()) * 1000)
            resp = self.client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=1,
                block=min(left_ms, BLOCK_MAX_MS) if left_ms >= 1 else None,
            )
            if not resp or not resp[0][1]:
                return None
            entry = resp[0][1][0]
        return self._deliver(entry[0], entry[1], reclaimed)

    def _setup(self) -> None:
        import redis

        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._pending_from = "0"
        self._claim_from, self._next_claim = "0-0", 0.0
        self._ready = True
        if self._retry_delay > RETRY_MIN_SECONDS:
            self._recovered()
        self._retry_delay = RETRY_MIN_SECONDS

    def _own_pending(self) -> tuple[Any, Any] | None:
        """The next entry delivered to our name before and not acked (not in flight here)."""
        while self._pending_from is not None:
            resp = self.client.xreadgroup(
                self.group, self.consumer, {self.stream: self._pending_from}, count=1
            )
            entries = resp[0][1] if resp else []
            if not entries:
                self._pending_from = None
                break
            eid, fields = entries[0]
            self._pending_from = _text(eid)
            with self._lock:
                busy = _text(eid) in self._inflight
            if not busy:
                return eid, fields
        return None

    def _claim_one(self) -> tuple[Any, Any] | None:
        """One entry idle longer than `claim_idle_seconds` (a dead consumer's)."""
        while True:
            resp = self.client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=self._claim_from,
                count=1,
            )
            self._claim_from = _text(resp[0])
            if self._claim_from == "0-0":
                self._next_claim = time.monotonic() + self._claim_every
            for eid in resp[2] if len(resp) > 2 else []:  # deleted while pending
                self._dead(eid, {}, "entry was deleted from the stream while pending")
            for eid, fields in resp[1]:
                with self._lock:
                    busy = _text(eid) in self._inflight
                if not busy:  # ours, in flight here: claiming only reset its idle time
                    return eid, fields
            if self._claim_from == "0-0":
                return None

    def _deliver(self, eid: Any, fields: Any, reclaimed: bool) -> RawBatch | bool:
        data = fields.get(FIELD) if fields else None
        if data is None:
            error = "entry has no field 'b'" if fields else "entry was deleted while pending"
            self._dead(eid, fields or {}, error)
            return False
        try:
            batch = codec.decode(data)
        except Exception as exc:  # CodecError, or whatever else odd bytes provoke
            self._dead(eid, fields, str(exc) or type(exc).__name__)
            return False
        batch.bus_ref = _text(eid)
        with self._lock:
            self._inflight.add(batch.bus_ref)
            self._metrics["consumed"] += 1
            self._metrics["reclaimed"] += int(reclaimed)
        return batch

    def _dead(self, eid: Any, fields: dict[Any, Any], error: str) -> None:
        """Copy an entry that is no raw batch to the dead-letter stream and ack it."""
        doc = dict(fields)
        doc.update(
            {"error": error, "entry_id": eid, "group": self.group, "consumer": self.consumer}
        )
        pipe = self.client.pipeline(transaction=True)  # both or neither
        pipe.xadd(self.dead_stream, doc)
        pipe.xack(self.stream, self.group, eid)
        pipe.execute()
        self._count("bad_messages")
        log.warning(
            "redis bus %s: entry %s set aside in %s: %s",
            self.stream,
            _text(eid),
            self.dead_stream,
            error,
        )

    # -- acknowledging ---------------------------------------------------
    def ack(self, batch: RawBatch) -> None:
        """XACK the batch's entry; if Redis is away, the ack is sent again later."""
        if batch.bus_ref is None:
            return
        with self._lock:
            self._to_ack.append(str(batch.bus_ref))
        redis_error = self._redis_error()
        try:
            self._flush_acks()
            if self._acks_since_trim >= TRIM_EVERY_ACKS or time.monotonic() >= self._next_trim:
                self._acks_since_trim = 0
                self._next_trim = time.monotonic() + TRIM_EVERY_SECONDS
                self._trim()
        except redis_error as exc:
            self._error("acknowledging (kept, sent again later)", exc)

    def _flush_acks(self) -> None:
        with self._ack_lock:
            with self._lock:
                ids, self._to_ack = self._to_ack, []
            if not ids:
                return
            try:
                self.client.xack(self.stream, self.group, *ids)
            except Exception:
                with self._lock:  # XACK is idempotent: send them all again
                    self._to_ack[:0] = ids
                raise
            with self._lock:
                self._inflight.difference_update(ids)
                self._metrics["acked"] += len(ids)
                self._acks_since_trim += len(ids)

    # -- reporting -------------------------------------------------------
    def depth(self) -> int:
        """Entries of the group not acknowledged yet (pending + lag), cached ~1 s."""
        import redis

        now = time.monotonic()
        if now - self._depth_at < DEPTH_CACHE_SECONDS:
            return self._depth
        self._depth_at = now
        try:
            self._depth = group_depth(self.client, self.stream, self.group)
        except redis.ResponseError as exc:
            if "no such key" not in str(exc).lower():
                self._error("reading the depth", exc)
            else:
                self._depth = 0
        except redis.RedisError as exc:
            self._error("reading the depth", exc)
        return self._depth

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._metrics)

    def close(self) -> None:
        """Stop waiting publishers and readers; send the acks still owed."""
        self._closed.set()
        if self._client is None:
            return
        try:
            self._flush_acks()
        except self._redis_error() as exc:
            self._error("acknowledging on close (entries stay pending)", exc)
        self._client.close()
