"""DNS events as rows and frames: the column layout, ids, labels, Community ID.

`DnsDecoder` keeps one tuple per event in `_COLUMNS` order (cheaper than a
list per column); `events_frame` turns the tuples and the parse failures
into one polars frame with the ECS columns and the constant ones
(`event.dataset` dns, `event.category` network, `event.type` protocol,
`network.protocol` dns). List columns are built from Arrow offsets because
polars builds nested lists from Python objects slowly.

`event.id` is `<prefix><position>` where the position is the byte offset
(file) or sequence number (live) of the packet that carried the query (or
the response, for a response without query); `<position>.<k>` for the k-th
message of a TCP segment, `f<position>.<k>` for a message that failed and
`f<position>t` for the partial TCP data left of a stream.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from binascii import b2a_base64
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from lightsoc.sources.dns_wire import OPCODES

MESSAGE_K = 100_000  # event ids of the k-th message of a TCP segment: <pos>.<k>
_PORTS = struct.Struct("!HH")
try:  # CPython's own SHA-1: for 38 bytes about twice as fast as OpenSSL's per call
    from _sha1 import sha1 as _sha1
except ImportError:  # pragma: no cover - other interpreters
    _sha1 = hashlib.sha1
_FLAG_NAMES = ((0x0400, "AA"), (0x0200, "TC"), (0x0100, "RD"), (0x0080, "RA"), (0x20, "AD"))
_FLAG_NAMES += ((0x10, "CD"),)
#: header flags (opcode and AA..CD bits) -> `labels` JSON, filled on first use
LABELS: dict[int, str] = {}

#: per-event tuple layout (columns in this order); types as polars needs them
_COLUMNS: dict[str, Any] = {
    "_ts": pl.Int64,
    "_pos": pl.Int64,
    "event.duration": pl.Int64,
    "source.ip": pl.Utf8,
    "source.port": pl.Int32,
    "destination.ip": pl.Utf8,
    "destination.port": pl.Int32,
    "network.transport": pl.Utf8,
    "dns.type": pl.Utf8,
    "dns.id": pl.Int32,
    "dns.response_code": pl.Utf8,
    "dns.question.name": pl.Utf8,
    "dns.question.type": pl.Utf8,
    "dns.answers": pl.List(pl.Utf8),
    "dns.resolved_ip": pl.List(pl.Utf8),
    "labels": pl.Utf8,
    "network.community_id": pl.Utf8,
}


_LISTS = ("dns.answers", "dns.resolved_ip")


def header_labels(flags: int) -> str:
    """`labels` of an event: the opcode and header flags, Packetbeat's names."""
    key = flags & 0x7FF0
    lab = LABELS.get(key)
    if lab is None:
        op = (flags >> 11) & 15
        names = [name for bit, name in _FLAG_NAMES if flags & bit]
        lab = orjson.dumps({"dns.op_code": OPCODES.get(op, str(op)), "dns.header_flags": names})
        lab = LABELS[key] = lab.decode()
    return lab


def events_frame(rows: list[tuple], fail: dict[str, list], id_prefix: str) -> pl.DataFrame:
    """Event tuples plus parse failures -> one frame (empty frame if there is nothing)."""
    ts_type = pl.Datetime("us", "UTC")
    frames = []
    if rows:
        cols = list(zip(*rows, strict=True))
        df = pl.DataFrame(
            [
                _list_series(k, list(v)) if k in _LISTS else pl.Series(k, v, dtype=t)
                for (k, t), v in zip(_COLUMNS.items(), cols, strict=True)
            ]
        )
        frames.append(df.with_columns(pl.lit(True).alias("_parse_ok")))
    if fail["_ts"]:
        frames.append(
            pl.DataFrame(
                {
                    "_ts": pl.Series(fail["_ts"], dtype=pl.Int64),
                    "_fid": pl.Series(fail["_fid"], dtype=pl.Utf8),
                    "source.ip": pl.Series(fail["ip"], dtype=pl.Utf8),
                    "event.original": pl.Series(fail["orig"], dtype=pl.Utf8),
                    "_reason": pl.Series(fail["reason"], dtype=pl.Utf8),
                }
            ).with_columns(
                pl.lit(False).alias("_parse_ok"),
                ("malformed DNS message: " + pl.col("_reason")).alias("message"),
                ('{"dns.malformed":"' + pl.col("_reason") + '"}').alias("labels"),
            )
        )
    if not frames:
        return pl.DataFrame()
    df = pl.concat(frames, how="diagonal") if len(frames) > 1 else frames[0]
    if "_pos" not in df.columns:
        df = df.with_columns(pl.lit(None, pl.Int64).alias("_pos"))
    pos = pl.col("_pos")
    sub = -pos - 1  # several messages in one TCP segment: -(pos * K + k) - 1
    eid = (
        pl.when(pos >= 0)
        .then(pos.cast(pl.Utf8))
        .otherwise((sub // MESSAGE_K).cast(pl.Utf8) + "." + (sub % MESSAGE_K).cast(pl.Utf8))
    )
    if "_fid" in df.columns:
        eid = pl.coalesce(pl.col("_fid"), eid)
    return df.with_columns(
        pl.col("_ts").cast(ts_type).alias("@timestamp"),
        (pl.lit(id_prefix) + eid).alias("event.id"),
        pl.lit("dns").alias("event.dataset"),
        pl.lit("dns").alias("network.protocol"),
        pl.lit("network").alias("event.category"),
        pl.lit("protocol").alias("event.type"),
        pl.lit("event").alias("event.kind"),
    ).drop("_ts", "_pos", "_reason", "_fid", strict=False)


def _list_series(name: str, lists: list[list[str] | None]) -> pl.Series:
    """A list-of-strings column via Arrow offsets (polars builds nested lists slowly)."""
    lens = [len(x) if x is not None else 0 for x in lists]
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(lens, out=offsets[1:])
    flat = list(itertools.chain.from_iterable(x for x in lists if x))
    mask = np.fromiter((x is None for x in lists), dtype=bool, count=len(lists))
    arr = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(flat, pa.string()), mask=pa.array(mask)
    )
    return pl.Series(name, pl.from_arrow(arr), dtype=pl.List(pl.Utf8))


def community_id(src: bytes, sport: int, dst: bytes, dport: int, transport: str) -> str:
    """Community ID v1 (seed 0) of a UDP/TCP flow, as `1:<base64 sha1>`."""
    if src > dst or (src == dst and sport > dport):
        src, sport, dst, dport = dst, dport, src, sport
    data = b"\0\0%b%b%c\0%b" % (
        src,
        dst,
        17 if transport == "udp" else 6,
        _PORTS.pack(sport, dport),
    )
    return "1:" + b2a_base64(_sha1(data).digest(), newline=False).decode("ascii")
