"""The scale-out benchmark's code path at tiny sizes: real redis-server, clickhouse-server,
PostgreSQL and `lightsoc run --role ...` processes; exact counts, no timing assertions."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import psutil

BENCH = Path(__file__).resolve().parents[2] / "bench"
BATCHES, LINES, MESSAGES = 4, 200, 6


def _load(name: str) -> ModuleType:
    # bench/ is not a package (and tests/bench shadows the name); the name
    # bench/run.py gives it, so its sibling modules are shared
    qualified = f"lightsoc_bench_{name}"
    spec = importlib.util.spec_from_file_location(qualified, BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = mod
    spec.loader.exec_module(mod)
    return mod


scaleout = _load("scaleout")


def _lightsoc_children() -> set[int]:
    """`lightsoc run` processes this test process still has."""
    left = set()
    for c in psutil.Process().children(recursive=True):
        try:
            if c.status() != psutil.STATUS_ZOMBIE and "lightsoc" in " ".join(c.cmdline()[:2]):
                left.add(c.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return left


def test_throughput_and_latency_figures_are_complete_and_exact(tmp_path: Path) -> None:
    r = scaleout.run(
        tmp_path,
        batches=BATCHES,
        batch_lines=LINES,
        processors=(1, 2),
        messages=MESSAGES,
        rates=(20.0, 10.0),
    )
    assert json.loads((tmp_path / "scaleout.json").read_text()) == json.loads(
        json.dumps(r, default=str)
    )
    assert r["cores"] >= 1 and r["batches"] == BATCHES and r["batch_lines"] == LINES
    assert all(v > 0 for v in r["per_event"].values())

    assert [t["processors"] for t in r["throughput"]] == [1, 2]
    for t in r["throughput"]:
        total = BATCHES * LINES
        # every record stored once: after FINAL, by distinct id, and with no duplicate row
        assert t["records"] == t["stored"] == t["distinct_ids"] == total
        assert t["stored_rows_without_final"] == total
        assert t["warmup_records"] == 2 * t["processors"] * min(LINES, scaleout.WARM_LINES)
        # what the processors say they stored adds up (warm-up batches included)
        assert sum(t["stored_per_processor"]) == total + t["warmup_records"]
        assert len(t["processor_cpu_seconds"]) == t["processors"]
        assert set(t["server_cpu_seconds"]) == {"redis-server", "clickhouse-server", "postgres"}
        assert t["seconds"] > 0 and t["events_per_s"] > 0 and t["speedup"] > 0
    assert r["throughput"][0]["speedup"] == 1.0

    lat = r["latency"]
    assert lat["poll_errors"] == 0 and lat["clickhouse_append_ms"] > 0
    assert [ph["rate_per_s"] for ph in lat["runs"]] == [20.0, 10.0]
    for ph in lat["runs"]:
        assert ph["messages"] == ph["events_seen"] == ph["alerts_seen"] == MESSAGES
        assert ph["bus_batches"] >= 1 and len(ph["series"]) == MESSAGES
        assert all(None not in row for row in ph["series"])
        for key in ("to_event", "to_alert", "to_processor_taking_batch", "to_alert_committed"):
            d = ph[key]
            assert d["min_ms"] <= d["p50_ms"] <= d["p99_ms"] <= d["max_ms"]

    text = scaleout.table(r)
    assert "events/s" in text and "-> alert p50/p99" in text and "per event" in text
    assert scaleout.line(r).startswith("scaleout: k=1 ")
    assert not _lightsoc_children()  # every role process was stopped
