"""Segments leave out the columns that are null in every row of their batch.

Each test runs the same batches through a store that writes narrow segments
(the default) and one that writes every schema column, and the two must
answer every read the same way.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lightsoc import schema
from lightsoc.store import compaction, page_copies, segments
from lightsoc.store.events_duckdb import DuckDBEventStore

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PAGE = ["@timestamp", "event.dataset", "source.ip", "user.name", "dns.question.name", "event.id"]


def _times(rng: random.Random, seg: int, n: int) -> list[datetime]:
    """Shuffled, and no two alike (timelines break ties by log offset, null here)."""
    return [
        T0 + timedelta(seconds=rng.randrange(0, 7200), microseconds=seg * 10_000 + i)
        for i in range(n)
    ]


def _batch(rng: random.Random, seg: int, n: int, dataset: str) -> pa.Table:
    """A web batch (no user, no DNS field) or a DNS batch (a user on some rows)."""
    cols: dict = {
        "@timestamp": _times(rng, seg, n),
        "event.id": [f"{dataset[0]}{seg}-{i:05d}" for i in range(n)],
        "event.dataset": [dataset] * n,
        "source.ip": [f"10.0.{seg}.{i % 40}" for i in range(n)],
    }
    if dataset == "nginx.access":
        cols["url.path"] = [f"/p/{i % 9}" for i in range(n)]
        cols["tags"] = [[] if i % 2 else ["x"] for i in range(n)]
    else:
        cols["user.name"] = ["alice" if i % 5 == 0 else None for i in range(n)]
        cols["dns.question.name"] = [f"h{i % 13}.example.org" for i in range(n)]
    return schema.to_arrow(
        pl.DataFrame(cols, schema_overrides={"@timestamp": schema.polars_type("@timestamp")})
    )


def _fill(store: DuckDBEventStore) -> None:
    rng = random.Random(3)
    for seg, (dataset, n) in enumerate(
        [("nginx.access", 1800), ("dns", 1500), ("nginx.access", 1200), ("dns", 300)]
    ):
        store.append(_batch(rng, seg, n, dataset))


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    monkeypatch.setattr(page_copies, "MIN_ROWS", 1000)
    monkeypatch.setattr(page_copies, "BATCH_ROWS", 64)
    monkeypatch.setattr(compaction, "MERGE_AT", 10**6)
    narrow = DuckDBEventStore(tmp_path / "narrow" / "events.duckdb")
    _fill(narrow)
    with monkeypatch.context() as m:
        m.setattr(segments, "ALWAYS_WRITTEN", frozenset(schema.NAMES))
        full = DuckDBEventStore(tmp_path / "full" / "events.duckdb")
        _fill(full)
    yield narrow, full
    narrow.close()
    full.close()


def _columns(store: DuckDBEventStore) -> dict[str, set[str]]:
    """Segment file -> its columns, by the first event id's prefix (dataset letter + batch)."""
    out = {}
    for f in store.files.root.glob("seg-*.parquet"):
        first = pq.read_table(f, columns=["event.id"]).column(0)[0].as_py()
        out[first.split("-")[0]] = set(pq.read_schema(f).names)
    return out


def test_a_segment_holds_only_the_columns_its_batch_filled(stores) -> None:
    narrow, full = stores
    cols = _columns(narrow)
    assert cols["n0"] == {
        "@timestamp",
        "event.id",
        "event.dataset",
        "source.ip",
        "url.path",
        "tags",
    }
    assert cols["d1"] == {
        "@timestamp",
        "event.id",
        "event.dataset",
        "source.ip",
        "user.name",
        "dns.question.name",
    }
    assert all(c == set(schema.NAMES) for c in _columns(full).values())
    # the types of what is written are the schema's
    for f in narrow.files.root.glob("seg-*.parquet"):
        for name, dtype in pl.read_parquet_schema(f).items():
            assert dtype == schema.polars_type(name), name


def test_a_batch_with_no_time_or_id_still_writes_those_columns(tmp_path: Path) -> None:
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    try:
        s.append(schema.to_arrow(pl.DataFrame({"message": ["a", "b"]})))
        (f,) = s.files.root.glob("seg-*.parquet")
        assert set(pq.read_schema(f).names) == {"@timestamp", "event.id", "message"}
        got = s.search("message:b", None, None, 10)
        assert got.schema == schema.ARROW_SCHEMA and got.column("message").to_pylist() == ["b"]
    finally:
        s.close()


QUERIES = [
    "",
    "user.name:alice",
    "NOT user.name:alice",
    "dns.question.name:h3.example.org",
    "dns.question.name:*.example.org AND source.ip:10.0.1.0/24",
    "url.path:/p/4 OR user.name:alice",
    "_exists_:user.name",
    "NOT _exists_:dns.question.name",
    "user.name:nobody",
]


def _same_reads(narrow: DuckDBEventStore, full: DuckDBEventStore) -> None:
    for q in QUERIES:
        assert narrow.count(q) == full.count(q), q
        for fields in (PAGE, None, ["url.path", "user.name", "event.id"]):
            for order in ("desc", "asc"):
                got = narrow.search(q, None, fields, 50, order, 7)
                want = full.search(q, None, fields, 50, order, 7)
                assert got.equals(want), (q, fields, order)
        assert narrow.top("user.name", q) == full.top("user.name", q), q
    for entity in ("10.0.1.3", "alice"):
        got = narrow.timeline(entity, None, 100, PAGE)
        assert got.equals(full.timeline(entity, None, 100, PAGE)), entity
        assert got.num_rows > 0


def test_narrow_and_full_segments_answer_the_same(stores) -> None:
    narrow, full = stores
    _same_reads(narrow, full)


def test_page_copies_of_narrow_segments_serve_their_null_fields(stores, monkeypatch) -> None:
    narrow, full = stores
    assert page_copies.build(narrow, max_rows=10**9) == 3  # the 300-row one is too small
    page_copies.build(full, max_rows=10**9)
    fallbacks: list[int] = []
    real_take = page_copies.take

    def spy(pairs, fields, sch):  # noqa: ANN001, ANN202
        found, missing = real_take(pairs, fields, sch)
        fallbacks.extend(missing)
        return found, missing

    monkeypatch.setattr(page_copies, "take", spy)
    got = narrow.search("source.ip:10.0.0.3", None, PAGE, 100)  # web rows: no user, no DNS
    assert got.num_rows > 0 and set(got.column("user.name").to_pylist()) == {None}
    assert not fallbacks  # served from the copies, not Parquet
    _same_reads(narrow, full)


def test_compaction_merges_narrow_segments_of_different_shapes(stores) -> None:
    narrow, full = stores
    assert narrow.compact(below_rows=10**6) == 4
    assert len(narrow._segments(None)) == 1
    _same_reads(narrow, full)
