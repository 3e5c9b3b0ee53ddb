"""Page copies answer searches and timelines exactly as the Parquet segments do:
rare and common values, both orders, offsets, copies missing, damaged, of
segments compacted away; they go with their segments."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from lightsoc import schema
from lightsoc.config import parse_config
from lightsoc.runtime import open_stores
from lightsoc.store import compaction, page_copies, segments
from lightsoc.store.base import TimeRange
from lightsoc.store.events_duckdb import DuckDBEventStore
from lightsoc.web.routes.search import DEFAULT_FIELDS

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PAGE = ["@timestamp", "event.dataset", "source.ip", "user.name", "message", "event.id"]


def _segment(rng: random.Random, seg: int, n: int) -> pa.Table:
    start = T0 + timedelta(minutes=rng.randrange(0, 600))
    return schema.to_arrow(
        pl.DataFrame(
            {
                # out of time order within a segment, and some shared timestamps
                "@timestamp": [start + timedelta(seconds=rng.randrange(0, 7200)) for _ in range(n)],
                "event.id": [f"s{seg}-{i:05d}" for i in range(n)],
                "event.dataset": [["sshd", "nginx.access", None][i % 3] for i in range(n)],
                "source.ip": [
                    "192.0.2.99" if rng.random() < 0.003 else f"10.{seg}.{i % 7}.{i % 50}"
                    for i in range(n)
                ],
                "user.name": ["root" if i % 4 else None for i in range(n)],
                "message": [f"m <b>{seg}</b> {i}" for i in range(n)],
                "url.path": [f"/p/{i % 9}" for i in range(n)],
            },
            schema_overrides={"@timestamp": schema.polars_type("@timestamp")},
        )
    )


@pytest.fixture
def small_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies of small segments, in small batches that cross the row groups' edges."""
    monkeypatch.setattr(page_copies, "MIN_ROWS", 1000)
    monkeypatch.setattr(page_copies, "BATCH_ROWS", 64)
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", 1000)
    monkeypatch.setattr(compaction, "MERGE_AT", 10**6)


@pytest.fixture
def store(tmp_path: Path, small_copies: None) -> Iterator[DuckDBEventStore]:
    rng = random.Random(11)
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    for seg, n in enumerate([3000, 2500, 1700, 2222, 400]):  # the last: too small for a copy
        s.append(_segment(rng, seg, n))
    yield s
    s.close()


def _copies(store: DuckDBEventStore) -> list[Path]:
    return sorted(store.files.root.glob("seg-*.page*.arrow"))


def _reference(store: DuckDBEventStore, q: str, fields, limit: int, order: str, offset: int):
    """One query over every segment's Parquet."""
    sql, params = store._search_sql(q, None, fields, limit, order, None, offset)
    return store._cur().sql(sql, params=params).to_arrow_table()


CASES = [
    ("source.ip:192.0.2.99", PAGE, 100, 0),  # rare: the keys come from the copies
    ("source.ip:192.0.2.99", ["message", "@timestamp"], 5, 3),
    ("user.name:root", PAGE, 100, 0),  # common: the stepped path, rows from the copies
    ("user.name:root", ["event.id"], 7, 1500),
    ("source.ip:10.2.0.0/16 AND NOT event.dataset:sshd", PAGE, 50, 20),
    ("", ["source.ip", "event.id"], 30, 0),
    ("source.ip:192.0.2.99", None, 100, 0),  # whole events: Parquet only
    ("source.ip:192.0.2.99", ["url.path", "event.id"], 100, 0),  # a field no copy holds
    ("user.name:nobody", PAGE, 100, 0),
]


def _assert_same_answers(store: DuckDBEventStore) -> None:
    for q, fields, limit, offset in CASES:
        for order in ("desc", "asc"):
            got = store.search(q, None, fields, limit, order, offset)
            want = _reference(store, q, fields, limit, order, offset)
            assert got.equals(want), (q, fields, order)
            assert got.num_rows == want.num_rows


def test_copies_hold_their_segments_rows_in_fixed_size_batches(store) -> None:
    assert page_copies.build(store, max_rows=10**9) == 4
    copies = _copies(store)
    assert len(copies) == 4  # not the 400-row segment
    for copy in copies:
        segment = copy.with_name(copy.name.replace(page_copies.SUFFIX, ".parquet"))
        want = pq.read_table(segment, columns=list(page_copies.PAGE_COLUMNS[:1]) + ["event.id"])
        reader = ipc.open_file(pa.memory_map(str(copy)))
        sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
        assert set(sizes[:-1]) == {64} and 0 < sizes[-1] <= 64
        got = reader.read_all()
        assert got.num_rows == want.num_rows
        assert got.column("event.id").equals(want.column("event.id"))
        assert got.column("@timestamp").equals(want.column("@timestamp"))


def test_searches_with_copies_equal_the_parquet_answer(store, monkeypatch) -> None:
    _assert_same_answers(store)  # no copies yet
    page_copies.build(store, max_rows=10**9)
    taken: list[int] = []
    real_take = page_copies.take

    def spy(pairs, fields, sch):  # noqa: ANN001, ANN202
        taken.append(len(pairs))
        return real_take(pairs, fields, sch)

    monkeypatch.setattr(page_copies, "take", spy)
    _assert_same_answers(store)
    assert taken  # the copies did answer
    stepped: list[object] = []
    monkeypatch.setattr(store, "_search_keys", lambda *a: stepped.append(a))
    rare = store.search("source.ip:192.0.2.99", None, PAGE, 100)
    assert rare.num_rows > 5 and not stepped  # the rare value never took the stepped path


