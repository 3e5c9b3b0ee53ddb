"""The "kafka" source against librdkafka's mock cluster (3 brokers on 127.0.0.1).

The cluster (`tests.kafka_cluster`) lives as long as the producer handle that
created it; it is fed by Debian's real `kcat` and by a confluent_kafka Producer. The source runs in
a real Pipeline over a DuckDB store; the group's committed offsets are read
with a separate Consumer (`committed()` does not join the group).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lightsoc import registry
from lightsoc.config import KafkaSourceConfig
from lightsoc.enrich.chain import build_enrichers
from lightsoc.pipeline import Pipeline, SourceSpec
from lightsoc.sources.kafka import KafkaSource
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.helpers import LightsocServer, cli_json, free_port, wait_until, write_config
from tests.kafka_cluster import TIMEOUT, Cluster
from tests.stores import BrokenStore, GatedStore

NGINX = (
    '203.0.113.9 - - [10/Oct/2023:13:55:36 +0000] "GET /admin/{i} HTTP/1.1" 404 153 "-" "curl/8.0"'
)
SSHD = "<38>Oct 11 22:14:15 host sshd[1]: Failed password for root from 203.0.113.7 port {i} ssh2"
FIELDS = ["event.id", "event.original", "log.offset", "source.ip", "url.path", "user.name", "tags"]
_names = itertools.count()


class KcatCluster(Cluster):
    """The mock cluster, also fed by Debian's `kcat`."""

    def __init__(self) -> None:
        kcat = shutil.which("kcat")
        if kcat is None:
            pytest.fail("kcat is not installed (Debian package kcat)")
        self.kcat = kcat
        super().__init__()

    def kcat_lines(self, topic: str, lines: list[str], partition: int | None = None) -> None:
        args = [self.kcat, "-b", self.brokers[0], "-P", "-t", topic]
        if partition is not None:
            args += ["-p", str(partition)]
        data = "".join(line + "\n" for line in lines).encode()
        subprocess.run(args, input=data, check=True, timeout=TIMEOUT, capture_output=True)


class Run:
    """KafkaSources in a Pipeline over a DuckDB store."""

    def __init__(
        self,
        cluster: Cluster,
        store: DuckDBEventStore,
        enrichers: list,
        topic: str,
        group: str,
        n_sources: int = 1,
        brokers: list[str] | None = None,
    ) -> None:
        self.config = KafkaSourceConfig(
            type="kafka",
            brokers=brokers or cluster.brokers,
            topics=[topic],
            group_id=group,
            format="auto",
            # a second member is noticed quickly; metadata of new topics too
            options={"session.timeout.ms": 6000, "topic.metadata.refresh.interval.ms": 1000},
        )
        self.store = store
        self.sources = [
            KafkaSource(f"bus{i}", self.config, checkpoints={}, batch_max_rows=1000)
            for i in range(n_sources)
        ]
        specs = {s.id: SourceSpec(s.id, "kafka", format="auto") for s in self.sources}
        self.pipeline = Pipeline(store, self.sources, specs, enrichers)
        self.pipeline.start()

    @property
    def source(self) -> KafkaSource:
        return self.sources[0]

    def stop(self) -> None:
        self.pipeline.stop(timeout=60)
        assert self.pipeline.wait(0), "pipeline did not stop"

    def rows(self) -> list[dict[str, Any]]:
        return self.store.search(fields=FIELDS, limit=1_000_000).to_pylist()

    def wait_count(self, n: int) -> list[dict[str, Any]]:
        wait_until(
            lambda: self.store.count() >= n, TIMEOUT, f"{n} events (have {self.store.count()})"
        )
        rows = self.rows()
        assert len(rows) == n
        return rows

    def wait_received(self, n: int) -> None:
        wait_until(lambda: sum(s.metrics.received for s in self.sources) >= n, TIMEOUT, f"{n} read")


@pytest.fixture(scope="module")
def cluster() -> KcatCluster:
    c = KcatCluster()
    yield c
    c.producer.flush(10)


@pytest.fixture(scope="module")
def enrichers() -> list:
    return build_enrichers({})


@pytest.fixture
def names() -> tuple[str, str]:
    n = next(_names)
    return f"logs{n}", f"group{n}"


@pytest.fixture
def store(tmp_path: Path):
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    yield s
    s.close()


def lines(start: int, n: int) -> list[str]:
    return [(NGINX if i % 2 else SSHD).format(i=i) for i in range(start, start + n)]


def test_registered() -> None:
    assert registry.get("sources", "kafka") is KafkaSource


def test_kcat_and_producer_messages_are_stored_then_committed(
    cluster, tmp_path, enrichers, names
) -> None:
    topic, group = names
    raw = lines(0, 10)
    cluster.kcat_lines(topic, raw[:5], partition=0)
    cluster.produce_all(topic, [line.encode() for line in raw[5:]])
    cluster.produce_all(
        topic, [json.dumps({"message": "hi", "source": {"ip": "10.0.0.1"}}).encode()]
    )
    cluster.produce_all(topic, [b"caf\xe9", b"", None])  # invalid UTF-8, empty, tombstone
    store = GatedStore(tmp_path / "gated.duckdb")
    run = Run(cluster, store, enrichers, topic, group)
    try:
        run.wait_received(14)
        assert cluster.committed(topic, group) == {}  # read, not stored: nothing committed
        store.gate.set()
        rows = run.wait_count(12)
        cluster.wait_committed(topic, group)
        by_text = {r["event.original"]: r for r in rows}
        assert set(raw) <= set(by_text)
        assert by_text[NGINX.format(i=1)]["url.path"] == "/admin/1"
        assert by_text[SSHD.format(i=0)]["user.name"] == "root"
        assert (
            by_text[json.dumps({"message": "hi", "source": {"ip": "10.0.0.1"}})]["source.ip"]
            == "10.0.0.1"
        )
        assert "invalid_utf8" in by_text["caf\\xe9"]["tags"]
        assert [by_text[line]["log.offset"] for line in raw[:5]] == [0, 1, 2, 3, 4]
        assert len({r["event.id"] for r in rows}) == 12
        m = run.pipeline.metrics()["sources"]["bus0"]
        assert m["received"] == 14 and m["skipped_empty"] == 2
        assert m["extra"]["invalid_utf8"] == 1 and m["extra"]["commits"] >= 1
        assert m["senders"][f"{topic}[0]"]["received"] >= 5
        assert sum(s["received"] for s in m["senders"].values()) == 14
        wait_until(lambda: run.source.senders[f"{topic}[0]"].get("lag") == 0, TIMEOUT, "lag 0")
        [src] = store.stats()["sources"]
        assert (src["received"], src["events"]) == (14, 12)
    finally:
        store.gate.set()
        run.stop()
        store.close()


