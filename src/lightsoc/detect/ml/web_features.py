"""Vectorised byte n-gram hashing of request targets, shared by training and scoring.

A column of targets becomes one flat ``uint8`` array of all their bytes (from
the Arrow buffers, no Python loop per value) plus the row of each byte. Each
target is then normalised the way attacks hide: ``%XX`` sequences decoded
(twice, for double encoding), ``+`` read as a space, ASCII lowercased,
digits folded to ``0`` (ids and prices say nothing), cut to its first
`WIDTH` bytes, framed by start/end markers. Every byte n-gram (n = 1..`NMAX`)
is hashed by a rolling polynomial hash into one of ``2**bits`` slots.

Training builds a sparse count matrix from the slots (`hashed_matrix`);
scoring gathers the weights of the slots and sums them per row
(`hashed_dot`), so both see exactly the same features. Counts are divided by
the square root of the number of n-grams of the row so long POST bodies do
not dominate by length alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

if TYPE_CHECKING:
    import scipy.sparse as sp

WIDTH = 256
#: raw bytes read before decoding: decoding shrinks `%XX` to one byte
RAW_WIDTH = 3 * WIDTH
NMAX = 5
BITS = 20
_START, _END = 0x02, 0x03
_MUL = np.uint32(0x9E3779B1)  # Fibonacci hashing: the top bits of h * _MUL spread well
_PRIME = np.uint32(0x01000193)  # FNV prime
_HEX = np.full(256, -1, np.int16)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i
#: byte -> normalised byte: ASCII lowercase, digits folded to '0'
_FOLD = np.arange(256, dtype=np.uint8)
_FOLD[ord("A") : ord("Z") + 1] += 32
_FOLD[ord("0") : ord("9") + 1] = ord("0")


def as_series(values: list[str | None] | pl.Series) -> pl.Series:
    """A string Series of `values`; strings Arrow cannot hold (lone surrogates) are repaired."""
    if isinstance(values, pl.Series):
        return values if values.dtype == pl.String else values.cast(pl.String, strict=False)
    try:
        return pl.Series(values, dtype=pl.String)
    except (UnicodeEncodeError, TypeError, pl.exceptions.PolarsError):
        # rare: a surrogate-escaped line of a non-UTF-8 file; the slow path runs only here
        return pl.Series(
            [
                v.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                if isinstance(v, str)
                else None
                for v in values
            ],
            dtype=pl.String,
        )


@dataclass
class Bytes:
    """The normalised bytes of a column: flat `data`, per-row `starts`/`lengths`, nulls."""

    data: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    null: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.lengths), dtype=np.int32), self.lengths)


def _beyond(first: np.ndarray, lengths: np.ndarray, limit: int, total: int) -> np.ndarray:
    """Mask of the bytes past the first `limit` of each row (rows are contiguous)."""
    long = np.flatnonzero(lengths > limit)
    d = np.zeros(total + 1, np.int8)
    # the cut ranges neither overlap nor touch: +1 where one starts, -1 where it ends
    d[first[long] + limit] = 1
    d[first[long] + lengths[long]] = -1
    return np.cumsum(d[:-1], dtype=np.int8) > 0


def _raw(series: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(flat bytes, row starts, row lengths cut to RAW_WIDTH, null mask) from Arrow buffers."""
    arr = series.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int64, n + 1, arr.offset * 8)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    full = np.diff(offsets)
    if n == 0 or (full[null] != 0).any():  # null slots holding bytes: not Arrow's habit
        full[null] = 0
        lengths = np.minimum(full, RAW_WIDTH)
        first = np.cumsum(lengths) - lengths
        pos = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(first, lengths)
        return data[np.repeat(offsets[:-1], lengths) + pos], first, lengths, null
    # the values are contiguous in the buffer: copy it, dropping what is past RAW_WIDTH
    flat = data[offsets[0] : offsets[-1]]
    if (full > RAW_WIDTH).any():
        flat = flat[~_beyond(offsets[:-1] - offsets[0], full, RAW_WIDTH, len(flat))]
    else:
        flat = flat.copy()
    lengths = np.minimum(full, RAW_WIDTH)
    return flat, np.cumsum(lengths) - lengths, lengths, null


