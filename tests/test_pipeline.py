"""The pipeline with real threads and a real DuckDB store.

Sources here are small `Source` subclasses so each test controls exactly what
is published; the file source has its own tests under tests/sources/.
"""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest

from lightsoc.bus.base import RawBatch
from lightsoc.enrich.chain import build_enrichers
from lightsoc.parsers import get_parser
from lightsoc.pipeline import Pipeline, SourceSpec
from lightsoc.sources.base import Publish, Source
from lightsoc.store.base import Checkpoint
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.stores import BrokenStore

SYSLOG = "Oct 11 22:14:15 host sshd[123]: Accepted password for bob from 10.0.0.1 port 22 ssh2"


def wait_until(cond, timeout: float = 10.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.02)
    return value


def raw_batch(source: str, texts: list[str], offset: int, skipped: int = 0) -> RawBatch:
    offsets = list(range(offset, offset + len(texts)))
    records = pl.DataFrame(
        {
            "event.original": texts,
            "log.offset": pl.Series(offsets, dtype=pl.Int64),
            "event.id": [f"{source}-{o}" for o in offsets],
        }
    )
    end = offset + len(texts) + skipped
    cp = Checkpoint(source, "s1", "/x.log", "fp", 2, 0, end)
    return RawBatch(source, "test", records, [cp], bytes=end - offset, skipped=skipped)


class ListSource(Source):
    """Publishes prepared batches, then idles until stopped."""

    type = "test"

    def __init__(self, source_id: str, batches: list[RawBatch], *, fail_first: int = 0) -> None:
        super().__init__(source_id, None, checkpoints={})
        self.batches = batches
        self.fail_first = fail_first
        self.runs = 0
        self.published = 0

    def run(self, publish: Publish) -> None:
        self.runs += 1
        if self.runs <= self.fail_first:
            raise RuntimeError(f"boom {self.runs}")
        for b in self.batches:
            publish(b)
            self.published += 1
        self.stop_event.wait()


@pytest.fixture(scope="module")
def enrichers():
    return build_enrichers({})


@pytest.fixture
def store(tmp_path):
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    yield s
    s.close()


def run(store, sources, enrichers, fmt="syslog", **kw) -> Pipeline:
    specs = {s.id: SourceSpec(s.id, s.type, format=fmt) for s in sources}
    p = Pipeline(store, sources, specs, enrichers, **kw)
    p.start()
    return p


def test_batches_are_stored_with_offsets_and_counters(store, enrichers):
    batches = [raw_batch("a", [SYSLOG, "not syslog"], 0, skipped=1), raw_batch("a", [SYSLOG], 3)]
    p = run(store, [ListSource("a", batches)], enrichers)
    wait_until(lambda: store.count() == 3, what="3 events")
    p.stop()
    assert store.checkpoints("a")["s1"].offset == 4  # the last batch's checkpoint
    (src,) = store.stats()["sources"]
    assert (src["received"], src["events"], src["parse_failures"]) == (4, 3, 1)
    failed = store.search("tags:parse_failure", fields=["event.original", "event.id"]).to_pylist()
    assert failed == [{"event.original": "not syslog", "event.id": "a-1"}]
    assert p.metrics()["events_stored"] == 3


def test_stop_commits_everything_published(store, enrichers):
    batches = [raw_batch("a", [f"{SYSLOG} {i}"], i) for i in range(30)]
    p = run(store, [ListSource("a", batches)], enrichers)
    wait_until(lambda: store.count() > 0)
    p.stop()
    assert store.count() == 30
    assert store.checkpoints("a")["s1"].offset == 30


def test_unknown_format_is_a_clear_error(store, enrichers):
    src = ListSource("web", [])
    with pytest.raises(ValueError, match=r"source web: unknown format 'nginx_combind' \(known: "):
        Pipeline(store, [src], {"web": SourceSpec("web", "file", "nginx_combind")}, enrichers)


def test_a_crashing_source_is_reported_and_restarted(store, enrichers):
    flaky = ListSource("flaky", [raw_batch("flaky", [SYSLOG], 0)], fail_first=1)
    steady = ListSource("steady", [raw_batch("steady", [SYSLOG], 0)])
    p = run(store, [flaky, steady], enrichers)
    wait_until(lambda: store.count() == 2, what="both sources' events")
    p.stop()
    assert flaky.runs == 2
    assert flaky.metrics.errors == 1 and "boom 1" in flaky.metrics.last_error
    assert steady.metrics.errors == 0


