"""The naive baseline: how hand-written SOC scripts load an access log.

Per line ``re.match`` with a combined-log regex, a dict per record,
``datetime.strptime`` on the timestamp, and ``sqlite3.executemany`` INSERTs in
batches of 1,000 into a 12-column table, committed at the end. The benchmark
runs this on the same file as ``lightsoc ingest`` and prints the ratio.

    python bench/naive_baseline.py ACCESS_LOG [--db naive.sqlite]
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

LINE_RE = re.compile(
    r"(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<ts>[^\]]+)\] "
    r'"(?P<method>\S+) (?P<target>\S+) (?P<protocol>[^"]*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referrer>[^"]*)" "(?P<ua>[^"]*)"'
)
BATCH = 1_000
COLUMNS = (
    "ip",
    "user",
    "ts",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "referrer",
    "ua",
    "original",
)
CREATE = """CREATE TABLE access_log (
    ip TEXT, user TEXT, ts TEXT, method TEXT, path TEXT, query TEXT, protocol TEXT,
    status INTEGER, bytes INTEGER, referrer TEXT, ua TEXT, original TEXT)"""
INSERT = "INSERT INTO access_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def parse_line(line: str) -> dict | None:
    """One combined-log line to a dict, or None when the regex does not match."""
    m = LINE_RE.match(line)
    if m is None:
        return None
    rec = m.groupdict()
    path, _, query = rec.pop("target").partition("?")
    rec["path"] = path
    rec["query"] = query
    rec["ts"] = datetime.strptime(rec["ts"], "%d/%b/%Y:%H:%M:%S %z").isoformat()
    rec["status"] = int(rec["status"])
    rec["bytes"] = 0 if rec["bytes"] == "-" else int(rec["bytes"])
    rec["original"] = line
    return rec


def run(path: Path, db_path: Path) -> dict:
    """Load ``path`` into a fresh SQLite table at ``db_path``; returns timing and counts."""
    t0 = time.perf_counter()
    con = sqlite3.connect(db_path)
    con.execute("DROP TABLE IF EXISTS access_log")
    con.execute(CREATE)
    batch: list[tuple] = []
    lines = rows = unparsed = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            lines += 1
            line = raw.rstrip("\r\n")
            rec = parse_line(line)
            if rec is None:
                unparsed += 1
                continue
            batch.append(tuple(rec[c] for c in COLUMNS))
            if len(batch) >= BATCH:
                con.executemany(INSERT, batch)
                rows += len(batch)
                batch = []
    if batch:
        con.executemany(INSERT, batch)
        rows += len(batch)
    con.commit()
    con.close()
    seconds = time.perf_counter() - t0
    size = Path(path).stat().st_size
    return {
        "lines": lines,
        "rows": rows,
        "unparsed": unparsed,
        "seconds": seconds,
        "lines_per_s": lines / seconds if seconds else 0.0,
        "mib_per_s": size / 2**20 / seconds if seconds else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--db", type=Path, help="SQLite file (default: a temporary file)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.log, args.db or Path(tmp) / "naive.sqlite")
    print(
        f"naive: {res['lines']:,} lines ({res['rows']:,} rows) in {res['seconds']:.2f} s = "
        f"{res['lines_per_s']:,.0f} lines/s, {res['mib_per_s']:.1f} MiB/s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