def _decode(
    flat: np.ndarray, first: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One pass of URL decoding: `%XX` -> byte, `+` -> space; (bytes, row lengths, whether
    a `%` was decoded: a double encoding to decode again). Works on the few `%` only."""
    out = flat.copy()
    out[flat == ord("+")] = 32
    if len(flat) < 3:
        return out, lengths, False
    cand = np.flatnonzero(flat[:-2] == ord("%"))
    ends = first + lengths
    row = np.searchsorted(ends, cand, side="right")  # the row holding each "%"
    hi, lo = _HEX[flat[cand + 1]], _HEX[flat[cand + 2]]
    # an escape needs two hex digits in its own row; its digits are never "%", so two
    # escapes cannot overlap and "%%41" decodes to "%A"
    ok = (hi >= 0) & (lo >= 0) & (cand + 2 < ends[np.minimum(row, len(ends) - 1)])
    idx = cand[ok]
    if not len(idx):
        return out, lengths, False
    out[idx] = (hi[ok] * 16 + lo[ok]).astype(np.uint8)
    keep = np.ones(len(flat), bool)
    keep[idx + 1] = False
    keep[idx + 2] = False
    lengths = lengths - 2 * np.bincount(row[ok], minlength=len(lengths))
    return out[keep], lengths, bool((out[idx] == ord("%")).any())


def normalise(values: list[str | None] | pl.Series) -> Bytes:
    """Decode, fold and frame each target; nulls give an empty (null) row."""
    flat, first, lengths, null = _raw(as_series(values))
    if (flat == ord("%")).any() or (flat == ord("+")).any():
        flat, lengths, again = _decode(flat, first, lengths)
        first = np.cumsum(lengths) - lengths
        if again:  # %2527 -> %27 -> '
            flat, lengths, _ = _decode(flat, first, lengths)
            first = np.cumsum(lengths) - lengths
    flat = _FOLD[flat]
    if (lengths > WIDTH).any():
        flat = flat[~_beyond(first, lengths, WIDTH, len(flat))]
        lengths = np.minimum(lengths, WIDTH)
        first = np.cumsum(lengths) - lengths
    # frame: START + bytes + END, so n-grams at either end are their own features; an
    # END and the next START at one index are inserted in the order given (END first)
    s_idx = first[~null]
    at = np.empty(2 * len(s_idx), np.int64)
    at[0::2], at[1::2] = s_idx, s_idx + lengths[~null]
    marks = np.tile(np.array([_START, _END], np.uint8), len(s_idx))
    data = np.insert(flat, at, marks)
    framed_len = np.where(null, 0, lengths + 2)
    return Bytes(data, np.cumsum(framed_len) - framed_len, framed_len, null)


def _iter_slots(b: Bytes, bits: int, nmax: int) -> Iterator[np.ndarray]:
    """Per n = 1..nmax: the slot of the n-gram starting at each byte, or ``2**bits``
    (a slot whose weight is 0) where the n-gram would run past its row's end. The
    array yielded is reused for the next n: consume (or copy) it first."""
    data = b.data.astype(np.uint32)
    n_bytes = len(data)
    ends = (b.starts + b.lengths)[~b.null]
    h = np.zeros(n_bytes, np.uint32)
    slot = np.empty(n_bytes, np.uint32)
    shift = np.uint32(32 - bits)
    sentinel = np.uint32(1 << bits)
    with np.errstate(over="ignore"):
        for n in range(1, nmax + 1):
            np.multiply(h, _PRIME, out=h)
            head = h[: n_bytes - (n - 1)]
            np.add(head, data[n - 1 :], out=head)
            np.add(h, np.uint32(n), out=h)
            np.multiply(h, _MUL, out=slot)
            np.right_shift(slot, shift, out=slot)
            # the n-grams starting in the last n-1 bytes of a row run past its end (rows
            # are at least 2 bytes, and a position before a short row is cut in its own)
            cut = (ends[:, None] - np.arange(1, n, dtype=np.int64)).ravel()
            slot[cut[cut >= 0]] = sentinel
            yield slot


def _slot_arrays(b: Bytes, bits: int, nmax: int) -> list[np.ndarray]:
    return [s.copy() for s in _iter_slots(b, bits, nmax)]


def slots(b: Bytes, bits: int = BITS, nmax: int = NMAX) -> tuple[np.ndarray, np.ndarray]:
    """(slot of each n-gram, row of each n-gram) for n = 1..nmax; an n-gram stays in its row."""
    rows = b.rows
    sentinel = 1 << bits
    out_slots, out_rows = [], []
    for s in _slot_arrays(b, bits, nmax):
        keep = s != sentinel
        out_slots.append(s[keep].astype(np.int64))
        out_rows.append(rows[keep])
    return np.concatenate(out_slots), np.concatenate(out_rows)


def _scale(b: Bytes, nmax: int = NMAX) -> np.ndarray:
    """1/sqrt(number of n-grams) of each row (0 for null rows)."""
    count = np.zeros(len(b.lengths), np.float64)
    for n in range(1, nmax + 1):
        count += np.maximum(b.lengths - n + 1, 0)
    return np.where(count > 0, 1.0 / np.sqrt(np.maximum(count, 1.0)), 0.0)


def hashed_matrix(values: list[str] | pl.Series, bits: int = BITS) -> sp.csr_matrix:
    """The scaled n-gram count matrix (rows x 2**bits) for training."""
    import scipy.sparse as sp  # training only: scoring needs no scipy

    b = normalise(values)
    s, r = slots(b, bits)
    scale = _scale(b)
    m = sp.csr_matrix(
        (scale[r].astype(np.float32), (r, s)), shape=(len(b.lengths), 1 << bits), dtype=np.float32
    )
    m.sum_duplicates()
    return m


def hashed_dot(b: Bytes, weights: np.ndarray) -> np.ndarray:
    """Per row: the scaled sum of the weights of its n-grams (the linear model's margin).

    `weights` has ``2**bits + 1`` entries, the last 0 (the slot of n-grams cut off).
    """
    bits = int(np.log2(len(weights) - 1))
    per_byte = np.zeros(len(b.data), weights.dtype)
    gathered = np.empty(len(b.data), weights.dtype)
    for s in _iter_slots(b, bits, NMAX):
        np.take(weights, s, out=gathered)
        np.add(per_byte, gathered, out=per_byte)
    total = np.zeros(len(b.lengths), np.float64)
    full = b.lengths > 0
    if full.any():  # rows are contiguous: one reduceat over their starts
        total[full] = np.add.reduceat(per_byte, b.starts[full], dtype=np.float64)
    return total * _scale(b)
