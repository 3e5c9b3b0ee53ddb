"""The alert model on a real SQLite state store: dedup, suppression, windows, triage, scores.

Times are explicit event times (no sleeping): the store never reads the wall
clock for deduplication.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from lightsoc.alerts import (
    ALERT_KEYS,
    AlertCandidate,
    AlertNotFoundError,
    AlertStore,
    TransitionError,
)
from lightsoc.alerts.model import merge_sample
from lightsoc.alerts.scoring import decay, entity_score
from lightsoc.alerts.store import _filters
from lightsoc.store import state_alerts
from lightsoc.store.state import StateStore

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@pytest.fixture
def state(state_url: str) -> Iterator[StateStore]:
    s = StateStore(state_url)
    yield s
    s.close()


@pytest.fixture
def store(state: StateStore) -> AlertStore:
    return AlertStore(state, clock=lambda: T0 + 30 * 24 * HOUR)


def cand(
    at: datetime = T0,
    *,
    rule: str = "ssh_brute",
    entity: str = "203.0.113.7",
    etype: str = "ip",
    severity: str = "medium",
    count: int = 1,
    events: list[str] | None = None,
    **kw: object,
) -> AlertCandidate:
    return AlertCandidate(
        rule_id=rule,
        rule_name=rule.replace("_", " ").title(),
        severity=severity,
        entity_type=etype,
        entity_value=entity,
        first_seen=at,
        last_seen=kw.pop("last", at),  # type: ignore[arg-type]
        count=count,
        event_ids=events or [],
        **kw,  # type: ignore[arg-type]
    )


# -- deduplication and suppression --------------------------------------------
def test_a_new_alert_has_every_field(store: AlertStore) -> None:
    [changed] = store.raise_alerts(
        [
            cand(
                count=3,
                events=["e1", "e2"],
                score=62,
                description="3 failed logins",
                tags=["auth", "auth"],
            )
        ]
    )
    assert changed.change == "new" and changed.notify and not changed.escalated
    d = changed.alert.as_dict()
    assert tuple(d) == ALERT_KEYS
    assert d == {
        "id": changed.alert.id,
        "rule.id": "ssh_brute",
        "rule.name": "Ssh Brute",
        "severity": "medium",
        "score": 62.0,
        "entity.type": "ip",
        "entity.value": "203.0.113.7",
        "first_seen": "2026-11-01T10:00:00Z",
        "last_seen": "2026-11-01T10:00:00Z",
        "count": 3,
        "status": "open",
        "assignee": None,
        "case_id": None,
        "event_ids": ["e1", "e2"],
        "description": "3 failed logins",
        "tags": ["auth"],
    }
    assert store.get(changed.alert.id).as_dict() == d


def test_hits_within_the_window_update_the_open_alert(store: AlertStore) -> None:
    [first] = store.raise_alerts([cand(T0, events=["e1"])])
    [again] = store.raise_alerts([cand(T0 + 20 * MIN, count=4, events=["e2", "e1"])])
    assert again.change == "updated" and not again.notify
    a = again.alert
    assert a.id == first.alert.id
    assert (a.count, a.first_seen, a.last_seen) == (5, T0, T0 + 20 * MIN)
    assert a.event_ids == ["e1", "e2"]
    assert store.count() == 1


def test_the_window_is_anchored_at_the_first_hit(store: AlertStore) -> None:
    """Hits every 20 min: one alert per hour of attack, not one alert forever."""
    ids = [store.raise_alerts([cand(T0 + i * 20 * MIN)])[0] for i in range(7)]
    assert [c.change for c in ids] == [
        "new",
        "updated",
        "updated",
        "new",
        "updated",
        "updated",
        "new",
    ]
    alerts = store.find(since=None)
    assert [(a.first_seen, a.last_seen, a.count) for a in reversed(alerts)] == [
        (T0, T0 + 40 * MIN, 3),
        (T0 + 60 * MIN, T0 + 100 * MIN, 3),
        (T0 + 120 * MIN, T0 + 120 * MIN, 1),
    ]


def test_just_inside_and_just_after_the_window(store: AlertStore) -> None:
    store.raise_alerts([cand(T0)])
    inside = store.raise_alerts([cand(T0 + HOUR - timedelta(microseconds=1))])[0]
    after = store.raise_alerts([cand(T0 + HOUR)])[0]
    assert inside.change == "updated" and after.change == "new"
    assert after.alert.suppress_until == T0 + 2 * HOUR


def test_other_rule_or_entity_is_another_alert(store: AlertStore) -> None:
    changes = store.raise_alerts(
        [cand(), cand(rule="port_scan"), cand(entity="203.0.113.8"), cand(etype="host")]
    )
    assert [c.change for c in changes] == ["new"] * 4
    assert len({c.alert.id for c in changes}) == 4


def test_suppression_is_configurable_per_rule(state: StateStore) -> None:
    store = AlertStore(state, suppression=10 * MIN, rule_suppression={"port_scan": 24 * HOUR})
    store.raise_alerts([cand(T0), cand(T0, rule="port_scan")])
    later = store.raise_alerts([cand(T0 + 30 * MIN), cand(T0 + 23 * HOUR, rule="port_scan")])
    assert [c.change for c in later] == ["new", "updated"]
    # a candidate's own suppression (the rule's setting, from the rule engine) wins
    store.raise_alerts([cand(T0, rule="dga", suppression=5 * MIN)])
    assert store.raise_alerts([cand(T0 + 6 * MIN, rule="dga")])[0].change == "new"


@pytest.mark.parametrize("status", ["closed", "false_positive"])
def test_closed_alerts_are_not_reopened_within_suppression(store: AlertStore, status: str) -> None:
    [c] = store.raise_alerts([cand(T0)])
    store.set_status(c.alert.id, status, "alice")
    [again] = store.raise_alerts([cand(T0 + 10 * MIN, count=2, severity="critical")])
    assert again.alert.id == c.alert.id
    assert again.change == "suppressed" and not again.notify and not again.escalated
    assert again.alert.status == status and again.alert.count == 3  # recorded, still closed
    [after] = store.raise_alerts([cand(T0 + 2 * HOUR)])
    assert after.change == "new" and after.alert.status == "open"


def test_acknowledged_alerts_keep_absorbing(store: AlertStore) -> None:
    [c] = store.raise_alerts([cand(T0)])
    store.set_status(c.alert.id, "acknowledged", "alice")
    [again] = store.raise_alerts([cand(T0 + MIN)])
    assert again.change == "updated" and again.alert.status == "acknowledged"


def test_severity_escalation_notifies_and_never_lowers(store: AlertStore) -> None:
    store.raise_alerts([cand(T0, severity="medium", score=50)])
    [up] = store.raise_alerts([cand(T0 + MIN, severity="critical", score=90)])
    assert up.change == "updated" and up.escalated and up.notify
    assert (up.previous_severity, up.alert.severity, up.alert.score) == ("medium", "critical", 90)
    [down] = store.raise_alerts([cand(T0 + 2 * MIN, severity="low", score=10)])
    assert not down.escalated and down.alert.severity == "critical" and down.alert.score == 90


def test_one_batch_reports_each_alert_once(store: AlertStore) -> None:
    changes = store.raise_alerts([cand(T0), cand(T0 + MIN, severity="high"), cand(T0 + 2 * MIN)])
    assert len(changes) == 1
    assert changes[0].change == "new" and changes[0].alert.count == 3
    assert changes[0].alert.severity == "high"


def test_late_hits_widen_the_alert(store: AlertStore) -> None:
    store.raise_alerts([cand(T0 + 10 * MIN)])
    [late] = store.raise_alerts([cand(T0 + 5 * MIN, last=T0 + 12 * MIN)])
    assert late.change == "updated"
    assert (late.alert.first_seen, late.alert.last_seen) == (T0 + 5 * MIN, T0 + 12 * MIN)


def test_event_id_sample_is_bounded(store: AlertStore) -> None:
    for i in range(10):
        store.raise_alerts([cand(T0 + i * MIN, events=[f"e{i}-{j}" for j in range(5)])])
    [a] = store.find(since=None)
    assert a.count == 10 and len(a.event_ids) == 20
    assert a.event_ids[:10] == [f"e{i}-{j}" for i in range(2) for j in range(5)]  # the start
    assert a.event_ids[10:] == [f"e{i}-{j}" for i in range(8, 10) for j in range(5)]  # latest
    assert merge_sample(["a", "b"], ["b", "c"]) == ["a", "b", "c"]


# -- idempotent correlation windows --------------------------------------------
def test_reraising_a_window_never_double_counts(store: AlertStore) -> None:
    win = ("source.ip=203.0.113.7", "2026-11-01T10:00Z", "2026-11-01T10:05Z")
    [first] = store.raise_alerts([cand(T0, count=12, window=win)])
    assert first.change == "new"
    assert store.raise_alerts([cand(T0, count=12, window=win)]) == []  # overlapping run
    assert store.raise_alerts([cand(T0, count=10, window=win)]) == []  # fewer: still nothing
    [late] = store.raise_alerts([cand(T0, count=15, window=win)])  # late events: only +3
    assert late.change == "updated" and late.alert.count == 15
    assert store.raise_alerts([cand(T0, count=15, window=win)]) == []  # the +3 was recorded
    # the next window of the same group joins the same alert (within suppression)
    nxt = ("source.ip=203.0.113.7", "2026-11-01T10:05Z", "2026-11-01T10:10Z")
    [second] = store.raise_alerts([cand(T0 + 5 * MIN, count=4, window=nxt)])
    assert second.alert.id == first.alert.id and second.alert.count == 19
    assert store.raise_alerts([cand(T0 + 5 * MIN, count=4, window=nxt)]) == []
    assert store.get(first.alert.id).count == 19


def test_a_hit_spanning_two_windows_joins_the_latest(store: AlertStore) -> None:
    [first] = store.raise_alerts([cand(T0)])
    [second] = store.raise_alerts([cand(T0 + 61 * MIN)])
    assert second.change == "new"
    [spanning] = store.raise_alerts([cand(T0 + 50 * MIN, last=T0 + 70 * MIN)])
    assert spanning.alert.id == second.alert.id and spanning.alert.count == 2
    assert store.get(first.alert.id).count == 1


def test_window_identity_includes_the_rule_and_survives_reopening(state_url: str) -> None:
    win = "user=root|2026-11-01T10:00Z/10:05Z"
    s1 = StateStore(state_url)
    AlertStore(s1).raise_alerts([cand(count=5, window=win)])
    s1.close()
    s2 = StateStore(state_url)  # a restarted scheduler reruns the window
    store = AlertStore(s2)
    assert store.raise_alerts([cand(count=5, window=win)]) == []
    [other] = store.raise_alerts([cand(count=5, window=win, rule="spray")])
    assert other.change == "new"
    assert sum(a.count for a in store.find(since=None)) == 10
    s2.close()


def test_concurrent_writers_open_one_alert(state_url: str) -> None:
    """Processors raising the same (rule, entity) at once: one alert, every hit counted."""
    StateStore(state_url).close()
    threads_n, per_thread = 4, 15
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker() -> None:
        state = StateStore(state_url)  # its own engine and connections
        try:
            store = AlertStore(state)
            barrier.wait()
            for i in range(per_thread):
                store.raise_alerts([cand(T0 + i * MIN)])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            state.close()

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    state = StateStore(state_url)
    alerts = AlertStore(state).find(since=None)
    state.close()
    assert len(alerts) == 1 and alerts[0].count == threads_n * per_thread


# -- validation and SQL safety --------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"severity": "urgent"}, "unknown severity"),
        ({"etype": "mac"}, "unknown entity type"),
        ({"count": 0}, "at least 1"),
        ({"entity": ""}, "entity value"),
    ],
)
def test_invalid_candidates_write_nothing(store: AlertStore, kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.raise_alerts([cand(entity="ok"), cand(**kw)])
    assert store.count() == 0


def test_naive_times_are_utc_and_scores_are_clamped(store: AlertStore) -> None:
    [c] = store.raise_alerts([cand(T0.replace(tzinfo=None), score=250)])
    assert c.alert.first_seen == T0 and c.alert.score == 100
    [d] = store.raise_alerts([cand(T0, rule="x", severity="HIGH")])
    assert d.alert.severity == "high" and d.alert.score == 75  # default score of its severity


HOSTILE = "1.2.3.4' OR '1'='1'; DROP TABLE alerts; -- <script>alert(1)</script>"


def test_entity_values_are_data_not_sql(store: AlertStore, state: StateStore) -> None:
    store.raise_alerts([cand(entity=HOSTILE, etype="host"), cand(entity="10.0.0.1")])
    [a] = store.find(since=None, entity=HOSTILE)
    assert a.entity_value == HOSTILE
    assert store.find(since=None, entity="1.2.3.4' OR '1'='1") == []
    assert store.find(since=None, rule_id="x' OR 1=1 --") == []
    with state.engine.connect() as conn:  # the table is still there
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(state_alerts.alerts)).scalar() == 2
        )


def test_filters(store: AlertStore) -> None:
    store.raise_alerts(
        [
            cand(T0, severity="low", entity="a"),
            cand(T0 + HOUR, severity="high", entity="b"),
            cand(T0 + 2 * HOUR, severity="critical", entity="c", rule="dga"),
        ]
    )
    store.set_status(2, "acknowledged", "bob")
    names = lambda alerts: [a.entity_value for a in alerts]  # noqa: E731
    assert names(store.find(since=None)) == ["c", "b", "a"]  # most recent first
    assert names(store.find(since=T0 + 30 * MIN)) == ["c", "b"]
    assert names(store.find(min_severity="high")) == ["c", "b"]
    assert names(store.find(statuses=["open"])) == ["c", "a"]
    assert names(store.find(statuses=["open", "acknowledged"], rule_id="dga")) == ["c"]
    assert names(store.find(limit=1, offset=1)) == ["b"]
    assert store.count(min_severity="critical") == 1
    with pytest.raises(ValueError, match="unknown status"):
        store.find(statuses=["gone"])


# -- status changes and history ---------------------------------------------------
def test_status_changes_are_recorded_with_who_and_when(state: StateStore) -> None:
    clock = iter([T0 + i * MIN for i in range(100)])
    store = AlertStore(state, clock=lambda: next(clock))
    [c] = store.raise_alerts([cand()])
    aid = c.alert.id
    assert store.set_status(aid, "acknowledged", "alice").status == "acknowledged"
    assert store.set_status(aid, "acknowledged", "alice").status == "acknowledged"  # no-op
    store.assign(aid, "bob", "alice", note="yours")
    store.set_status(aid, "closed", "bob", note="blocked at the firewall")
    store.set_status(aid, "open", "carol")
    store.set_status(aid, "false_positive", "carol", note="our scanner")
    store.assign(aid, None, "carol")
    a = store.get(aid)
    assert (a.status, a.assignee) == ("false_positive", None)
    rows = [
        (h.who, h.action, h.from_status, h.to_status, h.assignee, h.note)
        for h in store.history(aid)
    ]
    assert rows == [
        ("alice", "acknowledge", "open", "acknowledged", None, None),
        ("alice", "assign", "acknowledged", "acknowledged", "bob", "yours"),
        ("bob", "close", "acknowledged", "closed", "bob", "blocked at the firewall"),
        ("carol", "reopen", "closed", "open", "bob", None),
        ("carol", "false_positive", "open", "false_positive", "bob", "our scanner"),
        ("carol", "unassign", "false_positive", "false_positive", None, None),
    ]
    times = [h.at for h in store.history(aid)]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    assert store.history(aid)[0].as_dict()["at"].endswith("Z")


def test_invalid_transitions_and_unknown_alerts(store: AlertStore) -> None:
    [c] = store.raise_alerts([cand()])
    store.set_status(c.alert.id, "closed", "alice")
    with pytest.raises(TransitionError, match="is closed; it cannot become acknowledged"):
        store.set_status(c.alert.id, "acknowledged", "alice")
    with pytest.raises(ValueError, match="unknown status"):
        store.set_status(c.alert.id, "done", "alice")
    with pytest.raises(AlertNotFoundError, match="no alert 999"):
        store.set_status(999, "closed", "alice")
    with pytest.raises(AlertNotFoundError):
        store.get(999)
    with pytest.raises(AlertNotFoundError):
        store.assign(999, "bob", "alice")
    assert len(store.history(c.alert.id)) == 1


def test_case_link(store: AlertStore) -> None:
    [c] = store.raise_alerts([cand()])
    assert store.set_case(c.alert.id, "CASE-7", "alice").case_id == "CASE-7"
    assert store.get(c.alert.id).as_dict()["case_id"] == "CASE-7"
    assert store.history(c.alert.id)[-1].action == "case"


# -- entity triage scores ---------------------------------------------------------
def test_decay_math() -> None:
    day = timedelta(hours=24)
    assert decay(timedelta(0), day) == 1.0
    assert decay(day, day) == pytest.approx(0.5)
    assert decay(2 * day, day) == pytest.approx(0.25)
    assert decay(-HOUR, day) == 1.0  # clock skew: never more than full weight
    now = T0
    assert entity_score([(80, now)], now) == pytest.approx(80)
    assert entity_score([(80, now - day)], now) == pytest.approx(40)
    assert entity_score([(50, now), (50, now)], now) == pytest.approx(75)
    assert entity_score([(100, now), (10, now)], now) == pytest.approx(100)
    assert entity_score([], now) == 0
    with pytest.raises(ValueError):
        decay(HOUR, timedelta(0))


def test_entity_scores_combine_recent_alerts(store: AlertStore) -> None:
    now = T0 + 24 * HOUR
    store.raise_alerts(
        [
            cand(T0 + 24 * HOUR, rule="a", entity="10.0.0.1", score=50),
            cand(T0 + 24 * HOUR, rule="b", entity="10.0.0.1", score=50),
            cand(T0, rule="a", entity="10.0.0.2", score=90, severity="critical"),  # a day old
            cand(T0 + 24 * HOUR, rule="a", entity="alice", etype="user", score=30),
            cand(T0 + 24 * HOUR, rule="a", entity="10.0.0.3", score=99),
            cand(T0 - 30 * 24 * HOUR, rule="a", entity="10.0.0.4", score=99),  # long gone
        ]
    )
    fp = store.find(entity="10.0.0.3")[0]
    store.set_status(fp.id, "false_positive", "alice")  # false positives do not count
    scores = store.entity_scores(top=10, now=now)
    assert [(e.entity_value, round(e.score, 3), e.alerts) for e in scores] == [
        ("10.0.0.1", 75.0, 2),
        ("10.0.0.2", 45.0, 1),
        ("alice", 30.0, 1),
    ]
    assert scores[1].max_severity == "critical"
    assert scores[0].as_dict()["entity.value"] == "10.0.0.1"
    assert [e.entity_value for e in store.entity_scores(top=1, now=now)] == ["10.0.0.1"]
    assert [e.entity_value for e in store.entity_scores(now=now, entity_type="user")] == ["alice"]
    # half-life is configurable: a shorter one forgets the day-old alert faster
    short = store.entity_scores(now=now, half_life=6 * HOUR)
    assert next(e.score for e in short if e.entity_value == "10.0.0.2") == pytest.approx(90 / 16)


# -- PostgreSQL: Core-portable DDL and queries --------------------------------------
def test_tables_and_queries_compile_for_postgresql() -> None:
    dialect = postgresql.dialect()
    tables = (
        state_alerts.alerts,
        state_alerts.alert_windows,
        state_alerts.alert_history,
        state_alerts.alert_lock,
    )
    for table in tables:
        ddl = str(sa.schema.CreateTable(table).compile(dialect=dialect))
        assert "sqlite" not in ddl.lower()
        for index in table.indexes:
            sa.schema.CreateIndex(index).compile(dialect=dialect)
    ddl = str(sa.schema.CreateTable(state_alerts.alerts).compile(dialect=dialect))
    assert "TIMESTAMP WITH TIME ZONE" in ddl and "JSON" in ddl and "SERIAL" in ddl
    q = sa.select(state_alerts.alerts).where(*_filters(T0, ["open"], "high", HOSTILE, "r"))
    sql = str(q.compile(dialect=dialect))
    assert HOSTILE not in sql and "%(entity_value_1)s" in sql  # bound, not inlined


def test_suppression_and_half_life_come_from_the_config(state: StateStore) -> None:
    from lightsoc.config import parse_config

    config = parse_config(
        "alerts:\n  suppression: 10m\n  rule_suppression: {spray: 2h}\n  half_life: 90s\n"
    )
    store = AlertStore.for_config(state, config)
    assert (store.suppression, store.half_life) == (10 * MIN, timedelta(seconds=90))
    store.raise_alerts([cand(T0), cand(T0 + 11 * MIN)])  # 10-minute windows: two alerts
    store.raise_alerts([cand(T0, rule="spray"), cand(T0 + 11 * MIN, rule="spray")])  # one
    counts = sorted((a.rule_id, a.count) for a in store.find(limit=10))
    assert counts == [("spray", 2), ("ssh_brute", 1), ("ssh_brute", 1)]
    with pytest.raises(Exception, match="alerts.suppression: must be a positive duration"):
        parse_config("alerts: {suppression: 0s}\n")
