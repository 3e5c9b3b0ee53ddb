"""DuckDB event store against a real database file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from lightsoc import schema
from lightsoc.store.base import Checkpoint, SourceCounters, StoreLockedError, TimeRange
from lightsoc.store.events_duckdb import DuckDBEventStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def batch(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema_overrides={k: schema.polars_type(k) for k in rows[0]})


def events(n: int, start: datetime = T0, **extra: object) -> pl.DataFrame:
    rows = []
    for i in range(n):
        row = {
            "@timestamp": start + timedelta(minutes=i),
            "event.id": f"e{i}",
            "event.dataset": "nginx.access" if i % 2 else "sshd",
            "source.ip": f"10.0.0.{i % 3}",
            "event.original": f"line {i}",
            "tags": ["parse_failure"] if i == 0 else [],
            "log.offset": i,
        }
        row.update(extra)
        rows.append(row)
    return batch(rows)


@pytest.fixture
def store(tmp_path):
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    yield s
    s.close()


def test_append_search_count_and_types(store):
    store.append(schema.to_arrow(events(10)))
    assert store.count() == 10
    got = store.search("source.ip:10.0.0.1", limit=100, order="asc")
    assert got.column("event.id").to_pylist() == ["e1", "e4", "e7"]
    assert got.schema.field("@timestamp").type == schema.TS
    assert got.column("@timestamp")[0].as_py() == T0 + timedelta(minutes=1)
    assert store.search("", limit=2).column("event.id").to_pylist() == ["e9", "e8"]


def test_checkpoints_and_counters_commit_with_events(store):
    cp = Checkpoint("web", "1:2", "/var/log/a", "fp", 10, 0, 1234)
    counters = SourceCounters(
        "web", "file", received=10, events=10, parse_failures=1, bytes=99, last_seen=T0
    )
    store.append(schema.to_arrow(events(10)), [cp], [counters])
    store.append(
        schema.to_arrow(events(2, start=T0 + timedelta(days=1))),
        [Checkpoint("web", "1:2", "/var/log/a", "fp", 10, 0, 2000)],
        [
            SourceCounters(
                "web", "file", received=3, events=2, bytes=50, last_seen=T0 + timedelta(days=1)
            )
        ],
    )
    assert store.checkpoints("web")["1:2"].offset == 2000
    stats = store.stats()
    assert stats["events_total"] == 12
    assert stats["parse_failures_total"] == 2
    assert stats["by_dataset"] == {"sshd": 6, "nginx.access": 6}
    (src,) = stats["sources"]
    assert src["received"] == 13 and src["events"] == 12 and src["bytes"] == 149
    assert src["parse_failures"] == 1
    assert src["last_seen"].startswith("2026-01-02T12:00")


def test_failed_transaction_commits_nothing(store):
    bad = schema.to_arrow(events(3))
    cp = Checkpoint("web", "k", "/p", "fp", 1, 0, 50)

    class Boom(SourceCounters):
        @property
        def last_seen(self):  # type: ignore[override]
            raise RuntimeError("disk full")

        @last_seen.setter
        def last_seen(self, _v):
            pass

    with pytest.raises(RuntimeError):
        store.append(bad, [cp], [Boom("web", "file")])
    assert store.count() == 0
    assert store.checkpoints("web") == {}


def test_top_histogram_timeline(store):
    store.append(schema.to_arrow(events(9)))
    assert store.top("source.ip", n=2) == [("10.0.0.0", 3), ("10.0.0.1", 3)]
    assert store.top("event.dataset", query="source.ip:10.0.0.2") == [
        ("sshd", 2),
        ("nginx.access", 1),
    ]
    hist = store.histogram(300)
    assert [c for _, c in hist] == [5, 4]
    assert hist[0][0] == T0
    tl = store.timeline("10.0.0.2")
    assert tl.column("event.id").to_pylist() == ["e2", "e5", "e8"]
    tr = TimeRange(T0 + timedelta(minutes=3), T0 + timedelta(minutes=6))
    assert store.timeline("10.0.0.2", tr).column("event.id").to_pylist() == ["e5"]
    with pytest.raises(ValueError):
        store.top("no.such.field")


def test_retention_deletes_only_old_events(store):
    now = datetime(2026, 3, 1, tzinfo=UTC)
    store.append(schema.to_arrow(events(3, start=now - timedelta(days=40))))
    store.append(schema.to_arrow(events(2, start=now - timedelta(days=1))))
    assert store.retention(30, now=now) == 3
    assert store.count() == 2


def test_labels_round_trip_as_json(store):
    store.append(schema.to_arrow(events(1, labels=json.dumps({"k": "v"}))))
    assert store.search("labels.k:v").num_rows == 1


def test_second_writer_is_refused_and_readers_see_data(tmp_path):
    path = tmp_path / "events.duckdb"
    writer = DuckDBEventStore(path)
    writer.append(schema.to_arrow(events(2)))
    with pytest.raises(StoreLockedError):
        DuckDBEventStore(path, read_only=True)
    writer.close()
    reader = DuckDBEventStore(path, read_only=True)
    assert reader.count() == 2
    reader.close()


def test_segment_from_an_older_schema_reads_new_fields_as_null(tmp_path):
    import polars as pl

    from lightsoc.store.segments import Segment

    store = DuckDBEventStore(tmp_path / "events.duckdb")
    old = pl.DataFrame(
        {"@timestamp": [T0], "event.id": ["old-1"], "source.ip": ["1.2.3.4"]},
        schema_overrides={"@timestamp": schema.polars_type("@timestamp")},
    )
    old.write_parquet(tmp_path / "events" / "seg-old.parquet")
    cur = store._cur()
    store._add_segment(cur, Segment("old", "seg-old.parquet", 1, T0, T0))
    store.append(schema.to_arrow(events(1, start=T0 + timedelta(hours=1))))
    got = store.search("source.ip:1.2.3.4")
    assert got.num_columns == len(schema.FIELDS)
    assert got.column("event.id").to_pylist() == ["old-1"]
    assert got.column("dns.question.name").to_pylist() == [None]
    store.close()


def test_uncommitted_segment_files_are_removed_on_open(tmp_path):
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    store.append(schema.to_arrow(events(3)))
    # a crash between writing a segment and committing it leaves a file behind
    orphan = store.files.write(schema.to_arrow(events(5)))
    store.close()
    assert (tmp_path / "events" / orphan.file).exists()
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    assert not (tmp_path / "events" / orphan.file).exists()
    assert store.count() == 3 and store.count("source.ip:*") == 3
    store.close()


def test_small_segments_are_compacted_without_changing_results(tmp_path, monkeypatch):
    from lightsoc.store import compaction as events_duckdb

    monkeypatch.setattr(events_duckdb, "MERGE_AT", 4)
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    for i in range(3):
        store.append(schema.to_arrow(events(5, start=T0 + timedelta(hours=i))))
    assert store.stats()["segments"] == 3
    before = sorted(store.search("", limit=100).column("event.id").to_pylist())
    store.append(schema.to_arrow(events(5, start=T0 + timedelta(hours=3))))  # 4th: merge
    store.wait_compaction()  # (in a thread of its own)
    assert store.stats()["segments"] == 1
    assert store.count() == 20 and store.count("tags:parse_failure") == 4
    after = sorted(store.search("", limit=100).column("event.id").to_pylist())
    assert len(after) == 20 and set(before) <= set(after)
    store.close()


def test_retention_rewrites_a_segment_that_straddles_the_cutoff(store):
    now = datetime(2026, 3, 1, tzinfo=UTC)
    rows = events(4, start=now - timedelta(days=31))  # minutes apart: one segment
    rows = rows.with_columns(
        pl.Series(
            "@timestamp",
            [now - timedelta(days=d) for d in (40, 35, 10, 1)],
            dtype=schema.polars_type("@timestamp"),
        )
    )
    store.append(schema.to_arrow(rows))
    assert store.retention(30, now=now) == 2
    assert store.count() == 2
    assert sorted(store.search("").column("event.id").to_pylist()) == ["e2", "e3"]


def test_maintain_merges_medium_segments(tmp_path, monkeypatch):
    from lightsoc.store import compaction as events_duckdb

    monkeypatch.setattr(events_duckdb, "MEDIUM_MERGE_AT", 3)
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    for i in range(2):
        store.append(schema.to_arrow(events(4, start=T0 + timedelta(hours=i))))
    assert store.maintain() == 0  # not enough of them yet
    store.append(schema.to_arrow(events(4, start=T0 + timedelta(hours=2))))
    assert store.maintain() == 3
    assert store.stats()["segments"] == 1 and store.count() == 12
    assert store.top("source.ip", n=1) == [("10.0.0.0", 6)]
    store.close()


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_search_reads_newest_segments_first_with_the_same_result(tmp_path, order):
    import random

    rng = random.Random(5)
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    stamps = []
    for seg in range(30):  # overlapping, out-of-order segments
        start = T0 + timedelta(minutes=rng.randrange(0, 600))
        rows = events(7, start=start).with_columns(
            pl.format("s{}-e{}", pl.lit(seg), pl.int_range(7)).alias("event.id")
        )
        stamps += list(zip(rows["@timestamp"].to_list(), rows["event.id"].to_list(), strict=True))
        store.append(schema.to_arrow(rows))
    expect = sorted(stamps, reverse=order == "desc")
    for limit in (1, 5, 40, 500):
        got = store.search("", limit=limit, order=order, fields=["@timestamp", "event.id"])
        got_ts = got.column("@timestamp").to_pylist()
        assert got_ts == [t for t, _ in expect[:limit]]
        only_ids = store.search("", limit=limit, order=order, fields=["event.id"])
        assert only_ids.column("event.id").to_pylist() == got.column("event.id").to_pylist()
    store.close()


def test_a_redelivered_bus_batch_is_skipped_whole(tmp_path):
    """A shared bus may deliver a batch again (processor killed before its ack):
    its id commits with its events, so the second delivery adds nothing."""
    path = tmp_path / "events.duckdb"
    store = DuckDBEventStore(path)
    counters = [SourceCounters("web", "file", received=10, events=10, last_seen=T0)]
    assert store.append(events(10), counters=counters, batch_id="b-1") is True
    assert store.append(events(10), counters=counters, batch_id="b-1") is False
    assert store.append(events(3, start=T0 + timedelta(days=1)), batch_id="b-2") is True
    store.close()
    store = DuckDBEventStore(path)  # the ids survive a restart
    try:
        assert store.append(events(10), counters=counters, batch_id="b-1") is False
        assert store.count() == 13
        assert store.source_counters()[0]["received"] == 10
        store._cur().execute(
            "UPDATE lightsoc_batches SET committed = now() - INTERVAL 8 DAY WHERE id = 'b-1'"
        )
        assert store.forget_batches() == 1
        assert store.append(events(1), batch_id="b-2") is False
    finally:
        store.close()


def test_appends_go_on_while_segments_are_merged(tmp_path, monkeypatch):
    """A merge (seconds under load) runs beside the writer: an append commits while a
    rewrite is in progress, and the merge then swaps in only what it rewrote."""
    import threading

    from lightsoc.store import compaction

    monkeypatch.setattr(compaction, "MERGE_AT", 3)
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    rewriting, appended = threading.Event(), threading.Event()
    real = store._rewrite

    def slow_rewrite(*a, **kw):
        rewriting.set()
        assert appended.wait(30), "an append waited for the merge"
        return real(*a, **kw)

    monkeypatch.setattr(store, "_rewrite", slow_rewrite)
    for i in range(3):  # the 3rd starts a merge of the three
        store.append(events(5, start=T0 + timedelta(hours=i)))
    assert rewriting.wait(30)
    store.append(events(5, start=T0 + timedelta(hours=5)))  # during the rewrite
    assert store.count() == 20
    appended.set()
    store.wait_compaction()
    assert store.stats()["segments"] == 2 and store.count() == 20
    assert store.count("tags:parse_failure") == 4
    store.close()
