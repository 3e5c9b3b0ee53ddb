"""The Kafka bus's consumer-side commit tracking (`bus.kafka`): acks recorded per
partition, commits of the commit points that moved (async while consuming, sync
on revoke and close), the rebalance callbacks that drop a lost partition's
state, and the depth (lag) of the assigned partitions.

`ConsumerCommits` is a mixin of `KafkaBus` and has no state of its own: it
works on the bus's offsets and metrics under the bus's lock. It lives apart
because it is the one part of the bus that decides what the group commits
(never past an unacked message); publishing, decoding and dead letters stay
in `bus.kafka`. Everything here runs in the consumer's thread (inside
`consume` and `close`, or librdkafka callbacks served there), except `_ack`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from lightsoc.bus.kafka_config import PartitionOffsets

log = logging.getLogger("lightsoc.bus.kafka")

LAG_SECONDS = 1.0

TP = tuple[str, int]


class ConsumerCommits:
    """Commit points, commits and rebalance handling of `KafkaBus` (a mixin)."""

    # set by `KafkaBus.__init__`; the dicts and sets only under `_lock`
    topic: str
    _lock: threading.RLock
    _metrics: dict[str, Any]
    _consumer: Any
    _tp_cls: Any
    _assigned: set[TP]
    _offsets: dict[TP, PartitionOffsets]
    _requested: dict[TP, int]  # last commit asked for (async, maybe in flight)
    _confirmed: dict[TP, int]  # last commit the coordinator confirmed
    _depth: int
    _next_lag: float

    def _error(self, msg: str) -> None:
        raise NotImplementedError  # `KafkaBus._error`

    def _settle_dead_letters(self) -> None:
        raise NotImplementedError  # `KafkaBus._settle_dead_letters`

    def _ack(self, tp: TP, offset: int) -> None:
        with self._lock:
            offsets = self._offsets.get(tp)
            if offsets is not None:  # None: revoked since, the new owner reads it again
                offsets.acked(offset)

    # -- commits (consumer's thread) -----------------------------------------
    def _commit(self, sync: bool, only: set[TP] | None = None) -> None:
        """Commit the commit points that moved; sync also re-sends unconfirmed ones.

        Runs in the consumer's thread only, so no rebalance can interleave; the
        lock is not held over the network call (acks and publishes go on).
        """
        with self._lock:
            done = self._confirmed if sync else self._requested
            todo = {
                tp: point
                for tp, off in self._offsets.items()
                if (point := off.point()) >= 0
                and point != done.get(tp)
                and tp in self._assigned
                and (only is None or tp in only)
            }
            if not todo:
                return
            if not sync:
                self._requested.update(todo)
        tps = [self._tp_cls(t, p, off) for (t, p), off in todo.items()]
        try:
            if sync:
                self._commit_result(None, self._consumer.commit(offsets=tps, asynchronous=False))
            else:
                self._consumer.commit(offsets=tps, asynchronous=True)
        except Exception as exc:  # KafkaException: tried again with the next commit
            with self._lock:
                for tp in todo:
                    self._requested.pop(tp, None)
            self._error(f"commit failed: {exc}")

    def _commit_result(self, err: Any, partitions: list[Any] | None) -> None:
        """Async commit callback (served by poll) and sync commit results."""
        with self._lock:
            for p in partitions or []:
                tp = (p.topic, p.partition)
                if err is None and p.error is None:
                    if self._confirmed.get(tp) != p.offset:  # sync results come twice
                        self._confirmed[tp] = p.offset
                        self._metrics["committed"] += 1
                else:
                    self._requested.pop(tp, None)  # commit it again next time
        bad = err or next((p.error for p in partitions or [] if p.error is not None), None)
        if bad is not None:
            self._error(f"commit failed: {bad}")

    # -- rebalance callbacks (served by poll/close in the consumer's thread) -
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        with self._lock:
            self._metrics["rebalances"] += 1
            self._assigned.update((p.topic, p.partition) for p in partitions)
            self._metrics["partitions"] = sorted(f"{t}[{p}]" for t, p in self._assigned)
        self._next_lag = 0.0

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._settle_dead_letters()
        self._commit(sync=True, only=tps)  # what is stored, while we still own them
        self._forget(tps)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._forget({(p.topic, p.partition) for p in partitions})

    def _forget(self, tps: set[TP]) -> None:
        """Unacked messages of these partitions go to their next owner."""
        with self._lock:
            for tp in tps:
                self._assigned.discard(tp)
                self._offsets.pop(tp, None)
                self._requested.pop(tp, None)
                self._confirmed.pop(tp, None)
            self._metrics["partitions"] = sorted(f"{t}[{p}]" for t, p in self._assigned)
        self._next_lag = 0.0

    def _refresh_depth(self) -> None:
        """High watermark - commit point per assigned partition (local calls only)."""
        self._next_lag = time.monotonic() + LAG_SECONDS
        with self._lock:
            points = {tp: o.unacked() for tp, o in self._offsets.items() if tp in self._assigned}
            assigned = sorted(self._assigned)
        if not assigned:
            with self._lock:
                self._depth = 0
            return
        total = 0
        try:
            positions = self._consumer.position([self._tp_cls(t, p) for t, p in assigned])
            for pos in positions:
                tp = (pos.topic, pos.partition)
                base = points.get(tp, -1)
                if base < 0:
                    base = pos.offset
                _, high = self._consumer.get_watermark_offsets(pos, cached=True)
                if base is not None and base >= 0 and high is not None and high >= 0:
                    total += max(0, high - base)
        except Exception as exc:  # not known yet
            log.debug("kafka bus %s: lag unknown: %s", self.topic, exc)
            return
        with self._lock:
            self._depth = total
