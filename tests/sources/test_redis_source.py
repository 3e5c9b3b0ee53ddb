"""The "redis" source against a real redis-server (Debian) on 127.0.0.1.

Each test starts its own redis-server on a free port (no persistence) and
runs the source in a real Pipeline over a DuckDB store. Acks are checked with
XPENDING: entries stay pending until their events are stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from lightsoc import registry
from lightsoc.config import RedisSourceConfig
from lightsoc.enrich.chain import build_enrichers
from lightsoc.pipeline import Pipeline, SourceSpec
from lightsoc.sources.redis_stream import RedisStreamSource
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.helpers import LightsocServer, cli_json, write_config
from tests.redis_server import RedisServer
from tests.sources.tailing import wait_until
from tests.stores import BrokenStore, GatedStore

STREAM = "logs"
GROUP = "lightsoc"
NGINX = (
    '203.0.113.9 - - [10/Oct/2023:13:55:36 +0000] "GET /admin/{i} HTTP/1.1" 404 153 "-" "curl/8.0"'
)
SSHD = "<38>Oct 11 22:14:15 host sshd[1]: Failed password for root from 203.0.113.7 port {i} ssh2"
FIELDS = ["event.id", "event.original", "source.ip", "url.path", "user.name", "message", "tags"]


class Run:
    """A RedisStreamSource in a Pipeline over a DuckDB store."""

    def __init__(
        self, server: RedisServer, store: DuckDBEventStore, enrichers: list, **options: Any
    ) -> None:
        options.setdefault("consumer", "c1")
        self.config = RedisSourceConfig(
            type="redis", url=server.url, stream=STREAM, format="auto", **options
        )
        self.store = store
        self.source = RedisStreamSource(
            "queue", self.config, checkpoints={}, one_shot=False, batch_max_rows=1000
        )
        spec = SourceSpec("queue", "redis", format="auto")
        self.pipeline = Pipeline(store, [self.source], {"queue": spec}, enrichers)
        self.pipeline.start()
        self.stopped = False

    def stop(self) -> None:
        """Stop the pipeline (once: the `runs` fixture stops what a test left running)."""
        if self.stopped:
            return
        self.stopped = True
        self.pipeline.stop(timeout=30)
        assert self.pipeline.wait(0), "pipeline did not stop"

    def wait_count(self, n: int) -> list[dict[str, Any]]:
        wait_until(lambda: self.store.count() >= n, what=f"{n} events (have {self.store.count()})")
        rows = self.store.search(fields=FIELDS, limit=1_000_000).to_pylist()
        assert len(rows) == n
        return rows

    def wait_received(self, n: int) -> None:
        wait_until(lambda: self.source.metrics.received >= n, what=f"{n} entries read")


@pytest.fixture(scope="module")
def enrichers() -> list:
    return build_enrichers({})


@pytest.fixture
def server(tmp_path: Path):
    s = RedisServer(tmp_path / "redis").start()
    yield s
    s.kill()


@pytest.fixture
def store(tmp_path: Path):
    s = DuckDBEventStore(tmp_path / "events.duckdb")
    yield s
    s.close()


@pytest.fixture
def runs(server, store, enrichers) -> Iterator[Callable[..., Run]]:
    """Start Runs on `server` over `store` (or the store given); all are stopped at the end."""
    made: list[Run] = []

    def start(over: DuckDBEventStore | None = None, **options: Any) -> Run:
        run = Run(server, store if over is None else over, enrichers, **options)
        made.append(run)
        return run

    yield start
    for run in made:
        run.stop()


@pytest.fixture
def gated(runs, tmp_path: Path) -> Iterator[Run]:
    """A Run over a store whose writes wait for `run.store.gate` (opened at the end)."""
    store = GatedStore(tmp_path / "gated.duckdb")
    run = runs(store)
    yield run
    store.gate.set()  # before stopping: the writer must not wait for it
    try:
        run.stop()
    finally:
        store.close()


def pending(r: redis.Redis) -> int:
    return int(r.xpending(STREAM, GROUP)["pending"])


def add_lines(r: redis.Redis, start: int, n: int) -> list[str]:
    lines = [(NGINX if i % 2 else SSHD).format(i=i) for i in range(start, start + n)]
    for line in lines:
        r.xadd(STREAM, {"message": line, "host": "web1"})
    return lines


def test_registered() -> None:
    assert registry.get("sources", "redis") is RedisStreamSource


def test_raw_lines_and_json_are_stored_and_acked(server, store, runs) -> None:
    r = server.client()
    lines = add_lines(r, 0, 10)
    r.xadd(STREAM, {"message": json.dumps({"message": "hi", "source": {"ip": "10.0.0.1"}})})
    r.xadd(STREAM, {"level": "warn", "text": "no message field"})  # stored as JSON
    r.xadd(STREAM, {"message": b"caf\xe9"})  # invalid UTF-8: escaped and tagged
    r.xadd(STREAM, {"message": ""})  # empty: counted, not an event
    run = runs()
    rows = run.wait_count(13)
    by_text = {row["event.original"]: row for row in rows}
    assert set(lines) <= set(by_text)
    assert by_text[NGINX.format(i=1)]["url.path"] == "/admin/1"
    assert by_text[NGINX.format(i=1)]["source.ip"] == "203.0.113.9"
    assert by_text[SSHD.format(i=0)]["user.name"] == "root"
    json_row = next(row for row in rows if row["message"] == "hi")
    assert json_row["source.ip"] == "10.0.0.1"
    whole = next(row for row in rows if "no message field" in row["event.original"])
    assert json.loads(whole["event.original"]) == {"level": "warn", "text": "no message field"}
    assert "invalid_utf8" in by_text["caf\\xe9"]["tags"]
    ids = {row["event.id"] for row in rows}
    assert len(ids) == 13 and all(i.startswith(run.source.prefix) for i in ids)
    wait_until(lambda: pending(r) == 0, what="every entry acked")
    m = run.pipeline.metrics()["sources"]["queue"]
    assert m["received"] == 14 and m["skipped_empty"] == 1
    assert m["extra"]["acked"] == 14 and m["extra"]["invalid_utf8"] == 1
    assert m["senders"][STREAM]["received"] == 14
    [src] = store.stats()["sources"]
    assert (src["received"], src["events"]) == (14, 13)


def test_the_record_field_is_configurable(server, runs) -> None:
    r = server.client()
    r.xadd(STREAM, {"line": SSHD.format(i=1), "message": "not this one"})
    [row] = runs(field="line").wait_count(1)
    assert row["event.original"] == SSHD.format(i=1)
    assert row["user.name"] == "root"


def test_entries_are_acked_only_after_storage(server, gated: Run) -> None:
    r, run = server.client(), gated
    add_lines(r, 0, 20)
    run.wait_received(20)
    assert pending(r) == 20  # delivered to the source, not stored yet: not acked
    assert run.store.count() == 0
    run.source._info()  # the periodic XINFO GROUPS, now
    assert run.source.senders[STREAM]["pending"] == 20
    assert run.source.metrics.extra["pending"] == 20
    run.store.gate.set()
    run.wait_count(20)
    wait_until(lambda: pending(r) == 0, what="acks after storage")


def test_a_failed_store_leaves_entries_pending_and_a_restart_stores_them(
    server, runs, tmp_path
) -> None:
    r = server.client()
    broken = BrokenStore(tmp_path / "broken.duckdb")
    lines = add_lines(r, 0, 5)
    run = runs(broken)
    try:
        run.wait_received(5)
    finally:
        run.stop()  # the writer gives up: the batch is answered "not committed"
        broken.close()
    assert pending(r) == 5
    rows = runs().wait_count(5)  # same consumer name: re-reads its pending entries
    assert sorted(row["event.original"] for row in rows) == sorted(lines)
    wait_until(lambda: pending(r) == 0, what="acks after redelivery")


def test_restart_stores_nothing_twice(server, runs) -> None:
    r = server.client()
    add_lines(r, 0, 6)
    run = runs()
    run.wait_count(6)
    run.stop()
    assert pending(r) == 0  # a clean stop acks everything stored
    add_lines(r, 6, 4)
    run = runs()
    rows = run.wait_count(10)
    wait_until(lambda: pending(r) == 0, what="acks")
    # nothing else arrives: the acked entries are not delivered again
    add_lines(r, 10, 1)
    rows = run.wait_count(11)
    run.stop()
    assert len({row["event.id"] for row in rows}) == 11
    assert len({row["event.original"] for row in rows}) == 11


def test_entries_of_a_dead_consumer_are_claimed(server, runs) -> None:
    r = server.client()
    r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    lines = add_lines(r, 0, 4)
    got = r.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=10)  # read, never acked
    assert len(got[0][1]) == 4
    run = runs(claim_idle_seconds=0.2)
    rows = run.wait_count(4)
    assert sorted(row["event.original"] for row in rows) == sorted(lines)
    wait_until(lambda: pending(r) == 0, what="claimed entries acked")
    assert run.source.metrics.extra["claimed"] == 4


def test_redis_going_away_is_survived(server, runs) -> None:
    r = server.client()
    add_lines(r, 0, 3)
    run = runs()
    run.wait_count(3)
    wait_until(lambda: pending(r) == 0, what="acks")
    server.kill()
    wait_until(lambda: run.source.metrics.extra["reconnects"] >= 1, what="a reconnect")
    assert run.source.metrics.errors >= 1
    assert "reconnecting" in (run.source.metrics.last_error or "")
    server.start()  # same port, empty: the group is created again
    r = server.client()
    add_lines(r, 3, 3)
    run.wait_count(6)
    wait_until(lambda: pending(r) == 0, what="acks after the reconnect")
    assert run.source.metrics.last_error is None


def test_acks_that_fail_while_redis_is_down_are_retried(server, gated: Run) -> None:
    r, run = server.client(), gated
    add_lines(r, 0, 5)
    run.wait_received(5)
    server.kill()  # the batch is in flight: stored while Redis is away
    run.store.gate.set()
    run.wait_count(5)
    wait_until(lambda: run.source.metrics.extra["reconnects"] >= 1, what="a reconnect")
    assert run.source.metrics.extra["acked"] == 0
    server.start()
    wait_until(lambda: run.source.metrics.extra["acked"] == 5, what="the acks sent again")
    r = server.client()
    add_lines(r, 5, 2)
    run.wait_count(7)


def test_lag_and_pending_are_reported(server, gated: Run) -> None:
    r, run = server.client(), gated
    add_lines(r, 0, 3)
    run.wait_received(3)
    run.store.gate.set()
    run.wait_count(3)
    wait_until(lambda: pending(r) == 0, what="acks")
    info = r.xinfo_groups(STREAM)[0]
    assert info["lag"] == 0
    run.source._info()  # the periodic XINFO GROUPS, now
    stream = run.pipeline.metrics()["sources"]["queue"]["senders"][STREAM]
    assert stream["lag"] == 0 and stream["pending"] == 0 and stream["received"] == 3


def test_lightsoc_run_with_a_redis_source(server, tmp_path) -> None:
    r = server.client()
    add_lines(r, 0, 4)
    data = tmp_path / "data"
    source = {"type": "redis", "url": server.url, "stream": STREAM, "consumer": "run1"}
    write_config(tmp_path / "lightsoc.yml", {"queue": source}, data_dir=data)
    run = LightsocServer(["--config", tmp_path / "lightsoc.yml"], cwd=tmp_path, data_dir=data)
    try:
        run.start()
        wait_until(lambda: run.stats()["events_total"] == 4, 30, "4 events")
        wait_until(lambda: pending(r) == 0, what="acks")
        [live] = [s for s in run.stats()["sources"] if s["id"] == "queue"]
        assert live["senders"][STREAM]["received"] == 4
        assert run.stop() == 0
    finally:
        run.ensure_stopped()
    stats = cli_json("stats", "--format", "json", "--data-dir", data, cwd=tmp_path)
    [src] = [s for s in stats["sources"] if s["id"] == "queue"]
    assert src["type"] == "redis" and src["events"] == 4
