"""Per-segment rollups answer the dashboard's aggregations exactly as a scan does:
random ranges (cut buckets at both ends), segments with and without rollups,
after compaction and retention."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from lightsoc import schema
from lightsoc.store import compaction, rollups
from lightsoc.store.base import TimeRange
from lightsoc.store.events_duckdb import DuckDBEventStore

T0 = datetime(2026, 1, 1, 10, 17, 23, tzinfo=UTC)
FIELDS = list(rollups.TOP_FIELDS)
DATASETS = ["nginx.access", "sshd", "dns", "netflow", "postfix", None]


def segment(rng: random.Random, start: datetime, minutes: int, n: int) -> pl.DataFrame:
    """`n` events at random times over `minutes` from `start`, skewed values and nulls."""
    rows = []
    for i in range(n):
        ts = start + timedelta(seconds=rng.uniform(0, minutes * 60))
        pick = int(rng.paretovariate(1.2)) % 40
        rows.append(
            {
                "@timestamp": ts,
                "event.id": f"{start.isoformat()}-{i}",
                "event.dataset": DATASETS[pick % len(DATASETS)],
                "source.ip": f"10.0.{pick % 3}.{pick}" if rng.random() > 0.1 else None,
                "source.geo.country_iso_code": ["CN", "US", "DE", None][pick % 4],
                "dns.question.registered_domain": f"d{pick % 7}.example" if pick % 2 else None,
                "url.domain": ["a.example", "b.example", 'q"uote\\d'][pick % 3],
                "url.path": f"/p/{pick % 11}",
                "user.name": ["root", "admin", "o'dd", None][rng.randrange(4)],
            }
        )
    return pl.DataFrame(rows, schema_overrides={k: schema.polars_type(k) for k in rows[0]})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBEventStore]:
    rng = random.Random(7)
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    # overlapping, out-of-order and adjacent segments over ~7 h
    for start_min, span, n in [(0, 95, 400), (80, 130, 500), (30, 20, 60), (215, 90, 300)]:
        s.append(schema.to_arrow(segment(rng, T0 + timedelta(minutes=start_min), span, n)))
    for start_min in (310, 330, 350):  # the newest: small ones
        s.append(schema.to_arrow(segment(rng, T0 + timedelta(minutes=start_min), 25, 80)))
    yield s
    s.close()


def scanned(store: DuckDBEventStore, monkeypatch: pytest.MonkeyPatch, fn, *args):  # noqa: ANN001, ANN201
    """The answer of today's scan path (rollups switched off)."""
    with monkeypatch.context() as m:
        m.setattr(rollups, "covers_histogram", lambda *_: False)
        m.setattr(rollups, "covers_top", lambda *_: False)
        return fn(*args)


def ranked(tops: dict[str, list[tuple[object, int]]]) -> dict[str, list[tuple[object, int]]]:
    """Ties in count rank by value (the scan returns them in any order)."""
    return {f: sorted(rows, key=lambda r: (-r[1], str(r[0]))) for f, rows in tops.items()}


