"""/sources and `/api/v1/sources`: counters agree with `/api/v1/stats`; status and rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from lightsoc.web.routes.sources import Rates, status_of
from tests.web.ui_server import UiServer


def test_sources_api_matches_stats_and_failure_queries_run(ui_server: UiServer) -> None:
    vic = ui_server.login("vic")
    got = vic.get("/api/v1/sources")
    assert got.status_code == 200, got.text
    body = got.json()
    stats = ui_server.token_client().get("/api/v1/stats").json()
    want = {s["id"]: s for s in stats["sources"]}
    assert {s["id"] for s in body["sources"]} == set(want)
    for src in body["sources"]:
        for key in ("type", "received", "events", "parse_failures", "dropped", "bytes"):
            assert src[key] == want[src["id"]][key], (src["id"], key)
        assert src["status"] in ("ok", "stale", "failing")
        # the parse-failure search is valid and counts what the counter says
        found = vic.get(
            "/api/v1/search", params={"q": src["failures_query"], "since": "all", "limit": 1}
        )
        assert found.status_code == 200, found.text
        assert found.json()["total"] == src["parse_failures"]
        # the source's events, counted exactly (a search's total stops at 10,000:
        # how many a source sends in the demo's two hours depends on the hour)
        q = f'lightsoc.source:"{src["id"]}"'
        hist = vic.get("/api/v1/aggregate/histogram", params={"q": q, "since": "all"})
        assert sum(b["count"] for b in hist.json()["buckets"]) == src["events"]
        page = vic.get("/api/v1/search", params={"q": q, "since": "all", "limit": 1}).json()
        if page["total_capped"]:
            assert page["total"] < src["events"]
        else:
            assert page["total"] == src["events"]
    assert body["pipeline"]["uptime_seconds"] > 0
    dns = next(s for s in body["sources"] if s["id"] == "dns")
    assert dns["received"] > dns["events"]  # packets in, DNS events out


def test_sources_page_access(ui_server: UiServer) -> None:
    assert httpx.get(f"{ui_server.url}/api/v1/sources").status_code == 401
    page = httpx.get(f"{ui_server.url}/sources", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fsources"
    vic = ui_server.login("vic")
    html = vic.get("/sources")
    assert html.status_code == 200
    assert 'id="sources-table"' in html.text and 'hx-trigger="every 30s"' in html.text
    fragment = vic.get("/sources", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text  # only the table, swapped in by htmx
    assert 'id="sources-table"' in fragment.text


def test_status_ok_stale_failing() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    fresh = (now - timedelta(minutes=2)).isoformat()
    assert status_of({"last_seen": fresh, "received": 10}, now)[0] == "ok"
    old = (now - timedelta(hours=1)).isoformat()
    assert status_of({"last_seen": old}, now) == (
        "stale",
        "Nothing new for {minutes} min",
        {"minutes": 60},
    )
    assert status_of({}, now)[0] == "stale"
    half_bad = {"last_seen": fresh, "received": 10, "parse_failures": 6}
    assert status_of(half_bad, now)[0] == "failing"
    assert status_of({"last_seen": fresh, "last_error": "EACCES"}, now)[2] == {"error": "EACCES"}


def test_rates_need_a_few_seconds_and_use_the_last_minute() -> None:
    t = [0.0]
    rates = Rates(clock=lambda: t[0])
    assert rates.update({"a": 0}) == {"a": None}
    t[0] = 2.0
    assert rates.update({"a": 50}) == {"a": None}  # too soon after the first sample
    t[0] = 10.0
    assert rates.update({"a": 100, "b": 5}) == {"a": 10.0, "b": None}
    t[0] = 200.0  # all samples older than the window: the newest old one is the base
    assert rates.update({"a": 1100}) == {"a": 1000 / 190}
