"""The ClickHouse event store over the native protocol, against Debian's clickhouse-server.

A throwaway server (Debian bookworm ships 18.16) runs as a subprocess with its own
config in tmp_path, listening on 127.0.0.1 and free ports, as the `clickhouse`
user when the test runs as root. Missing binaries FAIL the test (`make setup`
installs the package), never skip. The same operations as the contract suite
run through `clickhouse://127.0.0.1:<port>/lightsoc` and are compared with the
DuckDB store fed the same events.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lightsoc.store.base import Checkpoint, SourceCounters, TimeRange
from lightsoc.store.events_clickhouse import ClickHouseEventStore
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.clickhouse_server import running_clickhouse

from .test_events_contract import DAYS, QUERIES, T0, TR, mixed_events


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """A running clickhouse-server for this module; its native port."""
    with running_clickhouse() as port:
        yield port


@pytest.fixture
def stores(server: int, tmp_path: Path, request: pytest.FixtureRequest):
    from clickhouse_driver import Client

    db = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:40]
    ch = ClickHouseEventStore(f"clickhouse://127.0.0.1:{server}/{db}")
    duck = DuckDBEventStore(tmp_path / "events.duckdb")
    yield duck, ch
    ch.close()
    duck.close()
    client = Client("127.0.0.1", port=server)
    client.execute(f"DROP DATABASE IF EXISTS `{db}`")
    client.disconnect()


def _key(row: tuple) -> tuple:
    """A sort key of histogram_by rows (ties in a bucket have no set order)."""
    return row[0], repr(row[1]), row[2]


def test_server_version_gates_newer_features(stores):
    _, ch = stores
    assert ch.version[:2] == (18, 16)
    assert ch.dialect.json_functions is False  # no JSONExtract: visitParam functions
    ddl = (
        ch.engine.query(
            "SELECT create_table_query FROM system.tables WHERE database = ? AND name = 'events'",
            [ch.db],
        )
        .column(0)[0]
        .as_py()
    )
    assert "ReplacingMergeTree" in ddl and "bloom_filter" not in ddl
    assert "non_replicated_deduplication_window" not in ddl


def test_network_path_agrees_with_duckdb(stores):
    duck, ch = stores
    data = mixed_events()
    for s in stores:
        s.append(
            data.slice(0, 350),
            [Checkpoint("web", "1:2", "/a", "fp", 10, 0, 350)],
            [SourceCounters("web", "file", received=350, events=350, last_seen=T0)],
            batch_id="b-1",
        )
        s.append(data.slice(350), batch_id="b-2")
    for q in QUERIES:
        assert ch.count(q) == duck.count(q), q
        assert ch.count(q, limit=3) == duck.count(q, limit=3)
        for order in ("desc", "asc"):
            assert (
                ch.search(q, TR, limit=20, order=order, offset=3).to_pylist()
                == duck.search(q, TR, limit=20, order=order, offset=3).to_pylist()
            ), q
    for field in ("source.ip", "event.dataset", "user.name"):
        assert ch.top(field, n=5) == duck.top(field, n=5)
    assert ch.top_many(["source.ip", "host.name"], "NOT event.dataset:dns", n=3) == duck.top_many(
        ["source.ip", "host.name"], "NOT event.dataset:dns", n=3
    )
    for interval in (3600, 86400):
        assert ch.histogram(interval, "fail*") == duck.histogram(interval, "fail*")
        got = ch.histogram_by(interval, "event.dataset", "", TR, 2)
        assert sorted(got, key=_key) == sorted(
            duck.histogram_by(interval, "event.dataset", "", TR, 2), key=_key
        )
    for entity in ("root", "10.0.0.1", "198.51.100.4"):
        for kw in ({}, {"order": "desc", "limit": 5}, {"datasets": ["netflow", "unknown"]}):
            assert ch.timeline(entity, **kw).to_pylist() == duck.timeline(entity, **kw).to_pylist()
        a, b = duck.entity_summary(entity), ch.entity_summary(entity)
        assert (b.total, b.datasets, b.roles, b.geo, b.first_seen) == (
            a.total,
            a.datasets,
            a.roles,
            a.geo,
            a.first_seen,
        )
    ids = ["e0001", "e0333", "e0598"]
    around = TimeRange(T0, T0 + __import__("datetime").timedelta(days=DAYS))
    assert ch.events_by_id(ids, around).to_pylist() == duck.events_by_id(ids, around).to_pylist()
    assert ch.checkpoints("web") == duck.checkpoints("web")
    assert ch.source_counters() == duck.source_counters()
    assert (
        ch.search("labels.env:prod", limit=5).to_pylist()
        == duck.search("labels.env:prod", limit=5).to_pylist()
    )


def test_replays_over_the_network_do_not_duplicate(stores):
    _, ch = stores
    data = mixed_events(200)
    counters = [SourceCounters("web", "file", received=200, events=200, last_seen=T0)]
    assert ch.append(data, counters=counters, batch_id="b-1") is True
    page = ch.search("", limit=50).to_pylist()
    assert ch.append(data, counters=counters, batch_id="b-1") is False
    raw = f"SELECT count() FROM `{ch.db}`.events"  # noqa: S608 - without FINAL
    ch.engine.execute(f"SYSTEM STOP MERGES `{ch.db}`.events")
    ch.append(data.slice(20, 100))  # re-read events without a batch id (18.x: no insert token)
    ch.append(data.slice(20, 100))
    assert ch.engine.query(raw).column(0)[0].as_py() == 400  # stored twice ...
    assert ch.count() == 200  # ... read once (FINAL)
    assert ch.search("", limit=50).to_pylist() == page
    assert ch.top("host.name", n=5) == [
        ("bastion", 40),
        ("dns1", 40),
        ("fw1", 40),
        ("misc", 40),
        ("web1", 40),
    ]
    assert ch.source_counters()[0]["received"] == 200
    assert ch.stats()["events_total"] == 200


def test_retention_on_the_server(stores):
    _, ch = stores
    data = mixed_events()
    ch.append(data)
    now = T0 + __import__("datetime").timedelta(days=DAYS, hours=6)
    cutoff = now - __import__("datetime").timedelta(days=2)
    older = sum(1 for t in data["@timestamp"].to_list() if t < cutoff)
    assert ch.retention(2, now=now) == older
    assert ch.count() == data.height - older
    assert ch.count("", TimeRange(None, cutoff)) == 0