def test_missing_and_damaged_copies_fall_back_to_parquet(store) -> None:
    page_copies.build(store, max_rows=10**9)
    copies = _copies(store)
    copies[0].unlink()
    copies[1].write_bytes(copies[1].read_bytes()[:500])  # torn
    copies[2].write_bytes(b"not arrow at all")
    _assert_same_answers(store)


def test_timelines_read_the_copies_and_equal_the_parquet_answer(store) -> None:
    tr = TimeRange(T0, T0 + timedelta(hours=12))
    before = {
        (e, o): store.timeline(e, tr, limit=40, order=o, fields=PAGE)
        for e in ("192.0.2.99", "10.1.3.3", "root")
        for o in ("desc", "asc")
    }
    page_copies.build(store, max_rows=10**9)
    for (e, o), want in before.items():
        assert want.num_rows > 0
        got = store.timeline(e, tr, limit=40, order=o, fields=PAGE)
        # the timeline's order among equal times is DuckDB's, run to run
        assert got.column("@timestamp").equals(want.column("@timestamp")), (e, o)
        tied = [("@timestamp", "ascending"), ("event.id", "ascending")]
        assert got.sort_by(tied).equals(want.sort_by(tied)), (e, o)


def test_copies_go_with_their_segments(store, monkeypatch) -> None:
    monkeypatch.setattr(segments, "GRACE_SECONDS", 0)
    page_copies.build(store, max_rows=10**9)
    old = set(_copies(store))
    assert len(old) == 4
    store.compact(below_rows=10**6)  # one segment now
    store.files.purge()
    assert not old & set(_copies(store))
    assert page_copies.build(store, max_rows=10**9) == 1
    _assert_same_answers(store)
    store.retention(1, now=T0 + timedelta(days=30))
    store.files.purge()
    assert _copies(store) == []


def test_orphan_and_old_version_copies_are_removed_at_start(tmp_path, small_copies) -> None:
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    s.append(_segment(random.Random(1), 0, 1500))
    page_copies.build(s, max_rows=10**9)
    (kept,) = _copies(s)
    root = s.files.root
    s.close()
    (root / "seg-0123456789abcdef.page1.arrow").write_bytes(b"x")  # of no segment
    old_version = kept.with_name(kept.name.replace(page_copies.SUFFIX, ".page0.arrow"))
    old_version.write_bytes(b"x")
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    try:
        assert _copies(s) == [kept]
    finally:
        s.close()


def test_a_segment_gone_before_its_copy_publishes_leaves_nothing(store) -> None:
    seg_id, file, _ = page_copies.pending(store._cur(), store.files)[0]
    store._replace([file], None)  # dropped (as retention does) while it was being copied
    assert not page_copies.build_one(store._cur(), store._write_lock, store.files, seg_id, file)
    assert not page_copies.copy_path(store.files.path(file)).exists()
    assert list((store.files.root / ".tmp").iterdir()) == []


def test_maintain_copies_a_bounded_number_newest_first(store, monkeypatch) -> None:
    monkeypatch.setattr(page_copies, "BUILD_ROWS_PER_CALL", 2000)
    newest_first = [f for _, f, _ in page_copies.pending(store._cur(), store.files)]
    for done in range(1, 5):
        store.maintain()
        have = [f for f in newest_first if page_copies.copy_path(store.files.path(f)).exists()]
        assert have == newest_first[:done]


def test_the_search_pages_columns_are_in_the_copies() -> None:
    assert page_copies.covers([*DEFAULT_FIELDS, "event.id"])
    assert not page_copies.covers(None) and not page_copies.covers(["url.path"])


def test_turned_off_the_store_builds_no_copies(tmp_path, small_copies) -> None:
    config = parse_config("store: {page_copies: false}\n", env={})
    stores = open_stores(tmp_path / "data", config)
    try:
        events = stores.events
        assert isinstance(events, DuckDBEventStore) and events.page_copies is False
        events.append(_segment(random.Random(2), 0, 1500))
        events.maintain()
        assert _copies(events) == []
    finally:
        stores.close()
    stores = open_stores(tmp_path / "data", parse_config("{}", env={}))
    try:
        stores.events.maintain()  # the default: on
        assert len(_copies(stores.events)) == 1  # type: ignore[arg-type]
    finally:
        stores.close()


def test_a_few_match_search_tells_count_its_total_until_the_store_changes(store, monkeypatch):
    page_copies.build(store, max_rows=10**9)
    tr = TimeRange(T0 - timedelta(days=1), None)
    q = "source.ip:192.0.2.99"
    truth = store.count(q, tr)
    assert 0 < truth <= 256
    store.search(q, tr, PAGE, 5)

    def no_scan(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("counted again")

    with monkeypatch.context() as m:
        m.setattr(store, "_select", no_scan)
        assert store.count(q, tr) == truth
        assert store.count(q, tr, limit=3) == 3
    # another range, another query: counted
    assert store.count(q, TimeRange(T0 - timedelta(days=2), None)) == truth
    more = _segment(random.Random(5), 9, 3000)
    store.append(more)  # the catalog changed: counted again, with the new matches
    extra = sum(ip == "192.0.2.99" for ip in more.column("source.ip").to_pylist())
    assert extra > 0
    assert store.count(q, tr) == truth + extra
