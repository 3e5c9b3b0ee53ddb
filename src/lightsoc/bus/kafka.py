"""Kafka bus: collectors produce raw batches, processors consume them in a group.

URL: `kafka://host:port[,host:port]?topic=lightsoc.raw&group=lightsoc-processors`;
librdkafka settings come from `config` (both clients), `producer_config` and
`consumer_config`. One message per batch (`codec`), keyed by the source id.

Delivery semantics: at-least-once, never lost.
- `publish` returns True only once the broker has the batch (idempotent
  producer, `acks=all`): a collector commits its checkpoints after that. False
  means "not known to be stored" (timeout, failed delivery): the caller sends
  it again and the batch keeps its `batch_id`; a late delivery of the first
  attempt is then a duplicate, which the store drops by `event.id`.
- A processor's offsets are committed only after `ack` (the batch's events are
  stored), per partition up to the first unacked message: out-of-order acks
  never commit past an unacked one. A processor that dies, or loses a
  partition in a rebalance, leaves its unacked batches to the next owner
  (redelivery, deduped by the store).
- A message that is not a raw batch goes, bytes untouched, to `<topic>.dead`
  (headers name where it came from and why); it counts as acked only once the
  dead-letter topic has it.

Ordering: every batch of a source has the same key, hence the same partition,
so one source's batches are consumed in publish order (the idempotent producer
keeps that order across retries). Batches of different sources are unordered.
Redelivered batches (after a crash or rebalance) come again in their order,
after whatever the previous owner had already passed on.

Durability on a real cluster is the topic's: create `<topic>` (and
`<topic>.dead`) with replication factor 3 and `min.insync.replicas=2`, so that
`acks=all` means two brokers have every batch; keep
`unclean.leader.election.enable=false`. Batches can be megabytes: raise the
topic's `max.message.bytes` to the producer's `message.max.bytes` (32 MiB
here) or lower the pipeline's batch size. Use partitions >= processors.

Threads: `publish` may be called from any thread. Consumer calls (poll,
commits, rebalance callbacks, lag) happen only in the thread that holds the
consume lock, i.e. inside `consume` and `close`; `ack` records the offset and
the next `consume` commits it asynchronously (`close` commits synchronously).
A processor must keep calling `consume` (within `max.poll.interval.ms`) or the
group gives its partitions away. confluent_kafka is imported lazily.

The commit tracking (commit points, commits, rebalance callbacks, lag) is the
mixin `kafka_commits.ConsumerCommits`; URL, settings and `PartitionOffsets` are
in `kafka_config`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from lightsoc.bus import codec
from lightsoc.bus.base import Bus, RawBatch
from lightsoc.bus.kafka_commits import TP, ConsumerCommits
from lightsoc.bus.kafka_config import (  # noqa: F401 - PartitionOffsets, url_settings: API
    DEFAULT_GROUP,
    DEFAULT_TOPIC,
    PartitionOffsets,
    _forced,
    parse_url,
    url_settings,
)

log = logging.getLogger(__name__)

CLOSE_SECONDS = 10.0
#: librdkafka's default (1 MB) is smaller than a big batch
MESSAGE_MAX_BYTES = 32 * 1024 * 1024


class KafkaBus(Bus, ConsumerCommits):
    """Raw batches on a Kafka topic, consumed by a consumer group.

    `metrics()`: published (delivered batches), consumed (batches returned),
    acked (`ack` calls), committed (partition offsets the group coordinator
    confirmed), bad_messages (not a raw batch), dead_lettered (of those, the
    dead-letter topic has), errors and last_error (client errors, failed
    deliveries and commits), rebalances and partitions (assigned now).
    `publish` raises `CodecError` only for a batch too big to encode at all.
    """

    def __init__(
        self,
        url: str,
        *,
        config: dict[str, Any] | None = None,
        producer_config: dict[str, Any] | None = None,
        consumer_config: dict[str, Any] | None = None,
        close_timeout: float = CLOSE_SECONDS,
    ) -> None:
        self.close_timeout = close_timeout
        self.bootstrap, self.topic, self.group = parse_url(url)
        self.dead_topic = f"{self.topic}.dead"
        base = {**url_settings(url), **(config or {}), "bootstrap.servers": self.bootstrap}
        self.producer_conf: dict[str, Any] = {
            "message.max.bytes": MESSAGE_MAX_BYTES,
            **base,
            **(producer_config or {}),
        }
        _forced(self.producer_conf, "enable.idempotence", True, "producer")
        _forced(self.producer_conf, "acks", "all", "producer")
        self.consumer_conf: dict[str, Any] = {
            "auto.offset.reset": "earliest",  # a new group reads what is there: nothing lost
            **base,
            **(consumer_config or {}),
        }
        _forced(self.consumer_conf, "group.id", self.group, "consumer")
        _forced(self.consumer_conf, "enable.auto.commit", False, "consumer")
        _forced(self.consumer_conf, "enable.auto.offset.store", False, "consumer")
        self._metrics: dict[str, Any] = {
            "published": 0,
            "consumed": 0,
            "acked": 0,
            "committed": 0,
            "bad_messages": 0,
            "dead_lettered": 0,  # bad messages the dead-letter topic has
            "errors": 0,
            "last_error": None,
            "rebalances": 0,
            "partitions": [],
        }
        self._lock = threading.RLock()  # metrics and offsets
        self._producer_lock = threading.Lock()  # creating/replacing the producer
        self._consume_lock = threading.Lock()  # the consumer's owner thread
        self._producer: Any = None
        self._consumer: Any = None
        self._tp_cls: Any = None
        self._closed = False
        # under _lock:
        self._assigned: set[TP] = set()
        self._offsets: dict[TP, PartitionOffsets] = {}
        self._requested: dict[TP, int] = {}  # last commit asked for (async, maybe in flight)
        self._confirmed: dict[TP, int] = {}  # last commit the coordinator confirmed
        self._dead_in_flight = 0  # dead letters not confirmed yet
        self._depth = 0
        self._next_lag = 0.0

    # -- bookkeeping -----------------------------------------------------
    def _error(self, msg: str) -> None:
        with self._lock:
            self._metrics["errors"] += 1
            repeated = msg == self._metrics["last_error"]
            self._metrics["last_error"] = msg
        if not repeated:  # a repeated error is counted, logged once
            log.warning("kafka bus %s: %s", self.topic, msg)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._metrics[key] += n

    def _dead_letters_in_flight(self, n: int) -> None:
        with self._lock:
            self._dead_in_flight += n

    def _client_error(self, err: Any) -> None:
        """librdkafka's error callback (broker down, ...): counted, it reconnects."""
        self._error(f"kafka: {err}")

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            return {**self._metrics, "partitions": list(self._metrics["partitions"])}

    def depth(self) -> int:
        """Messages of the assigned partitions not acked yet (refreshed by `consume`, ~1 s)."""
        with self._lock:
            return self._depth

    def _client(self, cls: Any, conf: dict[str, Any], role: str) -> Any:
        """A librdkafka client; a bad setting is a ValueError naming it (users can fix it)."""
        from confluent_kafka import KafkaException

        try:
            return cls(conf)
        except KafkaException as exc:
            raise ValueError(f"kafka bus {self.topic}: {role} settings: {exc}") from None

    # -- producing ---------------------------------------------------------
    def _get_producer(self) -> Any:
        with self._producer_lock:
            if self._producer is None:
                from confluent_kafka import Producer

                conf = {**self.producer_conf, "error_cb": self._producer_error}
                self._producer = self._client(Producer, conf, "producer")
            return self._producer

    def _producer_error(self, err: Any) -> None:
        self._client_error(err)
        if err.fatal():  # idempotence broken (e.g. fenced): the next publish starts afresh
            with self._producer_lock:
                old, self._producer = self._producer, None
            if old is not None:
                threading.Thread(target=_discard, args=(old,), daemon=True).start()

    def _produce(
        self, topic: str, value: bytes | None, key: bytes | None, deadline: float | None, **kw: Any
    ) -> Any:
        """Queue one message, waiting while the local queue is full; the producer, or None."""
        from confluent_kafka import KafkaException

        while True:
            producer = self._get_producer()
            try:
                producer.produce(topic, value, key, **kw)
                return producer
            except BufferError:  # local queue full: backpressure
                if deadline is not None and time.monotonic() >= deadline:
                    self._error(f"produce to {topic} timed out: producer queue full")
                    return None
                producer.poll(0.05)
            except KafkaException as exc:  # too large, unknown topic, ...: not retriable here
                self._error(f"produce to {topic} failed: {exc}")
                return None

    def publish(self, batch: RawBatch, timeout: float | None = None) -> bool:
        """Send a batch keyed by its source; True once the broker acknowledged it."""
        if self._closed:
            self._error("publish after close")
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        data = codec.encode(batch)
        done = threading.Event()
        result: list[Any] = []

        def delivered(err: Any, msg: Any) -> None:
            result.append(err)
            done.set()

        key = batch.source.encode()
        producer = self._produce(self.topic, data, key, deadline, on_delivery=delivered)
        if producer is None:
            return False
        while not done.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                # still queued: it may arrive later, a retry is then a duplicate (deduped)
                self._error(f"publish of a batch of {batch.source} timed out after {timeout} s")
                return False
            producer.poll(0.05 if left is None else min(0.05, left))
        if result[0] is not None:
            self._error(f"delivery of a batch of {batch.source} failed: {result[0]}")
            return False
        self._count("published")
        return True

    # -- consuming ---------------------------------------------------------
    def _get_consumer(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer, TopicPartition

            self._tp_cls = TopicPartition
            conf = {
                **self.consumer_conf,
                "on_commit": self._commit_result,
                "error_cb": self._client_error,
            }
            self._consumer = self._client(Consumer, conf, "consumer")
            self._consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        return self._consumer

    def consume(self, timeout: float) -> RawBatch | None:
        deadline = time.monotonic() + max(0.0, timeout)
        if not self._consume_lock.acquire(timeout=max(0.0, timeout)):
            return None  # another thread is consuming
        try:
            if self._closed:
                return None
            consumer = self._get_consumer()
            while True:
                self._commit(sync=False)
                if self._producer is not None:
                    self._producer.poll(0)  # dead-letter delivery reports
                if time.monotonic() >= self._next_lag:
                    self._refresh_depth()
                left = max(0.0, deadline - time.monotonic())
                msg = consumer.poll(left)
                if msg is not None:
                    batch = self._take(msg)
                    if batch is not None:
                        return batch
                if time.monotonic() >= deadline:
                    return None
        finally:
            self._consume_lock.release()

    def _take(self, msg: Any) -> RawBatch | None:
        """A batch from a message; errors counted, garbage sent to the dead-letter topic."""
        err = msg.error()
        if err is not None:
            self._client_error(err)
            return None
        tp = (msg.topic(), msg.partition())
        offset = msg.offset()
        with self._lock:
            if tp not in self._assigned:  # revoked meanwhile: the next owner reads it
                return None
            self._offsets.setdefault(tp, PartitionOffsets()).consumed(offset)
        value = msg.value() or b""
        try:
            batch = codec.decode(value)
        except codec.CodecError as exc:
            self._dead_letter(msg, tp, offset, exc)
            return None
        batch.bus_ref = (tp[0], tp[1], offset)
        self._count("consumed")
        return batch

    def _dead_letter(self, msg: Any, tp: TP, offset: int, exc: Exception) -> None:
        self._count("bad_messages")
        self._error(f"{tp[0]}[{tp[1]}]@{offset}: {exc}; sent to {self.dead_topic}")
        headers = [
            ("lightsoc.topic", tp[0].encode()),
            ("lightsoc.partition", str(tp[1]).encode()),
            ("lightsoc.offset", str(offset).encode()),
            ("lightsoc.error", str(exc).encode()),
        ]

        def delivered(err: Any, _msg: Any) -> None:
            self._dead_letters_in_flight(-1)
            if err is not None:  # stays unacked: read again after a restart or rebalance
                self._error(f"dead letter of {tp[0]}[{tp[1]}]@{offset} failed: {err}")
            else:
                self._count("dead_lettered")
                self._ack(tp, offset)

        self._dead_letters_in_flight(1)
        producer = self._produce(
            self.dead_topic,
            msg.value(),
            msg.key(),
            time.monotonic() + self.close_timeout,
            headers=headers,
            on_delivery=delivered,
        )
        if producer is None:
            self._dead_letters_in_flight(-1)

    def _settle_dead_letters(self) -> None:
        """Wait (bounded) for dead letters in flight, so that their offsets can be committed."""
        deadline = time.monotonic() + self.close_timeout
        while self._dead_in_flight > 0 and time.monotonic() < deadline:
            producer = self._producer
            if producer is None:
                return
            producer.poll(0.05)

    def ack(self, batch: RawBatch) -> None:
        """The batch's events are stored: its offset may be committed (by the next `consume`)."""
        ref = batch.bus_ref
        if ref is None:
            return
        topic, partition, offset = ref
        self._count("acked")
        self._ack((topic, partition), offset)

    # -- closing -------------------------------------------------------------
    def close(self) -> None:
        """Commit what is acked (synchronously), leave the group, flush the producer.

        Messages the producer still holds after `close_timeout` are dropped: their
        `publish` returned False (or is about to), so their sender still has them;
        a dead letter's offset stays uncommitted, so it is read (and sent) again.
        """
        with self._consume_lock:  # consume() returns within its timeout
            self._closed = True
            if self._consumer is not None:
                try:
                    self._settle_dead_letters()
                    self._commit(sync=True)
                    self._consumer.close()  # revokes: commits again (a no-op) and leaves
                except Exception as exc:
                    self._error(f"closing the consumer: {exc}")
                finally:
                    self._consumer = None
                    self._forget(set(self._assigned))
        with self._producer_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            left = _discard(producer, self.close_timeout)
            if left:
                self._error(f"{left} messages not delivered at close")


def _discard(producer: Any, timeout: float = CLOSE_SECONDS) -> int:
    """Flush a producer (bounded), fail what is left; the number of messages left."""
    left = producer.flush(timeout)
    if left:
        producer.purge()
        producer.flush(0)  # serve the purged messages' delivery reports (failures)
    return left
