"""The entity page and its API on the shared demo server (read-only)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import polars as pl
from playwright.sync_api import expect

from lightsoc import schema
from lightsoc.store.base import TimeRange
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.web.browser import WatchedPage, browser_fixture, page_errors_fixture  # noqa: F401
from tests.web.ui_server import UiServer, browser_login, screenshot


def entity_query(value: str) -> str:
    """The search-language query for events holding `value` in any entity field."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return " OR ".join(f'{f}:"{escaped}"' for f in schema.ENTITY_FIELDS)


def busiest_ip(api: httpx.Client) -> str:
    top = api.get("/api/v1/aggregate/top", params={"field": "source.ip", "since": "all", "n": 1})
    assert top.status_code == 200, top.text
    return top.json()["buckets"][0]["value"]


def alerted_ip(api: httpx.Client) -> str:
    """A public attacker IP with alerts and few enough events for one timeline page
    (the one in the most datasets)."""
    alerts = api.get("/api/v1/alerts", params={"since": "all", "limit": 10000}).json()["alerts"]
    ips = dict.fromkeys(
        a["entity.value"]
        for a in alerts
        if a["entity.type"] == "ip" and ipaddress.ip_address(a["entity.value"]).is_global
    )
    fits = [(len(s["datasets"]), ip) for ip in ips if 1 < (s := summary(api, ip))["total"] < 90]
    assert fits, "the demo has no small alerted public IP"
    return max(fits)[1]


def summary(api: httpx.Client, value: str, since: str = "all") -> dict[str, Any]:
    resp = api.get(f"/api/v1/entities/{quote(value, safe='')}", params={"since": since})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_summary_numbers_match_search_counts(ui_server: UiServer) -> None:
    api = ui_server.token_client()
    for value in (busiest_ip(api), alerted_ip(api), "root"):
        got = summary(api, value)
        q = entity_query(value)
        total = api.get("/api/v1/search", params={"q": q, "since": "all", "limit": 1})
        assert got["total"] == total.json()["total"] > 0, value
        for dataset, n in got["datasets"].items():
            per = api.get(
                "/api/v1/search",
                params={"q": f"({q}) AND event.dataset:{dataset}", "since": "all", "limit": 1},
            )
            assert per.json()["total"] == n, (value, dataset)
        assert sum(got["datasets"].values()) == got["total"]
        oldest = api.get("/api/v1/search", params={"q": q, "since": "all", "order": "asc"})
        assert got["first_seen"] == oldest.json()["events"][0]["@timestamp"]
        alerts = api.get("/api/v1/alerts", params={"since": "all", "entity": value}).json()
        assert got["alerts"]["total"] == alerts["total"]
    assert summary(api, "root")["kind"] == "user"


def test_kind_geo_and_score_of_an_attacker(ui_server: UiServer) -> None:
    api = ui_server.token_client()
    ip = alerted_ip(api)
    got = summary(api, ip)
    assert (got["kind"], got["scope"]) == ("ip", "public")
    assert got["geo"].get("country")  # the demo enriches attackers with a country
    scores = api.get("/api/v1/entities/scores", params={"top": 10000}).json()["entities"]
    mine = next(e for e in scores if e["entity.value"] == ip)
    assert got["score"]["score"] == mine["score"]
    nobody = summary(api, "no-such-entity.example")
    assert (nobody["total"], nobody["score"], nobody["datasets"]) == (0, None, {})


def test_timeline_pages_newest_first_without_gaps(ui_server: UiServer) -> None:
    api = ui_server.token_client()
    ip = busiest_ip(api)
    total = summary(api, ip)["total"]
    url = f"/api/v1/entities/{quote(ip, safe='')}/timeline"
    seen: list[dict[str, Any]] = []
    until = None
    for _ in range(200):
        params = {"since": "all", "limit": 1000, **({"until": until} if until else {})}
        page = api.get(url, params=params).json()
        seen += page["items"]
        until = page["next_until"]
        if until is None:
            break
    events = [i for i in seen if i["type"] == "event"]
    assert len(events) == total
    assert len({e["event"]["event.id"] for e in events}) == total
    times = [i["time"] for i in seen]
    assert times == sorted(times, reverse=True)
    # a dataset filter keeps only that dataset; "alerts" alone gives only alerts
    dataset = next(iter(summary(api, ip)["datasets"]))
    only = api.get(url, params={"since": "all", "datasets": dataset, "limit": 50}).json()
    assert {i["event"]["event.dataset"] for i in only["items"]} == {dataset}
    attacker = alerted_ip(api)
    url2 = f"/api/v1/entities/{quote(attacker, safe='')}/timeline"
    alerts_only = api.get(url2, params={"since": "all", "datasets": "alerts"}).json()["items"]
    assert alerts_only and {i["type"] for i in alerts_only} == {"alert"}


