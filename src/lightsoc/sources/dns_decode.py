"""Packets -> Packetbeat-like DNS events (one per query/response pair).

`DnsDecoder.decode(linktype, packets)` takes a batch in the shape shared by
capture files and live capture (`[(unix_µs, frame_bytes), ...]`) and keeps
one tuple per event; `take()` returns them as one polars frame (layout, ids
and labels: `sources.dns_events`; wire format: `sources.dns_wire`). It never
raises on packet content: everything odd is counted in `counters`, and every
table it keeps (waiting queries, TCP streams, caches) is bounded.

Layers: Ethernet (with 802.1Q/802.1ad tags), Linux SLL and SLL2, raw IP and
BSD null/loopback; IPv4 (fragments are counted, not reassembled) and IPv6
(extension headers skipped, fragments counted); UDP, and TCP with a 2-byte
length prefix per message: several messages per segment and a message split
over segments are handled per direction of a stream (in-order data only; a
gap drops the partial message, counted). Ports 53, 5353 and 5355 are DNS;
other ports are DNS when a packet passes a strict check (`looks_like_dns`),
and a server port seen that way is then treated as DNS for TCP too.

Pairing: a query waits under (client ip, client port, server ip, server
port, transport, id); its response makes one `dns.type: answer` event with
`@timestamp` = query time and `event.duration` = response - query (ns). A
query unanswered after `timeout` seconds of packet time (or at `flush()`)
is a `dns.type: query` event; a response without its query is an answer
event without duration. A retransmitted query replaces the one waiting (which
becomes unanswered). `dns.question.name` is lower-cased; `dns.answers` keep
names as sent (dig style, see `dns_wire`); `dns.resolved_ip` lists the A and
AAAA addresses of the answer section. A message that does not decode is a parse-failure
event (`event.original` = base64 of the DNS message, reason in `labels`).
Header flags and the opcode go to `labels` (`dns.op_code`,
`dns.header_flags`), as Packetbeat names them.

Speed: Ethernet batches go through `dns_fast` (headers of the whole batch
with numpy, parsed messages cached), which hands every packet it does not
take to the per-packet path here, in order: the events are the same.
"""

from __future__ import annotations

import base64
import gc
import socket
import struct
from collections import Counter

import polars as pl

from lightsoc.sources.dns_events import (  # noqa: F401 - community_id: re-exported
    LABELS,
    MAX_DURATION_US,
    MESSAGE_K,
    community_id,
    events_frame,
    header_labels,
)
from lightsoc.sources.dns_fast import _KEY4, FAST_MIN, cache_parsed, decode_fast, flow_key
from lightsoc.sources.dns_pairs import MessageColumns
from lightsoc.sources.dns_wire import (
    RCODE_NAMES,
    Malformed,
    looks_like_dns,
    parse_message,
)

DNS_PORTS = frozenset({53, 5353, 5355})
MAX_PENDING = 200_000
MAX_STREAMS = 1024
MAX_LEARNED_PORTS = 64
_IP4 = struct.Struct("!BxHxxHxB2x4s4s")
_IP6 = struct.Struct("!4xHBx16s16s")
_PORTS = struct.Struct("!HH")
_TCP = struct.Struct("!HHIxxxxBB")
_H = struct.Struct("!H")
_I = struct.Struct("=I")
_SEQ = 0xFFFFFFFF
# link type -> how to find the IP header (see pcap-linktype(7))
ETHERNET, NULL, RAW, LOOP, SLL, SLL2 = 1, 0, 101, 108, 113, 276
_RAW_TYPES = {RAW, 12, 14}


def new_counters() -> Counter[str]:
    keys = ("packets", "dns_messages", "queries", "responses", "answered", "unanswered")
    keys += ("orphan_responses", "malformed", "non_dns", "fragments", "bad_packets")
    return Counter(dict.fromkeys(keys, 0))


