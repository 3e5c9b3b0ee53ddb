"""CaseStore on a real state store: SQLite here; set LIGHTSOC_TEST_POSTGRES_URL
(a scratch database) to run the same tests on PostgreSQL too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from lightsoc.alerts.model import AlertCandidate
from lightsoc.alerts.store import AlertNotFoundError, AlertStore
from lightsoc.cases import (
    entity_kind,
    event_entities,
    event_summary,
    render_markdown,
)
from lightsoc.cases.store import CaseEvent, CaseNotFoundError, CaseStore
from lightsoc.store.state import StateStore
from lightsoc.store.state_cases import case_alerts, cases

T0 = datetime(2026, 11, 29, 21, 0, tzinfo=UTC)


@pytest.fixture
def state(state_url: str) -> Iterator[StateStore]:
    store = StateStore(state_url)
    yield store
    store.close()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def raise_alert(alerts: AlertStore, entity: str, minutes: int = 0) -> int:
    """A fresh alert (a unique rule id, so it never dedups into another test's)."""
    changed = alerts.raise_alerts(
        [
            AlertCandidate(
                rule_id=f"test-{uuid.uuid4()}",
                rule_name="SSH Brute Force",
                severity="high",
                entity_type="ip",
                entity_value=entity,
                first_seen=T0 + timedelta(minutes=minutes),
                event_ids=[f"ev-{minutes}"],
            )
        ]
    )
    return changed[0].alert.id


def test_create_get_find_update(state: StateStore) -> None:
    store = CaseStore(state, clock=Clock())
    a = store.create("  Brute force on web1 ", "high", "ana", owner="ana")
    b = store.create("DNS tunnel", "medium", "bob")
    assert (a.title, a.status, a.owner, a.created_by) == (
        "Brute force on web1",
        "open",
        "ana",
        "ana",
    )
    assert store.get(a.id) == a
    assert [c.id for c in store.find(owner="ana")] == [a.id]
    assert store.count(owner="ana") == 1
    updated, diff = store.update(b.id, status="in_progress", owner="ana", narrative="**x**")
    assert diff == {"status": "in_progress", "owner": "ana", "narrative": "**x**"}
    assert updated.updated > b.updated
    # most recently updated first; the status filter narrows
    assert [c.id for c in store.find(owner="ana")][:2] == [b.id, a.id]
    assert b.id in [c.id for c in store.find(status="in_progress")]
    assert a.id not in [c.id for c in store.find(status="in_progress")]
    same, nothing = store.update(b.id, status="in_progress")
    assert nothing == {} and same == updated
    cleared, diff = store.update(b.id, owner=None)
    assert cleared.owner is None and diff == {"owner": None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "done"}, "unknown status"),
        ({"severity": "urgent"}, "unknown severity"),
        ({"title": "  "}, "title"),
        ({"narrative": "x" * 100_001}, "narrative"),
        ({"created_by": "mallory"}, "cannot change"),
    ],
)
def test_update_refuses_bad_values(state: StateStore, changes: dict, message: str) -> None:
    store = CaseStore(state)
    case = store.create("t", "low", "ana")
    with pytest.raises(ValueError, match=message):
        store.update(case.id, **changes)
    assert store.get(case.id) == case


def test_missing_case(state: StateStore) -> None:
    store = CaseStore(state)
    with pytest.raises(CaseNotFoundError):
        store.get(999_999)
    with pytest.raises(CaseNotFoundError):
        store.add_comment(999_999, "ana", "hi")


def test_linking_an_alert_sets_its_case_and_moves_it_between_cases(state: StateStore) -> None:
    alerts = AlertStore(state)
    store = CaseStore(state, alerts)
    one, two = store.create("one", "high", "ana"), store.create("two", "high", "ana")
    alert_id = raise_alert(alerts, "203.0.113.7")
    assert store.link_alert(one.id, alert_id, "ana") is True
    assert store.link_alert(one.id, alert_id, "ana") is False  # already there
    assert alerts.get(alert_id).case_id == str(one.id)
    assert store.link_alert(two.id, alert_id, "ana") is True
    assert (store.alert_ids(one.id), store.alert_ids(two.id)) == ([], [alert_id])
    assert alerts.get(alert_id).case_id == str(two.id)
    assert [h.action for h in alerts.history(alert_id)] == ["case", "case"]
    assert store.unlink_alert(two.id, alert_id, "ana") is True
    assert store.unlink_alert(two.id, alert_id, "ana") is False
    assert alerts.get(alert_id).case_id is None
    with pytest.raises(AlertNotFoundError):
        store.link_alert(one.id, 999_999, "ana")


