"""`pcap` source: DNS events from a capture file or a live interface.

`file:` reads a pcap/pcapng file (`sources.pcap_file`) and decodes DNS
(`sources.dns_decode`) into ECS columns, published as `RawBatch(parsed=True)`.
The byte offset after each batch is the checkpoint (stream `pcap:<dev>:<ino>`,
fingerprint = hash of the first 256 bytes), committed with the batch's
events, so importing the same file again stores nothing twice and a grown
file is read on from where it ended. One-shot (`lightsoc ingest`) reads to
the end and then reports every query still waiting as unanswered; otherwise
the file is polled for growth (a capture still being written).

Limitation: queries waiting for their answer and partial TCP messages live in
memory only; if lightsoc stops mid-file, a restart resumes after the last
batch, and responses to queries read before it become responses without query.

`interface:` reads `sources.capture.LiveCapture(interface, filter, snaplen)`
(imported lazily: file mode does not need it); unanswered queries time out
by wall-clock time too. Event ids are `<hash of source, stream>-<byte offset
of the query record>` for files and `<hash of source, interface, start>-<n>`
for live capture.

`metrics.extra` counts packets, dns_messages, queries, responses, answered,
unanswered, orphan_responses, malformed (and `malformed_<reason>`), non_dns,
fragments, bad_packets, cut_records, and the capture's own stats
(`capture_<name>`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lightsoc.bus.base import RawBatch
from lightsoc.registry import register
from lightsoc.sources import file_identity as fid
from lightsoc.sources.base import Publish, Source
from lightsoc.sources.dns_decode import DnsDecoder
from lightsoc.sources.pcap_file import CaptureFile
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
POLL_SECONDS = 1.0
LIVE_READ_SECONDS = 0.2
LIVE_FLUSH_SECONDS = 0.5
_START_NS = time.time_ns()


def _prefix(*parts: object) -> str:
    raw = "|".join(map(str, parts)).encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest() + "-"


@register("sources", "pcap")
class PcapSource(Source):
    type = "pcap"

    def __init__(
        self,
        source_id: str,
        config: Any,
        *,
        checkpoints: dict[str, Checkpoint],
        one_shot: bool = False,
        batch_max_rows: int = 65536,
        timeout: float | None = None,
    ) -> None:
        super().__init__(source_id, config, checkpoints=checkpoints)
        self.committed = dict(checkpoints)
        self.one_shot = one_shot
        # a query and its response make one event: batches of about `batch_max_rows` events
        # (half as many packets per batch cost ~5% of an import's speed in fixed costs)
        self.batch_packets = max(1, 2 * batch_max_rows)
        #: seconds a query waits for its response before it is an unanswered event
        self.timeout = float(timeout or getattr(config, "timeout", None) or DEFAULT_TIMEOUT)
        self.decoder: DnsDecoder | None = None
        self._capture_stats: dict[str, int] = {}

    # -- shared ------------------------------------------------------------------
    def _publish(
        self,
        publish: Publish,
        records: pl.DataFrame,
        packets: int,
        nbytes: int,
        checkpoint: Checkpoint | None,
    ) -> None:
        assert self.decoder is not None
        m = self.metrics
        m.received += packets
        m.bytes += nbytes
        if records.height:
            m.last_seen = datetime.now(UTC)
        m.extra = {**self.decoder.counters, **self._capture_stats}  # replaced, never mutated
        if checkpoint is not None:
            self.committed[checkpoint.stream] = checkpoint
        publish(
            RawBatch(
                source=self.id,
                source_type=self.type,
                records=records,
                checkpoints=[checkpoint] if checkpoint is not None else [],
                bytes=nbytes,
                skipped=max(0, packets - records.height),
                parsed=True,
            )
        )

    def run(self, publish: Publish) -> None:
        if getattr(self.config, "file", None) is not None:
            self._run_file(publish, Path(self.config.file))
        else:
            self._run_live(publish)

    # -- file mode ---------------------------------------------------------------
    def _run_file(self, publish: Publish, path: Path) -> None:
        with open(path, "rb") as raw:
            st = os.fstat(raw.fileno())
            fp, fp_len = fid.fingerprint(raw)
        key = f"pcap:{st.st_dev}:{st.st_ino}"
        start, generation = 0, 0
        cp = self.committed.get(key)
        if cp is not None:
            if cp.fingerprint == fp and cp.offset <= st.st_size:
                start, generation = cp.offset, cp.generation
            else:  # another file at the same inode, or rewritten
                generation = cp.generation + 1
        self.decoder = DnsDecoder(timeout=self.timeout, id_prefix=_prefix(self.id, key, generation))
        # A batch is published once the next one is read (not decoded: reading is cheap),
        # so the last one can carry the queries flushed at the end (received == packets
        # for a whole import) and the others go out as soon as they are decoded.
        held: tuple[pl.DataFrame, int, int, Checkpoint] | None = None
        problems: dict[str, int] = {}
        while not self.stop_event.is_set():
            cf = CaptureFile(path, start)
            # a small first batch (1/8): the first events of an import are stored ~0.5 s
            # sooner (throughput is the decoding thread's, whatever the batch sizes)
            batches = cf.batches(self.batch_packets, max(1, self.batch_packets // 8))
            batch = next(batches, None)
            while batch is not None:
                self.decoder.decode(batch.linktype, batch.packets, batch.positions)
                self.decoder.expire()
                cp = Checkpoint(self.id, key, str(path), fp, fp_len, generation, batch.end_offset)
                events = self.decoder.take(community_ids=False)  # made by the processor
                held = (events, len(batch.packets), batch.end_offset - start, cp)
                start = batch.end_offset
                batch = None if self.stop_event.is_set() else next(batches, None)
                if batch is not None:
                    self._publish(publish, *held)
                    held = None
            problems = {k: v for k, v in cf.counters.items() if v}
            if self.one_shot:
                break
            if held is not None:
                self._publish(publish, *held)
                held = None
            self.stop_event.wait(POLL_SECONDS)  # a capture still being written grows
        # a file being written may end inside a record: only the state at the end counts
        self.decoder.counters.update(problems)
        if problems.get("cut_records"):
            log.warning("source %s: %s ends inside a record (cut capture)", self.id, path)
        self.decoder.flush()
        rest = self.decoder.take(community_ids=False)
        if held is None:
            cp = Checkpoint(self.id, key, str(path), fp, fp_len, generation, start)
            held = (rest, 0, 0, cp)
        elif rest.height:
            held = (pl.concat([held[0], rest], how="diagonal"), *held[1:])
        self._publish(publish, *held)

    # -- live mode ---------------------------------------------------------------
    def _run_live(self, publish: Publish) -> None:
        from lightsoc.sources.capture import LiveCapture  # lazily: file mode runs without it

        cfg = self.config
        cap = LiveCapture(cfg.interface, getattr(cfg, "filter", None), int(cfg.snaplen))
        self.decoder = DnsDecoder(
            timeout=self.timeout, id_prefix=_prefix(self.id, cfg.interface, _START_NS)
        )
        last = time.monotonic()
        packets = nbytes = 0
        try:
            while not self.stop_event.is_set():
                got = cap.read(self.batch_packets, LIVE_READ_SECONDS)
                if got:
                    self.decoder.decode(cap.linktype, got)
                    packets += len(got)
                    nbytes += sum(len(p) for _, p in got)
                self.decoder.expire(time.time_ns() // 1000)
                now = time.monotonic()
                if packets >= self.batch_packets or (packets and now - last >= LIVE_FLUSH_SECONDS):
                    self._live_stats(cap)
                    self._publish(publish, self.decoder.take(), packets, nbytes, None)
                    packets = nbytes = 0
                    last = now
                elif self.decoder.rows and now - last >= LIVE_FLUSH_SECONDS:
                    last = now
                    self._live_stats(cap)
                    self._publish(publish, self.decoder.take(), 0, 0, None)  # timed-out queries
        finally:
            self.decoder.flush()
            self._live_stats(cap)
            cap.close()
            self._publish(publish, self.decoder.take(), packets, nbytes, None)

    def _live_stats(self, cap: Any) -> None:
        try:
            self._capture_stats = {f"capture_{k}": int(v) for k, v in cap.stats().items()}
        except Exception:  # stats are informative; never stop capturing for them
            log.debug("capture stats failed", exc_info=True)