def assert_same(store: DuckDBEventStore, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = random.Random(seed)
    ranges = [TimeRange(), TimeRange(start=T0 + timedelta(minutes=200)), TimeRange(end=T0)]
    for _ in range(10):
        a = T0 + timedelta(seconds=rng.uniform(-600, 7 * 3600))
        b = a + timedelta(seconds=rng.choice([30, 700, 2000, 5000, 20000]) * rng.random())
        ranges.append(TimeRange(start=a, end=b))
        ranges.append(TimeRange(start=a))
    ranges.append(TimeRange(start=T0.replace(minute=0, second=0), end=T0 + timedelta(hours=3)))
    for tr in ranges:
        for interval in (60, 900, 3600):
            got = store.histogram_by(interval, "event.dataset", "", tr, 3)
            want = scanned(
                store, monkeypatch, store.histogram_by, interval, "event.dataset", "", tr, 3
            )
            assert sorted(got, key=str) == sorted(want, key=str), (tr, interval)
        got_top = store.top_many(FIELDS, "", tr, 4)
        want_top = scanned(store, monkeypatch, store.top_many, FIELDS, "", tr, 4)
        assert got_top == ranked(want_top), tr
        assert store.top_many(FIELDS[:2], "", tr, 2) == ranked(
            scanned(store, monkeypatch, store.top_many, FIELDS[:2], "", tr, 2)
        )


def rolled(store: DuckDBEventStore) -> set[str]:
    cur = store._cur()
    return {r[0] for r in cur.execute("SELECT segment FROM lightsoc_rollups").fetchall()}


def assert_no_orphans(store: DuckDBEventStore) -> None:
    cur = store._cur()
    ids = {r[0] for r in cur.execute("SELECT id FROM lightsoc_segments").fetchall()}
    for table in (
        "lightsoc_rollups",
        "lightsoc_rollup_minutes",
        "lightsoc_rollup_top",
        "lightsoc_rollup_top_segment",
    ):
        have = {r[0] for r in cur.execute(f"SELECT DISTINCT segment FROM {table}").fetchall()}  # noqa: S608
        assert have <= ids, table


def test_rollups_equal_scans_with_rolled_and_unrolled_segments(store, monkeypatch):
    assert rolled(store) == set()
    assert_same(store, monkeypatch, 1)  # nothing rolled up: all live
    pending = rollups.pending(store._cur())
    assert len(pending) == 7
    # roll up every other segment: rolled and live ones mixed in every range
    for seg_id, file, _ in pending[::2]:
        assert rollups.build_one(store._cur(), store._write_lock, seg_id, store.files.path(file))
    assert len(rolled(store)) == 4
    assert_same(store, monkeypatch, 2)
    assert rollups.build(store, max_rows=10**9) == 3
    assert rollups.pending(store._cur()) == []
    assert_same(store, monkeypatch, 3)
    # an unfiltered count over a rolled-up range still matches the scan
    tr = TimeRange(start=T0 + timedelta(minutes=17, seconds=3))
    hist = store.histogram_by(900, "event.dataset", "", tr, 10)
    assert sum(n for _, _, n in hist) == store.count("", tr)


def test_build_is_bounded_and_newest_first(store):
    assert rollups.build(store, max_rows=1) == 1  # at least one segment per call
    newest = (
        store._cur()
        .execute("SELECT id FROM lightsoc_segments ORDER BY max_ts DESC LIMIT 1")
        .fetchone()[0]
    )
    assert rolled(store) == {newest}
    assert rollups.build(store, max_rows=500) == 3  # stops before going over 500 rows
    assert store.maintain() == 0 and rolled(store)  # maintain builds more, merges none
    while rollups.build(store):
        pass
    assert len(rolled(store)) == 7


def test_compaction_and_retention_drop_rollups_with_their_segments(store, monkeypatch):
    rollups.build(store, max_rows=10**9)
    monkeypatch.setattr(compaction, "MEDIUM_MERGE_AT", 3)
    assert store.maintain() == 7  # all merged into one new segment, rolled up at once
    assert_no_orphans(store)
    assert store.stats()["segments"] == 1 and len(rolled(store)) == 1
    assert_same(store, monkeypatch, 4)

    cutoff_days = 30
    now = T0 + timedelta(days=cutoff_days, hours=2)  # cuts the merged segment
    deleted = store.retention(cutoff_days, now=now)
    assert 0 < deleted < 1820
    assert_no_orphans(store)
    assert rolled(store) == set()  # the rewritten segment has none yet
    assert_same(store, monkeypatch, 5)
    rollups.build(store)
    assert len(rolled(store)) == 1
    assert_same(store, monkeypatch, 6)


def test_a_segment_gone_before_its_rollup_commits_leaves_nothing(store, monkeypatch):
    seg_id, file, _ = rollups.pending(store._cur())[0]
    path = store.files.path(file)
    store._replace([file], None)  # dropped (as retention does) while it was being read
    assert not rollups.build_one(store._cur(), store._write_lock, seg_id, path)
    assert_no_orphans(store)
    assert rolled(store) == set()
    assert_same(store, monkeypatch, 7)


def test_rollups_of_another_version_are_rebuilt(store, monkeypatch):
    rollups.build(store, max_rows=10**9)
    monkeypatch.setattr(rollups, "VERSION", rollups.VERSION + 1)
    assert len(rollups.pending(store._cur())) == 7
    assert_same(store, monkeypatch, 8)  # old rollups are not used
    rollups.build(store, max_rows=10**9)
    assert store._cur().execute("SELECT DISTINCT version FROM lightsoc_rollups").fetchall() == [
        (rollups.VERSION,)
    ]
    assert_same(store, monkeypatch, 9)


def test_a_filtered_or_other_query_keeps_the_scan_path(store, monkeypatch):
    rollups.build(store, max_rows=10**9)
    tr = TimeRange(start=T0 + timedelta(minutes=33, seconds=9))
    q = 'url.domain:"a.example"'
    assert store.top_many(FIELDS, q, tr, 3) == scanned(
        store, monkeypatch, store.top_many, FIELDS, q, tr, 3
    )
    # a field or a bucket size the rollups do not have
    assert not rollups.covers_top(["event.dataset"]) and not rollups.covers_histogram(90, "x")
    assert not rollups.covers_histogram(30, "event.dataset")
    got = store.histogram_by(30, "event.dataset", "", tr, 3)
    want = scanned(store, monkeypatch, store.histogram_by, 30, "event.dataset", "", tr, 3)
    assert sorted(got, key=str) == sorted(want, key=str)


def test_the_dashboard_top_fields_are_rolled_up() -> None:
    from lightsoc.web.routes.dashboard import TOP_FIELDS

    assert set(TOP_FIELDS) == set(rollups.TOP_FIELDS)
    assert all(schema.BY_NAME[f].type == schema.STR for f in rollups.TOP_FIELDS)


BUILDER = """
import sys
from pathlib import Path
from lightsoc.store import rollups
from lightsoc.store.events_duckdb import DuckDBEventStore
s = DuckDBEventStore(Path(sys.argv[1]))
print("ready", flush=True)
while True:  # roll up, drop half, again: a kill lands in the middle of a rollup
    rollups.build(s, max_rows=10**9)
    cur = s._cur()
    ids = [r[0] for r in cur.execute("SELECT segment FROM lightsoc_rollups").fetchall()]
    cur.execute("BEGIN TRANSACTION")
    rollups._delete(cur, ids[::2])
    cur.execute("COMMIT")
"""


def test_kill_9_while_rolling_up_leaves_whole_rollups_only(tmp_path, monkeypatch):
    import subprocess
    import sys
    import time

    rng = random.Random(11)
    path = tmp_path / "events.duckdb"
    s = DuckDBEventStore(path)
    for i in range(6):
        s.append(schema.to_arrow(segment(rng, T0 + timedelta(minutes=50 * i), 60, 3000)))
    s.close()
    tr = TimeRange(start=T0 + timedelta(minutes=7))
    for delay in (0.3, 0.9, 1.7):
        proc = subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.kill()
        proc.wait(10)
        s = DuckDBEventStore(path)
        cur = s._cur()
        marked = rolled(s)
        for table in ("lightsoc_rollup_minutes", "lightsoc_rollup_top"):
            rows = {r[0] for r in cur.execute(f"SELECT DISTINCT segment FROM {table}").fetchall()}  # noqa: S608
            assert rows == marked, table  # no rollup without its rows, no rows left over
        sums = cur.execute(
            "SELECT s.rows, sum(m.n) FROM lightsoc_segments s "
            "JOIN lightsoc_rollup_minutes m ON m.segment = s.id GROUP BY s.id, s.rows"
        ).fetchall()
        assert all(rows == n for rows, n in sums), sums
        assert s.top_many(FIELDS, "", tr, 3) == ranked(
            scanned(s, monkeypatch, s.top_many, FIELDS, "", tr, 3)
        )
        s.close()


def test_a_rollup_failing_half_way_commits_nothing(store, monkeypatch):
    seg_id, file, _ = rollups.pending(store._cur())[0]
    # the minutes insert succeeds, then the top rows cannot be stored (hour is no time)
    bad = " UNION ALL ".join(["SELECT 'x' AS hour, ? AS field, ? AS value, 1 AS n"] * 6)
    monkeypatch.setattr(rollups, "_top_sql", lambda: bad)
    with pytest.raises(Exception, match="(?i)conver|cast"):
        rollups.build_one(store._cur(), store._write_lock, seg_id, store.files.path(file))
    assert rolled(store) == set()
    cur = store._cur()
    assert cur.execute("SELECT count(*) FROM lightsoc_rollup_minutes").fetchone() == (0,)
