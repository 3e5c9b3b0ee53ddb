"""`file` source: tail -F over globs, and one-shot import.

A stream is one file identity (device:inode), so a file keeps its offset when
it is renamed by rotation, and a new file at the same path is a new stream. A
stream whose file left the glob (renamed away, deleted) is still read through
its open handle until it has been idle for a few polls; then its unterminated
last line, if any, is emitted and it is closed. Truncation (copytruncate) is
seen as a smaller size or changed first bytes: the old generation's
unterminated line is emitted and a new generation of the stream starts at
offset 0. Gzip files are imported once, decompressed; in tail mode a gzip
file that ends early (still being written by the compressor) is read on as it
grows, and imported as it is, with an error reported, once it has not changed
for `gz_settle_seconds`.

Lines are split by `sources.lines.LineSplitter` (empty lines skipped and
counted, oversize lines truncated). In tail mode an unterminated last line is
held until it completes; in one-shot mode it is emitted at the end.

`start_at: end` starts files found by the first scan after their last
complete line (and skips gzip files found then); files that appear later are
read from their beginning. Such start positions are published as checkpoints
at once so a restart does not mistake a new file for an old one.

A missing path, a path that is not a regular file, or an unreadable file is
reported once per problem (`metrics.errors`, `metrics.last_error`) and
retried at every poll; `last_error` is cleared when the problem goes away.

Offsets are committed by the processor in the same transaction as the events
they produced (see `store.events_duckdb`); `event.id` is a hash of source id,
stream and generation plus the line's offset, so it is deterministic. A
checkpoint resumes a file only if its first 256 bytes and the 256 bytes
before the committed offset still match, so a file rewritten or an inode
reused while lightsoc was down is read as a new generation from offset 0.
Copies of streams already read (copytruncate copies, compressed rotations)
that the glob matches are recognised and read on from where the original
ended (see `sources.file_identity`).
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import polars as pl

from lightsoc.bus.base import RawBatch
from lightsoc.registry import register
from lightsoc.sources import file_identity as fid
from lightsoc.sources.base import Publish, Source
from lightsoc.sources.file_identity import FINGERPRINT_BYTES, GZ_ERRORS, READ_CHUNK
from lightsoc.sources.lines import OFFSET, TRUNCATED, LineSplitter
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

# A stream whose path is gone (rotated away, deleted) is closed after this many idle polls.
CLOSE_GONE_AFTER_POLLS = 8


@dataclass
class _Stream:
    key: str
    path: str
    raw: IO[bytes]  # the file itself
    fh: IO[bytes]  # what lines are read from: `raw`, or a GzipFile over it
    lines: LineSplitter
    generation: int
    fingerprint: str
    fp_len: int
    gz: bool
    gone: bool = False
    idle_polls: int = 0
    done: bool = False
    announce: bool = False  # publish the start position before any data
    short_size: int = -1  # gzip: file size when it last ended early
    short_since: float = 0.0  # ... and since when it has had that size

    @property
    def offset(self) -> int:
        return self.lines.offset

    def prefix(self, source: str) -> str:
        raw = f"{source}|{self.key}|{self.generation}".encode()
        return hashlib.blake2b(raw, digest_size=8).hexdigest()

    def close(self) -> None:
        for f in (self.fh, self.raw):
            if not f.closed:
                f.close()


@register("sources", "file")
class FileSource(Source):
    type = "file"
    #: a gzip file that ends early is taken as complete once unchanged this long
    gz_settle_seconds = 30.0

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
        # `committed` is kept up to date with every published checkpoint, so a
        # stream opened again in this process resumes where it was read to.
        self.committed = dict(checkpoints)
        self.one_shot = one_shot
        self.batch_max_rows = batch_max_rows
        self.streams: dict[str, _Stream] = {}
        self._first_scan = True
        self._max_line = int(getattr(config, "max_line_bytes", 1 << 20))
        self._start_at_end = getattr(config, "start_at", "beginning") == "end"
        # (kind, path) -> what is wrong with it now; kinds: "access" (cleared when
        # the path opens), "read" (cleared by the next good read), "data" (stays)
        self._problems: dict[tuple[str, str], str] = {}
        self._copies = fid.RotatedCopies()

    # -- problems --------------------------------------------------------
    def _problem(self, path: str, msg: str, kind: str = "access") -> None:
        """Report a problem with a path once (until it goes away or changes)."""
        if self._problems.get((kind, path)) == msg:
            return
        self._problems[(kind, path)] = msg
        self.metrics.errors += 1
        self.metrics.last_error = f"{path}: {msg}"
        log.warning("source %s: %s: %s", self.id, path, msg)

    def _resolve(self, path: str, kind: str = "access") -> None:
        if self._problems.pop((kind, path), None) is None:
            return
        if self._problems:
            (_, p), m = next(reversed(self._problems.items()))
            self.metrics.last_error = f"{p}: {m}"
        else:
            self.metrics.last_error = None

    # -- discovery -------------------------------------------------------
    def _paths(self) -> list[str]:
        found: list[str] = []
        excludes = list(getattr(self.config, "exclude", []) or [])
        for pattern in self.config.paths:
            pattern = os.path.expanduser(pattern)
            magic = glob.has_magic(pattern)
            matches = sorted(glob.glob(pattern))
            if not matches and not magic:
                self._problem(pattern, "does not exist (retrying)")
            for path in matches:
                if any(
                    fnmatch.fnmatch(path, ex) or fnmatch.fnmatch(os.path.basename(path), ex)
                    for ex in excludes
                ):
                    continue
                if os.path.isfile(path):
                    found.append(path)
                elif not magic:  # a glob may match directories; a named path must be a file
                    self._problem(path, "is not a regular file (retrying)")
        return found

    def scan(self) -> None:
        seen: set[str] = set()
        live = [s for s in self.streams.values() if not s.gz and not s.done]
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError as exc:  # vanished since the glob
                self._problem(path, exc.strerror or str(exc))
                continue
            gz = path.endswith(".gz")
            key = f"{'gz:' if gz else ''}{st.st_dev}:{st.st_ino}"
            seen.add(key)
            stream = self.streams.get(key)
            if stream is not None:
                stream.path, stream.gone = path, False
                self._resolve(path)
                continue
            if live and key not in self.committed and self._copy_in_progress(path, gz, live):
                continue  # opened once the stream it copies has ended, or they differ
            self._open(key, path, gz, st.st_size)
        for key, stream in self.streams.items():
            if key not in seen:
                stream.gone = True
        self._first_scan = False

    def _open(self, key: str, path: str, gz: bool, size: int) -> None:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - kept open while tailing
        except OSError as exc:
            self._problem(path, exc.strerror or str(exc))
            return
        try:
            stream = self._start(key, path, raw, gz, size)
        except GZ_ERRORS as exc:  # e.g. resuming inside a gzip file that is corrupt
            raw.close()
            self._problem(path, f"cannot resume: {exc}")
            return
        self.streams[key] = stream
        self._resolve(path)

    def _start(self, key: str, path: str, raw: IO[bytes], gz: bool, size: int) -> _Stream:
        fh: IO[bytes] = gzip.GzipFile(fileobj=raw) if gz else raw
        fp, fp_len = fid.fingerprint(raw)
        cp = self.committed.get(key)
        generation, offset, done, announce = 0, 0, False, False
        if cp is not None:
            if fid.same_file(raw, cp, gz):
                generation, offset, done = cp.generation, cp.offset, cp.done
            else:  # inode reused by another file, or truncated while we were away
                generation = cp.generation + 1
        else:
            offset = self._copy_offset(path, raw, fh, gz)
            if self._start_at_end and not self.one_shot:
                announce = True  # commit the start position before anything else
                if self._first_scan and not offset:
                    done = gz
                    offset = 0 if gz else fid.last_line_end(raw, size)
        stream = _Stream(
            key,
            path,
            raw,
            fh,
            LineSplitter(offset, self._max_line),
            generation,
            fp,
            fp_len,
            gz,
            done=done,
            announce=announce,
        )
        if done:
            stream.close()
        elif gz:
            fid.skip(fh, offset)
        else:
            raw.seek(offset)
            stream.lines.tail = fid.window_before(fh, raw, gz, offset)
        return stream

    # -- rotated copies (see `file_identity`) -------------------------------
    def _copy_in_progress(self, path: str, gz: bool, live: list[_Stream]) -> bool:
        stem = fid.name_stem(path)
        candidates = [
            s
            for s in live
            if s.fp_len == FINGERPRINT_BYTES
            and s.offset >= 2 * FINGERPRINT_BYTES
            and fid.name_stem(s.path) == stem
            and not s.raw.closed
        ]
        if not candidates:
            return False
        try:
            with open(path, "rb") as raw:
                new = fid.content_prefix(raw, gz, fid.PREFIX_COMPARE)
            for s in candidates:
                now = os.pread(s.raw.fileno(), max(len(new), FINGERPRINT_BYTES), 0)
                if fid.copy_in_progress(new, gz, s.fingerprint, now):
                    return True
        except OSError:
            pass
        return False

    def _copy_offset(self, path: str, raw: IO[bytes], fh: IO[bytes], gz: bool) -> int:
        """Where a new file that copies an ended stream generation goes on (else 0)."""
        head = fid.content_prefix(raw, gz, FINGERPRINT_BYTES)
        for ended in self._copies.candidates(path, head):
            if fid.window_before(fh, raw, gz, ended.offset) == ended.tail:
                n = self.metrics.extra.get("rotated_copies", 0)
                self.metrics.extra["rotated_copies"] = n + 1
                log.info(
                    "source %s: %s continues a rotated file at byte %d", self.id, path, ended.offset
                )
                return ended.offset
        return 0

    def _ended(self, s: _Stream) -> None:
        if not s.gz:
            self._copies.ended(s.path, s.fingerprint, s.fp_len, s.offset, s.lines.tail)

    # -- reading ---------------------------------------------------------
    def _check_truncation(self, s: _Stream, publish: Publish) -> None:
        if s.gz or s.done:
            return
        try:
            size = os.fstat(s.raw.fileno()).st_size
            truncated = size < s.offset + len(s.lines.pending)
            if not truncated and s.fp_len:
                head = os.pread(s.raw.fileno(), s.fp_len, 0)
                truncated = fid.sha1(head) != s.fingerprint
            if truncated:
                self.metrics.extra["truncations"] = self.metrics.extra.get("truncations", 0) + 1
                self._flush(s, publish)  # the old generation's unterminated last line
                self._ended(s)
                s.generation += 1
                s.lines.reset(0)
                s.raw.seek(0)
                s.fingerprint, s.fp_len = fid.fingerprint(s.raw)
            elif s.fp_len < FINGERPRINT_BYTES and size > s.fp_len:
                s.fingerprint, s.fp_len = fid.fingerprint(s.raw)
        except OSError as exc:
            self._problem(s.path, str(exc), "read")

    def _read(self, s: _Stream, frames: list[pl.DataFrame]) -> tuple[int, bool]:
        """Read one chunk of a stream; returns (records + empty lines, more may follow)."""
        error: BaseException | None = None
        if s.gz:
            chunk, error = fid.read_gz(s.fh, READ_CHUNK)
        else:
            try:
                chunk = s.raw.read(READ_CHUNK)
            except OSError as exc:
                self._problem(s.path, f"read error: {exc.strerror or exc}", "read")
                return 0, False
        rows = 0
        if chunk:
            s.idle_polls = 0
            frame, rows = s.lines.feed(chunk)
            self._collect(s, frame, frames)
            rows += frame.height
        if error is not None:
            return rows + self._gz_ended_early(s, frames, error), False
        if chunk:
            self._resolve(s.path, "read")
            return rows, True
        if s.gz or self.one_shot:  # end of input: the last line without newline is a record
            frame, skipped = s.lines.flush()
            self._collect(s, frame, frames)
            rows += frame.height + skipped
            s.done = s.gz
        return rows, False

    def _gz_ended_early(self, s: _Stream, frames: list[pl.DataFrame], error: BaseException) -> int:
        """A gzip file that ends early is retried while it grows, then imported as is.

        Reading a GzipFile again after it hit the end of a growing file goes on
        where it stopped, so a retry costs nothing until the file grows.
        """
        try:
            size = os.fstat(s.raw.fileno()).st_size
        except OSError:
            size = -1
        now = time.monotonic()
        if size != s.short_size:
            s.short_size, s.short_since = size, now
        writing = isinstance(error, EOFError) and now - s.short_since < self.gz_settle_seconds
        if writing and not self.one_shot:
            return 0
        imported = s.offset + len(s.lines.pending)
        self._problem(s.path, f"gzip: {error} (imported {imported} bytes)", "data")
        frame, skipped = s.lines.flush()
        self._collect(s, frame, frames)
        s.done = True
        return frame.height + skipped

    def _collect(self, s: _Stream, frame: pl.DataFrame, frames: list[pl.DataFrame]) -> None:
        if frame.height:
            frames.append(self._with_ids(s, frame))

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
            if self.stop_event.is_set():
                break
            try:
                any_data = self._poll_stream(s, publish) or any_data
            except Exception as exc:  # a bug on one file must not stop the others
                log.exception("source %s: reading %s failed", self.id, s.path)
                self._problem(s.path, f"{type(exc).__name__}: {exc}", "read")
                s.close()  # opened again by the next scan, from its last published offset
                self.streams.pop(s.key, None)
        self.metrics.lag_bytes = sum(self._lag(s) for s in self.streams.values())
        return any_data

    def _poll_stream(self, s: _Stream, publish: Publish) -> bool:
        if s.done:
            return False
        if s.announce:
            s.announce = False
            self._publish(publish, s, [], 0, 0)
        self._check_truncation(s, publish)
        read = False
        more = True
        while more and not self.stop_event.is_set():
            frames: list[pl.DataFrame] = []
            rows = nbytes = 0
            while more and rows < self.batch_max_rows:
                before = s.offset
                r, more = self._read(s, frames)
                rows, nbytes = rows + r, nbytes + s.offset - before
            if nbytes or frames or s.done:
                read = True
                self._publish(publish, s, frames, rows, nbytes)
        if s.gone and not read:
            s.idle_polls += 1
            if s.idle_polls >= CLOSE_GONE_AFTER_POLLS:
                self._close_gone(s, publish)
        return read

    def _close_gone(self, s: _Stream, publish: Publish) -> None:
        """A file that left the glob and stopped growing: its last line is complete."""
        if not s.done:
            self._flush(s, publish)
            self._ended(s)
        s.close()
        del self.streams[s.key]

    def _flush(self, s: _Stream, publish: Publish) -> None:
        before = s.offset
        frame, skipped = s.lines.flush()
        if s.offset != before:
            frames = [self._with_ids(s, frame)] if frame.height else []
            self._publish(publish, s, frames, frame.height + skipped, s.offset - before)

    def _lag(self, s: _Stream) -> int:
        if s.done or s.gz or s.raw.closed:
            return 0
        try:
            return max(0, os.fstat(s.raw.fileno()).st_size - s.offset - len(s.lines.pending))
        except OSError:
            return 0

    def _publish(
        self, publish: Publish, s: _Stream, frames: list[pl.DataFrame], rows: int, nbytes: int
    ) -> None:
        records = pl.concat(frames) if frames else pl.DataFrame()
        self.metrics.received += rows
        self.metrics.bytes += nbytes
        if records.height:
            self.metrics.truncated += int(records[TRUNCATED].sum())
            self.metrics.last_seen = datetime.now(UTC)
        self.metrics.skipped_empty += rows - records.height
        fp = s.fingerprint if s.gz else f"{s.fingerprint}:{fid.sha1(s.lines.tail)}"
        cp = Checkpoint(self.id, s.key, s.path, fp, s.fp_len, s.generation, s.offset, s.done)
        self.committed[s.key] = cp
        publish(
            RawBatch(
                source=self.id,
                source_type=self.type,
                records=records,
                checkpoints=[cp],
                bytes=nbytes,
                skipped=rows - records.height,
            )
        )

    def run(self, publish: Publish) -> None:
        interval = float(getattr(self.config, "poll_interval", 0.25))
        try:
            while not self.stop_event.is_set():
                read = self.poll(publish)
                if self.one_shot:
                    break  # a poll reads every file to its end
                if not read:
                    self.stop_event.wait(interval)
        finally:
            for s in self.streams.values():
                s.close()
            self.streams.clear()
