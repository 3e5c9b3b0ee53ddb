"""kill -9 at any moment, then a restart: every line is stored exactly once.

A child process tails growing (and rotated) files into a DuckDB store and is
killed with SIGKILL at random moments while lines keep being written; a last
run in this process must end with every written line stored once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

from lightsoc.store.events_duckdb import DuckDBEventStore

from .tailing import TIMEOUT

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lightsoc.config import FileSourceConfig
    from lightsoc.enrich.chain import build_enrichers
    from lightsoc.pipeline import Pipeline, SourceSpec
    from lightsoc.sources.file import FileSource
    from lightsoc.store.events_duckdb import DuckDBEventStore

    data, pattern = Path(sys.argv[1]), sys.argv[2]
    store = DuckDBEventStore(data / "events.duckdb")
    cfg = FileSourceConfig(type="file", paths=[pattern], format="syslog", poll_interval=0.02)
    src = FileSource("logs", cfg, checkpoints=store.checkpoints("logs"), batch_max_rows=300)
    Pipeline(store, [src], {"logs": SourceSpec("logs", "file", "syslog")},
             build_enrichers({"geoip": False})).start()
    print("running", flush=True)
    while True:
        time.sleep(1)
    """
)


class Writer(threading.Thread):
    """Appends numbered lines to two files; rotates one of them by rename."""

    def __init__(self, root) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.written: list[str] = []
        self.stop_event = threading.Event()
        self.rotations = 0

    def line(self, name: str) -> str:
        n = len(self.written)
        text = f"Oct 11 22:14:{n % 60:02d} host {name}[{n}]: line number {n}"
        self.written.append(text)
        return text + "\n"

    def burst(self, n: int) -> None:
        for name in ("a", "b"):
            with open(self.root / f"{name}.log", "a") as fh:
                fh.write("".join(self.line(name) for _ in range(n)))

    def rotate(self) -> None:
        self.rotations += 1
        os.rename(self.root / "a.log", self.root / f"a.log.{self.rotations}")

    def run(self) -> None:
        while not self.stop_event.wait(0.01):
            self.burst(15)


def test_kill_9_at_random_moments_then_restart_stores_every_line_once(tmp_path, tails):
    rng = random.Random(1234)
    logs = tmp_path / "logs"
    logs.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    pattern = str(logs / "*.log*")
    writer = Writer(logs)
    writer.burst(3000)  # a backlog, so kills land in the middle of batches
    counts = []
    for round_ in range(3):
        child = subprocess.Popen(
            [sys.executable, str(script), str(data), pattern], stdout=subprocess.PIPE
        )
        assert child.stdout is not None and child.stdout.readline() == b"running\n"
        if round_ == 0:
            writer.start()
        if round_ == 1:
            writer.rotate()
        time.sleep(rng.uniform(0.1, 0.7))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(TIMEOUT)
        store = DuckDBEventStore(data / "events.duckdb", read_only=True)
        counts.append(store.count())
        store.close()
    writer.stop_event.set()
    writer.join(TIMEOUT)
    writer.burst(10)

    # the runs got work done, and the kills interrupted work in progress
    assert counts == sorted(counts) and 0 < counts[-1] < len(writer.written), counts
    t = tails([pattern], data_dir="data").start()
    t.wait_count(len(writer.written), timeout=20)
    t.stop()
    stored = Counter(t.originals())
    assert [text for text, n in stored.items() if n > 1] == []
    assert set(stored) == set(writer.written)
    assert len(set(t.ids())) == len(writer.written)
