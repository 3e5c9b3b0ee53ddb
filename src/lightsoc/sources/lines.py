"""Split a byte buffer into line records without a Python object per line.

The buffer's newline positions are found with numpy and the lines become one
Arrow binary array over the same memory; decoding to text is one vectorised
UTF-8 validation. Only lines with invalid UTF-8 (rare) are decoded one by one,
with backslash escapes so the original bytes stay visible.
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
    Empty and whitespace-only lines are skipped and counted.
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
    frame, skipped = _frame(arr, starts[:-1] + base_offset, max_line_bytes)
    return frame, consumed, skipped


def lines_from_list(lines: list[bytes], offsets: list[int], max_line_bytes: int) -> pl.DataFrame:
    """Records from already-split lines (e.g. a final unterminated line)."""
    frame, _ = _frame(
        pa.array(lines, pa.large_binary()), np.asarray(offsets, dtype=np.int64), max_line_bytes,
        strip_newline=False,
    )
    return frame


def _frame(
    arr: pa.LargeBinaryArray, offsets: np.ndarray, max_line_bytes: int, strip_newline: bool = True
) -> tuple[pl.DataFrame, int]:
    if strip_newline:  # drop the trailing "\n"; a CRLF's "\r" goes after decoding
        arr = pc.binary_slice(arr, 0, -1)
    lengths = pc.binary_length(arr).to_numpy(zero_copy_only=False)
    too_long = lengths > max_line_bytes
    if too_long.any():
        arr = pc.binary_slice(arr, 0, max_line_bytes)
    invalid = _invalid_utf8_rows(arr)
    if invalid.any():
        fixed = [
            arr[int(i)].as_py().decode("utf-8", "backslashreplace").encode()
            for i in np.flatnonzero(invalid)
        ]
        arr = pc.replace_with_mask(arr, pa.array(invalid), pa.array(fixed, pa.large_binary()))
    text = pl.from_arrow(arr.cast(pa.large_string()))
    if text.str.ends_with("\r").any():
        text = text.str.strip_suffix("\r")
        lengths = text.str.len_bytes().to_numpy()
    df = pl.DataFrame(
        {
            ORIGINAL: text,
            OFFSET: pl.Series(OFFSET, offsets, dtype=pl.Int64),
            TRUNCATED: pl.Series(TRUNCATED, too_long),
            INVALID_UTF8: pl.Series(INVALID_UTF8, invalid),
        }
    )
    # Empty lines are no records: skipped and counted, like Filebeat does.
    empty = lengths == 0
    skipped = int(empty.sum())
    if skipped:
        df = df.filter(pl.Series(~empty))
    return df, skipped


def _invalid_utf8_rows(arr: pa.LargeBinaryArray) -> np.ndarray:
    """Boolean mask of values that are not valid UTF-8.

    One C-speed decode of the whole value buffer answers the common case;
    only a buffer that holds invalid bytes is checked value by value.
    """
    mask = np.zeros(len(arr), dtype=bool)
    if len(arr) == 0:
        return mask
    try:
        arr.cast(pa.large_string())
        return mask
    except pa.ArrowInvalid:
        pass
    for i, value in enumerate(arr.to_pylist()):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            mask[i] = True
    return mask


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={ORIGINAL: pl.Utf8, OFFSET: pl.Int64, TRUNCATED: pl.Boolean, INVALID_UTF8: pl.Boolean}
    )