def test_unreachable_brokers_are_reported_not_fatal(cluster, store, enrichers, names) -> None:
    topic, group = names
    run = Run(cluster, store, enrichers, topic, group, brokers=[f"127.0.0.1:{free_port()}"])
    try:
        wait_until(lambda: run.source.metrics.errors >= 1, TIMEOUT, "a reported error")
        m = run.pipeline.metrics()["sources"]["bus0"]
        assert m["last_error"].startswith("kafka: ")
        assert run.pipeline._threads[0].is_alive()  # still polling: librdkafka reconnects
        assert store.count() == 0
    finally:
        run.stop()


def test_a_failed_store_commits_nothing_and_a_restart_stores_everything(
    cluster, tmp_path, enrichers, names
) -> None:
    topic, group = names
    raw = lines(0, 8)
    cluster.produce_all(topic, [line.encode() for line in raw])
    broken = BrokenStore(tmp_path / "broken.duckdb")
    run = Run(cluster, broken, enrichers, topic, group)
    try:
        run.wait_received(8)
    finally:
        run.stop()  # the writer gives up: batches answered "not committed"
        broken.close()
    assert cluster.committed(topic, group) == {}
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    run = Run(cluster, store, enrichers, topic, group)
    try:
        rows = run.wait_count(8)
        assert sorted(r["event.original"] for r in rows) == sorted(raw)
        cluster.wait_committed(topic, group)
    finally:
        run.stop()
        store.close()


def test_restart_consumes_nothing_twice(cluster, store, enrichers, names) -> None:
    topic, group = names
    cluster.produce_all(topic, [line.encode() for line in lines(0, 20)])
    run = Run(cluster, store, enrichers, topic, group)
    try:
        run.wait_count(20)
    finally:
        run.stop()
    cluster.wait_committed(topic, group)  # a clean stop leaves everything committed
    cluster.kcat_lines(topic, lines(20, 5))
    run = Run(cluster, store, enrichers, topic, group)
    try:
        run.wait_received(5)
        rows = run.wait_count(25)
        cluster.wait_committed(topic, group)
        assert run.source.metrics.received == 5  # only the new ones were read
    finally:
        run.stop()
    assert len({r["event.id"] for r in rows}) == 25
    assert sorted(r["event.original"] for r in rows) == sorted(lines(0, 25))


def test_a_rebalance_loses_nothing(cluster, store, enrichers, names) -> None:
    topic, group = names
    cluster.produce_all(topic, [line.encode() for line in lines(0, 40)])
    first = Run(cluster, store, enrichers, topic, group)
    try:
        first.wait_count(40)
        cluster.wait_committed(topic, group)
        # a second member joins: partitions are revoked and shared out
        second = Run(cluster, store, enrichers, topic, group)
        try:
            wait_until(
                lambda: second.source.senders or second.source.metrics.extra["rebalances"],
                TIMEOUT,
                "the second member's assignment",
            )
            cluster.produce_all(topic, [line.encode() for line in lines(40, 40)])
            wait_until(lambda: store.count() >= 80, TIMEOUT, "80 events")
            cluster.wait_committed(topic, group)
        finally:
            second.stop()
    finally:
        first.stop()
    assert first.source.metrics.extra["rebalances"] >= 2  # assigned, then shared out
    assert second.source.metrics.received > 0
    rows = first.rows()
    assert sorted({r["event.original"] for r in rows}) == sorted(lines(0, 80))
    assert len(rows) == 80  # every stored batch was committed before its partition moved


def test_lightsoc_run_with_a_kafka_source(cluster, tmp_path, names) -> None:
    topic, group = names
    cluster.kcat_lines(topic, lines(0, 6))
    data = tmp_path / "data"
    source = {"type": "kafka", "brokers": cluster.brokers, "topics": [topic], "group_id": group}
    write_config(tmp_path / "lightsoc.yml", {"bus": source}, data_dir=data)
    run = LightsocServer(["--config", tmp_path / "lightsoc.yml"], cwd=tmp_path, data_dir=data)
    try:
        run.start()
        wait_until(lambda: run.stats()["events_total"] == 6, TIMEOUT, "6 events")
        cluster.wait_committed(topic, group)
        [live] = [s for s in run.stats()["sources"] if s["id"] == "bus"]
        assert sum(p["received"] for p in live["senders"].values()) == 6
        assert run.stop() == 0
    finally:
        run.ensure_stopped()
    stats = cli_json("stats", "--format", "json", "--data-dir", data, cwd=tmp_path)
    [src] = [s for s in stats["sources"] if s["id"] == "bus"]
    assert src["type"] == "kafka" and src["events"] == 6
