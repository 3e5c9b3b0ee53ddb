"""The Kafka bus against librdkafka's mock cluster, with real clients.

The cluster lives in the test process; consumers in child processes (spawn)
join the group through its bootstrap servers. Committed offsets are read with
a separate Consumer (`committed()` does not join the group).
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator

import polars as pl
import pytest

from lightsoc.bus.base import RawBatch
from lightsoc.bus.kafka import KafkaBus, PartitionOffsets, parse_url, url_settings
from tests.helpers import free_port, wait_until
from tests.kafka_cluster import GROUP_CONF, PARTITIONS, TIMEOUT, Children, Cluster

_names = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.producer.flush(10)


@pytest.fixture
def names() -> tuple[str, str]:
    n = next(_names)
    return f"raw{n}", f"processors{n}"


@pytest.fixture
def buses() -> Iterator[list[KafkaBus]]:
    made: list[KafkaBus] = []
    yield made
    for bus in made:
        bus.close()


@pytest.fixture
def children() -> Iterator[Children]:
    c = Children()
    yield c
    c.kill_all()


def url(cluster: Cluster, topic: str, group: str) -> str:
    return f"kafka://{cluster.bootstrap}?topic={topic}&group={group}"


def new_bus(buses: list[KafkaBus], cluster: Cluster, topic: str, group: str) -> KafkaBus:
    bus = KafkaBus(url(cluster, topic, group), consumer_config=GROUP_CONF)
    buses.append(bus)
    return bus


def batch(source: str, i: int, rows: int = 3) -> RawBatch:
    records = pl.DataFrame(
        {
            "event.original": [
                f"{source} {i} {j} <script>é {os.urandom(50).hex()}" for j in range(rows)
            ],
            "event.id": [f"{source}-{i}-{j}" for j in range(rows)],
            "log.offset": [i * 100 + j for j in range(rows)],
        }
    )
    return RawBatch(source, "file", records, bytes=rows * 30, dropped=1)


def consume_n(bus: KafkaBus, n: int) -> list[RawBatch]:
    got: list[RawBatch] = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < n:
        assert time.monotonic() < deadline, f"consumed {len(got)} of {n} batches"
        b = bus.consume(0.5)
        if b is not None:
            got.append(b)
    return got


def publish_all(bus: KafkaBus, batches: list[RawBatch]) -> list[str]:
    for b in batches:
        assert bus.publish(b, timeout=TIMEOUT), bus.metrics()
    return [b.batch_id for b in batches]


# -- units -------------------------------------------------------------------


def test_url_defaults_and_errors() -> None:
    assert parse_url("kafka://a:9092,b:9092") == (
        "a:9092,b:9092",
        "lightsoc.raw",
        "lightsoc-processors",
    )
    assert parse_url("kafka://a:1?topic=t&group=g") == ("a:1", "t", "g")
    tls = "kafka://a:9093?topic=t&security.protocol=SASL_SSL&sasl.password=p%26w"
    assert parse_url(tls) == ("a:9093", "t", "lightsoc-processors")
    assert url_settings(tls) == {"security.protocol": "SASL_SSL", "sasl.password": "p&w"}
    bus = KafkaBus(tls)
    for conf in (bus.producer_conf, bus.consumer_conf):
        assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.password"] == "p&w"
    for bad in ["redis://a:1", "kafka://?topic=t", "kafka://a:1?topics=t", "kafka://a:1?topic="]:
        with pytest.raises(ValueError, match="bus "):
            parse_url(bad)


def test_a_bad_setting_is_a_clear_error() -> None:
    bus = KafkaBus("kafka://127.0.0.1:1", producer_config={"no.such.setting": 1})
    with pytest.raises(ValueError, match="producer settings: .*no.such.setting"):
        bus.publish(batch("web", 0), timeout=1)
    bus.close()


def test_commit_point_never_passes_an_unacked_offset() -> None:
    p = PartitionOffsets()
    for off in range(10, 15):
        p.consumed(off)
    assert p.point() == -1  # nothing acked: nothing to commit
    p.acked(11)
    p.acked(12)
    assert p.point() == -1
    p.acked(10)
    assert p.point() == 13
    p.acked(14)
    assert p.point() == 13
    p.acked(13)
    assert p.point() == 15
    p.acked(3)  # from before a rebalance: ignored
    assert p.point() == 15 and p.unacked() == 15


# -- one process -------------------------------------------------------------


def test_round_trip_keeps_records_and_batch_id(cluster, names, buses) -> None:
    topic, group = names
    bus = new_bus(buses, cluster, topic, group)
    # the last one is ~5 MB encoded: above librdkafka's 1 MB default message size
    sent = [batch("web", i) for i in range(2)] + [batch("web", 2, rows=40_000)]
    ids = publish_all(bus, sent)
    got = consume_n(bus, 3)
    assert [b.batch_id for b in got] == ids and len(set(ids)) == 3
    for s, g in zip(sent, got, strict=True):
        assert g.records.equals(s.records) and g.records.schema == s.records.schema
        assert (g.source, g.source_type, g.bytes, g.dropped) == ("web", "file", s.bytes, 1)
    partition = got[0].bus_ref[1]
    assert [b.bus_ref for b in got] == [(topic, partition, off) for off in range(3)]
    m = bus.metrics()
    assert (m["published"], m["consumed"], m["bad_messages"], m["errors"]) == (3, 3, 0, 0)
    assert m["partitions"] == [f"{topic}[{p}]" for p in range(PARTITIONS)]


def test_one_source_one_partition_in_publish_order(cluster, names, buses) -> None:
    topic, group = names
    bus = new_bus(buses, cluster, topic, group)
    sources = [f"src{i}" for i in range(8)]

    def publish(source: str) -> None:  # one thread per source, all at once
        publish_all(bus, [batch(source, i) for i in range(5)])

    threads = [threading.Thread(target=publish, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert bus.metrics()["published"] == 40
    got = consume_n(bus, 40)
    for source in sources:
        mine = [b for b in got if b.source == source]
        assert len({b.bus_ref[1] for b in mine}) == 1, f"{source} spread over partitions"
        assert [b.records["log.offset"][0] for b in mine] == [i * 100 for i in range(5)]
        assert [b.bus_ref[2] for b in mine] == sorted(b.bus_ref[2] for b in mine)
    assert len({b.bus_ref[1] for b in got}) > 1  # sources do spread over partitions
    for b in got:
        bus.ack(b)
    bus.close()  # commits synchronously
    ends = {p: off for p, off in cluster.end_offsets(topic).items() if off > 0}
    assert cluster.committed(topic, group) == ends


def test_consume_and_ack_from_several_threads(cluster, names, buses) -> None:
    topic, group = names
    bus = new_bus(buses, cluster, topic, group)
    ids = publish_all(bus, [batch(f"src{i % 5}", i) for i in range(30)])
    to_ack: queue.Queue[RawBatch | None] = queue.Queue()
    got: list[RawBatch] = []
    stop = threading.Event()

    def consumer() -> None:  # the pipeline's processor threads
        while not stop.is_set():
            b = bus.consume(0.1)
            if b is not None:
                got.append(b)
                to_ack.put(b)

    def writer() -> None:  # the pipeline's writer thread
        while (b := to_ack.get()) is not None:
            bus.ack(b)

    threads = [threading.Thread(target=consumer) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(got) >= 30, TIMEOUT, "30 batches consumed")
    finally:
        stop.set()
        to_ack.put(None)
        for t in threads:
            t.join(TIMEOUT)
    bus.close()
    assert sorted(b.batch_id for b in got) == sorted(ids)
    assert bus.metrics()["acked"] == 30
    ends = {p: off for p, off in cluster.end_offsets(topic).items() if off > 0}
    assert cluster.committed(topic, group) == ends


def test_out_of_order_acks_never_commit_past_an_unacked_batch(cluster, names, buses) -> None:
    topic, group = names
    bus = new_bus(buses, cluster, topic, group)
    publish_all(bus, [batch("one", i) for i in range(5)])
    got = consume_n(bus, 5)
    p = got[0].bus_ref[1]
    assert [b.bus_ref for b in got] == [(topic, p, off) for off in range(5)]
    bus.ack(got[1])
    bus.ack(got[2])
    assert bus.consume(0.2) is None  # commits go out from consume
    bus.ack(got[0])
    wait_until(
        lambda: bus.consume(0.1) is None and cluster.committed(topic, group) == {p: 3},
        TIMEOUT,
        "offset 3 committed",
    )
    bus.ack(got[4])  # offset 3 is still unacked
    bus.close()  # a synchronous commit of what is acked
    assert cluster.committed(topic, group) == {p: 3}
    assert bus.metrics()["acked"] == 4
    # the unacked batch and the one after it come again
    again = new_bus(buses, cluster, topic, group)
    redelivered = consume_n(again, 2)
    assert [b.batch_id for b in redelivered] == [got[3].batch_id, got[4].batch_id]
    assert [b.bus_ref for b in redelivered] == [(topic, p, 3), (topic, p, 4)]
    for b in redelivered:
        again.ack(b)
    again.close()
    assert cluster.committed(topic, group) == {p: 5}


def test_garbage_goes_to_the_dead_letter_topic(cluster, names, buses) -> None:
    topic, group = names
    bus = new_bus(buses, cluster, topic, group)
    cluster.produce(topic, b"not a raw batch", key=b"web")  # same key: same partition
    cluster.produce(topic, None, key=b"web")  # a tombstone
    [good_id] = publish_all(bus, [batch("web", 0)])
    [got] = consume_n(bus, 1)
    assert got.batch_id == good_id and got.bus_ref[2] == 2
    m = bus.metrics()
    assert m["bad_messages"] == 2 and m["consumed"] == 1
    assert m["errors"] >= 2 and "sent to " + topic + ".dead" in m["last_error"]
    wait_until(  # consume() serves the dead-letter delivery reports
        lambda: bus.consume(0.1) is None and bus.metrics()["dead_lettered"] == 2,
        TIMEOUT,
        "2 dead letters delivered",
    )
    dead = cluster.read_all(f"{topic}.dead")
    assert [d.value() for d in dead] == [b"not a raw batch", None]
    assert [d.key() for d in dead] == [b"web", b"web"]
    headers = dict(dead[0].headers())
    assert headers["lightsoc.topic"] == topic.encode()
    assert headers["lightsoc.offset"] == b"0"
    assert headers["lightsoc.error"].startswith(b"not a raw batch: ")
    bus.ack(got)
    p = got.bus_ref[1]
    wait_until(
        lambda: bus.consume(0.1) is None and cluster.committed(topic, group) == {p: 3},
        TIMEOUT,
        "garbage and the good batch committed",
    )


def test_close_waits_for_dead_letters_then_commits(cluster, names, buses) -> None:
    topic, group = names
    bus = new_bus(buses, cluster, topic, group)
    cluster.produce(topic, b"\x00\x00\x00\x02{}", key=b"web")
    publish_all(bus, [batch("web", 0)])
    [got] = consume_n(bus, 1)
    bus.ack(got)
    bus.close()  # the dead letter is confirmed first: its offset is committed too
    assert bus.metrics()["dead_lettered"] == 1
    assert cluster.committed(topic, group) == {got.bus_ref[1]: 2}
    assert [d.value() for d in cluster.read_all(f"{topic}.dead")] == [b"\x00\x00\x00\x02{}"]


def test_depth_counts_unacked_messages(cluster, names, buses) -> None:
    topic, group = names
    bus = new_bus(buses, cluster, topic, group)
    assert bus.depth() == 0
    publish_all(bus, [batch("web", i) for i in range(3)])
    got = consume_n(bus, 3)
    wait_until(lambda: bus.consume(0.2) is None and bus.depth() == 3, TIMEOUT, "depth 3")
    for b in got:
        bus.ack(b)
    wait_until(lambda: bus.consume(0.2) is None and bus.depth() == 0, TIMEOUT, "depth 0")
    assert bus.metrics()["committed"] >= 1


def test_unreachable_brokers_publish_false() -> None:
    bus = KafkaBus(f"kafka://127.0.0.1:{free_port()}?topic=t", close_timeout=0.5)
    try:
        assert bus.publish(batch("web", 0), timeout=1.0) is False
        m = bus.metrics()
        assert m["published"] == 0 and m["errors"] >= 1
        assert "timed out" in m["last_error"] or m["last_error"].startswith("kafka: ")
    finally:
        bus.close()
    assert bus.metrics()["last_error"] == "1 messages not delivered at close"
    assert bus.publish(batch("web", 1), timeout=1.0) is False  # closed


# -- consumers in child processes ----------------------------------------------


def test_two_processes_share_batches_exactly_once(cluster, names, buses, children) -> None:
    topic, group = names
    cluster.create_topic(topic)
    pids = [children.start(url(cluster, topic, group)) for _ in range(2)]
    children.wait_split(pids)
    bus = new_bus(buses, cluster, topic, group)
    ids = publish_all(bus, [batch(f"src{i}", j) for j in range(2) for i in range(20)])
    children.wait(lambda: len(children.batches) >= 40, "40 batches consumed")
    children.finish(pids)
    assert sorted(children.ids()) == sorted(ids)  # every batch, none twice
    assert all(children.ids(pid) for pid in pids), "one member got nothing"
    for pid in pids:
        m = children.closed[pid]
        assert m["consumed"] == m["acked"] == len(children.ids(pid)) and m["errors"] == 0
    ends = {p: off for p, off in cluster.end_offsets(topic).items() if off > 0}
    assert cluster.committed(topic, group) == ends


def test_a_killed_consumer_loses_nothing(cluster, names, buses, children) -> None:
    topic, group = names
    cluster.create_topic(topic)
    doomed = children.start(url(cluster, topic, group), ack_first=0)  # acks nothing
    survivor = children.start(url(cluster, topic, group))
    children.wait_split([doomed, survivor])
    bus = new_bus(buses, cluster, topic, group)
    ids = publish_all(bus, [batch(f"src{i}", j) for j in range(2) for i in range(20)])
    children.wait(lambda: len(set(children.ids())) >= 40, "40 batches consumed")
    held = set(children.ids(doomed))
    assert held, "the doomed member got nothing"
    os.kill(doomed, signal.SIGKILL)
    # the group drops it after session.timeout.ms; the survivor reads its partitions again
    children.wait(lambda: held <= set(children.ids(survivor)), "held batches redelivered")
    children.finish([survivor])
    assert set(children.ids(survivor)) == set(ids)
    assert doomed not in children.closed
    ends = {p: off for p, off in cluster.end_offsets(topic).items() if off > 0}
    assert cluster.committed(topic, group) == ends


def test_a_rebalance_commits_what_is_acked_and_hands_over_the_rest(
    cluster, names, buses, children
) -> None:
    topic, group = names
    first = new_bus(buses, cluster, topic, group)
    ids = publish_all(first, [batch(f"src{i}", 0) for i in range(12)])
    got = consume_n(first, 12)  # alone in the group: every partition
    # per partition, ack every other batch from the first: the commit point is
    # the second one's offset (or the end)
    by_partition: dict[int, list[RawBatch]] = {}
    for b in got:
        by_partition.setdefault(b.bus_ref[1], []).append(b)
    unacked: set[str] = set()
    expect: dict[int, int] = {}
    for p, mine in by_partition.items():
        for k, b in enumerate(mine):
            if k % 2 == 0:
                first.ack(b)
            else:
                unacked.add(b.batch_id)
        expect[p] = mine[1].bus_ref[2] if len(mine) > 1 else mine[0].bus_ref[2] + 1
    assert unacked
    second = children.start(url(cluster, topic, group), ack_first=0)  # holds what it gets
    again: list[RawBatch] = []

    def drive_first() -> bool:
        """The first member must keep polling to take part in rebalances."""
        b = first.consume(0.2)
        if b is not None:
            again.append(b)
        return True

    children.wait(
        lambda: (
            drive_first()
            and len(first.metrics()["partitions"]) < PARTITIONS
            and children.assigned.get(second)
        ),
        "the second member's share",
    )
    # what was acked is committed before the partitions moved, never past an unacked one
    assert cluster.committed(topic, group) == expect
    children.wait(
        lambda: (
            drive_first() and unacked <= {b.batch_id for b in again} | set(children.ids(second))
        ),
        "the unacked batches delivered again",
    )
    assert children.ids(second), "the second member got nothing"
    held = set(children.ids(second))
    children.finish([second])  # leaves without acking: its batches come back
    assert children.closed[second]["acked"] == 0
    back: list[RawBatch] = []  # after the second left: the first has every partition again

    def drive_and_ack() -> bool:
        b = first.consume(0.2)
        if b is not None:
            back.append(b)
            first.ack(b)
        return True

    ends = {p: off for p, off in cluster.end_offsets(topic).items() if off > 0}
    wait_until(
        lambda: (
            drive_and_ack()
            and held <= {b.batch_id for b in back}
            and cluster.committed(topic, group) == ends
        ),
        TIMEOUT,
        "the second member's batches back at the first, everything committed",
    )
    first.close()
    assert cluster.committed(topic, group) == ends
    seen = {b.batch_id for b in got} - unacked | {b.batch_id for b in again + back}
    assert seen == set(ids)
