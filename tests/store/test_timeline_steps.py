"""The entity timeline's segment steps against one query over every segment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from lightsoc import schema
from lightsoc.store import compaction
from lightsoc.store.base import TimeRange
from lightsoc.store.events_duckdb import DuckDBEventStore
from lightsoc.store.events_entity import _entity_where, _select_list

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SEGMENTS = 20
DATASETS = ["sshd", "nginx.access", None]


def _frame(rows: dict[str, list]) -> pa.Table:
    return schema.to_arrow(
        pl.DataFrame(rows, schema_overrides={k: schema.polars_type(k) for k in rows})
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    rng = random.Random(11)
    s = DuckDBEventStore(tmp_path_factory.mktemp("tl") / "events.duckdb")
    with pytest.MonkeyPatch.context() as mp:  # keep the many small segments
        mp.setattr(compaction, "MERGE_AT", 10**6)
        for seg in range(SEGMENTS):  # overlapping segments; times shared within and across
            start = T0 + timedelta(minutes=rng.randrange(0, 120))
            n = 12
            s.append(
                _frame(
                    {
                        "@timestamp": [start + timedelta(minutes=i // 3) for i in range(n)],
                        "event.id": [f"s{seg:02d}-{i}" for i in range(n)],
                        "event.dataset": [DATASETS[(seg + i) % 3] for i in range(n)],
                        "source.ip": ["10.0.0.1" if i % 2 else f"10.1.0.{i}" for i in range(n)],
                        "destination.ip": [
                            "10.0.0.1" if i % 5 == 0 else "10.9.9.9" for i in range(n)
                        ],
                        "user.name": ["rare" if seg == 4 and i == 3 else "bob" for i in range(n)],
                        # unique, so the reference's order is fully determined
                        "log.offset": [seg * 100 + i for i in range(n)],
                        "message": [f"m{seg}-{i}" for i in range(n)],
                    }
                )
            )
    assert s.stats()["segments"] == SEGMENTS
    yield s
    s.close()


def _reference(store: DuckDBEventStore, entity, tr, limit, fields, order, datasets) -> pa.Table:
    """The timeline as one query over every segment (the order it must reproduce)."""
    src, src_params = store._events(tr)
    where, params = _entity_where(entity, tr)
    if datasets is not None:
        where += " AND coalesce(\"event.dataset\", 'unknown') IN (SELECT unnest(?))"
        params.append(list(datasets))
    d = "DESC" if order == "desc" else "ASC"
    sql = (
        f"SELECT {_select_list(fields)} FROM {src} AS events WHERE {where} "  # noqa: S608
        f'ORDER BY "@timestamp" {d}, "log.offset" {d} LIMIT ?'
    )
    return store._cur().sql(sql, params=[*src_params, *params, limit]).to_arrow_table()


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 5, 17, 60, 1000])
@pytest.mark.parametrize(
    "fields", [None, ["event.id", "message"], ["message", "@timestamp", "event.id"]]
)
def test_timeline_equals_one_query(store, order, limit, fields):
    got = store.timeline("10.0.0.1", None, limit, fields, order=order)
    want = _reference(store, "10.0.0.1", None, limit, fields, order, None)
    assert got.num_rows == min(limit, want.num_rows) > 0
    assert got.column_names == want.column_names
    assert got.to_pylist() == want.to_pylist()


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_timeline_time_range_and_datasets(store, order):
    tr = TimeRange(T0 + timedelta(minutes=30), T0 + timedelta(minutes=90))
    for datasets in (None, ["sshd"], ["unknown", "nginx.access"], []):
        for limit in (3, 25, 500):
            got = store.timeline("10.0.0.1", tr, limit, None, order=order, datasets=datasets)
            want = _reference(store, "10.0.0.1", tr, limit, None, order, datasets)
            assert got.to_pylist() == want.to_pylist()
            ts = got.column("@timestamp").to_pylist()
            assert all(tr.start <= t < tr.end for t in ts)
            if datasets == []:
                assert got.num_rows == 0


def test_timeline_rare_and_absent(store):
    rare = store.timeline("rare", None, 100, ["event.id"], order="desc")
    assert rare.column("event.id").to_pylist() == ["s04-3"]
    none = store.timeline("10.200.0.1", None, 100, ["event.id", "message"])
    assert none.num_rows == 0
    assert none.column_names == ["event.id", "message"]
    assert store.timeline("10.200.0.1").num_rows == 0


def test_timeline_empty_store(tmp_path: Path):
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    try:
        assert s.timeline("10.0.0.1", None, 10, order="desc").num_rows == 0
    finally:
        s.close()


def test_timeline_stops_before_older_segments(tmp_path: Path):
    """Newest first, a full page from the newest segments never opens the oldest:
    deleting its file changes nothing (oldest first, the read fails)."""
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(compaction, "MERGE_AT", 10**6)
            for seg in range(6):  # disjoint hours, oldest written first
                start = T0 + timedelta(hours=seg)
                s.append(
                    _frame(
                        {
                            "@timestamp": [start + timedelta(minutes=i) for i in range(10)],
                            "event.id": [f"h{seg}-{i}" for i in range(10)],
                            "source.ip": ["10.0.0.1"] * 10,
                            "log.offset": list(range(10)),
                        }
                    )
                )
        before = s.timeline("10.0.0.1", None, 5, ["event.id"], order="desc")
        oldest = s._segments(None, "asc")[0][0]
        Path(oldest).unlink()
        after = s.timeline("10.0.0.1", None, 5, ["event.id"], order="desc")
        assert after.column("event.id").to_pylist() == ["h5-9", "h5-8", "h5-7", "h5-6", "h5-5"]
        assert after.to_pylist() == before.to_pylist()
        with pytest.raises(duckdb.IOException):
            s.timeline("10.0.0.1", None, 5, ["event.id"], order="asc")
    finally:
        s.close()
