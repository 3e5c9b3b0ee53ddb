"""The suspicious-connects page and /api/v1/connects over the shared demo server.

The server's scheduler runs the LDA job when it starts (no watermark yet), so
the demo's two hours of flows, DNS and web requests are ranked for real; these
tests wait for that run, then rate and allow only rows they picked themselves.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

import httpx
import pytest

from lightsoc.auth.audit import AuditLog
from lightsoc.store.state import StateStore
from lightsoc.store.state_feedback import FeedbackStore
from tests.helpers import wait_until
from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401
from tests.web.ui_server import UiServer, browser_login, screenshot


def _listing(client: httpx.Client, record_type: str, **params: Any) -> dict[str, Any]:
    resp = client.get("/api/v1/connects", params={"type": record_type, **params})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def ranked(ui_server: UiServer) -> dict[str, dict[str, Any]]:
    """Each record type's listing, once the server's first LDA run has kept its rows."""
    with ui_server.token_client() as admin:

        def done() -> dict[str, dict[str, Any]] | None:
            found = {t: _listing(admin, t, limit=100) for t in ("flow", "dns", "web")}
            return found if all(f["run"] for f in found.values()) else None

        return wait_until(done, timeout=180, what="the LDA job's first run", interval=1)


def _feedback_rows(ui: UiServer, record_type: str) -> list[dict[str, Any]]:
    """The ratings as `FeedbackStore.ratings` gives them (what the next training reads)."""
    state = StateStore.for_data_dir(ui.data_dir)
    try:
        return FeedbackStore(state).ratings(record_type).to_dicts()
    finally:
        state.close()


def _audit(ui: UiServer, action: str) -> list[dict[str, Any]]:
    state = StateStore.for_data_dir(ui.data_dir)
    try:
        return AuditLog(state).find(action=action, limit=1000)
    finally:
        state.close()


def test_the_demo_is_ranked_with_the_words_of_each_record(
    ranked: dict[str, dict[str, Any]], ui_server: UiServer
) -> None:
    for record_type in ("flow", "dns", "web"):
        body = ranked[record_type]
        assert body["total"] > 0 and body["rows"], record_type
        run = body["run"]
        assert run["events"] >= body["total"] and run["window_start"] < run["window_end"]
        rows = body["rows"]
        assert [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)
        assert rows[0]["rank"] == 1 and rows[0]["word_a"] and rows[0]["doc_a"]
        assert all(0 <= r["suspicion"] <= 1 and r["score"] > 0 for r in rows)
    flow = ranked["flow"]["rows"][0]
    assert flow["word_b"] and flow["source_ip"] and flow["destination_ip"]
    assert flow["destination_port"] is not None and flow["transport"] and flow["hour"] is not None
    assert any(r["domain"] for r in ranked["dns"]["rows"])
    assert any(r["url"] for r in ranked["web"]["rows"])
    # pages through the kept rows
    with closing(ui_server.login("vic")) as viewer:
        page2 = _listing(viewer, "flow", limit=5, offset=5)
        assert [r["rank"] for r in page2["rows"]] == [
            r["rank"] for r in ranked["flow"]["rows"][5:10]
        ]
        assert viewer.get("/api/v1/connects", params={"type": "smtp"}).status_code == 422


def test_an_analyst_rating_is_stored_with_its_words_and_audited(
    ranked: dict[str, dict[str, Any]], ui_server: UiServer
) -> None:
    row = ranked["flow"]["rows"][3]
    with closing(ui_server.login("ana")) as ana:
        resp = ana.post(f"/api/v1/connects/flow/{row['id']}/rating", json={"rating": 1})
        assert resp.status_code == 200, resp.text
        rating_id = resp.json()["id"]
        stored = [r for r in _feedback_rows(ui_server, "flow") if r["id"] == rating_id]
        assert len(stored) == 1
        got = stored[0]
        assert got["rating"] == 1 and got["user"] == "ana"
        assert (got["doc_a"], got["word_a"], got["doc_b"], got["word_b"]) == (
            row["doc_a"],
            row["word_a"],
            row["doc_b"],
            row["word_b"],
        )
        assert got["source_ip"] == row["source_ip"] and got["hour"] == row["hour"]
        # the listing shows the rating on the row; the ratings list has it
        listed = _listing(ana, "flow", limit=100)
        mine = next(r for r in listed["rows"] if r["id"] == row["id"])
        assert mine["rating"] == {"id": rating_id, "rating": 1, "user": "ana"}
        ratings = ana.get("/api/v1/connects/ratings", params={"type": "flow"}).json()
        assert any(
            r["id"] == rating_id and r["word_a"] == row["word_a"] for r in ratings["ratings"]
        )
        audited = _audit(ui_server, "connect_rating")
        assert any(a["target"] == str(rating_id) and a["actor"] == "ana" for a in audited)
        # withdrawn: gone from the feedback store (the next training no longer sees it)
        assert ana.delete(f"/api/v1/connects/ratings/{rating_id}").status_code == 204
        assert all(r["id"] != rating_id for r in _feedback_rows(ui_server, "flow"))
        assert any(
            a["target"] == str(rating_id) for a in _audit(ui_server, "connect_rating_delete")
        )
        assert ana.delete(f"/api/v1/connects/ratings/{rating_id}").status_code == 404
        assert (
            ana.post("/api/v1/connects/flow/999999999/rating", json={"rating": 3}).status_code
            == 404
        )
        bad = ana.post(f"/api/v1/connects/flow/{row['id']}/rating", json={"rating": 4})
        assert bad.status_code == 422


def test_viewers_and_requests_without_csrf_cannot_rate(
    ranked: dict[str, dict[str, Any]], ui_server: UiServer
) -> None:
    row = ranked["dns"]["rows"][0]
    url = f"/api/v1/connects/dns/{row['id']}/rating"
    before = len(_feedback_rows(ui_server, "dns"))
    with closing(ui_server.login("vic")) as viewer:
        assert viewer.post(url, json={"rating": 3}).status_code == 403
        allow = viewer.post("/api/v1/connects/allow", json={"a": "10.9.9.9", "b": "*"})
        assert allow.status_code == 403
        assert viewer.get("/api/v1/connects/ratings").status_code == 200
    with closing(ui_server.login("ana")) as ana:
        del ana.headers["X-CSRF-Token"]
        resp = ana.post(url, json={"rating": 3})
        assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
    with httpx.Client(base_url=ui_server.url) as anonymous:
        assert anonymous.post(url, json={"rating": 3}).status_code == 401
    assert len(_feedback_rows(ui_server, "dns")) == before


def test_allow_a_pair_marks_its_rows(
    ranked: dict[str, dict[str, Any]], ui_server: UiServer
) -> None:
    rows = ranked["flow"]["rows"]
    row = rows[-1]  # one nobody else picks: the last kept row of the first page
    pair = {"type": "flow", "a": row["source_ip"], "b": row["destination_ip"]}
    with closing(ui_server.login("ana")) as ana:
        resp = ana.post("/api/v1/connects/allow", json=pair)
        assert resp.status_code == 200, resp.text
        allow_id = resp.json()["id"]
        assert ana.post("/api/v1/connects/allow", json=pair).json()["id"] == allow_id  # idempotent
        listed = ana.get("/api/v1/connects/allow", params={"type": "flow"}).json()["allow"]
        assert any(p["id"] == allow_id for p in listed)
        after = _listing(ana, "flow", limit=100)["rows"]
        ends = {row["source_ip"], row["destination_ip"]}
        same = [r for r in after if {r["source_ip"], r["destination_ip"]} == ends]
        assert same and all(r["allowed"] for r in same)
        assert any(a["target"] == str(allow_id) for a in _audit(ui_server, "connect_allow"))
        assert ana.post("/api/v1/connects/allow", json={"a": " ", "b": "*"}).status_code in (
            400,
            422,
        )


def test_an_analyst_rates_a_row_benign_in_the_page(
    ranked: dict[str, dict[str, Any]], ui_server: UiServer, page_errors: WatchedPage
) -> None:
    page, errors = page_errors
    row = ranked["flow"]["rows"][1]
    browser_login(page, ui_server, "ana", "/connects")
    table = page.locator("#connects-table")
    assert table.get_attribute("data-type") == "flow"
    assert page.locator("nav.connects-tabs a[aria-current=page]").inner_text().startswith("Flows")
    assert "Last run" in page.locator(".connects-run").inner_text()
    tr = page.locator(f"#connects-table tr[data-id='{row['id']}']")
    assert row["word_a"] in tr.locator("td.words").inner_text()
    assert tr.locator(f"a[href='/entity/{row['source_ip']}']").count() == 1
    assert tr.locator(f"a[href='/entity/{row['destination_ip']}']").count() >= 1
    tr.locator("button[data-rate='3']").click()
    page.wait_for_selector(f"#connects-table tr[data-id='{row['id']}'].rated-3")
    assert tr.locator("[data-mark]").inner_text() == "Benign"
    assert tr.locator("button[data-rate='3']").get_attribute("aria-pressed") == "true"
    assert "Rated" in page.locator("#connects-status").inner_text()
    stored = [r for r in _feedback_rows(ui_server, "flow") if r["word_a"] == row["word_a"]]
    assert any(r["rating"] == 3 and r["doc_a"] == row["doc_a"] for r in stored)
    # after a reload the row still shows its rating
    page.set_viewport_size({"width": 1440, "height": 900})  # every column in the screenshot
    page.reload()
    page.wait_for_selector(f"#connects-table tr[data-id='{row['id']}'].rated-3")
    screenshot(page, "connects")
    # the other record types have their tabs
    page.click("nav.connects-tabs a[href='/connects?type=dns']")
    page.wait_for_url("**/connects?type=dns")
    assert page.locator("#connects-table tbody tr").count() > 0
    assert errors == []


def test_a_viewer_sees_the_list_without_controls(
    ranked: dict[str, dict[str, Any]], ui_server: UiServer, page_errors: WatchedPage
) -> None:
    page, errors = page_errors
    browser_login(page, ui_server, "vic", "/connects?type=web")
    assert page.locator("#connects-table tbody tr").count() > 0
    assert page.locator("button[data-rate]").count() == 0
    assert page.locator("button[data-allow-a]").count() == 0
    assert errors == []