def test_events_entities_and_comments(state: StateStore) -> None:
    store = CaseStore(state)
    case = store.create("c", "medium", "ana")
    late = CaseEvent("e2", T0 + timedelta(minutes=5), "second", "sshd")
    early = CaseEvent("e1", T0, "first", "nginx.access")
    assert store.link_events(case.id, [late, early]) == 2
    assert store.link_events(case.id, [early]) == 0  # idempotent
    assert [e.event_id for e in store.events(case.id)] == ["e1", "e2"]  # time order
    assert store.events(case.id)[0].timestamp == T0
    assert store.unlink_event(case.id, "e1") is True
    assert [e.event_id for e in store.events(case.id)] == ["e2"]

    assert store.add_entities(case.id, [("ip", "203.0.113.7"), ("user", "root")]) == 2
    assert store.add_entities(case.id, [("ip", "203.0.113.7"), ("host", "web1")]) == 1
    assert store.entities(case.id) == [("host", "web1"), ("ip", "203.0.113.7"), ("user", "root")]
    with pytest.raises(ValueError, match="entity kind"):
        store.add_entities(case.id, [("mac", "x")])
    assert store.remove_entity(case.id, "user", "root") is True

    first = store.add_comment(case.id, "ana", "<img src=x onerror=alert(1)>")
    store.add_comment(case.id, "bob", "second")
    got = store.comments(case.id)
    assert [c.body for c in got] == ["<img src=x onerror=alert(1)>", "second"]  # newest last
    assert got[0].id == first.id and got[0].created == first.created
    with pytest.raises(ValueError, match="comment"):
        store.add_comment(case.id, "ana", "   ")


def test_values_are_bound_parameters(state: StateStore) -> None:
    store = CaseStore(state)
    nasty = "x'); DROP TABLE cases; --"
    case = store.create(nasty, "low", nasty, owner=nasty)
    store.add_entities(case.id, [("user", nasty)])
    assert store.get(case.id).title == nasty
    assert store.find(owner=nasty)[0].id == case.id
    assert store.entities(case.id) == [("user", nasty)]


def test_tables_compile_for_postgresql() -> None:
    dialect = postgresql.dialect()
    for table in (cases, case_alerts):
        assert "CREATE TABLE" in str(CreateTable(table).compile(dialect=dialect))
    q = sa.select(cases).where(cases.c.owner == "ana").limit(5)
    assert "LIMIT" in str(q.compile(dialect=dialect))


# -- helpers: what a case keeps of an event ---------------------------------


def test_event_summary_and_entities() -> None:
    web = {
        "source.ip": "185.220.101.34",
        "http.request.method": "GET",
        "url.original": "/api?q=1' or 1=1\n--",
        "http.response.status_code": 200,
        "host.name": "web1",
    }
    assert event_summary(web) == "185.220.101.34: GET /api?q=1' or 1=1 -- → 200"
    assert event_entities(web) == [("ip", "185.220.101.34"), ("host", "web1")]
    ssh = {
        "message": "Invalid user mysql from 1.2.3.4",
        "source.ip": "1.2.3.4",
        "user.name": "mysql",
    }
    assert event_summary(ssh) == "Invalid user mysql from 1.2.3.4"
    assert event_entities(ssh) == [("ip", "1.2.3.4"), ("user", "mysql")]
    dns = {"dns.question.name": "abc.example", "dns.question.type": "TXT", "source.ip": "10.0.0.5"}
    assert event_summary(dns) == "10.0.0.5: TXT abc.example"
    assert len(event_summary({"event.original": "x" * 1000})) == 300
    assert [entity_kind(v) for v in ("10.0.0.1", "::1", "evil.example", "root")] == [
        "ip",
        "ip",
        "domain",
        "user",
    ]


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "[x](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "[x](java&#x09;script:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](vbscript:msgbox(1))",
        "<img src=x onerror=alert(1)>",
        "<a href='javascript:alert(1)'>x</a>",
        "<javascript:alert(1)>",
        "![x](javascript:alert(1))",
    ],
)
def test_narrative_markdown_is_inert(source: str) -> None:
    html = render_markdown(source)
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered  # tags come out as text
    assert 'href="javascript' not in lowered and 'href="data' not in lowered
    assert 'href="vbscript' not in lowered and "<a href='javascript" not in lowered


def test_narrative_markdown_renders_formatting_and_safe_links() -> None:
    html = render_markdown("# Start\n\n**bold** [doc](https://example.org/x) [rel](/alerts?x=1)")
    assert "<h1>Start</h1>" in html and "<strong>bold</strong>" in html
    assert '<a href="https://example.org/x" rel="noopener noreferrer nofollow">doc</a>' in html
    assert '<a href="/alerts?x=1" rel="noopener noreferrer nofollow">rel</a>' in html
    assert "<a" not in render_markdown("[x](//evil.example/a)")
