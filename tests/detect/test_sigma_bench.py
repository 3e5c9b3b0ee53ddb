"""bench/rules.py on a small log: it runs, and lightsoc and pySigma's SQLite backend agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    # bench/ is not a package (and tests/bench shadows the name), so load by path
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rules_bench_small(tmp_path: Path) -> None:
    res = _load("rules").run(tmp_path, lines=5000)
    assert res["events"] == 5000
    assert res["rules_loaded"] > 150 and res["web_rules"] > 50
    assert res["sqlite_rules"] == res["web_rules"] and not res["sqlite_errors"]
    # the same rules, the same events: the same matches per rule in both engines
    assert res["count_disagreements"] == {}
    assert sum(res["flagged_by_rule"].values()) > 0
    assert res["all_rules_events_per_s"] > 0 and res["sqlite_events_per_s"] > 0
