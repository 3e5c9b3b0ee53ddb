"""`dns_fast` for whole batches: queries and responses paired by sorting (numpy).

When no packet of a batch outside the fast path can wait under an IPv4/UDP
flow key (the others are TCP, IPv6 or not IP) and the waiting table cannot
overflow, the per-packet loop of `dns_fast` is not needed: the fast packets
are sorted by flow key (client, server, ports, DNS id), stably, so each
packet's predecessor under its key is the one the loop would have found
waiting. A response after a query is answered by it (the bulk: one frame of
answer rows, built with numpy and polars); everything else (a response
without a query before it in the batch, a query that replaces one, the
queries left waiting) goes through the decoder's tables one by one, as few
as the unanswered queries and orphans.

The events are those of the loop; `events_frame` orders rows by position, and
the waiting table is put back in arrival order, so expiry and later batches
see what the loop would have left (tests compare the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from lightsoc.sources.dns_events import (
    _COLUMNS,
    _LISTS,
    FLOW,
    LABELS,
    MAX_DURATION_US,
    MESSAGE_K,
    UDP4_HEADERS,
    _list_series,
    flow_keys,
    header_labels,
)
from lightsoc.sources.dns_wire import RCODE_NAMES, Malformed

if TYPE_CHECKING:
    from lightsoc.sources.dns_decode import DnsDecoder

_HDR = UDP4_HEADERS
_RCODES = np.array(RCODE_NAMES, dtype=object)
_VLAN = (0x8100, 0x88A8, 0x9100)
#: the columns of a parsed message after its flags (`dns_wire.parse_message` without the id)
_FIELDS = ("dns.question.name", "dns.question.type", "dns.answers", "dns.resolved_ip")


def pairable(
    dec: DnsDecoder, n: int, slow: np.ndarray, ethertype: np.ndarray, proto: np.ndarray
) -> bool:
    """Whether a batch of `n` packets can be paired here (`slow`: not on the fast path)."""
    if len(dec._pending) + n > dec.max_pending:
        return False  # the loop could evict a waiting query mid-batch
    # a slow IPv4/UDP packet (options, fragments, other ports, VLAN tags) may wait under
    # the same keys as the fast ones, in between them: only the loop keeps that order
    udp4 = (ethertype == 0x0800) & (proto == 17)
    return not bool((slow & (udp4 | np.isin(ethertype, _VLAN))).any())


def pair_batch(
    dec: DnsDecoder,
    packets: Sequence[tuple[int, bytes]],
    positions: Any,
    idx: np.ndarray,
    slow: np.ndarray,
    a: dict[str, np.ndarray],
) -> None:
    """Decode the batch: `idx` the fast packets, `slow` the others (in order); `a`
    holds `decode_fast`'s per-packet arrays (flow keys, message ends, client and server
    addresses and ports, DNS ids and flags, times, positions)."""
    if len(slow):  # TCP, IPv6, not IP: their keys are tuples, never those of the fast packets
        sl = slow.tolist()
        dec._decode_slow(1, [packets[j] for j in sl], [positions[j] for j in sl])
    c = dec.counters
    c["dns_messages"] += len(idx)
    il = idx.tolist()
    if "at" in a:  # one buffer (`pcap_file.Frames`): the messages are sliced from it
        at = a["at"][idx]
        buffer = packets.buffer  # type: ignore[attr-defined]
        starts, stops = (at + _HDR + 2).tolist(), (at + a["ends"][idx]).tolist()
        mkeys = [buffer[x:y] for x, y in zip(starts, stops, strict=True)]
    else:
        ends = a["ends"][idx].tolist()
        mkeys = [packets[i][1][_HDR + 2 : e] for i, e in zip(il, ends, strict=True)]
    parsed = list(map(dec._mcache.get, mkeys))
    if None in parsed and _parse_missing(dec, packets, positions, il, mkeys, parsed):
        good = np.fromiter((v is not None for v in parsed), bool, len(parsed))
        idx = idx[good]
        parsed = [v for v in parsed if v is not None]
    m = len(idx)
    if not m:
        return
    isq = (a["flags"][idx] & 0x8000) == 0  # the header's QR bit, as the parsed flags say
    keys = a["keys"][idx]  # (m, 14) bytes: client ip, server ip, ports, id
    hi = keys[:, :8].copy().view(">u8").ravel()
    lo = np.zeros((m, 8), np.uint8)
    lo[:, 2:] = keys[:, 8:]
    lo = lo.view(">u8").ravel()
    j = np.lexsort((lo, hi))  # stable: a key's packets stay in batch order
    same_prev = np.zeros(m, bool)
    same_prev[1:] = (hi[j][1:] == hi[j][:-1]) & (lo[j][1:] == lo[j][:-1])
    same_next = np.zeros(m, bool)
    same_next[:-1] = same_prev[1:]
    q = isq[j]
    prev_j = np.roll(j, 1)
    prev_q = np.roll(q, 1) & same_prev
    ts = a["ts"][idx]
    pos = a["pos"][idx]
    carried = _carried(dec._pending, keys, j, same_prev)  # sorted index -> the table's query
    # responses: after a query of their key in the batch (paired), else the table's, else none
    paired = ~q & prev_q
    rest = np.flatnonzero(~q & ~prev_q).tolist()
    old = [carried.get(t) for t in rest]
    r = np.concatenate([j[paired], j[rest]])
    first = np.concatenate(
        [ts[prev_j[paired]], np.array([w[0] if w else 0 for w in old], np.int64)]
    )
    qpos = np.concatenate(
        [pos[prev_j[paired]], np.array([w[1] if w else 0 for w in old], np.int64)]
    )
    has_q = np.concatenate(
        [np.ones(int(paired.sum()), bool), np.array([w is not None for w in old], bool)]
    )
    first = np.where(has_q, first, ts[r])  # a response without query: its own time and place
    qpos = np.where(has_q, qpos, pos[r])
    if len(r):  # (`events_frame` puts all rows in position order)
        rv = [parsed[x] for x in r.tolist()]
        dec._built.append(_answers(dec, idx[r], first, qpos, has_q, rv, keys[r], a))
    n_paired = int(has_q.sum())
    c["responses"] += len(r)
    c["answered"] += n_paired
    c["orphan_responses"] += len(r) - n_paired
    # queries: one before in the batch is replaced (unanswered), else the table's is
    c["queries"] += m - len(r)
    pending, emit = dec._pending, dec._emit_query

    def waiting(x: int) -> tuple:
        v = parsed[x]
        return (int(ts[x]), int(pos[x]), v[1], v[2], v[0])

    for t in np.flatnonzero(q & prev_q).tolist():
        x = int(prev_j[t])
        emit(keys[x].tobytes(), waiting(x))
    for t in np.flatnonzero(q & ~same_prev).tolist():
        if t in carried:
            emit(keys[j[t]].tobytes(), carried[t])
    for t in np.flatnonzero(q & ~same_next).tolist():  # still waiting after the batch
        x = int(j[t])
        pending[keys[x].tobytes()] = waiting(x)
    # the loop's table is in arrival order (expiry stops at the first young query)
    dec._pending = dict(sorted(pending.items(), key=_arrival))


def _carried(
    pending: dict, keys: np.ndarray, j: np.ndarray, same_prev: np.ndarray
) -> dict[int, tuple]:
    """Queries of earlier batches that the batch's packets meet, popped from the table:
    {sorted index of the key's first packet: the waiting query}."""
    waiting = [k for k in pending if type(k) is bytes]
    if not waiting:
        return {}
    firsts = np.flatnonzero(~same_prev)
    blob = keys[j[firsts]].tobytes()
    arr = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(14), len(firsts), [None, pa.py_buffer(blob)]
    )
    met = (
        pl.DataFrame({"k": pl.from_arrow(arr).cast(pl.Binary), "t": firsts})
        .join(pl.DataFrame({"k": pl.Series(waiting, dtype=pl.Binary)}), on="k")
        .iter_rows()
    )
    return {int(t): pending.pop(k) for k, t in met}


