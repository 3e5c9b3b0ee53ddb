"""Exactly once across crashes: `kill -9` a real `lightsoc run` mid-ingest, restart it.

A file source commits its offset in the same transaction as the events it
produced, and `event.id` is derived from the file identity and the line's
offset. So whenever the process dies, the store holds exactly the lines
before the committed offset, and a restart resumes there: in the end every
line is stored once. A graceful stop (SIGTERM) commits everything read.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.helpers import SSH_LOG, LightsocServer, cli_json, wait_until, write_config

LINES = 240_000


def make_log(path: Path, n: int) -> list[int]:
    """`n` distinct sshd lines (OpenSSH_2k.log with a unique pid per line); line offsets."""
    base = SSH_LOG.read_text().splitlines()
    pid = re.compile(r"sshd\[\d+\]")
    lines = [pid.sub(f"sshd[{i}]", base[i % len(base)], count=1) for i in range(n)]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(data)
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line.encode()) + 1
    return offsets


def store_state(data_dir: Path, log: Path) -> dict[str, Any]:
    """Check the store's invariants (read-only, through the catalog) and return its state.

    Only segments the catalog committed count: a segment file written just
    before the kill but never committed must not be seen.
    """
    store = DuckDBEventStore(data_dir / "events.duckdb", read_only=True)
    src, src_params = store._events(None)
    con = store._cur()
    try:
        total, distinct, max_offset = con.execute(
            f'SELECT count(*), count(DISTINCT "event.id"), max("log.offset") FROM {src}',  # noqa: S608
            src_params,
        ).fetchone()
        checkpoints = con.execute(
            'SELECT path, "offset" FROM lightsoc_checkpoints WHERE source = ?', ["auth"]
        ).fetchall()
        counters = con.execute(
            "SELECT received, events, parse_failures, dropped FROM lightsoc_sources "
            "WHERE source = ?",
            ["auth"],
        ).fetchall()
        offsets = [
            r[0]
            for r in con.execute(
                f'SELECT "log.offset" FROM {src} ORDER BY "log.offset"',  # noqa: S608
                src_params,
            ).fetchall()
        ]
        assert total == store.count()  # the catalog's row counts agree with the files
    finally:
        store.close()
    assert distinct == total, "an event.id is stored twice"
    committed = checkpoints[0][1] if checkpoints else 0
    if checkpoints:
        assert [Path(p) for p, _ in checkpoints] == [log]
    # exactly the lines before the committed offset, each once
    with open(log, "rb") as fh:
        head = fh.read(committed)
    assert head.count(b"\n") == total, (committed, total)
    assert committed == 0 or head.endswith(b"\n")
    assert max_offset is None or max_offset < committed
    assert offsets == sorted(set(offsets))
    # the per-source counters are committed with the events
    received, events, failures, dropped = counters[0] if counters else (0, 0, 0, 0)
    assert (received, events, failures, dropped) == (total, total, 0, 0)
    return {"total": total, "committed": committed, "offsets": offsets}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[LightsocServer, Path, list[int]]:
    log = tmp_path / "big.log"
    offsets = make_log(log, LINES)
    config = write_config(
        tmp_path / "lightsoc.yml",
        {"auth": {"type": "file", "paths": [str(log)], "format": "syslog"}},
        data_dir=tmp_path / "data",
        pipeline={"batch_max_rows": 10_000},
    )
    server = LightsocServer(["--config", config], cwd=tmp_path, data_dir=tmp_path / "data")
    return server, log, offsets


def stored(server: LightsocServer) -> int:
    return server.stats()["events_total"]


def at_least(server: LightsocServer, target: int) -> int:
    """How many events the server shows, once that is at least `target` (else 0)."""
    n = stored(server)
    return n if n >= target else 0


def test_kill_9_mid_ingest_then_restart_stores_every_line_once(
    setup: tuple[LightsocServer, Path, list[int]],
) -> None:
    server, log, offsets = setup
    t0 = time.monotonic()
    seen = []
    try:
        # as soon as the first batch is visible, then about one and two thirds in
        for target in (1, LINES // 3, 2 * LINES // 3):
            server.start()
            n = wait_until(lambda t=target: at_least(server, t), 60, f"{target} events stored")
            assert n < LINES, "ingest finished before the kill; make the log bigger"
            server.kill()
            state = store_state(server.data_dir, log)
            # what the server showed may still have been committing when it died, never more
            assert 0 <= state["total"] <= n
            seen.append((n, state["total"]))
        assert [s for _, s in seen] == sorted(s for _, s in seen), seen  # progress is kept

        # 3. graceful stop while the pipeline still holds read-but-uncommitted batches
        server.start()
        wait_until(
            lambda: server.stats()["sources"][0].get("lag_bytes") == 0,
            60,
            "the source to have read the whole file",
        )
        in_flight = LINES - stored(server)
        assert in_flight > 0, "everything was committed before the stop; make the log bigger"
        assert server.stop() == 0
        assert re.search(r"stopped; \d+ events stored in this run", server.output)
        assert not (server.data_dir / "run" / "server.json").exists()
        final = store_state(server.data_dir, log)
        assert final["total"] == LINES, f"{LINES - final['total']} lines read but not committed"
        assert final["offsets"] == offsets

        # 4. a restart after everything is stored reads nothing twice
        server.start()
        wait_until(
            lambda: server.stats()["sources"][0].get("lag_bytes") == 0,
            30,
            "the source to have polled",
        )
        assert stored(server) == LINES
        assert server.stop() == 0
        assert "stopped; 0 events stored in this run" in server.output
    finally:
        server.ensure_stopped()

    stats = cli_json("stats", "--format", "json", "--data-dir", server.data_dir)
    assert stats["events_total"] == LINES
    assert stats["parse_failures_total"] == 0
    assert stats["by_dataset"] == {"sshd": LINES}
    [src] = stats["sources"]
    assert (src["id"], src["received"], src["events"], src["dropped"]) == ("auth", LINES, LINES, 0)
    state = store_state(server.data_dir, log)
    assert state["total"] == LINES == len(set(state["offsets"]))
    print(
        f"kills at (api, stored) {seen}; {in_flight} in flight at SIGTERM; "
        f"{time.monotonic() - t0:.1f} s"
    )
