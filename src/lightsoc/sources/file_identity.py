"""How the `file` source recognises files: fingerprints, gzip reading, rotated copies.

A stream's fingerprint is the SHA-1 of its first 256 bytes; a checkpoint
applies to a file only if the fingerprint still matches.

Rotated copies: logrotate's `copytruncate` copies a file before truncating
it, and `compress` writes `name.N.gz` from a file that was already tailed.
When the glob also matches such a copy, reading it from the start would store
its lines twice. A new file is taken for a copy of a stream generation that
ended (was truncated, or was closed after leaving the glob) when it is in
the same directory, has the same name stem (the name without `.gz` and
rotation suffixes such as `.1` or `-20240101`), the same first 256 bytes and
the same 256 bytes before the offset where that generation ended; it is then
read from that offset on. A new file whose content so far equals the
beginning of a stream still being read (a copy being made, a compressor still
writing) is not opened until that stream ends or the two differ. This memory
lives in the process only: after a restart a copy is read whole (a duplicate
at worst, never a loss).
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections import deque
from dataclasses import dataclass
from typing import IO

from lightsoc.sources.lines import LineSplitter
from lightsoc.store.base import Checkpoint

#: size of the head fingerprint and of the tail window kept by LineSplitter
FINGERPRINT_BYTES = LineSplitter.TAIL
READ_CHUNK = 4 << 20
GZ_PIECE = 64 << 10
#: how much of a new file is compared with a stream still being read
PREFIX_COMPARE = 64 << 10
GZ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError
_ROTATION_SUFFIX = re.compile(r"([.\-_]\d+)+$")


def sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def fingerprint(raw: IO[bytes], length: int = FINGERPRINT_BYTES) -> tuple[str, int]:
    head = os.pread(raw.fileno(), length, 0)
    return sha1(head), len(head)


def same_file(raw: IO[bytes], cp: Checkpoint, gz: bool) -> bool:
    """Is the file the one `cp` was committed for?

    A checkpoint's fingerprint is `HEAD` (gzip: of the compressed bytes) or,
    for plain files, `HEAD:TAIL` where TAIL is the SHA-1 of the (up to) 256
    bytes before the committed offset: a file that merely starts like the
    old one (a constant header, an inode reused after a delete) is a new one.
    """
    head_fp, _, tail_fp = cp.fingerprint.partition(":")
    head = os.pread(raw.fileno(), cp.fingerprint_len, 0)
    if len(head) != cp.fingerprint_len or sha1(head) != head_fp:
        return False
    if gz:
        return True
    if not tail_fp:  # written before tails were kept
        return os.fstat(raw.fileno()).st_size >= cp.offset
    start = max(0, cp.offset - FINGERPRINT_BYTES)
    window = os.pread(raw.fileno(), cp.offset - start, start)
    return len(window) == cp.offset - start and sha1(window) == tail_fp


def last_line_end(raw: IO[bytes], size: int) -> int:
    """Offset just after the last complete line (for `start_at: end`)."""
    end = size
    while end > 0:
        back = min(end, 1 << 16)
        tail = os.pread(raw.fileno(), back, end - back)
        nl = tail.rfind(b"\n")
        if nl >= 0:
            return end - back + nl + 1
        end -= back
    return 0


def read_gz(fh: IO[bytes], size: int) -> tuple[bytes, BaseException | None]:
    """Up to `size` decompressed bytes, keeping what was read before an error."""
    parts: list[bytes] = []
    got = 0
    try:
        while got < size:
            piece = fh.read1(min(GZ_PIECE, size - got))  # type: ignore[attr-defined]
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    except GZ_ERRORS as exc:
        return b"".join(parts), exc
    return b"".join(parts), None


def skip(fh: IO[bytes], offset: int) -> None:
    remaining = offset
    while remaining > 0:
        got = fh.read(min(remaining, READ_CHUNK))
        if not got:
            break
        remaining -= len(got)


def content_prefix(raw: IO[bytes], gz: bool, n: int) -> bytes:
    """Up to `n` first bytes of a file's content (decompressed for gzip; short if cut)."""
    if not gz:
        return os.pread(raw.fileno(), n, 0)
    z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out, pos = b"", 0
    try:
        while len(out) < n and not z.eof:
            buf = os.pread(raw.fileno(), GZ_PIECE, pos)
            if not buf:
                break
            pos += len(buf)
            out += z.decompress(buf, n - len(out))
            while z.unconsumed_tail and len(out) < n:
                out += z.decompress(z.unconsumed_tail, n - len(out))
    except (OSError, zlib.error):
        pass
    return out[:n]


def name_stem(path: str) -> tuple[str, str]:
    """(directory, name without `.gz` and rotation suffixes): `a/x.log.2.gz` -> (a, x.log)."""
    directory, name = os.path.split(path)
    name = name.removesuffix(".gz")
    return directory, _ROTATION_SUFFIX.sub("", name) or name


@dataclass(frozen=True)
class Ended:
    """A stream generation no longer read: what a copy of it looks like."""

    stem: tuple[str, str]
    head: str  # fingerprint of the first FINGERPRINT_BYTES bytes
    offset: int  # where reading stopped (a line boundary)
    tail: bytes  # the FINGERPRINT_BYTES bytes before `offset`


class RotatedCopies:
    """Ended stream generations of this process, to recognise copies of them."""

    def __init__(self, limit: int = 512) -> None:
        self._ended: deque[Ended] = deque(maxlen=limit)

    def ended(self, path: str, head: str, head_len: int, offset: int, tail: bytes) -> None:
        if (
            head_len == FINGERPRINT_BYTES
            and offset >= 2 * FINGERPRINT_BYTES
            and len(tail) == FINGERPRINT_BYTES
        ):
            self._ended.append(Ended(name_stem(path), head, offset, tail))

    def candidates(self, path: str, head: bytes) -> list[Ended]:
        """Ended generations a new file at `path` starting with `head` may copy."""
        if len(head) < FINGERPRINT_BYTES or not self._ended:
            return []
        stem, fp = name_stem(path), sha1(head[:FINGERPRINT_BYTES])
        found = [e for e in self._ended if e.stem == stem and e.head == fp]
        return sorted(found, key=lambda e: -e.offset)


def window_before(fh: IO[bytes], raw: IO[bytes], gz: bool, offset: int) -> bytes:
    """The (up to) FINGERPRINT_BYTES bytes of content before `offset` (gzip: read from 0)."""
    start = max(0, offset - FINGERPRINT_BYTES)
    if not gz:
        return os.pread(raw.fileno(), offset - start, start)
    try:
        fh.seek(0)
        skip(fh, start)
        return fh.read(offset - start)
    except GZ_ERRORS:
        return b""
    finally:
        fh.seek(0)


def copy_in_progress(new: bytes, gz: bool, live_head: str, live: bytes) -> bool:
    """Is a new file whose content starts with `new` a copy, still being made, of a
    stream whose fingerprint is `live_head` and whose file now starts with `live`?"""
    if len(new) < FINGERPRINT_BYTES:  # too short to tell; a compressor may just have begun
        return gz and live.startswith(new)
    if sha1(new[:FINGERPRINT_BYTES]) != live_head:
        return False
    if sha1(live[:FINGERPRINT_BYTES]) != live_head:
        return True  # the stream is being truncated: wait until its generation has ended
    n = min(len(new), len(live))
    return new[:n] == live[:n]
