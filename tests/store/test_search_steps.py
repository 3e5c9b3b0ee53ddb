"""Search's widening steps and the capped count, against a real store of many segments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from lightsoc import schema
from lightsoc.store import compaction
from lightsoc.store.base import TimeRange
from lightsoc.store.events_duckdb import DuckDBEventStore
from lightsoc.store.events_search import SEARCH_FIRST_SEGMENTS

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SEGMENTS = 45


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    rng = random.Random(7)
    s = DuckDBEventStore(tmp_path_factory.mktemp("steps") / "events.duckdb")
    # more segments than 1 + 4 + 16 (three steps): keep them from being compacted
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compaction, "MERGE_AT", 10**6)
        _fill(s, rng)
    assert s.stats()["segments"] == SEGMENTS > SEARCH_FIRST_SEGMENTS * 5
    yield s
    s.close()


def _fill(s: DuckDBEventStore, rng: random.Random) -> None:
    for seg in range(SEGMENTS):  # overlapping segments; some share timestamps
        start = T0 + timedelta(minutes=rng.randrange(0, 300))
        n = 9
        s.append(
            schema.to_arrow(
                pl.DataFrame(
                    {
                        "@timestamp": [start + timedelta(minutes=i // 2) for i in range(n)],
                        "event.id": [f"s{seg:02d}-{i}" for i in range(n)],
                        # "rare" only in the oldest-written segments: found late
                        "user.name": [
                            "rare" if seg < 3 and i < 2 else f"u{i % 3}" for i in range(n)
                        ],
                        "source.ip": [f"10.{seg % 4}.0.{i}" for i in range(n)],
                    },
                    schema_overrides={
                        "@timestamp": schema.polars_type("@timestamp"),
                    },
                )
            )
        )


def _reference(store: DuckDBEventStore, q: str, fields, limit: int, order: str, offset: int):
    """One query over every segment: what the steps must reproduce."""
    sql, params = store._search_sql(q, None, fields, limit, order, None, offset)
    return store._cur().sql(sql, params=params).to_arrow_table()


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("q", ["", "user.name:rare", "user.name:u1", "source.ip:10.2.0.0/16"])
def test_steps_give_the_rows_of_one_query_over_all_segments(store, order, q, monkeypatch) -> None:
    reads: list[list[str]] = []
    real = store._search_keys

    def spy(*args, **kwargs):
        reads.append(args[0])
        return real(*args, **kwargs)

    for limit, offset, fields in [
        (5, 0, None),
        (7, 3, ["event.id"]),
        (50, 20, ["user.name", "event.id", "user.name"]),
        (3, 0, ["source.ip"]),
        (10, 400, None),
    ]:
        want = _reference(store, q, fields, limit, order, offset)
        reads.clear()
        monkeypatch.setattr(store, "_search_keys", spy)
        got = store.search(q, None, fields, limit, order, offset)
        monkeypatch.setattr(store, "_search_keys", real)
        assert got.column_names == want.column_names
        assert got.to_pylist() == want.to_pylist(), (limit, offset, fields)
        read = [f for files in reads for f in files]
        assert len(read) == len(set(read))  # no segment is read twice
        if q == "user.name:rare":
            assert len(reads) > 1  # found only by widening


def test_count_with_a_limit_stops_there(store) -> None:
    everything = TimeRange(None, None)
    total = store.count()
    assert total == SEGMENTS * 9 == store.count("", everything)
    assert store.count("", everything, limit=10) == 10
    assert store.count("user.name:u1", everything, limit=5) == 5
    exact = store.count("user.name:rare")
    assert (
        exact
        == 6
        == store.count("user.name:rare", limit=6)
        == store.count("user.name:rare", limit=100)
    )
    window = TimeRange(T0, T0 + timedelta(minutes=60))
    assert store.count("", window, limit=10**6) == store.count("", window)
