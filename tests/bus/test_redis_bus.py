"""The Redis Streams bus against a real redis-server (Debian, 7.0) on 127.0.0.1.

Each test starts its own server on a free port. Deaths are real: a consumer
process is killed with SIGKILL, redis-server is killed with SIGKILL and
restarted on its port with its append-only file.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import redis

from lightsoc.bus.base import RawBatch
from lightsoc.bus.codec import decode
from lightsoc.bus.redis import DEFAULT_GROUP, DEFAULT_MAXLEN, DEFAULT_STREAM, RedisBus
from tests.helpers import wait_until
from tests.redis_server import RedisServer

STREAM = "raw"
GROUP = "procs"

MakeBus = Callable[..., RedisBus]


def batch(i: int, rows: int = 3) -> RawBatch:
    records = pl.DataFrame(
        {
            "event.original": [f"<13>host app[{i}]: line {j} héllo" for j in range(rows)],
            "log.offset": list(range(rows)),
        }
    )
    return RawBatch(f"src{i % 2}", "syslog", records, bytes=40 * rows)


def pending(r: redis.Redis, consumer: str | None = None) -> int:
    summary = r.xpending(STREAM, GROUP)
    if consumer is None:
        return int(summary["pending"])
    return sum(c["pending"] for c in summary["consumers"] if c["name"] == consumer.encode())


def drain(bus: RedisBus, n: int, what: str = "batches") -> list[RawBatch]:
    """Consume exactly `n` batches (bounded wait), then check nothing else is there."""
    got: list[RawBatch] = []

    def more() -> bool:
        b = bus.consume(0.1)
        if b is not None:
            got.append(b)
        return len(got) >= n

    wait_until(more, 20, f"{n} {what} (have {len(got)})", interval=0)
    assert bus.consume(0.2) is None
    return got


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path / "redis").start()
    yield s
    s.kill()


@pytest.fixture
def make_bus(server: RedisServer) -> Iterator[MakeBus]:
    buses: list[RedisBus] = []

    def make(**kw: Any) -> RedisBus:
        kw.setdefault("consumer", f"c{len(buses)}")
        bus = RedisBus(f"{server.url}?stream={STREAM}&group={GROUP}", **kw)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


def test_url_parameters_and_defaults() -> None:
    bus = RedisBus("rediss://h:6380/2?stream=s1&group=g1&maxlen=7&ssl_cert_reqs=none")
    assert (bus.stream, bus.group, bus.max_len, bus.dead_stream) == ("s1", "g1", 7, "s1:dead")
    assert bus._url == "rediss://h:6380/2?ssl_cert_reqs=none"  # redis-py gets the rest
    bus = RedisBus("redis://h:6379/0", max_len=5, claim_idle_seconds=0.5)
    assert (bus.stream, bus.group, bus.max_len) == (DEFAULT_STREAM, DEFAULT_GROUP, 5)
    assert bus.claim_idle_ms == 500 and "-" in bus.consumer
    assert RedisBus("redis://h/0").max_len == DEFAULT_MAXLEN
    with pytest.raises(ValueError, match="expected redis://"):
        RedisBus("kafka://h:9092")
    with pytest.raises(ValueError, match="maxlen must be at least 1"):
        RedisBus("redis://h/0?maxlen=0")
    assert RedisBus("redis://h/0").claim_idle_ms == 30_000
    assert RedisBus("redis://h/0?claim_idle=2.5").claim_idle_ms == 2500
    for bad in ("x", "0", "-1"):
        with pytest.raises(ValueError, match="claim_idle must"):
            RedisBus(f"redis://h/0?claim_idle={bad}")


def test_redis_py_is_imported_lazily() -> None:
    code = "import sys, lightsoc.bus.redis; assert 'redis' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_round_trip_keeps_records_and_batch_id(server, make_bus) -> None:
    bus = make_bus()
    sent = batch(1)
    assert bus.publish(sent)
    got = bus.consume(5)
    assert got is not None
    assert got.records.equals(sent.records) and got.records.schema == sent.records.schema
    assert (got.batch_id, got.source, got.source_type, got.bytes) == (
        sent.batch_id,
        "src1",
        "syslog",
        120,
    )
    r = server.client()
    assert got.bus_ref == r.xrange(STREAM)[0][0].decode()
    assert pending(r) == 1  # delivered, not acknowledged yet
    bus.ack(got)
    assert pending(r) == 0
    m = bus.metrics()
    assert (m["published"], m["consumed"], m["acked"], m["errors"]) == (1, 1, 1, 0)
    assert m["last_error"] is None


def test_two_consumers_split_the_batches_and_each_is_delivered_once(server, make_bus) -> None:
    producer, a, b = make_bus(), make_bus(consumer="a"), make_bus(consumer="b")
    sent = [batch(i) for i in range(10)]
    for s in sent:
        assert producer.publish(s)
    got: dict[str, list[str]] = {"a": [], "b": []}
    for _ in range(5):  # turn by turn: an even split
        for name, bus in (("a", a), ("b", b)):
            one = bus.consume(5)
            assert one is not None
            got[name].append(one.batch_id)
            bus.ack(one)
    assert len(got["a"]) == len(got["b"]) == 5
    assert sorted(got["a"] + got["b"]) == sorted(s.batch_id for s in sent)
    assert a.consume(0) is None and b.consume(0) is None

    # the same from two threads at once, while a third publishes
    more = [batch(i) for i in range(10, 50)]
    seen: list[str] = []
    lock = threading.Lock()
    all_published = threading.Event()

    def work(bus: RedisBus) -> None:
        while True:
            one = bus.consume(0.5)
            if one is None:
                if all_published.is_set():
                    return
                continue
            with lock:
                seen.append(one.batch_id)
            bus.ack(one)

    threads = [threading.Thread(target=work, args=(bus,)) for bus in (a, b)]
    for t in threads:
        t.start()
    for s in more:
        assert producer.publish(s)
    all_published.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a consumer thread did not finish"
    assert sorted(seen) == sorted(s.batch_id for s in more)  # each once, none lost
    assert pending(server.client()) == 0
    assert a.metrics()["acked"] + b.metrics()["acked"] == 50


DOOMED = """
import sys, time
from lightsoc.bus.redis import RedisBus
bus = RedisBus(sys.argv[1], consumer="doomed", claim_idle_seconds=3600)
for _ in range(3):
    b = bus.consume(30)
    print(b.bus_ref, b.batch_id, flush=True)
