"""The benchmark's log generator and naive baseline."""

from __future__ import annotations

import importlib.util
import sqlite3
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


gen = _load("gen_access_log")
naive = _load("naive_baseline")


def test_generator_is_deterministic_and_well_formed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    n = gen.write_combined_log(a, 10_000, seed=3)
    gen.write_combined_log(b, 10_000, seed=3)
    data = a.read_bytes()
    assert n == len(data) and data == b.read_bytes()
    lines = data.decode().splitlines()
    assert len(lines) == 10_000
    assert all(naive.LINE_RE.match(x) for x in lines)
    assert lines[0].split(" [", 1)[1].startswith("01/Mar/2024:00:00:00 +0000]")
    assert len({x.split(" ", 1)[0] for x in lines}) > 1_000


def test_naive_baseline_stores_every_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    gen.write_combined_log(log, 10_000)
    res = naive.run(log, tmp_path / "naive.sqlite")
    assert res["lines"] == res["rows"] == 10_000 and res["unparsed"] == 0
    assert res["lines_per_s"] > 0
    con = sqlite3.connect(tmp_path / "naive.sqlite")
    try:
        assert con.execute("SELECT count(*) FROM access_log").fetchone()[0] == 10_000
        cols = [r[1] for r in con.execute("PRAGMA table_info(access_log)")]
        assert len(cols) == 12 and "original" in cols
        ts, status = con.execute("SELECT ts, status FROM access_log LIMIT 1").fetchone()
        assert ts.startswith("2024-03-01T00:00:00") and isinstance(status, int)
    finally:
        con.close()
