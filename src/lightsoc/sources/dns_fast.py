"""The common case of `DnsDecoder.decode`, vectorised: Ethernet/IPv4/UDP DNS.

`decode_fast` reads the fixed-offset headers of a whole batch at once with
numpy (one buffer, one offset per packet) and picks the packets that are
plain Ethernet II + IPv4 without options or fragmentation + UDP on a DNS
port + a message of at least a DNS header. Those are paired here with the
decoder's own tables; every other packet goes, in order, to the decoder's
per-packet path (`_decode_slow`), so events, their order and the counters are
the same as without this module (tests compare the two).

When nothing else in the batch can meet the same flow keys, `dns_pairs` pairs
the whole batch at once instead of the per-packet loop here.

Parsed messages are cached by their bytes without the id (messages repeat:
the same questions, often the same answers), unless the message could point
into its id (a compression pointer to offset 0 or 1) or is large.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lightsoc.sources.dns_events import LABELS, MAX_DURATION_US, UDP4_HEADERS, header_labels
from lightsoc.sources.dns_pairs import pair_batch, pairable
from lightsoc.sources.dns_wire import RCODE_NAMES, Malformed
from lightsoc.sources.pcap_file import Frames

if TYPE_CHECKING:
    from lightsoc.sources.dns_decode import DnsDecoder

FAST_MIN = 1  # batches of any size (the hand-built tests go through here too)
MAX_CACHED = 50_000
MAX_CACHED_LEN = 1024
_HDR = UDP4_HEADERS
_HEAD = _HDR + 4  # bytes read with numpy: the headers, the DNS id and flags
_KEY4 = struct.Struct("!HHH")


def _u16(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (buf[at].astype(np.int32) << 8) | buf[at + 1]


def _cols(buf: np.ndarray, base: np.ndarray, at: int, width: int) -> np.ndarray:
    """Bytes `at`..`at + width` of every packet, one row each."""
    return buf[(base + at)[:, None] + np.arange(width)]


def _ip4(cache: dict[int, str], ip: int) -> str:
    if len(cache) > 65536:
        cache.clear()
    s = cache[ip] = socket.inet_ntoa(ip.to_bytes(4, "big"))
    return s


def flow_key(
    cip: bytes, cport: int, sip: bytes, sport: int, transport: str, mid: int
) -> tuple | bytes:
    """Where a query waits: client, server, transport and DNS id.

    IPv4/UDP (nearly all) as 14 bytes, client ip, server ip, client port,
    server port, id (`dns_fast` builds them for a whole batch at once);
    anything else as a tuple. Rows carry it for their Community ID.
    """
    if transport == "udp" and len(cip) == 4 and len(sip) == 4:
        return cip + sip + _KEY4.pack(cport, sport, mid)
    return (cip, cport, sip, sport, transport, mid)


def cache_parsed(cache: dict[bytes, tuple], mkey: bytes, parsed: tuple) -> None:
    """Keep a parsed message under its bytes without the id, if it cannot depend on the id."""
    if len(mkey) <= MAX_CACHED_LEN and b"\xc0\x00" not in mkey and b"\xc0\x01" not in mkey:
        if len(cache) >= MAX_CACHED:
            cache.clear()
        cache[mkey] = parsed


def decode_fast(dec: DnsDecoder, packets: Sequence[tuple[int, bytes]], positions: Any) -> None:
    """Decode an Ethernet batch (see the module doc); `dec` keeps the state."""
    n = len(packets)
    if isinstance(packets, Frames):  # a classic pcap batch: its buffer as it is
        buf, base, lens = np.frombuffer(packets.buffer, np.uint8), packets.at, packets.lens
    else:
        lens = np.fromiter((len(p[1]) for p in packets), np.int64, n)
        # the first bytes of every packet, one after the other (padded: reads never fail)
        heads = b"".join([p[1][:_HEAD] for p in packets]) + bytes(_HEAD)
        buf = np.frombuffer(heads, np.uint8)
        base = np.zeros(n, np.int64)
        np.cumsum(np.minimum(lens[:-1], _HEAD), out=base[1:])
    ok = lens >= _HDR + 12
    ok &= _u16(buf, base + 12) == 0x0800
    ok &= buf[base + 14] == 0x45
    ok &= (_u16(buf, base + 20) & 0x3FFF) == 0
    ok &= buf[base + 23] == 17
    end = np.minimum(14 + _u16(buf, base + 16), lens)
    ok &= end >= _HDR + 12
    sports, dports = _u16(buf, base + 34), _u16(buf, base + 36)  # source, destination
    ports = np.fromiter(dec.ports, np.int32)
    ok &= np.isin(sports, ports) | np.isin(dports, ports)
    idx = np.flatnonzero(ok).tolist()
    if not idx:
        dec._decode_slow(1, packets, positions)
        return
    # where a query waits (`flow_key`): client ip, server ip, ports, id, 14 bytes each
    resp = (buf[base + _HDR + 2] & 0x80) != 0
    ip_c = np.where(resp[:, None], _cols(buf, base, 30, 4), _cols(buf, base, 26, 4))
    ip_s = np.where(resp[:, None], _cols(buf, base, 26, 4), _cols(buf, base, 30, 4))
    pt_c = np.where(resp[:, None], _cols(buf, base, 36, 2), _cols(buf, base, 34, 2))
    pt_s = np.where(resp[:, None], _cols(buf, base, 34, 2), _cols(buf, base, 36, 2))
    karr = np.hstack([ip_c, ip_s, pt_c, pt_s, _cols(buf, base, _HDR, 2)])
    cports_a, sports_a = np.where(resp, dports, sports), np.where(resp, sports, dports)
    if pairable(dec, n, ~ok, _u16(buf, base + 12), buf[base + 23]):
        arrays = {"keys": karr, "ends": end, "cip": ip_c.view(">u4").ravel()}
        arrays |= {"sip": ip_s.view(">u4").ravel(), "cport": cports_a, "sport": sports_a}
        arrays |= {"mid": _u16(buf, base + _HDR), "flags": _u16(buf, base + _HDR + 2)}
        arrays["pos"] = np.asarray(positions, np.int64)
        if isinstance(packets, Frames):
            arrays |= {"ts": packets.ts, "at": base}
        else:
            arrays["ts"] = np.fromiter((p[0] for p in packets), np.int64, n)
        pair_batch(dec, packets, positions, np.flatnonzero(ok), np.flatnonzero(~ok), arrays)
        return
    packets = list(packets)  # (a `Frames`: its tuples, made once)
    datas = [p[1] for p in packets]
    keys = karr.view("V14").ravel().tolist()  # 14-byte `bytes` each, made in C
    ends = end.tolist()
    cips = ip_c.view(">u4").ravel().tolist()
    sips = ip_s.view(">u4").ravel().tolist()
    cports = cports_a.tolist()
    sports_l = sports_a.tolist()
    mids = _u16(buf, base + _HDR).tolist()

    c = dec.counters
    cache = dec._mcache
    cget = cache.get
    pending = dec._pending
    pop = pending.pop
    rows = dec._rows
    add = rows.append
    ip4 = dec._ip4
    ipget = ip4.get
    emit = dec._emit_query
    max_pending = dec.max_pending
    cid = dec.community_id
    labels = LABELS
    messages = queries = responses = answered = orphans = 0
    prev = 0
    for i in idx:
        if i > prev:
            dec._decode_slow(1, packets[prev:i], positions[prev:i])
        prev = i + 1
        data = datas[i]
        e = ends[i]
        mkey = data[_HDR + 2 : e]
        v = cget(mkey)
        messages += 1
        if v is None:
            msg = data[_HDR:e]
            try:
                v = dec._parse(msg)[1:]
            except Malformed as exc:
                dec._fail_msg(msg, exc.reason, packets[i][0], f"f{positions[i]}.0", data[26:30])
                continue
            cache_parsed(cache, mkey, v)
        flags, qname, qtype_s, answers, ips = v
        k = keys[i]
        if not flags & 0x8000:
            queries += 1
            old = pop(k, None)
            if old is not None:  # a retransmission: the earlier one was not answered
                emit(k, old)
            pending[k] = (packets[i][0], positions[i], qname, qtype_s, flags)
            if len(pending) > max_pending:
                oldest = next(iter(pending))
                emit(oldest, pop(oldest))
            continue
        responses += 1
        ts = packets[i][0]
        q = pop(k, None)
        if q is None:
            orphans += 1
            first, pos, duration = ts, positions[i], None
        else:
            answered += 1
            first, pos = q[0], q[1]
            duration = (ts - first) * 1000 if 0 <= ts - first < MAX_DURATION_US else None
        a, b = cips[i], sips[i]
        add(
            (
                first,
                pos,
                duration,
                ipget(a) or _ip4(ip4, a),
                cports[i],
                ipget(b) or _ip4(ip4, b),
                sports_l[i],
                "udp",
                "answer",
                mids[i],
                RCODE_NAMES[flags & 15],
                qname,
                qtype_s,
                answers,
                ips,
                labels.get(flags & 0x7FF0) or header_labels(flags),
                k if cid else None,
            )
        )
    if prev < n:
        dec._decode_slow(1, packets[prev:], positions[prev:])
    c["dns_messages"] += messages
    c["queries"] += queries
    c["responses"] += responses
    c["answered"] += answered
    c["orphan_responses"] += orphans