def _arrival(item: tuple[Any, tuple]) -> int:
    pos = item[1][1]
    return pos * MESSAGE_K if pos >= 0 else -pos - 1  # k-th message of a TCP segment


def _parse_missing(
    dec: DnsDecoder,
    packets: Sequence[tuple[int, bytes]],
    positions: Any,
    idx: list[int],
    mkeys: list[bytes],
    parsed: list[tuple | None],
) -> int:
    """Parse the messages the cache did not have (in place); malformed ones stay None
    (counted and kept as failures). Returns how many were malformed."""
    from lightsoc.sources.dns_fast import cache_parsed

    cache = dec._mcache
    bad = 0
    for t in [t for t, v in enumerate(parsed) if v is None]:
        v = cache.get(mkeys[t])  # an earlier packet of this batch had it
        if v is None:
            i = idx[t]
            data = packets[i][1]
            msg = data[_HDR : _HDR + 2 + len(mkeys[t])]
            try:
                v = dec._parse(msg)[1:]
            except Malformed as exc:
                dec._fail_msg(msg, exc.reason, packets[i][0], f"f{positions[i]}.0", data[26:30])
                bad += 1
                continue
            cache_parsed(cache, mkeys[t], v)
        parsed[t] = v
    return bad


def _ip_text(ips: np.ndarray) -> pl.Expr:
    octets = [pl.lit(pl.Series(((ips >> s) & 255).astype(np.int32))) for s in (24, 16, 8, 0)]
    return pl.concat_str([o.cast(pl.Utf8) for o in octets], separator=".")


