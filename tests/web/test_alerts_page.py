"""The alerts pages and the bulk / sample-events API on the shared demo server.

Tests only change alerts they picked themselves: the oldest open alerts of a
severity (other modules pick from the newest or by their own criteria).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401
from tests.web.ui_server import UiServer, browser_login, screenshot


def oldest_open(ui: UiServer, severity: str, n: int, skip: int = 0) -> list[dict[str, Any]]:
    """The `n` oldest open alerts whose severity is exactly `severity` (after `skip`)."""
    resp = ui.token_client().get(
        "/api/v1/alerts",
        params={"since": "all", "status": "open", "severity": severity, "limit": 10000},
    )
    assert resp.status_code == 200, resp.text
    exact = [a for a in resp.json()["alerts"] if a["severity"] == severity]
    picked = exact[::-1][skip : skip + n]
    assert len(picked) == n, f"the demo has too few open {severity} alerts"
    return picked


def audit_rows(ui: UiServer, actor: str, action: str) -> list[tuple[str, str]]:
    """(action, target) audit entries of `actor`, read from the server's state database."""
    with sqlite3.connect(ui.data_dir / "state.sqlite") as db:
        return db.execute(
            "SELECT action, target FROM audit_log WHERE actor = ? AND action = ?",
            (actor, action),
        ).fetchall()


