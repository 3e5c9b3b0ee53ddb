"""DNS events as rows and frames: the column layout, ids, labels, Community ID.

`DnsDecoder` keeps one tuple per event in `_COLUMNS` order (cheaper than a
list per column), or a frame of them (`dns_pairs`); `events_frame` turns the
tuples, the frames and the parse failures into one polars frame with the ECS
columns and the constant ones (`event.dataset` dns, `event.category` network,
`event.type` protocol, `network.protocol` dns). List columns travel as one
string per row (`dns_wire.joined`) and are split by polars, which builds nested
lists from Python objects slowly; Community IDs are computed per frame from
the rows' flow keys (`with_community_ids`, SHA-1 by DuckDB), when the frame is
made or later in a processor thread (a capture import: `pipeline._decoded`).

`event.id` is `<prefix><position>` where the position is the byte offset
(file) or sequence number (live) of the packet that carried the query (or
the response, for a response without query); `<position>.<k>` for the k-th
message of a TCP segment, `f<position>.<k>` for a message that failed and
`f<position>t` for the partial TCP data left of a stream.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from binascii import b2a_base64
from typing import Any

import duckdb
import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from lightsoc.sources.dns_wire import OPCODES

MESSAGE_K = 100_000  # event ids of the k-th message of a TCP segment: <pos>.<k>
MAX_DURATION_US = 1 << 40  # ~12.7 days: a longer query-response time is a damaged capture
UDP4_HEADERS = 14 + 20 + 8  # Ethernet + IPv4 without options + UDP (the fast paths' packets)
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
    "dns.answers": pl.List(pl.Utf8),  # in rows: `dns_wire.joined` strings
    "dns.resolved_ip": pl.List(pl.Utf8),
    "labels": pl.Utf8,
    "network.community_id": pl.Utf8,  # in rows: the flow (`dns_fast.flow_key`)
}


_LISTS = ("dns.answers", "dns.resolved_ip")
#: the IPv4/UDP flow key of a row (14 bytes, `flow_key`) until its Community ID is made
FLOW = "_flow"
_CID_REC = np.dtype(
    [
        ("seed", "V2"),
        ("a", ">u4"),
        ("b", ">u4"),
        ("p", "u1"),
        ("z", "u1"),
        ("ap", ">u2"),
        ("bp", ">u2"),
    ]
)


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


def events_frame(
    rows: list[tuple],
    fail: dict[str, list],
    id_prefix: str,
    built: list[pl.DataFrame] = (),  # type: ignore[assignment]
    community_ids: bool = True,
) -> pl.DataFrame:
    """Event tuples (and `built`: rows already as frames of `_COLUMNS` plus `FLOW`)
    plus parse failures -> one frame (empty if there is nothing).

    Rows come out in `_pos` order and failures in `_fid` order (both unique, as
    the event ids made of them), whichever path of the decoder made them. The
    Community IDs of IPv4/UDP rows are made from their `FLOW` keys by
    `with_community_ids`, here or (`community_ids=False`) later, in another thread.
    """
    ts_type = pl.Datetime("us", "UTC")
    frames = []
    if rows:
        cols = list(zip(*rows, strict=True))
        built = [
            pl.DataFrame(
                [
                    _list_series(k, v)
                    if k in _LISTS
                    else pl.Series(k, [_one_cid(x) for x in v], dtype=pl.Utf8)
                    if k == "network.community_id"
                    else pl.Series(k, v, dtype=t)
                    for (k, t), v in zip(_COLUMNS.items(), cols, strict=True)
                ]
                + [flow_keys([k if type(k) is bytes else None for k in cols[-1]])]
            ),
            *built,
        ]
    if built:
        df = pl.concat(built) if len(built) > 1 else built[0]
        frames.append(
            df.sort("_pos", maintain_order=True).with_columns(pl.lit(True).alias("_parse_ok"))
        )
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
            )
            .sort("_fid", maintain_order=True)
            .with_columns(
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
    df = df.with_columns(
        pl.col("_ts").cast(ts_type).alias("@timestamp"),
        (pl.lit(id_prefix) + eid).alias("event.id"),
        pl.lit("dns").alias("event.dataset"),
        pl.lit("dns").alias("network.protocol"),
        pl.lit("network").alias("event.category"),
        pl.lit("protocol").alias("event.type"),
        pl.lit("event").alias("event.kind"),
    ).drop("_ts", "_pos", "_reason", "_fid", strict=False)
    return with_community_ids(df) if community_ids else df


def flow_keys(keys: list[bytes | None] | np.ndarray) -> pl.Series:
    """The `FLOW` column: 14-byte IPv4/UDP flow keys (`flow_key`), a list of bytes (None:
    no key) or an (m, 14) uint8 array."""
    if isinstance(keys, np.ndarray):
        m = len(keys)
        buf = pa.py_buffer(np.ascontiguousarray(keys).tobytes())
        arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(14), m, [None, buf])
        return pl.Series(FLOW, pl.from_arrow(arr)).cast(pl.Binary)
    return pl.Series(FLOW, keys, dtype=pl.Binary)


def with_community_ids(df: pl.DataFrame) -> pl.DataFrame:
    """`network.community_id` of the rows with a `FLOW` key (SHA-1 by DuckDB, without
    the GIL: the pipeline runs this in a processor thread for capture imports, beside
    the decoding thread), `FLOW` dropped."""
    if FLOW not in df.columns:
        return df
    flow = df.get_column(FLOW)
    at = np.flatnonzero(flow.is_not_null().to_numpy())
    if at.size:
        keys = flow.gather(at).to_arrow().cast(pa.large_binary())
        ends = np.frombuffer(keys.buffers()[1], np.int64, len(keys) + 1, keys.offset)
        data = np.frombuffer(keys.buffers()[2], np.uint8)[ends[0] : ends[-1]]
        if data.size != 14 * at.size:
            raise ValueError("flow keys of 14 bytes expected")
        name = "network.community_id"
        cids = community_ids_v4(data.tobytes())
        df = df.with_columns(df.get_column(name).scatter(at, cids))
    return df.drop(FLOW)


def _list_series(name: str, values: tuple[str | None, ...]) -> pl.Series:
    """A list-of-strings column from `dns_wire.joined` strings (None: a null list)."""
    s = pl.Series(name, values, dtype=pl.Utf8)
    return s.str.split("\0").list.slice(1).alias(name)


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


def community_ids(keys: list | tuple) -> pl.Series:
    """`network.community_id` of the rows' flows (`dns_decode.flow_key`; None stays None):
    IPv4/UDP keys together (`with_community_ids`), the others one by one."""
    cids = pl.Series("network.community_id", [_one_cid(k) for k in keys], dtype=pl.Utf8)
    flows = flow_keys([k if type(k) is bytes else None for k in keys])
    return with_community_ids(pl.DataFrame([cids, flows])).get_column(cids.name)


def community_ids_v4(blob: bytes) -> pl.Series:
    """`network.community_id` of 14-byte IPv4/UDP flow keys, one after the other."""
    m = len(blob) // 14
    text = _cid_v4(blob)
    offsets = np.arange(0, 30 * m + 1, 30, dtype=np.int32)
    arr = pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(text))
    return pl.Series("network.community_id", pl.from_arrow(arr), dtype=pl.Utf8)


def _one_cid(key: tuple | bytes | None) -> str | None:
    if key is None or type(key) is bytes:
        return None  # IPv4/UDP: done together
    return community_id(*key[:5])


def _cid_v4(blob: bytes) -> np.ndarray:
    """Community IDs of 14-byte IPv4/UDP flow keys, 30 ASCII bytes per row."""
    m = len(blob) // 14
    arr = np.frombuffer(blob, np.uint8).reshape(m, 14)
    ai = arr[:, 0:4].copy().view(">u4").ravel()
    bi = arr[:, 4:8].copy().view(">u4").ravel()
    ap = arr[:, 8:10].copy().view(">u2").ravel()
    bp = arr[:, 10:12].copy().view(">u2").ravel()
    swap = (ai > bi) | ((ai == bi) & (ap > bp))
    rec = np.zeros(m, _CID_REC)
    rec["a"], rec["b"] = np.where(swap, bi, ai), np.where(swap, ai, bi)
    rec["ap"], rec["bp"] = np.where(swap, bp, ap), np.where(swap, ap, bp)
    rec["p"] = 17
    # 21 bytes (digest + a zero) -> 28 characters: the first 27 as for the digest alone
    padded = np.zeros((m, 21), np.uint8)
    padded[:, :20] = sha1_rows(rec.tobytes(), 16)
    text = np.empty((m, 30), np.uint8)
    text[:, :2] = np.frombuffer(b"1:", np.uint8)
    text[:, 2:] = np.frombuffer(b2a_base64(padded.tobytes(), newline=False), np.uint8).reshape(
        m, 28
    )
    text[:, 29] = ord("=")
    return text


_duck = threading.local()  # a DuckDB connection per thread (they are not shared safely)


def sha1_rows(records: bytes, width: int) -> np.ndarray:
    """SHA-1 digests of the `width`-byte records of `records` as an (m, 20) array.

    DuckDB hashes the whole column without the GIL: the source thread that
    decodes packets is the pipeline's bottleneck, and hashing a row per Python
    call cost it ~8% of a capture import.
    """
    m = len(records) // width
    if m == 0:
        return np.zeros((0, 20), np.uint8)
    offsets = np.arange(0, m * width + 1, width, dtype=np.int32)
    blobs = pa.BinaryArray.from_buffers(
        pa.binary(), m, [None, pa.py_buffer(offsets), pa.py_buffer(records)]
    )
    con = getattr(_duck, "con", None)
    if con is None:
        con = _duck.con = duckdb.connect()
    out = con.from_arrow(pa.table({"b": blobs})).select("unhex(sha1(b)) AS d").to_arrow_table()
    col = out.column("d").combine_chunks().cast(pa.binary())
    ends = np.frombuffer(col.buffers()[1], np.int32, m + 1, col.offset * 4)
    data = np.frombuffer(col.buffers()[2], np.uint8)
    if ends[-1] - ends[0] != 20 * m:  # every digest is 20 bytes
        raise RuntimeError("unexpected SHA-1 column from DuckDB")
    return data[ends[0] : ends[-1]].reshape(m, 20)