def test_a_parser_bug_keeps_the_records_as_parse_failures(store, enrichers, monkeypatch):
    def broken(self, raw):
        raise ZeroDivisionError("parser bug")

    monkeypatch.setattr(type(get_parser("syslog")), "parse", broken)
    p = run(store, [ListSource("a", [raw_batch("a", [SYSLOG, "x"], 0)])], enrichers)
    wait_until(lambda: store.count() == 2)
    p.stop()
    rows = store.search(fields=["event.original", "tags"], order="asc").to_pylist()
    assert sorted(r["event.original"] for r in rows) == sorted([SYSLOG, "x"])
    assert all("parse_failure" in r["tags"] for r in rows)
    assert p.errors == 1
    assert store.stats()["sources"][0]["parse_failures"] == 2


def test_a_failing_on_batch_callback_does_not_stop_the_pipeline(store, enrichers):
    calls = []

    def on_batch(done):
        calls.append(done.events.height)
        raise RuntimeError("callback bug")

    batches = [raw_batch("a", [SYSLOG], i) for i in range(3)]
    p = run(store, [ListSource("a", batches)], enrichers, on_batch=on_batch)
    wait_until(lambda: store.count() == 3)
    p.stop()
    assert calls == [1, 1, 1]


def test_one_shot_source_ends_the_pipeline(store, enrichers):
    class Once(ListSource):
        one_shot = True

        def run(self, publish: Publish) -> None:
            for b in self.batches:
                publish(b)

    p = run(store, [Once("a", [raw_batch("a", [SYSLOG], 0)])], enrichers)
    assert p.wait(10)
    assert store.count() == 1


def test_backpressure_blocks_sources_instead_of_dropping(store, enrichers):
    """A slow store: the bounded bus makes the source wait; nothing is lost."""
    gate = threading.Event()
    real_append = store.append

    def slow_append(*args, **kw):
        gate.wait(10)
        return real_append(*args, **kw)

    store.append = slow_append  # type: ignore[method-assign]
    batches = [raw_batch("a", [SYSLOG], i) for i in range(40)]
    src = ListSource("a", batches)
    p = run(store, [src], enrichers)
    wait_until(lambda: src.published >= 8, what="the bus to fill")
    time.sleep(0.2)  # time for the source to run ahead, if it could
    assert src.published < 20  # bus (8) + processor and writer hand-offs: blocked
    gate.set()
    wait_until(lambda: store.count() == 40)
    p.stop()
    assert src.published == 40


def test_decoded_batches_skip_parsing_and_report_commit(store, enrichers):
    """Binary sources send ECS columns; the writer tells the batch when it is stored."""
    records = pl.DataFrame(
        {
            "source.ip": ["10.0.0.1", "10.0.0.2"],
            "destination.port": pl.Series([53, 80], dtype=pl.Int64),
            "event.dataset": ["netflow", "netflow"],
            "event.original": [None, "garbage"],
            "_parse_ok": [True, False],
        }
    )
    committed: list[bool] = []
    batch = RawBatch("flows", "netflow", records, parsed=True, on_commit=committed.append)
    src = ListSource("flows", [batch])
    p = Pipeline(store, [src], {"flows": SourceSpec("flows", "netflow")}, enrichers)
    p.start()
    wait_until(lambda: committed, what="commit callback")
    p.stop()
    assert committed == [True]
    rows = store.search(fields=["source.ip", "destination.port", "tags"], order="asc").to_pylist()
    assert sorted(r["source.ip"] for r in rows) == ["10.0.0.1", "10.0.0.2"]
    failed = [r for r in rows if "parse_failure" in (r["tags"] or [])]
    assert [r["source.ip"] for r in failed] == ["10.0.0.2"]
    assert store.stats()["sources"][0]["parse_failures"] == 1


def test_a_batch_that_cannot_be_stored_is_reported_not_committed(tmp_path, enrichers):
    store = BrokenStore(tmp_path / "events.duckdb")
    committed: list[bool] = []
    batch = raw_batch("a", [SYSLOG], 0)
    batch.on_commit = committed.append
    p = Pipeline(
        store, [ListSource("a", [batch])], {"a": SourceSpec("a", "test", "syslog")}, enrichers
    )
    p.start()
    time.sleep(0.3)
    assert committed == []  # still retrying: nothing answered yet
    p.stop(timeout=30)
    assert committed == [False]
    store.close()
