"""A real tailing setup for file-source tests: DuckDB store, FileSource, Pipeline.

`Tail` drives everything through the real pipeline threads; tests wait on
conditions with `wait_until` (polling with a timeout) instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightsoc.config import FileSourceConfig
from lightsoc.pipeline import Pipeline, SourceSpec
from lightsoc.sources.file import FileSource
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.helpers import wait_until as _wait_until

TIMEOUT = 10.0
FIELDS = ["event.id", "event.original", "log.offset", "log.file.path", "tags", "event.dataset"]


def wait_until(cond: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll `cond` until it is truthy; fail after `timeout` seconds."""
    return _wait_until(cond, timeout=timeout, what=what or str(cond), interval=0.02)


def syslog(i: int, tag: str = "app") -> str:
    return f"Oct 11 22:14:{i % 60:02d} host {tag}[{100 + i}]: message {i}\n"


def append(path: Path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    with open(path, "ab") as fh:
        fh.write(data)


class Tail:
    """A FileSource in a Pipeline over a DuckDB store in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        enrichers: list,
        paths: list[str],
        *,
        fmt: str = "syslog",
        one_shot: bool = False,
        source_id: str = "logs",
        **options: Any,
    ) -> None:
        options.setdefault("poll_interval", 0.05)
        self.config = FileSourceConfig(type="file", paths=paths, format=fmt, **options)
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = DuckDBEventStore(data_dir / "events.duckdb")
        self.enrichers = enrichers
        self.fmt, self.one_shot, self.id = fmt, one_shot, source_id
        self.source: FileSource | None = None
        self.pipeline: Pipeline | None = None

    def start(self) -> Tail:
        self.source = FileSource(
            self.id,
            self.config,
            checkpoints=self.store.checkpoints(self.id),
            one_shot=self.one_shot,
            batch_max_rows=1000,
        )
        spec = SourceSpec(self.id, "file", format=self.fmt)
        self.pipeline = Pipeline(self.store, [self.source], {self.id: spec}, self.enrichers)
        self.pipeline.start()
        return self

    def stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop(timeout=TIMEOUT)
            assert self.pipeline.wait(0), "pipeline did not stop"
            self.pipeline = None

    def run_once(self) -> Tail:
        """A one-shot import to the end of every file."""
        assert self.one_shot
        self.start()
        assert self.pipeline is not None and self.pipeline.wait(TIMEOUT)
        self.pipeline = None
        return self

    def restart(self) -> Tail:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self.store.close()

    # -- looking at what was stored ----------------------------------------
    def count(self) -> int:
        return self.store.count()

    def wait_count(self, n: int, timeout: float = TIMEOUT) -> None:
        wait_until(lambda: self.count() >= n, timeout, f"{n} events (have {self.count()})")
        assert self.count() == n

    def rows(self) -> list[dict[str, Any]]:
        table = self.store.search(fields=FIELDS, limit=1_000_000)
        return sorted(table.to_pylist(), key=lambda r: (r["log.file.path"], r["log.offset"]))

    def originals(self) -> list[str]:
        return [r["event.original"] for r in self.rows()]

    def ids(self) -> list[str]:
        return [r["event.id"] for r in self.rows()]

    def source_stats(self) -> dict[str, Any]:
        (src,) = [s for s in self.store.stats()["sources"] if s["id"] == self.id]
        return src
