"""The `http` source with a real pipeline and a real DuckDB store (no HTTP here:
tests/web/ covers the endpoints against a real server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lightsoc import registry
from lightsoc.bus.memory import MemoryBus
from lightsoc.config import HttpSourceConfig
from lightsoc.enrich.chain import build_enrichers
from lightsoc.output import event_rows
from lightsoc.pipeline import Pipeline
from lightsoc.sources.http import RECORD_ID, Busy, HttpSource, Unavailable
from lightsoc.store.events_duckdb import DuckDBEventStore

NGINX = (
    '203.0.113.9 - - [17/May/2015:10:05:03 +0000] "GET /index.php?id=1%27%20OR%201=1 HTTP/1.1" '
    '200 512 "-" "sqlmap/1.7"'
)


def records(lines: list[str], **cols: list[Any]) -> pl.DataFrame:
    return pl.DataFrame({"event.original": pl.Series(lines, dtype=pl.Utf8), **cols})


class Running:
    """A pipeline whose only source is an http source, on a fresh store."""

    def __init__(self, root: Path, config: Any = None) -> None:
        self.store = DuckDBEventStore(root / "events.duckdb")
        self.source = HttpSource("http", config)
        self.pipeline = Pipeline(
            self.store,
            [self.source],
            {"http": self.source.spec},
            build_enrichers({}),
            bus=MemoryBus(1),
        )
        self.source.attach(self.pipeline.bus)
        self.pipeline.start()

    def rows(self, q: str = "") -> list[dict[str, Any]]:
        return event_rows(self.store.search(q, None, None, 1000, "asc"))

    def close(self) -> None:
        self.pipeline.stop()
        self.store.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    yield r
    r.close()


def test_registered_under_sources() -> None:
    assert registry.get("sources", "http") is HttpSource


def test_committed_before_the_receipt_completes(running: Running) -> None:
    """The only source is the http one: the pipeline must stay up for it."""
    for n in range(3):
        receipt = running.source.submit(records([f'{{"message": "m{n}"}}']), "json")
        assert receipt.wait(30) is True
        # no polling: the commit happened before the receipt completed
        assert running.store.count() == n + 1
    assert [r["message"] for r in running.rows()] == ["m0", "m1", "m2"]
    assert running.source.metrics.received == 3


def test_each_batch_has_its_own_format_and_dataset(running: Running) -> None:
    src = running.source
    a = src.submit(records([NGINX, "not an access log"]), "nginx_combined")
    b = src.submit(records(['{"source": {"ip": "198.51.100.7"}, "x": 1}', "[1]"]), "json", "app")
    c = src.submit(records([NGINX]), None)  # the source's default: auto
    assert (a.wait(30), b.wait(30), c.wait(30)) == (True, True, True)
    assert (a.events, a.parse_failures, b.events, b.parse_failures) == (2, 1, 2, 1)
    assert c.parse_failures == 0
    web = running.rows('event.dataset:"nginx.access" AND source.ip:203.0.113.9')
    assert len(web) == 2
    assert web[0]["user_agent.original"] == "sqlmap/1.7"
    assert web[0]["url.original"] == "/index.php?id=1%27%20OR%201=1"
    app = running.rows("event.dataset:app")
    assert [r.get("source.ip") for r in app] == ["198.51.100.7", None]
    assert "parse_failure" in app[1]["tags"] and app[1]["event.original"] == "[1]"
    failed = running.rows("tags:parse_failure")
    assert sorted(r["event.original"] for r in failed) == ["[1]", "not an access log"]
    assert all(r["lightsoc.source"] == "http" for r in running.rows())


def test_event_ids_given_then_own_then_generated(running: Running) -> None:
    lines = ['{"message": "a"}', '{"message": "b", "event": {"id": "doc-id"}}', '{"message": "c"}']
    given = pl.Series(RECORD_ID, ["es-id", None, None], dtype=pl.Utf8)
    receipt = running.source.submit(records(lines, **{RECORD_ID: given}), "json")
    assert receipt.wait(30) is True
    assert receipt.ids[:2] == ["es-id", "doc-id"]
    again = running.source.submit(records(['{"message": "d"}']), "json")
    assert again.wait(30) is True
    generated = [receipt.ids[2], again.ids[0]]
    assert len(set(generated)) == 2
    by_message = {r["message"]: r["event.id"] for r in running.rows()}
    assert by_message == {"a": "es-id", "b": "doc-id", "c": generated[0], "d": generated[1]}


def test_receipt_wakes_an_event_loop(running: Running) -> None:
    async def ingest() -> bool | None:
        receipt = running.source.submit(records(['{"message": "async"}']), "json")
        return await receipt.wait_async(30)

    assert asyncio.run(ingest()) is True
    assert running.rows("message:async")


def test_source_config_dataset_and_tags(tmp_path: Path) -> None:
    config = HttpSourceConfig(type="http", format="json", dataset="shipped", tags=["edge"])
    r = Running(tmp_path, config)
    try:
        assert r.source.submit(records(['{"message": "x"}'])).wait(30) is True
        [row] = r.rows()
        assert row["event.dataset"] == "shipped" and row["tags"] == ["edge"]
    finally:
        r.close()


def test_full_bus_is_busy_not_unbounded(tmp_path: Path) -> None:
    """Nothing consumes: the one-slot bus fills and the next submit gives up."""
    source = HttpSource("http")
    source.attach(MemoryBus(1))
    source.publish_timeout = 0.05
    first = source.submit(records(['{"message": "queued"}']), "json")
    with pytest.raises(Busy):
        source.submit(records(['{"message": "refused"}']), "json")
    assert first.committed is None
    assert source.metrics.received == 1


def test_stopped_or_detached_source_is_unavailable(running: Running) -> None:
    with pytest.raises(Unavailable):
        HttpSource("other").submit(records(['{"message": "x"}']), "json")
    running.source.stop()
    with pytest.raises(Unavailable):
        running.source.submit(records(['{"message": "x"}']), "json")


def test_writer_giving_up_completes_the_receipt_with_false(tmp_path: Path) -> None:
    """On shutdown with storage failing the client hears False, not silence."""
    r = Running(tmp_path)
    try:
        r.store.close()  # every append now fails
        receipt = r.source.submit(records(['{"message": "lost"}']), "json")
        r.pipeline.stop()
        assert receipt.wait(60) is False
    finally:
        r.pipeline.stop()


def test_one_shot_run_returns() -> None:
    source = HttpSource("http", one_shot=True)
    source.run(lambda batch: None)  # nothing to read: returns at once
