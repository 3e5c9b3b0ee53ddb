"""Store interfaces shared by the embedded and the scale-out backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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


@dataclass
class EntitySummary:
    """What the events say about one entity (`EventStore.entity_summary`)."""

    entity: str
    total: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    #: event count per `event.dataset` ("unknown" for none), largest first
    datasets: dict[str, int] = field(default_factory=dict)
    #: how many events hold it as an IP, a user, a host or a domain
    roles: dict[str, int] = field(default_factory=dict)
    #: enrichment of the side it was on: country, city, as_number, as_org, zone
    geo: dict[str, Any] = field(default_factory=dict)
    #: distinct threat-intel matches: indicator, type, provider, feed, field, events
    intel: list[dict[str, Any]] = field(default_factory=list)


class EventStore(ABC):
    """append / search / aggregate / timeline / retention over ECS events."""

    @abstractmethod
    def append(
        self,
        batch: pa.Table | pl.DataFrame,
        checkpoints: Sequence[Checkpoint] = (),
        counters: Iterable[SourceCounters] = (),
        *,
        batch_id: str = "",
    ) -> bool:
        """Store a batch with its checkpoints and counters; False if `batch_id`
        (a shared bus's batch id) was stored before and the batch was skipped."""

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
        offset: int = 0,
    ) -> pa.Table: ...

    def search_batches(
        self,
        query: str = "",
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
        limit: int = 100_000,
        order: str = "desc",
        batch_rows: int = 10_000,
    ) -> Iterator[pa.RecordBatch]:
        """Like `search`, in record batches (exports); a backend may stream them."""
        yield from self.search(query, time_range, fields, limit, order).to_batches(batch_rows)

    @abstractmethod
    def count(
        self, query: str = "", time_range: TimeRange | None = None, limit: int | None = None
    ) -> int:
        """Matching events; with `limit`, at most `limit` (the scan may stop there)."""

    @abstractmethod
    def top(
        self, field: str, query: str = "", time_range: TimeRange | None = None, n: int = 10
    ) -> list[tuple[Any, int]]: ...

    @abstractmethod
    def histogram(
        self, interval_seconds: int, query: str = "", time_range: TimeRange | None = None
    ) -> list[tuple[datetime, int]]: ...

    @abstractmethod
    def histogram_by(
        self,
        interval_seconds: int,
        field: str,
        query: str = "",
        time_range: TimeRange | None = None,
        limit: int = 10,
    ) -> list[tuple[datetime, Any, int]]:
        """(bucket, value, count) for the `limit` most common values of `field`;
        other values and events without one are counted under value None."""

    @abstractmethod
    def top_many(
        self,
        fields: Sequence[str],
        query: str = "",
        time_range: TimeRange | None = None,
        n: int = 10,
    ) -> dict[str, list[tuple[Any, int]]]:
        """`top` of several fields at once: {field: [(value, count)]}."""

    @abstractmethod
    def source_counters(self) -> list[dict[str, Any]]:
        """Cumulative counters per source (the `sources` of `stats()`), cheaply."""

    @abstractmethod
    def timeline(
        self,
        entity: str,
        time_range: TimeRange | None = None,
        limit: int = 1000,
        fields: Sequence[str] | None = None,
        order: str = "asc",
        datasets: Sequence[str] | None = None,
    ) -> pa.Table:
        """Events whose entity fields hold `entity` (oldest first unless `order="desc"`),
        only of `datasets` if given ("unknown" stands for events without a dataset)."""

    @abstractmethod
    def events_by_id(
        self,
        ids: Sequence[str],
        time_range: TimeRange | None = None,
        fields: Sequence[str] | None = None,
    ) -> pa.Table:
        """The events with these `event.id`s (an alert's sample), oldest first;
        `time_range` only narrows which segments are read."""

    @abstractmethod
    def entity_summary(self, entity: str, time_range: TimeRange | None = None) -> EntitySummary:
        """Counts, first/last seen, enrichment and intel hits of one entity's events."""

    @abstractmethod
    def retention(self, days: int, *, now: datetime | None = None) -> int: ...

    @abstractmethod
    def stats(self) -> dict[str, Any]: ...

    @abstractmethod
    def close(self) -> None: ...
