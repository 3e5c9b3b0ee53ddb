"""Wire format of a raw batch on a shared bus (Redis, Kafka).

One message per batch: a 4-byte big-endian header length, a JSON header (source,
type, counters, batch id, when it was sent) and the records as an Arrow IPC
stream (lz4 buffers: a quarter of the text's size on logs, cheap to write).
Checkpoints are not sent: a collector commits its own offsets once the bus has
taken the batch (`collect` role). `on_commit` is local to a process.
"""

from __future__ import annotations

import io
import json
import struct
import time
import uuid

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from lightsoc.bus.base import RawBatch

VERSION = 1
_LEN = struct.Struct(">I")
#: bigger messages are refused at publish (Redis' proto-max-bulk-len is 512 MB)
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class CodecError(ValueError):
    """Bytes that are not a raw batch of this version (counted, never fatal)."""


def encode(batch: RawBatch) -> bytes:
    """The batch as one message; gives it a batch id if it has none."""
    if not batch.batch_id:
        batch.batch_id = uuid.uuid4().hex
    header = {
        "v": VERSION,
        "source": batch.source,
        "source_type": batch.source_type,
        "bytes": batch.bytes,
        "dropped": batch.dropped,
        "skipped": batch.skipped,
        "parsed": batch.parsed,
        "batch_id": batch.batch_id,
        "sent": batch.sent or time.time(),
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    sink = io.BytesIO()
    sink.write(_LEN.pack(len(head)))
    sink.write(head)
    table = batch.records.to_arrow()
    options = ipc.IpcWriteOptions(compression="lz4")
    with ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    data = sink.getvalue()
    if len(data) > MAX_MESSAGE_BYTES:
        raise CodecError(f"batch of {batch.source} is {len(data)} bytes encoded")
    return data


def decode(data: bytes) -> RawBatch:
    """A raw batch from a message; `CodecError` for anything else."""
    try:
        (n,) = _LEN.unpack_from(data, 0)
        header = json.loads(data[_LEN.size : _LEN.size + n])
        if header.get("v") != VERSION:
            raise CodecError(f"unknown raw batch version {header.get('v')!r}")
        reader = ipc.open_stream(pa.py_buffer(data).slice(_LEN.size + n))
        records = pl.from_arrow(reader.read_all())
    except CodecError:
        raise
    except (struct.error, ValueError, KeyError, TypeError, OSError, pa.ArrowException) as exc:
        raise CodecError(f"not a raw batch: {type(exc).__name__}: {exc}") from None
    assert isinstance(records, pl.DataFrame)
    return RawBatch(
        source=str(header["source"]),
        source_type=str(header["source_type"]),
        records=records,
        bytes=int(header["bytes"]),
        dropped=int(header["dropped"]),
        skipped=int(header["skipped"]),
        parsed=bool(header["parsed"]),
        batch_id=str(header["batch_id"]),
        sent=float(header["sent"]),
    )