time.sleep(120)  # never acks: killed here
"""


def test_entries_of_a_killed_consumer_are_reclaimed(server, make_bus) -> None:
    producer = make_bus()
    sent = [batch(i) for i in range(5)]
    for s in sent:
        assert producer.publish(s)
    url = f"{server.url}?stream={STREAM}&group={GROUP}"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DOOMED), url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        taken = [proc.stdout.readline().split() for _ in range(3)]
        assert all(len(t) == 2 for t in taken), taken
    finally:
        proc.kill()  # SIGKILL: no ack, no goodbye
        proc.wait(10)
    r = server.client()
    assert pending(r, "doomed") == 3
    survivor = make_bus(consumer="survivor", claim_idle_seconds=0.5)
    got = drain(survivor, 5)
    assert sorted(b.batch_id for b in got) == sorted(s.batch_id for s in sent)
    reclaimed = {b.bus_ref for b in got} & {ref for ref, _ in taken}
    assert len(reclaimed) == 3
    assert survivor.metrics()["reclaimed"] == 3
    for b in got:
        survivor.ack(b)
    assert pending(r) == 0


def test_a_restarted_consumer_reads_its_own_pending_entries_first(server, make_bus) -> None:
    first = make_bus(consumer="p1")
    old = [batch(i) for i in range(3)]
    for s in old:
        assert first.publish(s)
    taken = [first.consume(5) for _ in old]
    assert all(t is not None for t in taken)
    first.close()  # dies without acking
    new = [batch(i) for i in range(3, 5)]
    for s in new:
        assert first.publish(s) is False  # closed: refuses, does not hang
        assert make_bus().publish(s)
    again = make_bus(consumer="p1", claim_idle_seconds=3600)
    got = drain(again, 5)
    assert [b.batch_id for b in got] == [s.batch_id for s in old + new]  # pending first
    assert [b.bus_ref for b in got[:3]] == [t.bus_ref for t in taken if t is not None]
    assert again.metrics()["reclaimed"] == 0
    for b in got:
        again.ack(b)
    assert pending(server.client()) == 0


def test_garbage_goes_to_the_dead_letter_stream_and_the_next_batch_arrives(
    server, make_bus
) -> None:
    r = server.client()
    bus = make_bus()
    garbage_id = r.xadd(STREAM, {"b": b"\x00\x00\x00\x05hello, not a batch"})
    no_field_id = r.xadd(STREAM, {"x": b"\xff\xfe"})
    good = batch(7)
    assert bus.publish(good)
    got = bus.consume(5)
    assert got is not None and got.batch_id == good.batch_id
    m = bus.metrics()
    assert (m["bad_messages"], m["consumed"]) == (2, 1)
    dead = r.xrange(f"{STREAM}:dead")
    assert [d[1][b"entry_id"] for d in dead] == [garbage_id, no_field_id]
    assert dead[0][1][b"b"] == b"\x00\x00\x00\x05hello, not a batch"  # the bytes, kept
    assert b"not a raw batch" in dead[0][1][b"error"]
    assert dead[1][1][b"x"] == b"\xff\xfe" and b"no field 'b'" in dead[1][1][b"error"]
    assert pending(r) == 1  # the garbage is acked; the good batch waits for its ack
    bus.ack(got)
    assert pending(r) == 0


def test_backpressure_never_trims_unacknowledged_entries(server, make_bus) -> None:
    r = server.client()
    producer = make_bus(max_len=3)
    sent = [batch(i) for i in range(3)]
    for s in sent:
        assert producer.publish(s)
    assert producer.publish(batch(3), timeout=0.5) is False  # full, and no group has read
    consumer = make_bus()
    e1, e2 = consumer.consume(5), consumer.consume(5)
    assert e1 is not None and e2 is not None
    consumer.ack(e2)  # acked, but behind the unacked e1: cannot be trimmed yet
    assert producer.publish(batch(3), timeout=0.5) is False
    assert r.xlen(STREAM) == 3
    assert [decode(f[b"b"]).batch_id for _, f in r.xrange(STREAM)] == [s.batch_id for s in sent]
    m = producer.metrics()
    assert (m["published"], m["backpressure_waits"], m["trimmed"]) == (3, 2, 0)

    # a publisher waiting with no timeout gets in once an ack makes room
    late = batch(4)
    result: list[bool] = []
    waiting = threading.Thread(target=lambda: result.append(producer.publish(late)))
    waiting.start()
    consumer.ack(e1)
    waiting.join(20)
    assert result == [True]
    assert producer.metrics()["trimmed"] == 2
    left = [decode(f[b"b"]).batch_id for _, f in r.xrange(STREAM)]
    assert left == [sent[2].batch_id, late.batch_id]  # undelivered e3 kept
    rest = drain(consumer, 2)
    assert [b.batch_id for b in rest] == left


def test_acks_trim_what_every_group_has_acknowledged(server, make_bus) -> None:
    r = server.client()
    bus = make_bus()
    for i in range(3):
        assert bus.publish(batch(i))
    r.xgroup_create(STREAM, "other", id="0")  # a second group that reads nothing
    got = drain(bus, 3)
    for b in got:
        bus.ack(b)
    assert bus._trim() == 0  # "other" has not read them
    r.xreadgroup("other", "x", {STREAM: ">"}, count=2)
    r.xack(STREAM, "other", *[e for e, _ in r.xrange(STREAM)][:1])
    assert bus._trim() == 1  # the first is acked by both; the second is pending in "other"
    assert r.xlen(STREAM) == 2
    assert bus.depth() == 0  # lag stays known after XTRIM (only XDEL makes it nil)
    lags = {g["name"]: g["lag"] for g in r.xinfo_groups(STREAM)}
    assert lags == {b"other": 1, GROUP.encode(): 0}


def test_depth_counts_unread_and_pending(server, make_bus) -> None:
    producer, consumer = make_bus(), make_bus()
    for i in range(3):
        assert producer.publish(batch(i))
    assert producer.depth() == 3  # no group yet: the whole stream is unread
    one = consumer.consume(5)
    assert one is not None
    wait_until(lambda: producer.depth() == 3, 5, "depth 3 (1 pending + 2 unread)")
    consumer.ack(one)
    wait_until(lambda: producer.depth() == 2, 5, "depth 2")


def test_redis_killed_and_restarted_with_aof(tmp_path) -> None:
    server = RedisServer(tmp_path / "aof", appendonly=True, appendfsync="always").start()
    try:
        url = f"{server.url}?stream={STREAM}&group={GROUP}"
        producer = RedisBus(url, consumer="producer")
        consumer = RedisBus(url, consumer="worker", claim_idle_seconds=3600)
        sent = [batch(i) for i in range(4)]
        for s in sent:
            assert producer.publish(s)
        e1, e2 = consumer.consume(5), consumer.consume(5)
        assert e1 is not None and e2 is not None
        consumer.ack(e1)
        server.kill()  # SIGKILL

        assert producer.publish(batch(9), timeout=0.3) is False  # no exception
        assert consumer.consume(0.3) is None
        late = batch(5)
        result: list[bool] = []
        waiting = threading.Thread(target=lambda: result.append(producer.publish(late)))
        waiting.start()  # keeps retrying until Redis is back
        wait_until(lambda: producer.metrics()["errors"] >= 3, 10, "publish retries")

        server.start()  # same port, same AOF
        waiting.join(30)
        assert result == [True]
        got = drain(consumer, 3)  # e2 is still in flight here: not delivered twice
        assert [b.batch_id for b in got] == [s.batch_id for s in sent[2:]] + [late.batch_id]
        r = server.client()
        assert pending(r) == 4  # e2 survived the restart as pending
        for b in [e2, *got]:
            consumer.ack(b)
        assert pending(r) == 0
        assert consumer.metrics()["errors"] >= 1
        assert consumer.metrics()["last_error"] is None  # recovered
        # a new processor with a fresh name finds nothing left
        fresh = RedisBus(url, consumer="fresh")
        assert fresh.consume(0.3) is None
        fresh.close()
        producer.close()
        consumer.close()
    finally:
        server.kill()


def test_redis_down_during_publish_returns_false(server, make_bus) -> None:
    bus = make_bus()
    assert bus.publish(batch(0))
    server.kill()
    assert bus.publish(batch(1), timeout=0.3) is False
    m = bus.metrics()
    assert m["errors"] >= 1 and m["published"] == 1
    assert "publishing" in m["last_error"]
    assert bus.consume(0.2) is None
    bus.ack(RawBatch("s", "t", pl.DataFrame(), bus_ref="1-0"))  # kept for later, no raise
    assert bus.depth() >= 0


def test_close_releases_a_blocked_publisher(server, make_bus) -> None:
    bus = make_bus(max_len=1)
    assert bus.publish(batch(0))
    result: list[bool] = []
    waiting = threading.Thread(target=lambda: result.append(bus.publish(batch(1))))
    waiting.start()
    wait_until(lambda: bus.metrics()["backpressure_waits"] == 1, 10, "the publisher to wait")
    bus.close()
    waiting.join(10)
    assert result == [False]


def test_entries_deleted_while_pending_are_recorded_and_acked(server, make_bus) -> None:
    r = server.client()
    first = make_bus(consumer="p1")
    sent = [batch(i) for i in range(4)]
    for s in sent:
        assert first.publish(s)
    mine = [first.consume(5), first.consume(5)]
    first.close()  # dies without acking
    [[_, [(theirs, _)]]] = r.xreadgroup(GROUP, "gone", {STREAM: ">"}, count=1)
    assert r.xdel(STREAM, *[b.bus_ref for b in mine if b is not None], theirs) == 3
    again = make_bus(consumer="p1", claim_idle_seconds=0.05)
    [last] = drain(again, 1)  # own pending (deleted) first, then the dead one's (deleted)
    assert last.batch_id == sent[3].batch_id

    def all_seen() -> bool:
        assert again.consume(0.05) is None
        return again.metrics()["bad_messages"] == 3

    wait_until(all_seen, 10, "3 deleted entries set aside")
    dead = r.xrange(f"{STREAM}:dead")
    assert sorted(d[1][b"entry_id"] for d in dead) == sorted(
        [b.bus_ref.encode() for b in mine if b is not None] + [theirs]
    )
    assert all(b"deleted" in d[1][b"error"] for d in dead)
    assert pending(r) == 1  # only the batch just delivered
