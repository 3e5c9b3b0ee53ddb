"""Page copies: the search page's columns of a segment, for reading rows by number.

A search or timeline ends by fetching its page's rows by (file, row number).
In a Parquet segment that decodes, for every row group holding one of those
rows, the whole column chunks of the page's columns with their dictionaries:
a rare value's 100 matches touch ~60 row groups of a 10M-event store and cost
~0.4 s. A page copy holds the same rows of a few columns in an Arrow IPC file
of 1,024-row zstd batches; a row is one memory-mapped batch away (~0.6 ms for
every column of a batch, ~25 batches/row group cheaper than Parquet).

They are derived data, built off the ingest path by `maintain()` (newest
segments first, a bounded number of rows per call) for segments of at least
`MIN_ROWS` (smaller ones are merged soon). A copy is written to `.tmp/`,
fsynced and renamed next to its segment under the writer's lock, only while
the segment is still committed; it is deleted with its segment (after the
same grace period) or as an orphan at start. A missing or unreadable copy
only means the Parquet path is taken.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from lightsoc.schema import ARROW_SCHEMA, SEARCH_PAGE_FIELDS

log = logging.getLogger(__name__)

#: the columns a copy holds: the search page's table, and the sort keys
PAGE_COLUMNS = (*SEARCH_PAGE_FIELDS, "event.id")
#: bump when what a copy holds changes: the file name carries it, old ones are orphans
VERSION = 1
SUFFIX = f".page{VERSION}.arrow"
BATCH_ROWS = 1024
#: segments smaller than this get no copy (compaction merges them soon)
MIN_ROWS = 262_144
#: rows copied per `build()` call at most (~0.6 s per 1M rows)
BUILD_ROWS_PER_CALL = 4_000_000


def copy_path(segment_path: str | Path) -> Path:
    """The page copy's path of a segment file (`seg-X.parquet` -> `seg-X.page1.arrow`)."""
    p = Path(segment_path)
    return p.with_name(p.name.removesuffix(".parquet") + SUFFIX)


def covers(fields: Sequence[str] | None) -> bool:
    """True if a copy holds every one of `fields` (None: whole events, never)."""
    return bool(fields) and set(fields) <= set(PAGE_COLUMNS)  # type: ignore[arg-type]


def write(segment_path: str | Path, tmp_dir: Path) -> Path:
    """Write a segment's page copy into `tmp_dir` (fsynced); returns its temp path."""
    src = pq.ParquetFile(segment_path)
    have = set(src.schema_arrow.names)
    tmp = tmp_dir / copy_path(segment_path).name
    cols = [c for c in PAGE_COLUMNS if c in have]
    schema = pa.schema([src.schema_arrow.field(c) for c in cols])
    with ipc.new_file(tmp, schema, options=ipc.IpcWriteOptions(compression="zstd")) as out:
        # Every batch but the last holds exactly BATCH_ROWS rows (row N is in batch
        # N // BATCH_ROWS), whatever the segment's row groups; a row group at a time.
        rest = pa.Table.from_batches([], schema)
        for batch in src.iter_batches(BATCH_ROWS * 64, columns=cols, use_threads=False):
            rows = pa.concat_tables([rest, pa.Table.from_batches([batch], schema)])
            whole = rows.num_rows - rows.num_rows % BATCH_ROWS
            for start in range(0, whole, BATCH_ROWS):
                out.write_table(rows.slice(start, BATCH_ROWS).combine_chunks())
            rest = rows.slice(whole)
        if rest.num_rows:
            out.write_table(rest.combine_chunks())
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def pending(cur: Any, files: Any) -> list[tuple[str, str, int]]:  # noqa: ANN401
    """(segment id, file, rows) of committed segments of `MIN_ROWS`+ without a copy,
    newest first."""
    rows = cur.execute(
        "SELECT id, file, rows FROM lightsoc_segments WHERE rows >= ? "
        "ORDER BY max_ts DESC, created DESC",
        [MIN_ROWS],
    ).fetchall()
    return [r for r in rows if not copy_path(files.path(r[1])).exists()]


