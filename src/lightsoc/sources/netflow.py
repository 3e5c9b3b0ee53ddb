"""`netflow` source: receive NetFlow v5/v9 and IPFIX over UDP.

Every `listen` address (`udp://HOST:PORT`) is a non-blocking UDP socket with
a large receive buffer, served by one `selectors` loop in the source's
thread (binding, retries and reporting: `sources.listen`). Each datagram is
decoded at once (`NetflowDecoder` with a
`FlowBatch`: templates are parsed, data sets queued), and the batch's ECS
columns are built and published as one `RawBatch(parsed=True)` when
`batch_max_rows` flows are queued or `flush_seconds` (`pipeline.batch_max_ms`) after the first one.

An exporter is its `ip:port`: a UDP "transport session" in RFC 7011 terms,
which is what templates are scoped to, so two exporters behind one address
(or one that restarted on a new port) never share template ids. It is also
`log.source.address` and the key of `senders`, the per-exporter counters
(datagrams, flows, bytes, malformed, unknown_version, templates,
template_changes, template_collisions, pending, dropped, last_seen). Bad input is counted there
and in `metrics.extra` / `metrics.errors`, never fatal. Data sets waiting
for their template are dropped after `pending_seconds` (checked on a timer,
not only when the next datagram arrives).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import polars as pl

from lightsoc.bus.base import RawBatch
from lightsoc.registry import register
from lightsoc.sources.base import Publish, Source
from lightsoc.sources.listen import Listener, Listeners, host_port, parse_listen
from lightsoc.sources.netflow_columns import FlowBatch
from lightsoc.sources.netflow_decode import NetflowDecoder
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

READS_PER_WAKE = 2048  # then let the other sockets and the flush timer have a turn
#: decoder counters summed per exporter (and in `metrics.extra`)
COUNTED = (
    "malformed",
    "unknown_version",
    "templates",
    "template_changes",
    "template_collisions",
    "pending",
)


@register("sources", "netflow")
class NetflowSource(Source):
    type = "netflow"

    def __init__(
        self,
        source_id: str,
        config: Any,
        *,
        checkpoints: dict[str, Checkpoint],
        one_shot: bool = False,  # a network source has no end: ignored
        batch_max_rows: int = 65536,
        pending_seconds: float = 10.0,
    ) -> None:
        super().__init__(source_id, config, checkpoints=checkpoints)
        self.batch_max_rows = max(1, batch_max_rows)
        # every address is UDP (the config accepts only udp://)
        items = [Listener(url, "udp", *parse_listen(url)[1:]) for url in config.listen]
        self.listeners = Listeners(self, items, log)
        self.decoder = NetflowDecoder(pending_seconds=pending_seconds)
        #: per exporter "ip:port": counters (see module doc); replaced, never mutated
        self.senders: dict[str, dict[str, Any]] = {}
        self._dropped_seen: dict[str, int] = {}
        self._reset()

    # -- batching --------------------------------------------------------
    def _reset(self) -> None:
        self._batch = FlowBatch()
        self._bytes = 0
        self._first = 0.0
        self._pending_senders: dict[str, list[int]] = {}

    def _datagram(self, data: bytes, exporter: str, now: float) -> None:
        _, c = self.decoder.decode(data, exporter, now, self._batch)
        s = self._pending_senders.get(exporter)
        if s is None:
            s = self._pending_senders[exporter] = [0] * (3 + len(COUNTED))
        s[0] += 1
        s[1] += c["flows"]
        s[2] += len(data)
        s[3] += c["malformed"]
        s[4] += c["unknown_version"]
        s[5] += c["templates"] + c["options_templates"]
        s[6] += c["template_changes"]
        s[7] += c["template_collisions"]
        s[8] += c["pending"]
        self._bytes += len(data)
        if not self._first:
            self._first = now

    def _flush(self, publish: Publish) -> None:
        self.decoder.flush_pending(time.monotonic())
        dropped = {
            k: v - self._dropped_seen.get(k, 0)
            for k, v in self.decoder.dropped_by.items()
            if v != self._dropped_seen.get(k, 0)
        }
        if not self._bytes and not dropped:
            return
        self._dropped_seen = dict(self.decoder.dropped_by)
        rows, lost = self._batch.rows, 0
        try:
            records = self._batch.frame()
        except Exception as exc:  # a decoder bug must not stop the source
            log.exception("source %s: building a batch of %d flows failed", self.id, rows)
            self.listeners.report(f"building a batch failed: {type(exc).__name__}: {exc}")
            records, lost = pl.DataFrame(), rows
        now = datetime.now(UTC)
        m = self.metrics
        m.received += rows
        m.bytes += self._bytes
        m.dropped += lost
        if rows:
            m.last_seen = now
        senders = dict(self.senders)
        stamp = now.isoformat()
        for exporter in set(self._pending_senders) | set(dropped):
            add = self._pending_senders.get(exporter, [0] * (3 + len(COUNTED)))
            old = senders.get(exporter) or dict.fromkeys(
                ("datagrams", "flows", "bytes", *COUNTED, "dropped"), 0
            )
            new = dict(old)
            for i, key in enumerate(("datagrams", "flows", "bytes", *COUNTED)):
                new[key] = old[key] + add[i]
            new["dropped"] = old["dropped"] + dropped.get(exporter, 0)
            if exporter in self._pending_senders:
                new["last_seen"] = stamp
            senders[exporter] = new
            for key in ("malformed", "unknown_version"):
                m.errors += add[3 + COUNTED.index(key)]
            for i, key in enumerate(COUNTED):
                m.extra[key] = m.extra.get(key, 0) + add[3 + i]
            m.extra["dropped_sets"] = m.extra.get("dropped_sets", 0) + dropped.get(exporter, 0)
        self.senders = senders
        m.extra["pending_sets"] = self.decoder.pending
        batch = RawBatch(
            source=self.id,
            source_type=self.type,
            records=records,
            checkpoints=[],
            bytes=self._bytes,
            dropped=lost,
            parsed=True,
        )
        self._reset()
        publish(batch)

    # -- listeners -------------------------------------------------------
    def bound_port(self, index: int = 0) -> int | None:
        """The port listener `index` is bound to (None while it is not)."""
        return self.listeners.bound_port(index)

    # -- running ---------------------------------------------------------
    def _read(self, lst: Listener, publish: Publish) -> None:
        for data, addr in self.listeners.datagrams(lst, READS_PER_WAKE):
            self._datagram(data, host_port(addr), time.monotonic())
            if self._batch.rows >= self.batch_max_rows:
                self._flush(publish)

    def run(self, publish: Publish) -> None:
        self.listeners.open()
        try:
            self._serve(publish)
        finally:
            try:
                self._flush(publish)  # what was received is not lost on stop
            finally:
                self.listeners.close()

    def _serve(self, publish: Publish) -> None:
        last_tick = time.monotonic()
        while not self.stop_event.is_set():
            now = time.monotonic()
            self.listeners.bind_due(now)
            timeout = self.flush_seconds
            if self._first:
                timeout = max(0.0, min(timeout, self._first + self.flush_seconds - now))
            for key, _ in self.listeners.wait(timeout):
                self._read(key.data, publish)
            now = time.monotonic()
            # the timer also expires data held for templates that never came
            if (self._first and now - self._first >= self.flush_seconds) or (
                now - last_tick >= self.flush_seconds and self.decoder.pending
            ):
                self._flush(publish)
                last_tick = now
