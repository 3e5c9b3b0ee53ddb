"""In-process bus: a bounded queue. Full queue = backpressure on sources."""

from __future__ import annotations

import queue

from lightsoc.bus.base import Bus, RawBatch


class MemoryBus(Bus):
    def __init__(self, max_batches: int = 8) -> None:
        self._q: queue.Queue[RawBatch] = queue.Queue(maxsize=max_batches)

    def publish(self, batch: RawBatch, timeout: float | None = None) -> bool:
        try:
            self._q.put(batch, timeout=timeout)
        except queue.Full:
            return False
        return True

    def consume(self, timeout: float) -> RawBatch | None:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def ack(self, batch: RawBatch) -> None:
        self._q.task_done()

    def depth(self) -> int:
        return self._q.qsize()
