"""Several processor threads: batches are parsed side by side and stored in order."""

from __future__ import annotations

import threading
import time

import pytest

from lightsoc.parsers import get_parser
from lightsoc.pipeline import Processor
from tests.test_pipeline import SYSLOG, ListSource, raw_batch, run, wait_until


@pytest.fixture
def store(tmp_path):
    from lightsoc.store.events_duckdb import DuckDBEventStore

    s = DuckDBEventStore(tmp_path / "events.duckdb")
    yield s
    s.close()


@pytest.fixture(scope="module")
def enrichers():
    from lightsoc.enrich.chain import build_enrichers

    return build_enrichers({})


def _slow_first_batches(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """Processing gets faster batch by batch, so later batches finish first;
    returns the offsets of the batches as they start processing, and the most
    batches seen in processing at once (one number, in a list)."""
    started: list[int] = []
    most = [0]
    active = [0]
    lock = threading.Lock()
    real = Processor.process

    def process(self, raw):  # noqa: ANN001, ANN202
        first = int(raw.records["log.offset"][0])
        with lock:
            started.append(first)
            n = len(started)
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(max(0.0, 0.12 - 0.02 * n))
            return real(self, raw)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(Processor, "process", process)
    return started, most


def test_batches_finishing_out_of_order_are_stored_in_order(store, enrichers, monkeypatch):
    started, most = _slow_first_batches(monkeypatch)
    batches = [raw_batch("a", [f"{SYSLOG} {i}", f"{SYSLOG} {i}b"], 2 * i) for i in range(8)]
    order: list[int] = []
    p = run(
        store,
        [ListSource("a", batches)],
        enrichers,
        processor_threads=3,
        on_batch=lambda done: order.append(int(done.events["log.offset"].min())),
    )
    wait_until(lambda: len(order) == 8, what="8 batches stored")
    p.stop()
    assert order == [2 * i for i in range(8)]  # the consume order, whatever finished first
    assert sorted(started) == order
    assert most[0] >= 2  # the batches really were processed side by side
    assert store.count() == 16
    assert store.checkpoints("a")["s1"].offset == 16
    ids = store.search(fields=["event.id"], limit=100).column("event.id").to_pylist()
    assert len(set(ids)) == 16
    stages = p.processor.stages
    assert stages["parse"].rows == 16 and stages["parse"].batches == 8
    assert stages["store"].rows == 16


def test_a_parser_bug_in_one_of_parallel_batches_keeps_its_records(store, enrichers, monkeypatch):
    parser_type = type(get_parser("syslog"))
    real_parse = parser_type.parse

    def parse(self, raw, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if raw.str.contains("BOOM").any():
            raise ZeroDivisionError("parser bug")
        return real_parse(self, raw, *args, **kwargs)

    monkeypatch.setattr(parser_type, "parse", parse)
    batches = [raw_batch("a", [f"{SYSLOG} {i}"], i) for i in range(6)]
    batches[2] = raw_batch("a", ["BOOM"], 2)
    p = run(store, [ListSource("a", batches)], enrichers, processor_threads=2)
    wait_until(lambda: store.count() == 6, what="6 events")
    p.stop()
    assert p.errors == 1
    failed = store.search("tags:parse_failure", fields=["event.original"]).to_pylist()
    assert failed == [{"event.original": "BOOM"}]
    assert store.checkpoints("a")["s1"].offset == 6