def test_bad_values_and_hostile_entities(ui_server: UiServer) -> None:
    api = ui_server.token_client()
    assert api.get("/api/v1/entities/" + "a" * 1001).status_code == 400
    assert api.get("/api/v1/entities/x/timeline", params={"limit": 0}).status_code == 422
    assert api.get("/api/v1/entities/x", params={"since": "yesterday"}).status_code == 400
    assert httpx.get(f"{ui_server.url}/api/v1/entities/x").status_code == 401
    vic = ui_server.login("vic")
    hostile = '<script>alert(1)</script>"'
    page = vic.get(f"/entity/{quote(hostile, safe='')}")
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text
    jump = vic.get("/entity", params={"q": "10.0.0.1"}, follow_redirects=False)
    assert (jump.status_code, jump.headers["location"]) == (303, "/entity/10.0.0.1")


def test_entity_page_timeline_in_order_and_dataset_chips(
    ui_server: UiServer, page_errors: WatchedPage
) -> None:
    page, errors = page_errors
    api = ui_server.token_client()
    ip = alerted_ip(api)
    info = summary(api, ip, "7d")
    browser_login(page, ui_server, "vic", f"/entity/{ip}")
    rows = page.locator("#timeline tbody tr")
    expect(rows.first).to_be_visible()
    times = [t for t in rows.evaluate_all("rs => rs.map(r => r.dataset.time)")]
    assert times == sorted(times, reverse=True) and len(times) > 1
    kinds = set(rows.evaluate_all("rs => rs.map(r => r.dataset.dataset)"))
    assert "alerts" in kinds
    dataset = next(iter(info["datasets"]))
    # keep only one dataset: uncheck every other chip
    for chip in page.locator("#dataset-chips input").all():
        if chip.get_attribute("value") != dataset:
            chip.uncheck()
    expect(page.locator("#timeline tbody tr.al")).to_have_count(0)
    expect(rows.first).to_be_visible()
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.dataset)")) == {dataset}
    page.fill("input[name=q]", "root")
    page.click("form[role=search] button")
    page.wait_for_url("**/entity/root")
    expect(page.locator("#entity-kind")).to_have_text("User")
    page.goto(f"{ui_server.url}/entity/{ip}")
    expect(rows.first).to_be_visible()
    screenshot(page, "entity")
    assert errors == []


def test_store_entity_methods_on_a_small_store(tmp_path: Path) -> None:
    """The EventStore methods behind these pages, on events made here."""
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    rows = [
        {
            "@timestamp": t0 + timedelta(minutes=i),
            "event.id": f"e{i}",
            "event.dataset": ["sshd", "nginx.access", None][i % 3],
            "source.ip": "203.0.113.9" if i % 2 else "10.0.0.1",
            "destination.ip": "10.0.0.1" if i % 2 else "198.51.100.7",
            "source.geo.country_iso_code": "NL" if i % 2 else None,
            "destination.zone": "dmz" if i % 2 else None,
            "user.name": "root" if i == 4 else None,
            "threat.indicator.name": "203.0.113.9" if i == 5 else None,
            "threat.indicator.provider": "blocklist" if i == 5 else None,
            "log.offset": i,
        }
        for i in range(9)
    ]
    frame = pl.DataFrame(rows, schema_overrides={k: schema.polars_type(k) for k in rows[0]})
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    try:
        store.append(schema.to_arrow(frame))
        got = store.events_by_id(["e7", "e2", "nope"], fields=["event.id"])
        assert got.column("event.id").to_pylist() == ["e2", "e7"]
        bad = store.events_by_id(["e2"], TimeRange(t0 + timedelta(hours=1)))
        assert bad.num_rows == 0
        s = store.entity_summary("203.0.113.9")
        assert (s.total, s.first_seen, s.last_seen) == (
            4,
            t0 + timedelta(minutes=1),
            t0 + timedelta(minutes=7),
        )
        assert s.datasets == {"nginx.access": 2, "sshd": 1, "unknown": 1}
        assert s.geo == {"country": "NL"} and s.roles["ip"] == 4
        assert [(h["indicator"], h["provider"], h["events"]) for h in s.intel] == [
            ("203.0.113.9", "blocklist", 1)
        ]
        inside = store.entity_summary("10.0.0.1")
        assert inside.total == 9 and inside.geo == {"zone": "dmz"}
        assert store.entity_summary("root").roles == {"ip": 0, "user": 1, "host": 0, "domain": 0}
        assert store.entity_summary("'; DROP TABLE x; --").total == 0
        newest = store.timeline("10.0.0.1", limit=3, fields=["event.id"], order="desc")
        assert newest.column("event.id").to_pylist() == ["e8", "e7", "e6"]
        only = store.timeline("10.0.0.1", fields=["event.id"], datasets=["sshd", "unknown"])
        assert only.column("event.id").to_pylist() == ["e0", "e2", "e3", "e5", "e6", "e8"]
    finally:
        store.close()
