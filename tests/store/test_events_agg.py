"""The dashboard's one-scan aggregations agree with the plain `top` / `histogram` / `count`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from lightsoc import schema
from lightsoc.store.base import SourceCounters, TimeRange
from lightsoc.store.events_duckdb import DuckDBEventStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DATASETS = ["nginx.access", "sshd", "dns", "netflow", None]


def sample(n: int = 300) -> pl.DataFrame:
    rows = [
        {
            "@timestamp": T0 + timedelta(seconds=37 * i),
            "event.id": f"e{i}",
            # skewed: netflow most, then dns ...; every fifth has no dataset
            "event.dataset": DATASETS[min(i % 7, 4)] if i % 5 else None,
            "source.ip": f"10.0.0.{i % 4}" if i % 3 else None,
            "user.name": ["root", "admin", 'o"dd\\name'][i % 3],
            "http.response.status_code": 200 + i % 2,
        }
        for i in range(n)
    ]
    return pl.DataFrame(rows, schema_overrides={k: schema.polars_type(k) for k in rows[0]})


@pytest.fixture
def store(tmp_path):
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    s.append(schema.to_arrow(sample()))
    yield s
    s.close()


def test_histogram_by_matches_histogram_and_counts(store):
    tr = TimeRange(T0, T0 + timedelta(hours=2))
    rows = store.histogram_by(600, "event.dataset", "", tr, limit=10)
    # summed over values it is the plain histogram
    per_bucket: dict[datetime, int] = {}
    for b, _v, n in rows:
        per_bucket[b] = per_bucket.get(b, 0) + n
    assert sorted(per_bucket.items()) == store.histogram(600, "", tr)
    # per value it is a count of that dataset; no dataset counts under None
    by_value: dict[object, int] = {}
    for _b, v, n in rows:
        by_value[v] = by_value.get(v, 0) + n
    for ds in ("nginx.access", "sshd", "dns", "netflow"):
        assert by_value[ds] == store.count(f"event.dataset:{ds}", tr)
    assert by_value[None] == store.count("NOT _exists_:event.dataset", tr)


def test_histogram_by_keeps_the_most_common_values(store):
    rows = store.histogram_by(3600, "event.dataset", "", None, limit=1)
    values = {v for _b, v, _n in rows}
    top = store.top("event.dataset", "", None, 1)[0][0]
    assert values == {top, None}
    assert sum(n for *_x, n in rows) == store.count()


def test_histogram_by_with_a_query(store):
    rows = store.histogram_by(3600, "source.ip", "user.name:root", None, limit=10)
    assert sum(n for *_x, n in rows) == store.count("user.name:root")


def test_top_many_equals_top_per_field(store):
    fields = ["source.ip", "user.name", "event.dataset", "http.response.status_code"]
    tr = TimeRange(T0 + timedelta(minutes=10), None)
    got = store.top_many([*fields, "user.name"], "", tr, n=3)
    assert list(got) == fields  # duplicates once, in order
    for f in fields:
        assert got[f] == store.top(f, "", tr, 3), f
    assert got["http.response.status_code"][0][0] in (200, 201)  # typed, not text


def test_top_many_empty_and_unknown(store):
    assert store.top_many([]) == {}
    assert store.top_many(["user.name"], "user.name:nobody") == {"user.name": []}
    with pytest.raises(ValueError, match="unknown field"):
        store.top_many(["no.such.field"])


def test_source_counters_are_the_stats_sources(store):
    store.append(
        sample(1).head(0),
        counters=[SourceCounters("web", "file", received=3, events=2, parse_failures=1, bytes=9)],
    )
    assert store.source_counters() == store.stats()["sources"]
    assert store.source_counters()[0]["parse_failures"] == 1
