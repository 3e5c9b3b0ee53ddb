"""ClickHouse-only properties of the event store on chdb: what each dedup layer does,
the features a new server gets, batch-id upkeep, reopening, and the page read steps.

The results themselves are compared with DuckDB in `test_events_contract`.
"""

from __future__ import annotations

from lightsoc.store.events_clickhouse import ClickHouseEventStore

from . import test_events_contract as contract
from .test_events_contract import QUERIES, TR, _rows, mixed_events

pair = contract.pair  # the fixture: both stores with the same events


def test_replayed_events_change_nothing_on_clickhouse(pair):
    """The same events again without a batch id (a re-read file range after a crash
    between the event insert and the checkpoint): ClickHouse keeps one of each
    `event.id` (DuckDB relies on its atomic commit and the batch id instead)."""
    duck, ch = pair
    before = {q: ch.count(q) for q in QUERIES}
    page = _rows(ch.search("", limit=100, order="asc"))
    data = mixed_events()
    assert isinstance(ch, ClickHouseEventStore)
    raw = f"SELECT count() FROM `{ch.db}`.events"  # noqa: S608 - without FINAL
    ch.engine.execute(f"SYSTEM STOP MERGES `{ch.db}`.events")  # show what each layer does
    assert ch.engine.query(raw).column(0)[0].as_py() == 600
    ch.append(data.slice(0, 350))  # the same block again: its insert token drops it
    assert ch.engine.query(raw).column(0)[0].as_py() == 600
    ch.append(data.slice(100, 300))  # a different block: stored, hidden by FINAL
    assert ch.engine.query(raw).column(0)[0].as_py() == 900
    assert {q: ch.count(q) for q in QUERIES} == before
    ch.engine.execute(f"SYSTEM START MERGES `{ch.db}`.events")
    ch.engine.execute(f"OPTIMIZE TABLE `{ch.db}`.events FINAL")
    assert ch.engine.query(raw).column(0)[0].as_py() == 600
    assert {q: ch.count(q) for q in QUERIES} == before
    assert _rows(ch.search("", limit=100, order="asc")) == page
    assert ch.top_many(["source.ip", "user.name"]) == duck.top_many(["source.ip", "user.name"])
    assert ch.histogram(3600) == duck.histogram(3600)
    assert _rows(ch.timeline("root")) == _rows(duck.timeline("root"))
    assert ch.stats()["events_total"] == 600


def test_clickhouse_table_uses_the_features_of_a_new_server(tmp_path):
    """chdb is a current ClickHouse: skip indexes and the insert dedup window are on."""
    ch = ClickHouseEventStore(f"chdb://{tmp_path / 'chdb'}")
    try:
        assert ch.version >= (22, 2)
        ddl = ch.engine.query(
            "SELECT create_table_query FROM system.tables WHERE database = ? AND name = 'events'",
            [ch.db],
        )
        text = ddl.column(0)[0].as_py()
        assert "ReplacingMergeTree" in text and "bloom_filter" in text
        assert "non_replicated_deduplication_window" in text
        assert ch.dialect.json_functions
    finally:
        ch.close()


def test_clickhouse_forgotten_batch_ids_still_do_not_duplicate(tmp_path):
    """After its id is forgotten, a batch is stored again, yet read once (FINAL)."""
    ch = ClickHouseEventStore(f"chdb://{tmp_path / 'chdb'}")
    try:
        data = mixed_events(40)
        assert ch.append(data, batch_id="old") is True
        assert ch.maintain() == 0  # a fresh id is kept
        assert ch.append(data, batch_id="old") is False
        assert ch.forget_batches(days=0) == 1
        assert ch.append(data, batch_id="old") is True
        assert ch.count() == 40
        assert ch.top("host.name", n=1) == [("bastion", 8)]
    finally:
        ch.close()


def test_clickhouse_store_reopens_without_migrating_again(tmp_path):
    url = f"chdb://{tmp_path / 'chdb'}"
    ch = ClickHouseEventStore(url)
    ch.append(mixed_events(10))
    ch.close()
    ch = ClickHouseEventStore(url)
    try:
        sql = f"SELECT version FROM `{ch.db}`.lightsoc_migrations"  # noqa: S608 - our db
        versions = ch.engine.query(sql)
        assert versions.column(0).to_pylist() == [1]
        assert ch.count() == 10
    finally:
        ch.close()


def test_large_pages_are_read_in_one_step_with_the_same_rows(pair, monkeypatch):
    from lightsoc.store import events_clickhouse_read

    monkeypatch.setattr(events_clickhouse_read, "PAGE_KEYS_MAX", 3)
    duck, ch = pair
    for q in ("", "source.ip:10.0.0.0/8", "NOT event.dataset:dns"):
        for order in ("asc", "desc"):
            got = ch.search(q, TR, limit=40, order=order, offset=2)
            assert got.num_rows == 40
            assert _rows(got) == _rows(duck.search(q, TR, limit=40, order=order, offset=2))
    assert _rows(ch.timeline("root", limit=30)) == _rows(duck.timeline("root", limit=30))
    assert _rows(ch.search("", limit=2)) == _rows(duck.search("", limit=2))  # below: two steps
