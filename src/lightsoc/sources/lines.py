"""Split a byte stream into line records without a Python object per line.

The buffer's newline positions are found with numpy and the lines become one
Arrow binary array over the same memory; decoding to text is one vectorised
UTF-8 validation. Only lines with invalid UTF-8 (rare) are decoded one by one,
with backslash escapes so the original bytes stay visible (`_invalid_utf8`).

A record is a line without its "\\n" and without one "\\r" before it (CRLF).
Empty lines (zero length after that) are no records: they are skipped and
counted, like Filebeat does. Whitespace-only lines are records. A line longer
than `max_line_bytes` keeps its first `max_line_bytes` bytes (cut at a UTF-8
character boundary) and is flagged `_truncated`.

`LineSplitter` holds the carry-over state of one byte stream (an unterminated
last line, the rest of an oversize line being discarded) so a stream can be
fed in chunks of any size and gives the same records as one big buffer.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

ORIGINAL = "event.original"
OFFSET = "log.offset"
TRUNCATED = "_truncated"
INVALID_UTF8 = "_invalid_utf8"


def split_lines(
    data: bytes, base_offset: int, max_line_bytes: int
) -> tuple[pl.DataFrame, int, int]:
    """Complete lines of `data` as a frame (original text, byte offset, flags).

    Returns (frame, bytes consumed, empty lines skipped). Bytes after the last
    newline are not consumed: the caller keeps them until the line completes.
    `log.offset` of a record is `base_offset` + the position of its first byte.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    if newlines.size == 0:
        return _empty(), 0, 0
    consumed = int(newlines[-1]) + 1
    starts = np.empty(newlines.size + 1, dtype=np.int64)
    starts[0] = 0
    starts[1:] = newlines + 1
    arr = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), newlines.size, [None, pa.py_buffer(starts), pa.py_buffer(data)]
    )
    arr = pc.binary_slice(arr, 0, -1)  # drop the "\n"
    before_nl = buf[np.maximum(newlines - 1, 0)]
    cr = (newlines > starts[:-1]) & (before_nl == 13)
    frame, skipped = _frame(arr, starts[:-1] + base_offset, cr, max_line_bytes)
    return frame, consumed, skipped


def lines_from_list(lines: list[bytes], offsets: list[int], max_line_bytes: int) -> pl.DataFrame:
    """Records from already-split lines without "\\n" (e.g. a final unterminated line)."""
    cr = np.array([line.endswith(b"\r") for line in lines], dtype=bool)
    frame, _ = _frame(
        pa.array(lines, pa.large_binary()),
        np.asarray(offsets, dtype=np.int64),
        cr,
        max_line_bytes,
    )
    return frame


class LineSplitter:
    """Carry-over state of one byte stream fed in chunks.

    `offset` is the stream position up to which every byte has been turned
    into records, counted as empty or discarded (the tail of an oversize
    line): the position to commit. `pending` holds the bytes read after it
    (an unterminated line), at most `max_line_bytes` of them (plus a CR that
    may start the line's CRLF). `tail` holds
    the last `TAIL` bytes before `offset` (fewer near the start), which
    identify the stream at that position; a splitter created at an offset
    other than 0 learns them from its caller.
    """

    TAIL = 256

    def __init__(self, offset: int = 0, max_line_bytes: int = 1 << 20, tail: bytes = b"") -> None:
        self.offset = offset
        self.max_line_bytes = max_line_bytes
        self.pending = b""
        self.skipping = False  # discarding the rest of an oversize line
        self.tail = tail[-self.TAIL :]

    def reset(self, offset: int = 0) -> None:
        self.offset, self.pending, self.skipping, self.tail = offset, b"", False, b""

    def feed(self, chunk: bytes) -> tuple[pl.DataFrame, int]:
        """Records completed by `chunk`; returns (frame, empty lines skipped)."""
        data = self.pending + chunk if self.pending else chunk
        start = self.offset
        frame, skipped = self._split(data)
        consumed = self.offset - start  # data[:consumed] is behind the new offset
        self.tail = (self.tail + data[max(0, consumed - self.TAIL) : consumed])[-self.TAIL :]
        return frame, skipped

    def _split(self, data: bytes) -> tuple[pl.DataFrame, int]:
        start = self.offset
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                self.offset += len(data)
                self.pending = b""
                return _empty(), 0
            self.skipping = False
            data, start = data[nl + 1 :], start + nl + 1
        frame, consumed, skipped = split_lines(data, start, self.max_line_bytes)
        rest = data[consumed:]
        self.offset = start + consumed
        # a trailing CR may start a CRLF: "abc\r" is not yet longer than a 3-byte limit
        if len(rest) - rest.endswith(b"\r") > self.max_line_bytes:
            # an oversize line: keep its head, skip its tail
            head = lines_from_list([rest], [self.offset], self.max_line_bytes)
            frame = pl.concat([frame, head]) if frame.height else head
            self.offset += len(rest)
            rest, self.skipping = b"", True
        self.pending = rest
        return frame, skipped

    def flush(self) -> tuple[pl.DataFrame, int]:
        """End of input: the unterminated last line is a record too (or an empty skip)."""
        pending, self.pending = self.pending, b""
        self.tail = (self.tail + pending)[-self.TAIL :]
        if self.skipping or not pending:
            self.skipping = False
            self.offset += len(pending)
            return _empty(), 0
        frame = lines_from_list([pending], [self.offset], self.max_line_bytes)
        self.offset += len(pending)
        return frame, 1 - frame.height  # a lone "\r" is an empty line


