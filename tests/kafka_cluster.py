"""librdkafka's mock cluster for tests, and bus consumers in child processes (spawn).

The cluster lives as long as the Producer that created it (in the test
process); child processes reach it through its bootstrap servers on 127.0.0.1.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.helpers import wait_until

TIMEOUT = 30.0
PARTITIONS = 4  # what the mock cluster gives an auto-created topic
#: a member that stops heartbeating is dropped quickly; rebalances take a few seconds
GROUP_CONF = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "max.poll.interval.ms": 10000,
    "topic.metadata.refresh.interval.ms": 1000,
}
ctx = multiprocessing.get_context("spawn")


class Cluster:
    """A librdkafka mock cluster (3 brokers) and a producer on it."""

    def __init__(self) -> None:
        self.producer = Producer({"test.mock.num.brokers": 3})
        brokers = self.producer.list_topics(timeout=10).brokers.values()
        self.brokers = [f"{b.host}:{b.port}" for b in brokers]
        assert len(self.brokers) == 3 and all(b.startswith("127.0.0.1:") for b in self.brokers)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.brokers)

    def create_topic(self, topic: str) -> None:
        """The mock cluster creates a topic (PARTITIONS partitions) on a metadata request."""
        md = self.producer.list_topics(topic=topic, timeout=10)
        assert md.topics[topic].error is None and len(md.topics[topic].partitions) == PARTITIONS

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None) -> None:
        self.producer.produce(topic, value, key=key)
        assert self.producer.flush(TIMEOUT) == 0

    def produce_all(self, topic: str, values: list[bytes | None], keyed: bool = True) -> None:
        """Produce `values` (keyed by their index unless `keyed` is false), then flush."""
        for i, value in enumerate(values):
            self.producer.produce(topic, value, key=str(i).encode() if keyed else None)
        assert self.producer.flush(TIMEOUT) == 0

    def _probe(self) -> Consumer:
        return Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "probe", "enable.auto.commit": False}
        )

    def end_offsets(self, topic: str) -> dict[int, int]:
        c = self._probe()
        try:
            return {
                p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)
            }
        finally:
            c.close()

    def committed(self, topic: str, group: str) -> dict[int, int]:
        """The group's committed offsets (partitions without one are left out)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            return {
                tp.partition: tp.offset for tp in c.committed(tps, timeout=10) if tp.offset >= 0
            }
        finally:
            c.close()

    def wait_committed(self, topic: str, group: str) -> None:
        """Wait until the group's commits reach the end of every non-empty partition."""
        ends = {p: off for p, off in self.end_offsets(topic).items() if off > 0}
        wait_until(
            lambda: self.committed(topic, group) == ends,
            TIMEOUT,
            f"commits {ends} (have {self.committed(topic, group)})",
            interval=0.2,
        )

    def read_all(self, topic: str) -> list[Any]:
        """Every message of a topic (a group-less reader from the beginning)."""
        ends = {p: off for p, off in self.end_offsets(topic).items() if off > 0}
        c = self._probe()
        try:
            c.assign([TopicPartition(topic, p, 0) for p in ends])
            msgs: list[Any] = []
            deadline = time.monotonic() + TIMEOUT
            while len(msgs) < sum(ends.values()):
                assert time.monotonic() < deadline, f"read {len(msgs)} of {ends} from {topic}"
                msg = c.poll(0.5)
                if msg is not None and msg.error() is None:
                    msgs.append(msg)
            return msgs
        finally:
            c.close()


def bus_consumer(url: str, ack_first: int | None, out: Any, stop: Any) -> None:
    """Child process: consume from a KafkaBus and report to `out` until `stop` is set.

    Reports ("assigned", pid, partitions) when its assignment changes,
    ("batch", pid, batch_id, source, bus_ref, acked) per batch and
    ("closed", pid, metrics) after `close`. Acks the first `ack_first` batches
    (all when None) and holds the rest unacked.
    """
    from lightsoc.bus.kafka import KafkaBus

    pid = os.getpid()
    bus = KafkaBus(url, consumer_config=GROUP_CONF)
    seen = 0
    assigned: list[str] | None = None
    try:
        while not stop.is_set():
            batch = bus.consume(0.2)
            parts = bus.metrics()["partitions"]
            if parts != assigned:
                assigned = parts
                out.put(("assigned", pid, parts))
            if batch is None:
                continue
            acked = ack_first is None or seen < ack_first
            seen += 1
            if acked:
                bus.ack(batch)
            out.put(("batch", pid, batch.batch_id, batch.source, batch.bus_ref, acked))
    finally:
        bus.close()
        out.put(("closed", pid, bus.metrics()))


class Children:
    """Consumer processes, each reporting through its own queue (one may be killed)."""

    def __init__(self) -> None:
        self.queues: list[Any] = []
        self.stop = ctx.Event()
        self.procs: list[Any] = []
        self.assigned: dict[int, list[str]] = {}
        self.batches: list[tuple[int, str, str, tuple[str, int, int], bool]] = []
        self.closed: dict[int, dict[str, Any]] = {}

    def start(self, bus_url: str, ack_first: int | None = None) -> int:
        out = ctx.Queue()
        p = ctx.Process(target=bus_consumer, args=(bus_url, ack_first, out, self.stop))
        p.start()
        self.queues.append(out)
        self.procs.append(p)
        return p.pid

    def _drain(self) -> None:
        for out in self.queues:
            self._drain_one(out)
        time.sleep(0.05)

    def _drain_one(self, out: Any) -> None:
        while True:
            try:
                kind, pid, *rest = out.get_nowait()
            except queue.Empty:
                return
            if kind == "assigned":
                self.assigned[pid] = rest[0]
            elif kind == "batch":
                self.batches.append((pid, *rest))
            else:
                self.closed[pid] = rest[0]

    def wait(self, cond: Any, what: str) -> None:
        def check() -> bool:
            self._drain()
            return bool(cond())

        wait_until(check, TIMEOUT, what, interval=0)

    def wait_split(self, pids: list[int]) -> None:
        """Until the live members share out every partition (the rebalance settled)."""

        def split() -> bool:
            parts = [self.assigned.get(pid, []) for pid in pids]
            return all(parts) and sum(map(len, parts)) == PARTITIONS == len(set().union(*parts))

        self.wait(split, f"{PARTITIONS} partitions shared by {len(pids)} members")

    def ids(self, pid: int | None = None) -> list[str]:
        return [b[1] for b in self.batches if pid is None or b[0] == pid]

    def finish(self, pids: list[int]) -> None:
        """Stop the members, wait for their `close`, join them."""
        self.stop.set()
        self.wait(lambda: all(pid in self.closed for pid in pids), f"{pids} closed")
        for p in self.procs:
            if p.pid in pids:
                p.join(TIMEOUT)
                assert p.exitcode == 0, f"child {p.pid} exited with {p.exitcode}"

    def kill_all(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(TIMEOUT)
