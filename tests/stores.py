"""Event stores that misbehave on purpose: for tests of what is acknowledged when."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lightsoc.store.events_duckdb import DuckDBEventStore


class GatedStore(DuckDBEventStore):
    """A DuckDB store whose writes wait for `gate` (to look at the sender before storage)."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.timeout = timeout

    def append(self, *a: Any, **kw: Any) -> bool:
        self.gate.wait(self.timeout)
        return super().append(*a, **kw)


class BrokenStore(DuckDBEventStore):
    """A store whose disk is always full: nothing is ever committed."""

    def append(self, *a: Any, **kw: Any) -> bool:
        raise OSError("disk full")