def _frame(
    arr: pa.LargeBinaryArray, offsets: np.ndarray, cr: np.ndarray, max_line_bytes: int
) -> tuple[pl.DataFrame, int]:
    lengths = pc.binary_length(arr).to_numpy(zero_copy_only=False) - cr
    too_long = lengths > max_line_bytes
    if too_long.any():
        rows = np.flatnonzero(too_long)
        heads = [_utf8_head(arr[int(i)].as_py(), max_line_bytes) for i in rows]
        arr = pc.replace_with_mask(arr, pa.array(too_long), pa.array(heads, pa.large_binary()))
    try:  # one C-speed validation of the whole buffer answers the common case
        as_text = arr.cast(pa.large_string())
        invalid = np.zeros(len(arr), dtype=bool)
    except pa.ArrowInvalid:
        invalid = _invalid_utf8_rows(arr)
        fixed = [
            arr[int(i)].as_py().decode("utf-8", "backslashreplace").encode()
            for i in np.flatnonzero(invalid)
        ]
        arr = pc.replace_with_mask(arr, pa.array(invalid), pa.array(fixed, pa.large_binary()))
        as_text = arr.cast(pa.large_string())
    text = pl.from_arrow(as_text)
    strip = cr & ~too_long
    if strip.any():
        text = pl.select(
            pl.when(pl.Series(strip)).then(text.str.strip_suffix("\r")).otherwise(text)
        ).to_series()
    df = pl.DataFrame(
        {
            ORIGINAL: text.alias(ORIGINAL),
            OFFSET: pl.Series(OFFSET, offsets, dtype=pl.Int64),
            TRUNCATED: pl.Series(TRUNCATED, too_long),
            INVALID_UTF8: pl.Series(INVALID_UTF8, invalid),
        }
    )
    empty = lengths == 0
    skipped = int(empty.sum())
    if skipped:
        df = df.filter(pl.Series(~empty))
    return df, skipped


def _utf8_head(value: bytes, limit: int) -> bytes:
    """The first `limit` bytes of `value`, not cutting a UTF-8 character in two."""
    cut = limit
    while cut > 0 and limit - cut < 3 and (value[cut] & 0xC0) == 0x80:
        cut -= 1
    if (value[cut] & 0xC0) == 0x80:  # not UTF-8 around the cut anyway
        cut = limit
    return value[:cut] if cut else value[:limit]


def _invalid_utf8_rows(arr: pa.LargeBinaryArray) -> np.ndarray:
    """Boolean mask of values that are not valid UTF-8 (checked value by value:
    only for a buffer the whole-buffer validation rejected)."""
    mask = np.zeros(len(arr), dtype=bool)
    for i, value in enumerate(arr.to_pylist()):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            mask[i] = True
    return mask


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            ORIGINAL: pl.Utf8,
            OFFSET: pl.Int64,
            TRUNCATED: pl.Boolean,
            INVALID_UTF8: pl.Boolean,
        }
    )
