"""The search page and its API (offset, export, saved searches) on a real server."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import parse_qs, urlparse

from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401
from tests.web.ui_server import UiServer, browser_login, screenshot

SSHD = "event.dataset:sshd"
SMALL = "event.dataset:sudo"  # a handful of events in the demo data
HOSTILE_NAME = '<img src=x onerror=alert(1)> "; DROP TABLE saved_searches; --'


def test_offset_pages_through_the_same_order(ui_server: UiServer) -> None:
    api = ui_server.token_client()
    params = {"q": SSHD, "since": "all", "fields": "event.id"}
    whole = api.get("/api/v1/search", params=params | {"limit": 60}).json()
    page2 = api.get("/api/v1/search", params=params | {"limit": 20, "offset": 40}).json()
    assert whole["total"] > 60 and page2["offset"] == 40
    assert [e["event.id"] for e in page2["events"]] == [
        e["event.id"] for e in whole["events"][40:60]
    ]
    deep = api.get("/api/v1/search", params=params | {"offset": 10**9})
    assert deep.status_code == 422


def test_export_csv_and_ndjson_hold_every_matching_event(ui_server: UiServer) -> None:
    api = ui_server.token_client()
    total = api.get("/api/v1/search", params={"q": SSHD, "since": "all", "limit": 1}).json()[
        "total"
    ]
    assert total > 100
    fields = "@timestamp,event.id,source.ip,message"
    resp = api.get(
        "/api/v1/search/export",
        params={"q": SSHD, "since": "all", "fields": fields, "format": "csv"},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith("attachment;") and disposition.endswith('.csv"')
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == fields.split(",")
    assert len(rows) - 1 == total
    assert len({r[1] for r in rows[1:]}) == total  # distinct event ids

    nd = api.get("/api/v1/search/export", params={"q": SSHD, "since": "all", "format": "ndjson"})
    assert nd.status_code == 200
    assert nd.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment;" in nd.headers["content-disposition"]
    events = [json.loads(line) for line in nd.text.splitlines()]
    assert len(events) == total
    assert all(e["event.dataset"] == "sshd" and "event.original" in e for e in events)

    capped = api.get(
        "/api/v1/search/export", params={"q": SSHD, "since": "all", "format": "ndjson", "limit": 7}
    )
    assert len(capped.text.splitlines()) == 7


def test_export_defuses_spreadsheet_formulas(ui_server: UiServer) -> None:
    from lightsoc.web.api import csv_cell

    for hostile in ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\r=x"):
        assert csv_cell(hostile) == "'" + hostile
    assert csv_cell("ok=1") == "ok=1" and csv_cell(42) == 42 and csv_cell(None) == ""
    # through the server: events (made by this test) whose values start like formulas
    api = ui_server.token_client()
    docs = [
        {
            "@timestamp": f"2020-01-01T00:00:0{i}Z",
            "message": text,
            "event": {"dataset": "search.formula"},
            "user": {"name": "@admin"},
        }
        for i, text in enumerate(("=1+2", "-cmd|' /C calc'!A0", "+ok"))
    ]
    body = "".join(json.dumps(d) + "\n" for d in docs)
    ingest = api.post(
        "/api/v1/ingest", content=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert ingest.status_code == 200, ingest.text
    resp = api.get(
        "/api/v1/search/export",
        params={
            "q": "event.dataset:search.formula",
            "since": "all",
            "fields": "message,user.name,event.dataset",
            "format": "csv",
            "order": "asc",
        },
    )
    assert resp.status_code == 200
    rows = list(csv.reader(io.StringIO(resp.text)))[1:]
    assert rows == [
        ["'=1+2", "'@admin", "search.formula"],
        ["'-cmd|' /C calc'!A0", "'@admin", "search.formula"],
        ["'+ok", "'@admin", "search.formula"],
    ]


def test_bad_query_is_a_problem_json_400_with_the_compiler_message(ui_server: UiServer) -> None:
    client = ui_server.login("vic")
    for path in ("/api/v1/search", "/api/v1/search/export"):
        resp = client.get(path, params={"q": "source.ip:(1.2.3.4", "since": "all"})
        assert resp.status_code == 400, path
        assert resp.headers["content-type"] == "application/problem+json"
        assert "never closed" in resp.json()["detail"]
    unknown = client.get("/api/v1/search/export", params={"fields": "nope"})
    assert unknown.status_code == 400 and "nope" in unknown.json()["detail"]
    page = client.get("/search", params={"q": 'message:"<script>alert(1)</script>', "since": "all"})
    assert page.status_code == 200
    assert "unterminated quoted phrase" in page.text
    assert "<script>alert(1)" not in page.text  # escaped in the value and the message


def test_saved_searches_crud_and_ownership(ui_server: UiServer) -> None:
    vic, ana, adm = (ui_server.login(n) for n in ("vic", "ana", "adm"))
    body = {"name": HOSTILE_NAME, "query": SSHD, "since": "all", "fields": "message,source.ip"}
    mine = vic.post("/api/v1/saved-searches", json=body)
    assert mine.status_code == 201, mine.text
    item = mine.json()
    assert (item["owner"], item["name"], item["shared"]) == ("vic", HOSTILE_NAME, False)
    # a viewer keeps searches to themselves: sharing needs the analyst role
    assert vic.post("/api/v1/saved-searches", json=body | {"shared": True}).status_code == 403
    bad = vic.post("/api/v1/saved-searches", json=body | {"query": "a:(b"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert vic.post("/api/v1/saved-searches", json=body | {"fields": "x.y"}).status_code == 400
    assert vic.post("/api/v1/saved-searches", json=body | {"name": ""}).status_code == 422
    assert vic.post("/api/v1/saved-searches", json=body | {"since": "soon"}).status_code == 400
    # state changes with the session cookie need the CSRF token
    no_csrf = vic.post("/api/v1/saved-searches", json=body, headers={"X-CSRF-Token": "wrong"})
    assert no_csrf.status_code == 403

    shared = ana.post("/api/v1/saved-searches", json=body | {"name": "ana shared", "shared": True})
    assert shared.status_code == 201
    shared_id = shared.json()["id"]

    def names(client: object) -> dict[int, dict]:
        resp = client.get("/api/v1/saved-searches")  # type: ignore[attr-defined]
        assert resp.status_code == 200
        return {s["id"]: s for s in resp.json()["searches"]}

    assert item["id"] not in names(ana)  # private
    assert names(vic)[shared_id]["can_delete"] is False  # shared, not vic's
    assert names(vic)[item["id"]]["can_delete"] is True
    assert vic.delete(f"/api/v1/saved-searches/{shared_id}").status_code == 403
    assert ana.delete(f"/api/v1/saved-searches/{item['id']}").status_code == 404
    # the side list shows it, escaped
    page = vic.get("/search", params={"q": SSHD, "since": "all"})
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text and "<img src=x" not in page.text
    assert vic.delete(f"/api/v1/saved-searches/{item['id']}").status_code == 204
    assert item["id"] not in names(vic)
    assert adm.delete(f"/api/v1/saved-searches/{shared_id}").status_code == 204  # admin may
    assert adm.delete(f"/api/v1/saved-searches/{shared_id}").status_code == 404


def test_search_page_in_the_browser(ui_server: UiServer, page_errors: WatchedPage) -> None:
    page, errors = page_errors
    browser_login(page, ui_server, "ana", f"/search?q={SSHD}&since=all")
    page.wait_for_selector("#search[data-histogram]", timeout=15_000)
    painted = page.evaluate(
        """() => {
            const c = document.getElementById("search-hist");
            const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let bars = 0;
            for (let i = 0; i < px.length; i += 4) {
                if (px[i + 3] > 0 && px[i] < 80 && px[i + 1] > 80 && px[i + 2] > 200) bars++;
            }
            return bars;
        }"""
    )
    assert painted > 200, painted  # the bars, in their own blue
    page.wait_for_selector("#results tbody tr.event")
    first_rows = page.locator("#results tbody tr.event").count()
    assert first_rows == 100
    assert "sshd" in page.locator("#results tbody tr.event").first.inner_text()

    # filter in on the busiest source address: the URL and the rows change
    ip = (
        ui_server.token_client()
        .get("/api/v1/aggregate/top", params={"field": "source.ip", "q": SSHD, "since": "all"})
        .json()["buckets"][0]["value"]
    )
    chip = page.locator("#results td[data-field='source.ip'] .chip", has_text=ip).first
    chip.hover()
    chip.locator("button.filter-in").click()
    page.wait_for_url("**/search?*")
    page.wait_for_selector("#results tbody tr.event")
    query = parse_qs(urlparse(page.url).query)["q"][0]
    assert query == f'{SSHD} AND source.ip:"{ip}"'
    assert page.locator("#search-q").input_value() == query
    ips = page.locator("#results tbody td[data-field='source.ip'] .val").all_inner_texts()
    assert ips and set(ips) == {ip}

    # load more, then expand a row: every field and event.original
    page.wait_for_selector("#load-more", state="visible")
    page.click("#load-more")
    page.wait_for_function("() => document.querySelectorAll('#results tr.event').length > 100")
    page.locator("#results tr.event button.expand").first.click()
    original = page.locator("tr.detail pre.event-original")
    original.wait_for()
    assert "sshd[" in original.inner_text()
    assert page.locator("tr.detail table.fields th", has_text="event.id").count() == 1

    # filter out from the detail view: NOT with the value quoted
    page.locator("tr.detail td[data-field='host.name'] button.filter-out").first.click()
    page.wait_for_url("**/search?*")
    query = parse_qs(urlparse(page.url).query)["q"][0]
    assert query.endswith(' AND NOT host.name:"web1"'), query

    # a bad query: the compiler's message next to the box, escaped
    page.fill("#search-q", 'source.ip:(10.0.0.1 OR "<b>x</b>')
    page.press("#search-q", "Enter")
    page.wait_for_url("**/search?*")
    err = page.locator("#query-error")
    err.wait_for()
    assert "unterminated quoted phrase" in err.inner_text()
    assert page.locator("#query-error b").count() == 0
    assert page.locator("#results tbody tr").count() == 0

    page.goto(f"{ui_server.url}/search?q={SSHD}&since=all")
    page.wait_for_selector("#search[data-histogram]")
    page.wait_for_selector("#results tbody tr.event")
    screenshot(page, "search")
    assert errors == []