def test_bulk_change_by_an_analyst_is_in_each_history_and_the_audit_log(
    ui_server: UiServer,
) -> None:
    picked = oldest_open(ui_server, "medium", 3)
    ids = [a["id"] for a in picked]
    ana = ui_server.login("ana")
    resp = ana.post(
        "/api/v1/alerts/bulk",
        json={"ids": [*ids, 999_999], "status": "acknowledged", "note": "bulk triage"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert sorted(a["id"] for a in body["changed"]) == sorted(ids)
    assert {a["status"] for a in body["changed"]} == {"acknowledged"}
    assert body["errors"] == [{"id": 999_999, "status": 404, "detail": "no alert 999999"}]
    # assign to me, then close: each step lands in every alert's own history
    assert ana.post("/api/v1/alerts/bulk", json={"ids": ids, "assignee": "ana"}).status_code == 200
    closed = ana.post("/api/v1/alerts/bulk", json={"ids": ids[:1], "status": "closed"}).json()
    assert closed["changed"][0]["status"] == "closed"
    for aid in ids:
        alert = ana.get(f"/api/v1/alerts/{aid}").json()
        assert alert["assignee"] == "ana"
        steps = [(h["who"], h["action"], h["note"]) for h in alert["history"]]
        assert ("ana", "acknowledge", "bulk triage") in steps
        assert ("ana", "assign", None) in steps
    audited = audit_rows(ui_server, "ana", "alert_change")
    for aid in ids:
        assert audited.count(("alert_change", str(aid))) >= 2
    # a transition the alert does not allow is reported per alert, not fatal
    again = ana.post("/api/v1/alerts/bulk", json={"ids": ids[:2], "status": "acknowledged"})
    assert again.status_code == 200
    assert again.json()["errors"][0]["status"] == 409  # closed cannot become acknowledged


def test_bulk_is_refused_to_viewers_without_csrf_and_beyond_1000_ids(
    ui_server: UiServer,
) -> None:
    aid = oldest_open(ui_server, "medium", 1, skip=3)[0]["id"]
    vic = ui_server.login("vic")
    resp = vic.post("/api/v1/alerts/bulk", json={"ids": [aid], "status": "closed"})
    assert resp.status_code == 403, resp.text
    ana = ui_server.login("ana")
    no_csrf = httpx.Client(base_url=ui_server.url, cookies=ana.cookies)
    resp = no_csrf.post("/api/v1/alerts/bulk", json={"ids": [aid], "status": "closed"})
    assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
    too_many = ana.post(
        "/api/v1/alerts/bulk", json={"ids": list(range(1, 1002)), "status": "closed"}
    )
    assert too_many.status_code == 422
    nothing = ana.post("/api/v1/alerts/bulk", json={"ids": [aid]})
    assert nothing.status_code == 400
    assert ana.get(f"/api/v1/alerts/{aid}").json()["status"] == "open"


def test_alert_events_are_its_sample_from_the_event_store(ui_server: UiServer) -> None:
    api = ui_server.token_client()
    alert = api.get("/api/v1/alerts", params={"since": "all", "limit": 1}).json()["alerts"][0]
    resp = api.get(f"/api/v1/alerts/{alert['id']}/events")
    assert resp.status_code == 200, resp.text
    events = resp.json()["events"]
    assert sorted(e["event.id"] for e in events) == sorted(alert["event_ids"])
    times = [e["@timestamp"] for e in events]
    assert times == sorted(times)
    assert all(alert["first_seen"] <= t <= alert["last_seen"] for t in times)
    assert api.get("/api/v1/alerts/999999/events").status_code == 404


def test_alert_pages_render_filters_and_hide_triage_from_viewers(ui_server: UiServer) -> None:
    ana = ui_server.login("ana")
    page = ana.get("/alerts", params={"severity": "high", "status": "any", "since": "all"})
    assert page.status_code == 200
    assert 'id="bulk-bar"' in page.text and 'class="pick"' in page.text
    assert "sev-medium" not in page.text.split("<tbody>", 1)[1]  # high and critical only
    vic = ui_server.login("vic")
    page = vic.get("/alerts", params={"since": "all"})
    assert page.status_code == 200 and "data-alert-id" in page.text
    assert "bulk-bar" not in page.text and "data-bulk-status" not in page.text
    aid = oldest_open(ui_server, "high", 1, skip=5)[0]["id"]
    detail = vic.get(f"/alerts/{aid}")
    assert detail.status_code == 200 and "triage-form" not in detail.text
    assert "triage-form" in ana.get(f"/alerts/{aid}").text
    assert vic.get("/alerts/999999").status_code == 404


def test_analyst_bulk_acknowledges_in_the_browser_and_follows_to_the_entity(
    ui_server: UiServer, page_errors: WatchedPage
) -> None:
    page, errors = page_errors
    picked = oldest_open(ui_server, "high", 2)
    browser_login(page, ui_server, "ana", "/alerts")
    page.select_option("select[name=severity]", "high")
    page.wait_for_url("**severity=high**")
    page.select_option("select[name=since]", "all")
    page.wait_for_url("**since=all**")
    rows = [page.locator(f'tr[data-alert-id="{a["id"]}"]') for a in picked]
    for row in rows:
        expect(row).to_be_visible()
        row.locator("input.pick").check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.click("button[data-bulk-status=acknowledged]")
    for row in rows:
        expect(row.locator(".js-status")).to_have_text("acknowledged")
    expect(page.locator("#bulk-result")).to_have_text("2 changed")
    screenshot(page, "alerts")
    # the change is real: the API says so, and a reload shows it
    api = ui_server.token_client()
    assert {api.get(f"/api/v1/alerts/{a['id']}").json()["status"] for a in picked} == {
        "acknowledged"
    }
    page.reload()
    expect(rows[0].locator(".js-status")).to_have_text("acknowledged")

    rows[0].locator("td a").first.click()
    page.wait_for_url(f"**/alerts/{picked[0]['id']}")
    expect(page.locator("#rule-name")).to_have_text(picked[0]["rule.name"])
    expect(page.locator("#history")).to_contain_text("acknowledge")
    assert page.locator("table.events-table tbody tr").count() == len(picked[0]["event_ids"])
    page.locator("a.entity").first.click()
    page.wait_for_url("**/entity/**")
    entity = picked[0]["entity.value"]
    expect(page.locator("h1")).to_have_text(entity)
    expect(page.locator("#timeline tbody tr").first).to_be_visible()
    assert errors == []


def test_viewer_sees_no_bulk_buttons(ui_server: UiServer, page_errors: WatchedPage) -> None:
    page, errors = page_errors
    browser_login(page, ui_server, "vic", "/alerts?since=all")
    expect(page.locator("#alerts-table tbody tr").first).to_be_visible()
    assert page.locator("#bulk-bar").count() == 0
    assert page.locator("button[data-bulk-status]").count() == 0
    assert page.locator("input.pick").count() == 0
    assert errors == []
