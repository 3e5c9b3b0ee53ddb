"""The UI/API latency benchmark's code path on a small store (20k events)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"
EVENTS = 20_000


def _load(name: str) -> ModuleType:
    # bench/ is not a package (and tests/bench shadows the name), so load by path
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ui_api = _load("ui_api")


def test_report_has_every_measurement(tmp_path: Path) -> None:
    r = ui_api.run(tmp_path, events=EVENTS, runs=2)
    assert r["store"]["events"] == EVENTS and r["store"]["reused"] is False
    assert r["store"]["fill_seconds"] > 0
    api, direct = r["api"], r["direct"]
    assert api["dashboard"]["total_events"] > EVENTS * 0.99  # since=24h covers the fill
    assert api["search"]["queries"] == len(ui_api.search_queries()) >= 40
    # the busiest IP has ~3 % of the events; the timeline returns them up to its limit
    assert api["entity"]["total"] > 300 and api["entity_timeline"]["items"] > 0
    assert api["timeline"]["events"] == min(1000, api["entity"]["total"])
    for key in ("dashboard", "timeline", "entity", "entity_timeline"):
        assert len(api[key]["runs"]) == len(direct[key]["runs"]) == 2
        assert 0 < api[key]["median"] <= api[key]["max"]
        assert 0 < direct[key]["median"] <= direct[key]["max"]
    for part in (api["search"], direct["search"]):
        assert 0 < part["p50"] <= part["p95"] <= part["max"]
    # the API and plain DuckDB agree on what matches; most searches match something
    # (a few rare values do not occur in only 20k events)
    assert r["count_mismatches"] == []
    assert sum(1 for s in api["search"]["each"] if s["total"] > 0) >= 30
    # the search page's columns and whole events: the same searches, the same totals
    # (each window is "now - 24h" at its request: an event at the edge may leave)
    page, full = api["search"]["each"], api["search_full"]["each"]
    assert [s["q"] for s in page] == [s["q"] for s in full]
    assert all(
        abs(a["total"] - b["total"]) <= ui_api.EDGE_EVENTS for a, b in zip(page, full, strict=True)
    )
    assert len(r["rows"]) == 13
    targeted = [row for row in r["rows"] if row["target_s"] is not None]
    assert len(targeted) == 4 and {row["verdict"] for row in targeted} <= {"PASS", "MISS"}
    assert all(row["api_s"] > 0 and row["direct_s"] > 0 for row in r["rows"])
    saved = json.loads((tmp_path / "ui_api.json").read_text())
    assert saved["rows"] == r["rows"]
    text = ui_api.line(r)
    assert "search p95" in text and "timeline busiest IP" in text and "dashboard" in text

    # a second run reuses the fresh store instead of filling it again
    again = ui_api.ensure_store(tmp_path, EVENTS)
    assert again["reused"] is True and again["fill_seconds"] == 0.0


def test_rare_ips_exist_and_busy_ips_dominate() -> None:
    """The search list's 'rare' IPs are real values of the generator's formula."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    params = {"start_us": 0, "span_us": 86_400_000_000, "n": 200_000, "lo": 0, "hi": 200_000}
    rows = con.sql(
        f'SELECT "source.ip", count(*) FROM ({ui_api._GEN_SQL}) GROUP BY 1',  # noqa: S608
        params=params,
    ).fetchall()
    counts = dict(rows)
    assert counts[ui_api.BUSY_IPS[0]] == max(counts.values())
    assert 20_000 < len(counts) < 60_000
    assert ui_api.ip_of(0) in counts and ui_api.ip_of(5) in counts
