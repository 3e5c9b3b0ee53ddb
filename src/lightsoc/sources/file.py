"""`file` source: tail -F over globs, and one-shot import.

A stream is one file identity (device:inode), so a file keeps its offset when
it is renamed by rotation, and a new file at the same path is a new stream.
Truncation (copytruncate) is seen as a smaller size or changed first bytes
and starts a new generation of the stream from offset 0. Gzip files are
imported once, decompressed. Offsets are committed by the processor in the
same transaction as the events they produced (see `store.events_duckdb`).
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import polars as pl

from lightsoc.bus.base import RawBatch
from lightsoc.registry import register
from lightsoc.sources.base import Publish, Source
from lightsoc.sources.lines import OFFSET, lines_from_list, split_lines
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 256
READ_CHUNK = 4 << 20
# A stream whose path is gone (rotated away, deleted) is closed after this many idle polls.
CLOSE_GONE_AFTER_POLLS = 8


@dataclass
class _Stream:
    key: str
    path: str
    fh: IO[bytes]
    offset: int
    generation: int
    fingerprint: str
    fp_len: int
    gz: bool
    pending: bytes = b""
    skipping: bool = False
    gone: bool = False
    idle_polls: int = 0
    done: bool = False

    def prefix(self, source: str) -> str:
        raw = f"{source}|{self.key}|{self.generation}".encode()
        return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _fingerprint(fh: IO[bytes], gz: bool) -> tuple[str, int]:
    if gz:
        fh = fh.fileobj  # type: ignore[attr-defined]  # fingerprint the compressed bytes
    head = os.pread(fh.fileno(), FINGERPRINT_BYTES, 0)
    return hashlib.sha1(head, usedforsecurity=False).hexdigest(), len(head)


@register("sources", "file")
class FileSource(Source):
    type = "file"

    def __init__(
        self,
        source_id: str,
        config: Any,
        *,
        checkpoints: dict[str, Checkpoint],
        one_shot: bool = False,
        batch_max_rows: int = 65536,
    ) -> None:
        super().__init__(source_id, config, checkpoints=checkpoints)
        self.one_shot = one_shot
        self.batch_max_rows = batch_max_rows
        self.streams: dict[str, _Stream] = {}
        self._first_scan = True
        self._max_line = int(getattr(config, "max_line_bytes", 1 << 20))
        self._reported: set[str] = set()

    # -- discovery -------------------------------------------------------
    def _paths(self) -> list[str]:
        found: list[str] = []
        excludes = list(getattr(self.config, "exclude", []) or [])
        for pattern in self.config.paths:
            matches = sorted(glob.glob(os.path.expanduser(pattern)))
            if not matches and not glob.has_magic(pattern):
                self._error(f"path {pattern} does not exist (retrying)")
            for path in matches:
                if os.path.isfile(path) and not any(
                    fnmatch.fnmatch(path, ex) or fnmatch.fnmatch(os.path.basename(path), ex)
                    for ex in excludes
                ):
                    found.append(path)
        return found

    def _error(self, msg: str) -> None:
        self.metrics.errors += 1
        self.metrics.last_error = msg
        if msg not in self._reported:
            self._reported.add(msg)
            log.warning("source %s: %s", self.id, msg)

    def scan(self) -> None:
        seen: set[str] = set()
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError as exc:
                self._error(f"{path}: {exc.strerror}")
                continue
            gz = path.endswith(".gz")
            key = f"{'gz:' if gz else ''}{st.st_dev}:{st.st_ino}"
            seen.add(key)
            stream = self.streams.get(key)
            if stream is not None:
                stream.path, stream.gone = path, False
                continue
            self._open(key, path, gz, st.st_size)
        for key, stream in self.streams.items():
            if key not in seen:
                stream.gone = True
        self._first_scan = False

    def _open(self, key: str, path: str, gz: bool, size: int) -> None:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - kept open while tailing
            fh: IO[bytes] = gzip.GzipFile(fileobj=raw) if gz else raw
        except OSError as exc:
            self._error(f"{path}: {exc.strerror or exc}")
            return
        fp, fp_len = _fingerprint(fh, gz)
        cp = self.committed.get(key)
        generation, offset = 0, 0
        if cp is not None:
            if _same_file(fh, gz, cp):
                generation, offset = cp.generation, cp.offset
                if cp.done:
                    fh.close()
                    self.streams[key] = _Stream(
                        key, path, fh, offset, generation, fp, fp_len, gz, done=True
                    )
                    return
            else:
                generation = cp.generation + 1  # inode reused by another file
        elif self._first_scan and getattr(self.config, "start_at", "beginning") == "end" and not gz:
            offset = _last_line_end(fh, size)
        if gz:
            _skip(fh, offset)
        else:
            fh.seek(offset)
        self.streams[key] = _Stream(key, path, fh, offset, generation, fp, fp_len, gz)
        self._reported.discard(path)

    # -- reading ---------------------------------------------------------
    def _check_truncation(self, s: _Stream) -> None:
        if s.gz or s.done:
            return
        try:
            size = os.fstat(s.fh.fileno()).st_size
        except OSError:
            return
        truncated = size < s.offset + len(s.pending)
        if not truncated and s.fp_len:
            head = os.pread(s.fh.fileno(), s.fp_len, 0)
            truncated = hashlib.sha1(head, usedforsecurity=False).hexdigest() != s.fingerprint
        if truncated:
            self.metrics.extra["truncations"] = self.metrics.extra.get("truncations", 0) + 1
            s.generation += 1
            s.offset, s.pending, s.skipping = 0, b"", False
            s.fh.seek(0)
            s.fingerprint, s.fp_len = _fingerprint(s.fh, False)
        elif s.fp_len < FINGERPRINT_BYTES and size > s.fp_len:
            s.fingerprint, s.fp_len = _fingerprint(s.fh, False)
        self.metrics.lag_bytes = max(0, size - s.offset - len(s.pending))

    def _read(self, s: _Stream, frames: list[pl.DataFrame]) -> tuple[int, int, bool]:
        """Read complete lines of a stream; returns (rows, bytes, more data may follow)."""
        try:
            chunk = s.fh.read(READ_CHUNK)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self._error(f"{s.path}: {exc}")
            s.done = s.gz
            return self._flush(s, frames)
        if not chunk:
            if s.gz or self.one_shot:
                rows, nbytes, _ = self._flush(s, frames)
                s.done = s.gz
                return rows, nbytes, False
            return 0, 0, False
        s.idle_polls = 0
        data = s.pending + chunk if s.pending else chunk
        start = s.offset
        if s.skipping:  # discarding the rest of an oversize line
            nl = data.find(b"\n")
            if nl < 0:
                s.offset += len(data)
                s.pending = b""
                return 0, len(data), True
            s.skipping = False
            data, start = data[nl + 1 :], start + nl + 1
        frame, consumed, skipped = split_lines(data, start, self._max_line)
        self.metrics.skipped_empty += skipped
        rest = data[consumed:]
        nbytes = (start - s.offset) + consumed
        s.offset = start + consumed
        if len(rest) > self._max_line:  # an oversize line: keep its head, skip its tail
            frame = pl.concat([frame, lines_from_list([rest], [s.offset], self._max_line)])
            s.offset += len(rest)
            nbytes += len(rest)
            rest, s.skipping = b"", True
        s.pending = rest
        if frame.height:
            frames.append(self._with_ids(s, frame))
        return frame.height + skipped, nbytes, True

    def _flush(self, s: _Stream, frames: list[pl.DataFrame]) -> tuple[int, int, bool]:
        """End of a one-shot input: the last line without newline is a record too."""
        if not s.pending or s.skipping:
            s.pending = b""
            return 0, 0, False
        frame = lines_from_list([s.pending], [s.offset], self._max_line)
        nbytes = len(s.pending)
        s.offset += nbytes
        s.pending = b""
        if frame.height:
            frames.append(self._with_ids(s, frame))
        return frame.height, nbytes, False

    def _with_ids(self, s: _Stream, frame: pl.DataFrame) -> pl.DataFrame:
        prefix = s.prefix(self.id) + "-"
        return frame.with_columns(
            (pl.lit(prefix) + pl.col(OFFSET).cast(pl.Utf8)).alias("event.id"),
            pl.lit(s.path).alias("log.file.path"),
        )

    def poll(self, publish: Publish) -> bool:
        """One pass over all files; returns True if anything was read."""
        self.scan()
        any_data = False
        for s in list(self.streams.values()):
            if s.done:
                continue
            self._check_truncation(s)
            stream_read = False
            more = True
            while more and not self.stop_event.is_set():
                frames: list[pl.DataFrame] = []
                rows = nbytes = 0
                while more and rows < self.batch_max_rows:
                    r, b, more = self._read(s, frames)
                    rows, nbytes = rows + r, nbytes + b
                if nbytes or s.done:
                    stream_read = any_data = True
                    self._publish(publish, s, frames, rows, nbytes)
            if not stream_read:
                s.idle_polls += 1
            if s.gone and s.idle_polls >= CLOSE_GONE_AFTER_POLLS:
                s.fh.close()
                del self.streams[s.key]
        return any_data

    def _publish(
        self, publish: Publish, s: _Stream, frames: list[pl.DataFrame], rows: int, nbytes: int
    ) -> None:
        records = pl.concat(frames) if frames else pl.DataFrame()
        self.metrics.received += rows
        self.metrics.bytes += nbytes
        self.metrics.last_seen = datetime.now(UTC)
        cp = Checkpoint(
            self.id, s.key, s.path, s.fingerprint, s.fp_len, s.generation, s.offset, s.done
        )
        publish(
            RawBatch(
                source=self.id, source_type=self.type, records=records, checkpoints=[cp],
                bytes=nbytes, skipped=rows - records.height,
            )
        )

    def run(self, publish: Publish) -> None:
        interval = float(getattr(self.config, "poll_interval", 0.25))
        while not self.stop_event.is_set():
            read = self.poll(publish)
            if self.one_shot:
                break  # a poll reads every file to its end
            if not read:
                self.stop_event.wait(interval)
        for s in self.streams.values():
            if not s.fh.closed:
                s.fh.close()


def _same_file(fh: IO[bytes], gz: bool, cp: Checkpoint) -> bool:
    raw = fh.fileobj if gz else fh  # type: ignore[attr-defined]
    head = os.pread(raw.fileno(), cp.fingerprint_len, 0)
    return (
        len(head) == cp.fingerprint_len
        and hashlib.sha1(head, usedforsecurity=False).hexdigest() == cp.fingerprint
    )


def _last_line_end(fh: IO[bytes], size: int) -> int:
    """Offset just after the last complete line (for `start_at: end`)."""
    back = min(size, 1 << 16)
    tail = os.pread(fh.fileno(), back, size - back)
    nl = tail.rfind(b"\n")
    return size - back + nl + 1 if nl >= 0 else 0


def _skip(fh: IO[bytes], offset: int) -> None:
    remaining = offset
    while remaining > 0:
        got = fh.read(min(remaining, READ_CHUNK))
        if not got:
            break
        remaining -= len(got)