def build_one(cur: Any, lock: threading.Lock, files: Any, seg_id: str, file: str) -> bool:  # noqa: ANN401
    """Copy one segment: write without a lock, publish under it only if the segment
    is still committed (one compacted away meanwhile leaves nothing). True if published."""
    path = files.path(file)
    tmp = write(path, files.root / ".tmp")
    with lock:
        alive = cur.execute("SELECT 1 FROM lightsoc_segments WHERE id = ?", [seg_id]).fetchall()
        if not alive:
            tmp.unlink(missing_ok=True)
            return False
        os.replace(tmp, copy_path(path))
    return True


def build(store: Any, max_rows: int | None = None) -> int:  # noqa: ANN401
    """Copy segments without a page copy, newest first, until `max_rows` rows
    (default BUILD_ROWS_PER_CALL) were read, at least one segment; returns how many."""
    max_rows = BUILD_ROWS_PER_CALL if max_rows is None else max_rows
    cur = store._cur()
    done = rows = 0
    t0 = time.monotonic()
    for seg_id, file, n in pending(cur, store.files):
        if done and rows + n > max_rows:
            break
        try:
            if build_one(cur, store._write_lock, store.files, seg_id, file):
                done += 1
        except (OSError, pa.ArrowException) as exc:  # the segment went away, disk full, ...
            log.warning("page copy of %s failed: %s", file, exc)
        rows += n
    if done:
        log.info("page copies: %d segment(s), %d rows in %.1f s", done, rows, time.monotonic() - t0)
    return done


def take(
    pairs: Sequence[tuple[str, int]], fields: Sequence[str], schema: pa.Schema
) -> tuple[pa.Table, list[int]]:
    """The rows at (segment path, row number) from their page copies, as `schema`.

    Returns the rows found, in no particular order, with a `filename` and a
    `file_row_number` column, and the positions in `pairs` whose segment has no
    usable copy (the caller reads those from Parquet).
    """
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, (name, _) in enumerate(pairs):
        by_file[name].append(i)
    parts: list[pa.Table] = []
    missing: list[int] = []
    for name, positions in by_file.items():
        numbers = [pairs[i][1] for i in positions]
        try:
            part = _take_file(copy_path(name), numbers, fields)
        except (OSError, pa.ArrowException, IndexError):
            missing.extend(positions)  # no copy (yet), or a damaged one: Parquet answers
            continue
        parts.append(
            part.cast(schema)
            .append_column("filename", pa.array([name] * len(numbers)))
            .append_column("file_row_number", pa.array(numbers, pa.int64()))
        )
    if not parts:
        empty = pa.Table.from_batches([], schema)
        found = empty.append_column("filename", pa.array([], pa.string()))
        return found.append_column("file_row_number", pa.array([], pa.int64())), missing
    return pa.concat_tables(parts), missing


def _take_file(path: Path, numbers: list[int], fields: Sequence[str]) -> pa.Table:
    source = pa.memory_map(str(path))
    names = ipc.open_file(source).schema.names
    # A copy holds the page columns its segment has; a segment leaves out
    # columns null in all its rows, so a field absent here is null.
    present = [f for f in fields if f in names]
    options = ipc.IpcReadOptions(included_fields=[names.index(f) for f in present])
    reader = ipc.open_file(source, options=options)  # only these columns are decompressed
    batches = sorted({n // BATCH_ROWS for n in numbers})
    if batches and batches[-1] >= reader.num_record_batches:
        raise IndexError(f"{path.name} is shorter than its segment")
    first = {b: i * BATCH_ROWS for i, b in enumerate(batches)}
    table = pa.Table.from_batches([reader.get_batch(b) for b in batches], reader.schema)
    rows = table.take([first[n // BATCH_ROWS] + n % BATCH_ROWS for n in numbers])
    for f in fields:
        if f not in names:
            rows = rows.append_column(f, pa.nulls(rows.num_rows, ARROW_SCHEMA.field(f).type))
    return rows.select(list(fields))  # the asked order (the file's is PAGE_COLUMNS')
