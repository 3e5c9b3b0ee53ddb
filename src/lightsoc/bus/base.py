"""The bus interface: collectors publish raw batches, processors consume them.

A raw batch carries the records exactly as received plus everything needed to
commit them: the checkpoints they advance and the counters they add. A
processor acknowledges a batch only after its events are stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lightsoc.store.base import Checkpoint


@dataclass
class RawBatch:
    """Raw records of one source.

    `records` has `event.original` (str) and whatever per-record metadata the
    source knows (`event.id`, `log.file.path`, `log.offset`, `_truncated`,
    `_invalid_utf8`). A source that decodes binary input itself (NetFlow,
    packets) sets `parsed` and sends ECS columns instead: the processor then
    skips parsing and only enriches and conforms. Such records may carry
    `_parse_ok` (False for a record kept as a failure) and
    `_parse_failure_tag`.

    `on_commit` is called by the writer with True once the batch's events
    are committed, or with False if the pipeline gave up on it (shutdown
    while storage failed): request/response sources (HTTP ingest) answer
    their clients from it, and queue consumers (Redis, Kafka) acknowledge.
    """

    source: str
    source_type: str
    records: pl.DataFrame
    checkpoints: list[Checkpoint] = field(default_factory=list)
    bytes: int = 0
    dropped: int = 0
    #: records seen but not turned into events on purpose (empty lines)
    skipped: int = 0
    #: records are ECS columns already (decoded by the source)
    parsed: bool = False
    #: stable id of the batch on a shared bus (the same on every redelivery)
    batch_id: str = ""
    #: when a collector sent it (epoch seconds; end-to-end latency)
    sent: float = 0.0
    #: where a shared bus delivered it from (Redis entry id, Kafka partition/offset), for `ack`
    bus_ref: Any = field(default=None, repr=False)
    on_commit: Callable[[bool], None] | None = field(default=None, repr=False)


class Bus(ABC):
    @abstractmethod
    def publish(self, batch: RawBatch, timeout: float | None = None) -> bool:
        """Queue a batch; blocks while the bus is full (backpressure). False on timeout."""

    @abstractmethod
    def consume(self, timeout: float) -> RawBatch | None:
        """The next batch, or None after `timeout` seconds."""

    @abstractmethod
    def ack(self, batch: RawBatch) -> None:
        """The batch's events are stored; it may be forgotten."""

    def depth(self) -> int:
        return 0

    def metrics(self) -> dict[str, Any]:
        """Counters of a shared bus (published, consumed, acked, ...); none in memory."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
