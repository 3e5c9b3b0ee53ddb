"""The dashboard: `/api/v1/dashboard` against the search API, access, and the page in Chromium."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lightsoc.store.query import compile_query
from lightsoc.web.routes.dashboard import interval_for, link_for
from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401
from tests.web.ui_server import UiServer, browser_login, screenshot


def total(client: httpx.Client, q: str, since: str) -> int:
    """The exact count of `q` by an independent path: the histogram API's buckets
    (the search API's `total` stops counting at its cap)."""
    resp = client.get(
        "/api/v1/aggregate/histogram", params={"q": q, "since": since, "interval": 86400 * 400}
    )
    assert resp.status_code == 200, resp.text
    return sum(b["count"] for b in resp.json()["buckets"])


@pytest.fixture(scope="module")
def vic(ui_server: UiServer) -> httpx.Client:
    return ui_server.login("vic")


def dashboard(client: httpx.Client, since: str) -> dict[str, Any]:
    resp = client.get("/api/v1/dashboard", params={"since": since})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("since", ["24h", "30d"])
def test_numbers_match_the_search_api(vic: httpx.Client, since: str) -> None:
    data = dashboard(vic, since)
    assert data["total_events"] == total(vic, "", since) > 1000
    by_ds = data["by_dataset"]
    assert by_ds["interval"] == interval_for(86400 if since == "24h" else 30 * 86400)
    assert {"netflow", "dns", "sshd"} <= set(by_ds["totals"])
    for name, count in by_ds["totals"].items():
        series = by_ds["series"][name]
        assert sum(n for _t, n in series) == count
        if name != "other":
            assert count == total(vic, f'event.dataset:"{name}"', since), name
    # every series has the same buckets, a whole interval apart (stackable)
    times = {tuple(t for t, _n in s) for s in by_ds["series"].values()}
    assert len(times) == 1
    ts = sorted(times.pop())
    assert {b - a for a, b in zip(ts, ts[1:], strict=False)} == {by_ds["interval"] * 1000}

    for field, rows in data["top"].items():
        for row in rows[:3]:
            q = parse_qs(urlsplit(row["link"]).query).get("q", [f'{field}:"{row["value"]}"'])[0]
            assert row["count"] == total(vic, q, since), (field, row)
    assert data["top"]["source.ip"] and data["top"]["user.name"]
    assert data["top"]["source.ip"][0]["link"].startswith("/entity/")
    assert data["top"]["url.path"][0]["link"].startswith("/search?q=url.path%3A%22")

    alerts = data["alerts_by_severity"]
    assert sum(alerts["totals"].values()) > 0
    for sev, series in alerts["series"].items():
        assert sum(n for _t, n in series) == alerts["totals"][sev]
    assert {s["id"] for s in data["sources"]} >= {"web1", "auth", "dns", "flows"}
    assert all(s["status"] in ("ok", "stale", "failing") for s in data["sources"])


def test_access_and_bad_ranges(ui_server: UiServer, vic: httpx.Client) -> None:
    anon = httpx.get(f"{ui_server.url}/api/v1/dashboard")
    assert anon.status_code == 401
    assert anon.headers["content-type"] == "application/problem+json"
    page = httpx.get(f"{ui_server.url}/?since=1h", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2F%3Fsince%3D1h"
    bad = vic.get("/api/v1/dashboard", params={"since": "yesterday"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    html = vic.get("/", params={"since": "7d"})
    assert html.status_code == 200
    assert 'data-since="7d"' in html.text and 'href="/sources"' in html.text
    assert ui_server.token_client().get("/api/v1/dashboard?since=15m").status_code == 200


def test_top_value_links_quote_for_the_query_language() -> None:
    nasty = 'a"b\\c) OR *'
    link = link_for("url.path", nasty)
    q = parse_qs(urlsplit(link).query)["q"][0]
    assert compile_query(q).params == [nasty]  # one exact value, no wildcard, no OR
    assert link_for("source.ip", "10.0.0.1") == "/entity/10.0.0.1"
    assert link_for("user.name", "a/b?c") == "/entity/a%2Fb%3Fc"
    assert [interval_for(s) for s in (900, 3600, 86400, 7 * 86400, 30 * 86400, None)] == [
        60,
        60,
        900,
        3 * 3600,
        12 * 3600,
        86400,
    ]


def test_dashboard_in_the_browser(
    ui_server: UiServer, vic: httpx.Client, page_errors: WatchedPage
) -> None:
    try:
        browse(ui_server, page_errors)
    finally:  # vic's language back to English for the other modules
        vic.post("/locale", data={"locale": "en", "csrf_token": vic.csrf, "next": "/"})


def browse(ui_server: UiServer, page_errors: WatchedPage) -> None:
    page, errors = page_errors
    browser_login(page, ui_server, "vic", "/")
    page.wait_for_selector("#dashboard[data-loaded='24h']")
    # the dataset chart has painted: some non-transparent pixels on its canvas
    painted = page.evaluate(
        """() => {
        const c = document.getElementById('chart-datasets');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
    }"""
    )
    assert painted > 1000
    ips = page.locator("#top-source-ip tbody tr a.entity")
    assert ips.count() > 3
    assert ips.first.get_attribute("href").startswith("/entity/")
    assert page.locator("#dash-sources tbody tr").count() >= 4
    assert page.locator("#kpi-total").inner_text() not in ("", "–")
    screenshot(page, "dashboard", full_page=True)

    page.select_option("#dash-range select[name=since]", "1h")
    page.wait_for_selector("#dashboard[data-loaded='1h']")
    assert page.url.endswith("/?since=1h")

    page.select_option("header select[name=locale]", "zh-CN")
    page.wait_for_selector("#dashboard[data-loaded='1h']")
    assert "各数据集事件数" in page.locator("main").inner_text()
    assert "仪表盘" in page.locator("nav.side").inner_text()
    assert page.locator("#dash-range select[name=since]").input_value() == "1h"
    screenshot(page, "dashboard-zh")

    page.click("nav.side a[href='/sources']")
    page.wait_for_selector("#sources-table tbody tr.src-row")
    assert "数据源" in page.locator("main").inner_text()
    screenshot(page, "sources-zh")
    assert errors == []
