"""`kafka` source: consume topics with a consumer group (confluent-kafka / librdkafka).

Auto commit and the automatic offset store are off: an offset is committed
only after the events of every message below it are stored. Each
`consume(batch_max_rows, POLL_SECONDS)` result is one `RawBatch`; the record
text is the message value (invalid UTF-8 escaped and flagged `_invalid_utf8`,
empty values and tombstones counted as empty). `log.offset` is the Kafka
offset and `event.id` is `<hash of source id, topic, partition>-<offset>`,
the same on every delivery.

The pipeline's writer answers each batch from its own thread; answers are
queued and applied in the consumer's thread (the poll loop), where the highest
stored offset + 1 per partition is committed asynchronously. Keeping commits,
rebalance callbacks and polling on one thread makes a commit for a partition
we no longer own impossible. On rebalance the revoked partitions' batches
still in flight are waited for (up to `REVOKE_WAIT_SECONDS`) and what was
stored is committed synchronously while we still own them; anything later is
dropped (the new owner reads it again from the last commit: at-least-once,
never lost). A batch the pipeline gave up on stops commits for its
partitions until they are assigned again. On stop the source waits for its
batches to be answered (up to `DRAIN_SECONDS`) and commits synchronously.

`senders` holds per partition (`topic[partition]`) counters: received,
bytes, last_seen, committed and lag (cached high watermark - position).
confluent_kafka is imported lazily: every CLI start imports all source modules.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from lightsoc.bus.base import RawBatch
from lightsoc.registry import register
from lightsoc.sources.base import Publish, Source
from lightsoc.sources.lines import INVALID_UTF8, TRUNCATED, lines_from_list
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
LAG_SECONDS = 1.0
REVOKE_WAIT_SECONDS = 10.0
DRAIN_SECONDS = 15.0
MAX_CONSUME = 1_000_000  # librdkafka's limit for one consume() call

TP = tuple[str, int]


@dataclass
class _InFlight:
    """A published batch: next offset and assignment epoch per partition."""

    offsets: dict[TP, int]
    epochs: dict[TP, int]


def _name(tp: TP) -> str:
    return f"{tp[0]}[{tp[1]}]"


@register("sources", "kafka")
class KafkaSource(Source):
    type = "kafka"

    def __init__(
        self,
        source_id: str,
        config: Any,
        *,
        checkpoints: dict[str, Checkpoint],
        one_shot: bool = False,  # a topic has no end: ignored
        batch_max_rows: int = 65536,
    ) -> None:
        super().__init__(source_id, config, checkpoints=checkpoints)
        self.batch_max_rows = min(max(1, batch_max_rows), MAX_CONSUME)
        self.topics: list[str] = list(config.topics)
        self.max_bytes = int(getattr(config, "max_message_bytes", 1 << 20))
        options = dict(getattr(config, "options", None) or {})
        for key in ("enable.auto.commit", "enable.auto.offset.store"):
            if str(options.pop(key, "false")).lower() != "false":
                log.warning("source %s: options.%s is ignored (always false)", source_id, key)
        self.conf: dict[str, Any] = {
            "bootstrap.servers": ",".join(config.brokers),
            "group.id": config.group_id,
            "auto.offset.reset": "earliest",
            **options,
            # at-least-once needs these: offsets move only when events are stored
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        #: per partition (`topic[partition]`): received, bytes, last_seen, committed,
        #: lag; replaced, never mutated
        self.senders: dict[str, dict[str, Any]] = {}
        for key in ("invalid_utf8", "commits", "commit_errors", "rebalances", "lag"):
            self.metrics.extra[key] = 0
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self._answers: list[tuple[int, bool]] = []  # (batch seq, committed) under _lock
        # The rest is touched by the consumer thread only.
        self._consumer: Any = None
        self._tp_cls: Any = None
        self._batch_seq = 0
        self._inflight: dict[int, _InFlight] = {}
        self._assigned: set[TP] = set()
        self._epoch: dict[TP, int] = {}
        self._stored: dict[TP, int] = {}  # next offset of the last stored message
        self._committed: dict[TP, int] = {}  # what we last asked the group to commit
        self._failed: set[TP] = set()  # a batch was not stored: commit nothing more
        self._prefixes: dict[TP, str] = {}
        self._next_lag = 0.0

    # -- batches ---------------------------------------------------------
    def _prefix(self, tp: TP) -> str:
        p = self._prefixes.get(tp)
        if p is None:
            raw = f"{self.id}|{tp[0]}|{tp[1]}".encode()
            p = self._prefixes[tp] = hashlib.blake2b(raw, digest_size=8).hexdigest() + "-"
        return p

    def _publish(self, msgs: list[Any], publish: Publish) -> None:
        values: list[bytes] = []
        offsets: list[int] = []
        ids: list[str] = []
        nexts: dict[TP, int] = {}
        counts: dict[TP, list[int]] = {}
        total_bytes = skipped = 0
        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._kafka_error(err)
                continue
            tp = (msg.topic(), msg.partition())
            if tp not in self._assigned:  # revoked meanwhile: the next owner reads it
                continue
            value = msg.value() or b""
            offset = msg.offset()
            nexts[tp] = offset + 1
            c = counts.setdefault(tp, [0, 0])
            c[0] += 1
            c[1] += len(value)
            total_bytes += len(value)
            if value == b"" or value == b"\r":
                skipped += 1
                continue
            values.append(value[: self.max_bytes + 2])  # enough for `lines` to flag it
            offsets.append(offset)
            ids.append(f"{self._prefix(tp)}{offset}")
        if not nexts:
            return
        records = lines_from_list(values, offsets, self.max_bytes).with_columns(
            pl.Series("event.id", ids, pl.Utf8)
        )
        now = datetime.now(UTC)
        m = self.metrics
        m.received += len(records) + skipped
        m.bytes += total_bytes
        m.skipped_empty += skipped
        m.last_seen = now
        m.last_error = None
        if records.height:
            m.truncated += int(records[TRUNCATED].sum())
            m.extra["invalid_utf8"] += int(records[INVALID_UTF8].sum())
        senders = dict(self.senders)
        stamp = now.isoformat()
        for tp, (n, nbytes) in counts.items():
            old = senders.get(_name(tp), {"received": 0, "bytes": 0})
            senders[_name(tp)] = {
                **old,
                "received": old["received"] + n,
                "bytes": old["bytes"] + nbytes,
                "last_seen": stamp,
            }
        self.senders = senders
        seq = self._batch_seq = self._batch_seq + 1
        self._inflight[seq] = _InFlight(nexts, {tp: self._epoch.get(tp, 0) for tp in nexts})
        batch = RawBatch(
            source=self.id,
            source_type=self.type,
            records=records,
            bytes=total_bytes,
            skipped=skipped,
            on_commit=functools.partial(self._on_commit, seq),
        )
        publish(batch)

    def _on_commit(self, seq: int, committed: bool) -> None:
        """Called by the pipeline's writer: queue the answer for the consumer thread."""
        with self._lock:
            self._answers.append((seq, committed))
        self._answered.set()

    def _take_answers(self) -> None:
        """Turn answered batches into offsets to commit (consumer thread)."""
        with self._lock:
            answers, self._answers = self._answers, []
        for seq, committed in answers:
            batch = self._inflight.pop(seq, None)
            if batch is None:
                continue
            for tp, offset in batch.offsets.items():
                if batch.epochs[tp] != self._epoch.get(tp, 0) or tp not in self._assigned:
                    continue  # revoked since: the next owner reads it again
                if not committed:
                    self._failed.add(tp)
                elif tp not in self._failed and offset > self._stored.get(tp, -1):
                    self._stored[tp] = offset

    def _commit(self, sync: bool, only: set[TP] | None = None) -> None:
        """Commit stored offsets that moved (consumer thread)."""
        todo = {
            tp: off
            for tp, off in self._stored.items()
            if off != self._committed.get(tp)
            and tp in self._assigned
            and (only is None or tp in only)
        }
        if not todo:
            return
        tps = [self._tp_cls(t, p, off) for (t, p), off in todo.items()]
        try:
            if sync:
                for r in self._consumer.commit(offsets=tps, asynchronous=False) or []:
                    if r.error is not None:
                        raise RuntimeError(f"{_name((r.topic, r.partition))}: {r.error}")
                self._committed_ok(todo)
            else:
                self._consumer.commit(offsets=tps, asynchronous=True)
        except Exception as exc:  # KafkaException: retried with the next commit
            self.metrics.extra["commit_errors"] += 1
            self._error(f"commit failed: {exc}")
            return
        self._committed.update(todo)
        self.metrics.extra["commits"] += 1

    def _committed_ok(self, offsets: dict[TP, int]) -> None:
        senders = dict(self.senders)
        for tp, off in offsets.items():
            old = senders.get(_name(tp), {"received": 0, "bytes": 0, "last_seen": None})
            senders[_name(tp)] = {**old, "committed": off}
        self.senders = senders

    # -- librdkafka callbacks (served in the consumer thread) --------------
    def _commit_result(self, err: Any, partitions: list[Any]) -> None:
        bad = [p for p in partitions if p.error is not None]
        if err is not None or bad:
            self.metrics.extra["commit_errors"] += 1
            self._error(f"commit failed: {err or bad[0].error}")
            for p in partitions if err is not None else bad:  # commit it again next time
                self._committed.pop((p.topic, p.partition), None)
        ok = {(p.topic, p.partition): p.offset for p in partitions if p.error is None}
        if err is None and ok:
            self._committed_ok(ok)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.metrics.extra["rebalances"] += 1
        for p in partitions:
            tp = (p.topic, p.partition)
            self._assigned.add(tp)
            self._failed.discard(tp)  # reading restarts at the committed offset
        log.info("source %s: assigned %s", self.id, ", ".join(_name(tp) for tp in self._assigned))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        deadline = time.monotonic() + REVOKE_WAIT_SECONDS
        # Commit what is stored while we still own the partitions: fewer re-reads.
        while True:
            self._answered.clear()
            self._take_answers()
            busy = any(tp in tps for b in self._inflight.values() for tp in b.offsets)
            if not busy or time.monotonic() >= deadline:
                break
            self._answered.wait(0.05)
        self._commit(sync=True, only=tps)
        self._drop(tps)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._drop({(p.topic, p.partition) for p in partitions})

    def _drop(self, tps: set[TP]) -> None:
        for tp in tps:
            self._assigned.discard(tp)
            self._epoch[tp] = self._epoch.get(tp, 0) + 1
            self._stored.pop(tp, None)
            self._committed.pop(tp, None)
            self._failed.discard(tp)

    def _kafka_error(self, err: Any) -> None:
        """librdkafka's error callback and message errors: counted, never fatal."""
        if getattr(err, "fatal", lambda: False)():
            raise RuntimeError(f"kafka: fatal: {err}")  # the pipeline restarts the source
        self._error(f"kafka: {err}")

    # -- running ---------------------------------------------------------
    def _lag(self) -> None:
        self._next_lag = time.monotonic() + LAG_SECONDS
        if not self._assigned:
            return
        tps = [self._tp_cls(t, p) for t, p in sorted(self._assigned)]
        total = 0
        senders = dict(self.senders)
        for pos in self._consumer.position(tps):
            tp = (pos.topic, pos.partition)
            try:
                _, high = self._consumer.get_watermark_offsets(pos, cached=True)
            except Exception:  # not known yet
                continue
            if high is None or high < 0 or pos.offset < 0:
                continue
            lag = max(0, high - pos.offset)
            total += lag
            old = senders.get(_name(tp), {"received": 0, "bytes": 0, "last_seen": None})
            senders[_name(tp)] = {**old, "lag": lag}
        self.senders = senders
        self.metrics.extra["lag"] = total

    def run(self, publish: Publish) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._tp_cls = TopicPartition
        conf = {**self.conf, "on_commit": self._commit_result, "error_cb": self._kafka_error}
        self._consumer = Consumer(conf)
        try:
            self._consumer.subscribe(
                self.topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            while not self.stop_event.is_set():
                self._take_answers()
                self._commit(sync=False)
                msgs = self._consumer.consume(self.batch_max_rows, POLL_SECONDS)
                if msgs:
                    self._publish(msgs, publish)
                if time.monotonic() >= self._next_lag:
                    self._lag()
        finally:
            try:
                self._drain()
            finally:
                self._consumer.close()  # revokes (committing again is a no-op) and leaves
                self._consumer = None
                self._reset_after_close()

    def _drain(self) -> None:
        """On stop: wait until published batches are answered, commit synchronously."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while True:
            self._answered.clear()
            self._take_answers()
            if not self._inflight or time.monotonic() >= deadline:
                break
            self._answered.wait(0.1)
        self._commit(sync=True)
        if self._inflight:
            log.warning(
                "source %s: %d batches not answered; they are read again after a restart",
                self.id,
                len(self._inflight),
            )

    def _reset_after_close(self) -> None:
        """A new run (the pipeline restarts a failed source) starts from the commits."""
        self._inflight.clear()
        self._drop(set(self._assigned))
        self._assigned.clear()

    def _error(self, msg: str) -> None:
        self.metrics.errors += 1
        if msg != self.metrics.last_error:  # a repeated error is counted, logged once
            self.metrics.last_error = msg
            log.warning("source %s: %s", self.id, msg)
