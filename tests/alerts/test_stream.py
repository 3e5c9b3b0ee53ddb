"""Stream alerting: flagged, stored events -> alerts (real state store) -> a real webhook."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from lightsoc import schema
from lightsoc.alerts.outputs.dispatcher import Dispatcher
from lightsoc.alerts.store import AlertStore
from lightsoc.alerts.stream import (
    LazyStreamAlerter,
    StreamAlerter,
    candidates_from_events,
    severity_for_score,
)
from lightsoc.config import AlertsConfig, OutputConfig
from lightsoc.pipeline import ProcessedBatch
from lightsoc.store.base import SourceCounters
from lightsoc.store.state import StateStore
from tests.alerts.receivers import HttpReceiver, Reply
from tests.helpers import wait_until

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def events(rows: list[dict]) -> pl.DataFrame:
    return schema.conform(pl.DataFrame(rows, schema_overrides=schema.POLARS_SCHEMA, strict=False))


def flagged(
    i: int, ip: str | None, rules: list[str], score: float, user: str | None = None
) -> dict:
    return {
        "@timestamp": T0 + timedelta(seconds=i),
        "event.id": f"e{i}",
        "source.ip": ip,
        "user.name": user,
        "rule.name": rules,
        "rule.id": [f"id-{r}" for r in rules],
        "event.risk_score": score,
    }


def test_groups_by_rule_and_entity_with_times_counts_and_samples():
    df = events(
        [
            flagged(0, "203.0.113.7", ["sqli", "scanner"], 75),
            flagged(5, "203.0.113.7", ["sqli"], 75),
            flagged(9, None, ["ssh brute force"], 50, user="root"),
            {"@timestamp": T0, "event.id": "clean", "source.ip": "10.0.0.1", "rule.name": []},
        ]
    )
    got = {(c.rule_name, c.entity_type, c.entity_value): c for c in candidates_from_events(df)}
    assert set(got) == {
        ("sqli", "ip", "203.0.113.7"),
        ("scanner", "ip", "203.0.113.7"),
        ("ssh brute force", "user", "root"),
    }
    sqli = got[("sqli", "ip", "203.0.113.7")]
    assert (sqli.rule_id, sqli.count, list(sqli.event_ids)) == ("id-sqli", 2, ["e0", "e5"])
    assert (sqli.first_seen, sqli.last_seen) == (T0, T0 + timedelta(seconds=5))
    assert sqli.severity == "high"
    assert got[("ssh brute force", "user", "root")].severity == "medium"
    # a rule's own level wins over the event's combined score
    levels = {"id-scanner": "low"}
    by_rule = {c.rule_name: c for c in candidates_from_events(df, levels)}
    assert by_rule["scanner"].severity == "low"


def test_levels_by_score():
    assert [severity_for_score(s) for s in (None, 10, 25, 50, 75, 90)] == [
        "informational",
        "informational",
        "low",
        "medium",
        "high",
        "critical",
    ]


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    r = HttpReceiver(Reply(200, {"ok": True}))
    yield r
    r.close()


def test_alerter_raises_once_per_entity_and_notifies_only_new(tmp_path, hook):
    state = StateStore.for_data_dir(tmp_path)
    dispatcher = Dispatcher.from_config(
        AlertsConfig(outputs={"hook": OutputConfig(type="webhook", url=f"{hook.url}/alerts")})
    )
    alerter = StreamAlerter(AlertStore(state), dispatcher)
    batch = events([flagged(i, "203.0.113.7", ["sqli"], 75) for i in range(3)])
    counters = SourceCounters("web", "file")
    try:
        alerter(ProcessedBatch(batch, counters))
        [first] = hook.wait(1)
        [sent] = first.json()["alerts"]
        assert (sent["rule.name"], sent["entity.value"], sent["count"]) == (
            "sqli",
            "203.0.113.7",
            3,
        )
        # the next batch about the same entity updates the alert, tells nobody again
        alerter(ProcessedBatch(events([flagged(10, "203.0.113.7", ["sqli"], 75)]), counters))
        assert dispatcher.flush()
        assert len(hook.wait(1)) == 1
        [alert] = AlertStore(state).find(limit=10)
        assert alert.count == 4
        assert alerter.stats()["notified"] == 1
    finally:
        dispatcher.close()
        state.close()


def test_a_broken_alert_store_is_counted_not_raised(tmp_path):
    state = StateStore.for_data_dir(tmp_path)
    store = AlertStore(state)
    state.close()
    state.engine.dispose()
    (tmp_path / "state.sqlite").unlink()
    (tmp_path / "state.sqlite").mkdir()  # the database is now a directory: every write fails
    alerter = StreamAlerter(store)
    batch = events([flagged(0, "203.0.113.7", ["sqli"], 75)])
    alerter(ProcessedBatch(batch, SourceCounters("web", "file")))
    assert alerter.stats()["errors"] == 1


def test_lazy_alerter_builds_only_for_flagged_batches_and_raises_off_the_caller(tmp_path):
    built: list[StreamAlerter] = []
    state = StateStore.for_data_dir(tmp_path)

    def make() -> StreamAlerter:
        built.append(StreamAlerter(AlertStore(state)))
        return built[-1]

    lazy = LazyStreamAlerter(make)
    counters = SourceCounters("web", "file")
    lazy(ProcessedBatch(events([{"@timestamp": T0, "event.id": "a", "rule.name": []}]), counters))
    assert built == [] and lazy.stats() == {"pending_rows": 0, "dropped_rows": 0}
    for i in range(3):  # queued for the worker; grouped into one alert
        lazy(ProcessedBatch(events([flagged(i, "198.51.100.2", ["sqli"], 50)]), counters))
    lazy.close()  # raises what is queued, then stops
    assert len(built) == 1
    [alert] = AlertStore(state).find(limit=10)
    assert (alert.entity_value, alert.count) == ("198.51.100.2", 3)
    lazy(ProcessedBatch(events([flagged(9, "198.51.100.3", ["sqli"], 50)]), counters))
    assert len(AlertStore(state).find(limit=10)) == 1  # closed: nothing more
    state.close()


def test_lazy_alerter_past_its_queue_limit_counts_instead_of_blocking(tmp_path):
    state = StateStore.for_data_dir(tmp_path)
    gate = threading.Event()

    class Slow(StreamAlerter):
        def raise_for(self, events: pl.DataFrame, pending=()) -> list:  # noqa: ANN001
            gate.wait(30)
            return super().raise_for(events, pending)

    lazy = LazyStreamAlerter(lambda: Slow(AlertStore(state)), max_pending_rows=2)
    counters = SourceCounters("web", "file")
    batch = events([flagged(i, "198.51.100.9", ["sqli"], 50) for i in range(2)])
    lazy(ProcessedBatch(batch, counters))  # taken by the worker, which waits at the gate
    wait_until(lambda: lazy.stats()["pending_rows"] == 0, what="the worker to take the rows")
    lazy(ProcessedBatch(batch, counters))  # queued: 2 rows, the limit
    lazy(ProcessedBatch(batch, counters))  # over the limit: counted, not queued
    assert lazy.stats()["dropped_rows"] == 2 and lazy.stats()["pending_rows"] == 2
    gate.set()
    lazy.close()
    [alert] = AlertStore(state).find(limit=10)
    assert alert.count == 4
    state.close()


def test_lazy_alerter_retries_what_a_down_alert_store_refused(tmp_path):
    """A state store outage delays stream alerts; it loses none and counts none twice."""
    state = StateStore.for_data_dir(tmp_path)
    store = AlertStore(state)
    state.engine.dispose()
    db = tmp_path / "state.sqlite"
    db.rename(tmp_path / "aside.sqlite")
    db.mkdir()  # the database is now a directory: every write fails
    lazy = LazyStreamAlerter(lambda: StreamAlerter(store))
    counters = SourceCounters("web", "file")
    batch = events([flagged(i, "198.51.100.4", ["sqli"], 50) for i in range(2)])
    lazy(ProcessedBatch(batch, counters))
    wait_until(lambda: lazy.stats().get("errors", 0) >= 2, what="two failed attempts")
    db.rmdir()
    (tmp_path / "aside.sqlite").rename(db)
    lazy(ProcessedBatch(events([flagged(5, "198.51.100.4", ["sqli"], 50)]), counters))
    lazy.close()
    [alert] = store.find(limit=10)
    assert (alert.entity_value, alert.count) == ("198.51.100.4", 3)
    assert "dropped_alerts" not in lazy.stats()
    state.close()