class MessageColumns:
    """The `_FIELDS` columns of parsed messages, made once per distinct message.

    Messages repeat (the decoder's cache is built on that): each distinct parsed
    tuple gets a row here the first time a response carries it, and a batch's
    columns are one gather by row number, not a conversion of every response's
    Python strings (on the bench capture ~30k distinct messages in 500k packets).
    """

    MAX_ROWS = 100_000  # then it starts afresh: memory stays bounded

    def __init__(self) -> None:
        # by identity (no tuple hashing): the decoder's cache hands out one tuple per
        # message, and `_kept` keeps every tuple seen alive, so an id is never reused
        self._row: dict[int, int] = {}
        self._kept: list[tuple] = []
        self._frame = pl.DataFrame(schema={f: _COLUMNS[f] for f in _FIELDS})

    def columns(self, vs: list[tuple]) -> dict[str, pl.Series]:
        if len(self._row) + len(vs) > self.MAX_ROWS:
            self.__init__()  # type: ignore[misc]
        row = self._row
        at = list(map(row.get, map(id, vs)))
        if None in at:
            kept = self._kept
            start = len(kept)
            for i in [i for i, r in enumerate(at) if r is None]:
                r = row.get(id(vs[i]))
                if r is None:
                    r = row[id(vs[i])] = len(kept)
                    kept.append(vs[i])
                at[i] = r
            values = list(zip(*kept[start:], strict=True))[1:]
            added = pl.DataFrame(
                [
                    _list_series(f, v) if f in _LISTS else pl.Series(f, v, dtype=pl.Utf8)
                    for f, v in zip(_FIELDS, values, strict=True)
                ]
            )
            self._frame = pl.concat([self._frame, added], rechunk=True)
        idx = pl.Series(at, dtype=pl.UInt32)
        return {f: self._frame.get_column(f).gather(idx) for f in _FIELDS}


def _answers(
    dec: DnsDecoder,
    pkt: np.ndarray,
    first: np.ndarray,
    qpos: np.ndarray,
    has_q: np.ndarray,
    vs: list[tuple],
    keys: np.ndarray,
    a: dict[str, np.ndarray],
) -> pl.DataFrame:
    """Answer rows (`_COLUMNS`, Community IDs made) of the response packets `pkt`."""
    flags = a["flags"][pkt].astype(np.int64)
    d = a["ts"][pkt] - first
    good = has_q & (d >= 0) & (d < MAX_DURATION_US)
    labels = {u: LABELS.get(u) or header_labels(u) for u in np.unique(flags & 0x7FF0).tolist()}
    cols: dict[str, Any] = {
        "_ts": first,
        "_pos": qpos,
        "event.duration": pl.Series(d * 1000).set(pl.Series(~good), None),
        "source.ip": _ip_text(a["cip"][pkt]),
        "source.port": a["cport"][pkt],
        "destination.ip": _ip_text(a["sip"][pkt]),
        "destination.port": a["sport"][pkt],
        "network.transport": pl.lit("udp"),
        "dns.type": pl.lit("answer"),
        "dns.id": a["mid"][pkt],
        "dns.response_code": pl.Series(_RCODES[flags & 15], dtype=pl.Utf8),
        **dec._mcols.columns(vs),
        "labels": pl.Series(flags & 0x7FF0).replace_strict(labels, return_dtype=pl.Utf8),
        "network.community_id": pl.lit(None),
    }
    out = []
    for name, dtype in _COLUMNS.items():
        v = cols[name]
        if isinstance(v, pl.Expr):
            out.append(v.cast(dtype).alias(name))
        elif isinstance(v, pl.Series) and v.dtype == dtype:
            out.append(pl.lit(v).alias(name))
        elif name in _LISTS:
            out.append(pl.lit(_list_series(name, v)).alias(name))
        else:
            out.append(pl.lit(pl.Series(name, v)).cast(dtype).alias(name))
    flows = pl.lit(flow_keys(keys)) if dec.community_id else pl.lit(None, pl.Binary)
    return pl.select([*out, flows.alias(FLOW)])
