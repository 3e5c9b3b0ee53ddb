"""Store interfaces shared by the embedded and the scale-out backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa


class StoreLockedError(RuntimeError):
    """Another process (usually `lightsoc run`) holds the embedded store."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Checkpoint:
    """How far one stream (a file identity) of a source has been committed."""

    source: str
    stream: str
    path: str
    fingerprint: str
    fingerprint_len: int
    generation: int
    offset: int
    done: bool = False


@dataclass
class SourceCounters:
    """Counter increments for one source, committed with a batch."""

    source: str
    type: str
    received: int = 0
    events: int = 0
    parse_failures: int = 0
    dropped: int = 0
    bytes: int = 0
    last_seen: datetime | None = None


class EventStore(ABC):
    """append / search / aggregate / timeline / retention over ECS events."""

    @abstractmethod
    def append(
        self,
        batch: pa.Table | pl.DataFrame,
        checkpoints: Sequence[Checkpoint] = (),
        counters: Iterable[SourceCounters] = (),
    ) -> None: ...

    @abstractmethod
    def checkpoints(self, source: str) -> dict[str, Checkpoint]: ...

    @abstractmethod
    def search(
        self,
        query: str = "",
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
        limit: int = 100,
        order: str = "desc",
    ) -> pa.Table: ...

    @abstractmethod
    def count(self, query: str = "", time_range: TimeRange | None = None) -> int: ...

    @abstractmethod
    def top(
        self, field: str, query: str = "", time_range: TimeRange | None = None, n: int = 10
    ) -> list[tuple[Any, int]]: ...

    @abstractmethod
    def histogram(
        self, interval_seconds: int, query: str = "", time_range: TimeRange | None = None
    ) -> list[tuple[datetime, int]]: ...

    @abstractmethod
    def timeline(
        self,
        entity: str,
        time_range: TimeRange | None = None,
        limit: int = 1000,
        fields: Sequence[str] | None = None,
    ) -> pa.Table: ...

    @abstractmethod
    def retention(self, days: int, *, now: datetime | None = None) -> int: ...

    @abstractmethod
    def stats(self) -> dict[str, Any]: ...

    @abstractmethod
    def close(self) -> None: ...