class DnsDecoder:
    """Stateful decoder: TCP stream buffers and queries waiting for answers."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        id_prefix: str = "",
        ports: frozenset[int] = DNS_PORTS,
        community_id: bool = True,  # noqa: F811 - the function is re-exported only
        max_pending: int = MAX_PENDING,
        fast: bool = True,
    ) -> None:
        self.timeout_us = int(timeout * 1_000_000)
        self.id_prefix = id_prefix
        self.ports = set(ports)
        self.community_id = community_id
        self.max_pending = max_pending
        self.counters: Counter[str] = new_counters()
        self._pending: dict[tuple | bytes, tuple] = {}  # `flow_key` -> the query
        self._streams: dict[tuple, list] = {}  # (src, sport, dst, dport) -> [next_seq, buffer]
        self._ipcache: dict[bytes, str] = {}
        self._ip4: dict[int, str] = {}  # IPv4 as int -> text (dns_fast)
        self._rows: list[tuple] = []  # one tuple per event, in `_COLUMNS` order
        self._built: list[pl.DataFrame] = []  # rows made as frames (`dns_pairs`)
        self._qnames: dict[bytes, tuple[str, str]] = {}  # question wire form -> (name, lower)
        self._fail: dict[str, list] = {k: [] for k in ("_ts", "_fid", "ip", "reason", "orig")}
        self._seq = 0  # position of packets given without positions (live capture)
        self._mcache: dict[bytes, tuple] = {}  # message without its id -> parsed (dns_fast)
        self._mcols = MessageColumns()  # parsed messages as columns (dns_pairs)
        self.fast = fast  # False: every packet on the per-packet path (tests compare both)
        self.last_ts = 0

    # -- packets ---------------------------------------------------------------
    def decode(
        self,
        linktype: int,
        packets: list[tuple[int, bytes]],
        positions: list[int] | None = None,
    ) -> None:
        """Decode a batch of `(unix_µs, frame)`; `positions` are ids for events (default: a sequence)."""
        self.counters["packets"] += len(packets)
        if positions is None:
            positions = range(self._seq, self._seq + len(packets))  # type: ignore[assignment]
            self._seq += len(packets)
        gc_was = gc.isenabled()
        gc.disable()  # many small tuples, no cycles: collections would only cost time
        try:
            if linktype == ETHERNET and len(packets) >= FAST_MIN and self.fast:
                decode_fast(self, packets, positions)
            else:
                self._decode_slow(linktype, packets, positions)
        finally:
            if gc_was:
                gc.enable()
        if packets:
            self.last_ts = max(self.last_ts, packets[-1][0])

    def _decode_slow(
        self, linktype: int, packets: list[tuple[int, bytes]], positions: list[int] | range
    ) -> None:
        """Every layer in Python, one packet after the other (see `dns_fast` for the common case)."""
        c = self.counters
        ports = self.ports
        ip4, ip6, udp_ports, tcp_hdr = (
            _IP4.unpack_from,
            _IP6.unpack_from,
            _PORTS.unpack_from,
            _TCP.unpack_from,
        )
        message = self._message
        non_dns = fragments = bad = 0
        for (ts, data), pos in zip(packets, positions, strict=True):
            n = len(data)
            # -- link layer: where IP starts and which version
            if linktype == ETHERNET:
                if n < 14:
                    bad += 1
                    continue
                et = (data[12] << 8) | data[13]
                off = 14
                while et in (0x8100, 0x88A8, 0x9100) and n >= off + 4:
                    et = (data[off + 2] << 8) | data[off + 3]
                    off += 4
                ver = 4 if et == 0x0800 else 6 if et == 0x86DD else 0
            elif linktype == SLL or linktype == SLL2:
                off = 16 if linktype == SLL else 20
                if n < off:
                    bad += 1
                    continue
                et = (data[14] << 8) | data[15] if linktype == SLL else (data[0] << 8) | data[1]
                ver = 4 if et == 0x0800 else 6 if et == 0x86DD else 0
            elif linktype in _RAW_TYPES:
                off = 0
                ver = data[0] >> 4 if n else 0
            elif linktype == NULL or linktype == LOOP:
                if n < 4:
                    bad += 1
                    continue
                off = 4
                fam = _I.unpack_from(data)[0]
                if linktype == LOOP or fam > 0xFFFF:  # written with the other byte order
                    fam = int.from_bytes(data[:4], "big" if linktype == LOOP else "little")
                    if fam > 0xFFFF:
                        fam = int.from_bytes(data[:4], "big")
                ver = 4 if fam == 2 else 6 if fam in (10, 24, 28, 30) else 0
            else:
                c["unsupported_linktype"] += 1
                continue
            # -- IP
            if ver == 4:
                if n < off + 20:
                    bad += 1
                    continue
                vihl, total, frag, proto, src, dst = ip4(data, off)
                if vihl >> 4 != 4:
                    bad += 1
                    continue
                if frag & 0x3FFF:
                    fragments += 1
                    continue
                l4 = off + (vihl & 15) * 4
                end = off + total if off + total <= n else n
            elif ver == 6:
                if n < off + 40:
                    bad += 1
                    continue
                plen, proto, src, dst = ip6(data, off)
                l4 = off + 40
                end = l4 + plen if plen and l4 + plen <= n else n
                while proto in (0, 43, 60, 51) and l4 + 8 <= end:
                    hlen = (data[l4 + 1] + 2) * 4 if proto == 51 else (data[l4 + 1] + 1) * 8
                    proto = data[l4]
                    l4 += hlen
                if proto == 44:
                    fragments += 1
                    continue
            else:
                non_dns += 1
                continue
            # -- transport
            if proto == 17:
                if l4 + 8 > end:
                    bad += 1
                    continue
                sport, dport = udp_ports(data, l4)
                payload = data[l4 + 8 : end]
                if not (sport in ports or dport in ports or self._learn(payload, sport, dport)):
                    non_dns += 1
                    continue
                message(payload, ts, pos, 0, src, sport, dst, dport, "udp")
            elif proto == 6:
                if l4 + 14 > end:
                    bad += 1
                    continue
                sport, dport, seq, doff, flags = tcp_hdr(data, l4)
                payload = data[l4 + (doff >> 4) * 4 : end]
                if not (sport in ports or dport in ports):
                    if len(payload) < 14 or not self._learn(payload[2:], sport, dport):
                        non_dns += 1
                        continue
                self._tcp(payload, ts, pos, src, sport, dst, dport, seq, flags)
            else:
                non_dns += 1
        c["non_dns"] += non_dns
        c["fragments"] += fragments
        c["bad_packets"] += bad

    def _learn(self, msg: bytes, sport: int, dport: int) -> bool:
        """DNS on an unusual port? If so, remember the server's port (for TCP)."""
        if not looks_like_dns(msg):
            return False
        if len(self.ports) < len(DNS_PORTS) + MAX_LEARNED_PORTS:
            self.ports.add(sport if msg[2] & 0x80 else dport)
        return True

    def _tcp(
        self,
        payload: bytes,
        ts: int,
        pos: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        flags: int,
    ) -> None:
        key = (src, sport, dst, dport)
        st = self._streams.get(key)
        if not payload:
            self.counters["tcp_control"] += 1  # SYN, ACK, FIN, RST without data
        if flags & 0x02:  # SYN: a new stream, data starts after it
            if st is not None and st[1]:
                self._fail_msg(bytes(st[1]), "tcp_incomplete", ts, f"f{st[2]}t", src)
            st = self._streams[key] = [(seq + 1) & _SEQ, bytearray(), pos]
            if len(self._streams) > MAX_STREAMS:
                self._evict_stream()
            seq = (seq + 1) & _SEQ
        if payload:
            if st is None:
                st = self._streams[key] = [seq, bytearray(), pos]
                if len(self._streams) > MAX_STREAMS:
                    self._evict_stream()
            diff = (seq - st[0]) & _SEQ
            if diff and diff < 0x80000000:  # data missing before this segment
                self.counters["tcp_gaps"] += 1
                if st[1]:
                    self._fail_msg(bytes(st[1]), "tcp_gap", ts, f"f{st[2]}t", src)
                    st[1].clear()
                diff = 0
            elif diff:  # retransmission: keep only what is new
                diff = (st[0] - seq) & _SEQ
                payload = payload[diff:]
            if payload:
                st[0] = (st[0] + len(payload)) & _SEQ
                st[2] = pos
                buf = st[1]
                buf += payload
                k = 0
                while len(buf) >= 2:
                    ln = (buf[0] << 8) | buf[1]
                    if len(buf) < ln + 2:
                        break
                    msg = bytes(buf[2 : ln + 2])
                    del buf[: ln + 2]
                    self._message(msg, ts, pos, k, src, sport, dst, dport, "tcp")
                    k += 1
        if flags & 0x05 and st is not None:  # FIN or RST: the stream ends here
            if st[1]:
                self._fail_msg(bytes(st[1]), "tcp_incomplete", ts, f"f{st[2]}t", src)
            del self._streams[key]

    def _evict_stream(self) -> None:
        key = next(iter(self._streams))
        st = self._streams.pop(key)
        if st[1]:
            self._fail_msg(bytes(st[1]), "tcp_incomplete", self.last_ts, f"f{st[2]}t", key[0])

    # -- messages ----------------------------------------------------------------
    def _parse(self, msg: bytes) -> tuple:
        """(id, flags, question name, question type, answers, addresses); raises `Malformed`."""
        return parse_message(msg, self._qnames)

    def _message(
        self,
        msg: bytes,
        ts: int,
        pos: int,
        k: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        transport: str,
    ) -> None:
        c = self.counters
        c["dns_messages"] += 1
        try:
            v = self._mcache.get(msg[2:]) if len(msg) >= 12 else None
            if v is None:
                mid, flags, qname, qtype_s, answers, ips = self._parse(msg)
                cache_parsed(self._mcache, msg[2:], (flags, qname, qtype_s, answers, ips))
            else:
                mid = (msg[0] << 8) | msg[1]
                flags, qname, qtype_s, answers, ips = v
        except Malformed as exc:
            self._fail_msg(msg, exc.reason, ts, f"f{pos}.{k}", src)
            return
        if k:
            pos = -(pos * MESSAGE_K + k) - 1  # several messages in one segment (see `take`)
        if not flags & 0x8000:
            c["queries"] += 1
            key = flow_key(src, sport, dst, dport, transport, mid)
            pending = self._pending
            old = pending.pop(key, None)
            if old is not None:  # a retransmission: the earlier one was not answered
                self._emit_query(key, old)
            pending[key] = (ts, pos, qname, qtype_s, flags)
            if len(pending) > self.max_pending:
                oldest = next(iter(pending))
                self._emit_query(oldest, pending.pop(oldest))
            return
        c["responses"] += 1
        key = flow_key(dst, dport, src, sport, transport, mid)
        q = self._pending.pop(key, None)
        if q is None:
            c["orphan_responses"] += 1
            first, duration = ts, None
        else:
            c["answered"] += 1
            first, pos = q[0], q[1]
            # a reordered or damaged capture must not give a negative or overflowing time
            duration = (ts - first) * 1000 if 0 <= ts - first < MAX_DURATION_US else None
        ipc = self._ipcache
        cip, sip = ipc.get(dst) or self._ip(dst), ipc.get(src) or self._ip(src)
        self._rows.append(
            (
                first,
                pos,
                duration,
                cip,
                dport,
                sip,
                sport,
                transport,
                "answer",
                mid,
                RCODE_NAMES[flags & 15],
                qname,
                qtype_s,
                answers,
                ips,
                LABELS.get(flags & 0x7FF0) or header_labels(flags),
                key if self.community_id else None,
            )
        )

    def _ip(self, raw: bytes) -> str:
        s = self._ipcache.get(raw)
        if s is None:
            if len(self._ipcache) > 65536:
                self._ipcache.clear()
            s = socket.inet_ntoa(raw) if len(raw) == 4 else socket.inet_ntop(socket.AF_INET6, raw)
            self._ipcache[raw] = s
        return s

    def _emit_query(self, key: tuple | bytes, q: tuple) -> None:
        self.counters["unanswered"] += 1
        if type(key) is bytes:  # IPv4/UDP (see `flow_key`)
            cip, sip, (cport, sport, mid), transport = (
                key[:4],
                key[4:8],
                _KEY4.unpack_from(key, 8),
                "udp",
            )
        else:
            cip, cport, sip, sport, transport, mid = key
        self._rows.append(
            (
                q[0],
                q[1],
                None,
                self._ip(cip),
                cport,
                self._ip(sip),
                sport,
                transport,
                "query",
                mid,
                None,
                q[2],
                q[3],
                None,
                None,
                header_labels(q[4]),
                key if self.community_id else None,
            )
        )

    def _fail_msg(self, msg: bytes, reason: str, ts: int, fid: str, src: bytes) -> None:
        self.counters["malformed"] += 1
        self.counters["malformed_" + reason] += 1
        f = self._fail
        f["_ts"].append(ts)
        f["_fid"].append(fid)
        f["ip"].append(self._ip(src))
        f["reason"].append(reason)
        f["orig"].append(base64.b64encode(msg[:4096]).decode("ascii"))

    # -- time and output ---------------------------------------------------------
    def expire(self, now_us: int | None = None) -> None:
        """Queries waiting longer than the timeout (by packet time, or `now_us`) are unanswered."""
        now = self.last_ts if now_us is None else max(now_us, self.last_ts)
        limit = now - self.timeout_us
        pending = self._pending
        while pending:
            key = next(iter(pending))
            if pending[key][0] > limit:
                break  # insertion order is arrival order: the rest are younger
            self._emit_query(key, pending.pop(key))

    def flush(self) -> None:
        """End of input: every waiting query is unanswered, partial TCP messages fail."""
        while self._pending:
            key = next(iter(self._pending))
            self._emit_query(key, self._pending.pop(key))
        for key, st in self._streams.items():
            if st[1]:
                self._fail_msg(bytes(st[1]), "tcp_incomplete", self.last_ts, f"f{st[2]}t", key[0])
        self._streams.clear()

    @property
    def pending(self) -> int:
        """Queries waiting for their response."""
        return len(self._pending)

    @property
    def rows(self) -> int:
        """Events decoded and not taken yet."""
        return len(self._rows) + len(self._fail["_ts"]) + sum(f.height for f in self._built)

    def take(self, community_ids: bool = True) -> pl.DataFrame:
        """The events decoded so far as one frame (ECS columns); resets the buffers.
        `community_ids=False`: IPv4/UDP rows keep `FLOW` (`dns_events.with_community_ids`)."""
        rows, self._rows = self._rows, []
        built, self._built = self._built, []
        fail, self._fail = self._fail, {k: [] for k in self._fail}
        gc_was = gc.isenabled()
        gc.disable()
        try:
            return events_frame(rows, fail, self.id_prefix, built, community_ids)
        finally:
            if gc_was:
                gc.enable()
