"""NetFlow v5, v9 (RFC 3954) and IPFIX (RFC 7011) datagrams -> ECS flow records.

A pure library: `NetflowDecoder.decode(datagram, exporter, now)` returns the
flows of one UDP datagram as plain dicts with ECS field names (the same
choices as the nfdump parser: `event.dataset` netflow, `event.category`
network, `event.type` connection) and a dict of counters; it never raises on
bad input, it counts it (`malformed`, `unknown_version`). `records_to_frame`
turns a batch of records into a polars frame typed by `schema`.

Templates are cached per (exporter, observation domain / source id, template
id); a template with the same key and a new layout replaces the old one. A
data set that arrives before its template is held (up to `max_pending` sets)
and decoded when the template comes, or dropped `pending_seconds` after it
arrived (`flush_pending`, also run by every `decode`).

Times: `@timestamp` is the flow end, `event.start`/`event.end` come from
flowStart/End{Seconds,Milliseconds} (150-153) or the sysUpTime-relative
first/last switched (22/21) with the header's sys_uptime and export time
(IPFIX: systemInitTimeMilliseconds, 160, in the record); a flow with no
time at all gets the datagram's export time. The exporter goes to
`log.source.address`; TCP flags, interfaces and the NetFlow version to
`labels`.

With a `FlowBatch` (`decode(..., batch=b)`), fixed-length data sets are not
decoded here but queued in the batch, which builds columns for many
datagrams at once (`netflow_columns`): that is the fast path the `netflow`
source uses; the list of dicts is the reference behaviour.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import polars as pl

from lightsoc import schema
from lightsoc.sources import netflow_templates as nt
from lightsoc.sources.netflow_columns import V5_TEMPLATE, FlowBatch

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_V5_HEADER = struct.Struct("!HHIIIIBBH")
_V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBBxx")
_V9_HEADER = struct.Struct("!HHIIII")
_IPFIX_HEADER = struct.Struct("!HHIII")
_SET_HEADER = struct.Struct("!HH")
_WRAP = 1 << 32
_NTP_EPOCH = 2_208_988_800  # 1900-01-01 to 1970-01-01, seconds


class _Ctx(NamedTuple):
    """What a data set needs from its datagram's header."""

    version: int
    export_us: int  # export time, Unix µs
    uptime_ms: int | None  # sys_uptime at export (v5/v9)


def _counters() -> dict[str, int]:
    return dict.fromkeys(
        ("flows", "templates", "options_templates", "options_records", "malformed", "pending")
        + ("dropped", "unknown_version", "template_changes", "template_collisions"),
        0,
    )


def _uptime_to_us(value: int, ctx: _Ctx) -> int:
    """A sysUpTime-relative ms value as Unix µs (32-bit uptime wrap handled)."""
    assert ctx.uptime_ms is not None
    delta = (value - ctx.uptime_ms) % _WRAP
    if delta >= _WRAP // 2:
        delta -= _WRAP
    return ctx.export_us + delta * 1000


def _ntp_us(value: int) -> int:
    """An NTP timestamp (dateTimeMicro/Nanoseconds: 32.32 fixed point since 1900) as Unix µs."""
    return ((value >> 32) - _NTP_EPOCH) * 1_000_000 + ((value & 0xFFFFFFFF) * 1_000_000 >> 32)


def _when(raw: dict[int, Any], ctx: _Ctx, ies: tuple[int, int, int, int, int]) -> int | None:
    """Unix µs of one end of a flow from (ms, s, µs, ns, sysuptime) IEs, or None."""
    ms, s, us, ns, uptime = ies
    if ms in raw:
        return raw[ms] * 1000
    if us in raw:
        return _ntp_us(raw[us])
    if ns in raw:
        return _ntp_us(raw[ns])
    if s in raw:
        return raw[s] * 1_000_000
    if uptime in raw:
        boot = raw.get(nt.INIT_MS)
        if boot is not None:
            return (boot + raw[uptime]) * 1000
        if ctx.uptime_ms is not None:
            return _uptime_to_us(raw[uptime], ctx)
    return None


_START = (nt.START_MS, nt.START_S, nt.START_US, nt.START_NS, nt.FIRST_UPTIME)
_END = (nt.END_MS, nt.END_S, nt.END_US, nt.END_NS, nt.LAST_UPTIME)


def _times(raw: dict[int, Any], ctx: _Ctx) -> tuple[int, int]:
    """(start, end) of a flow in Unix µs."""
    start, end = _when(raw, ctx, _START), _when(raw, ctx, _END)
    if end is None:
        end = start if start is not None else ctx.export_us
    if start is None:
        start = end
    return start, end


def _flow(raw: dict[int, Any], ctx: _Ctx, exporter: str) -> dict[str, Any]:
    """One ECS flow record from decoded information elements."""
    start_us, end_us = _times(raw, ctx)
    end = _EPOCH + timedelta(microseconds=end_us)
    rec: dict[str, Any] = {
        "@timestamp": end,
        "event.start": _EPOCH + timedelta(microseconds=start_us),
        "event.end": end,
        "event.duration": (end_us - start_us) * 1000,
        "event.kind": "event",
        "event.category": "network",
        "event.type": "connection",
        "event.dataset": "netflow",
        "event.module": "netflow",
        "log.source.address": exporter,
    }
    src = raw.get(nt.SRC_V4) or raw.get(nt.SRC_V6)
    dst = raw.get(nt.DST_V4) or raw.get(nt.DST_V6)
    sport, dport, proto = raw.get(nt.SRC_PORT), raw.get(nt.DST_PORT), raw.get(nt.PROTO)
    if src is not None:
        rec["source.ip"] = src
    if dst is not None:
        rec["destination.ip"] = dst
    if sport is not None:
        rec["source.port"] = sport
    if dport is not None:
        rec["destination.port"] = dport
    if proto is not None:
        rec["network.transport"] = nt.transport(proto)
    octets, packets = raw.get(nt.OCTETS), raw.get(nt.PACKETS)
    r_octets, r_packets = raw.get(nt.REVERSE + nt.OCTETS), raw.get(nt.REVERSE + nt.PACKETS)
    if octets is not None:
        rec["source.bytes"] = octets
    if packets is not None:
        rec["source.packets"] = packets
    if r_octets is not None:  # RFC 5103 biflow
        rec["destination.bytes"] = r_octets
    if r_packets is not None:
        rec["destination.packets"] = r_packets
    if octets is not None or r_octets is not None:
        rec["network.bytes"] = (octets or 0) + (r_octets or 0)
    if packets is not None or r_packets is not None:
        rec["network.packets"] = (packets or 0) + (r_packets or 0)
    if src and dst and proto is not None:
        if proto in (1, 58):  # ICMP type/code: own IE, else NetFlow's type*256+code in dport
            code = raw.get(nt.ICMP_V4 if proto == 1 else nt.ICMP_V6, dport)
            sport, dport = (None, None) if code is None else divmod(code, 256)
        rec["network.community_id"] = nt.community_id(src, dst, proto, sport, dport)
    labels = {"netflow.version": str(ctx.version)}
    if nt.TCP_FLAGS in raw and proto == 6:
        labels["netflow.tcp_flags"] = nt.tcp_flags(raw[nt.TCP_FLAGS])
    if nt.IN_IF in raw:
        labels["netflow.input_interface"] = str(raw[nt.IN_IF])
    if nt.OUT_IF in raw:
        labels["netflow.output_interface"] = str(raw[nt.OUT_IF])
    rec["labels"] = json.dumps(labels, separators=(",", ":"))
    return rec


class NetflowDecoder:
    """Stateful: template cache per (exporter address, observation domain / source id, template id)."""

    def __init__(self, *, pending_seconds: float = 10.0, max_pending: int = 1000) -> None:
        self.pending_seconds = pending_seconds
        self.max_pending = max_pending
        self.templates: dict[tuple[str, int, int], nt.Template] = {}
        # key -> [(arrival time, set body, header context)], oldest key first
        self._pending: OrderedDict[tuple[str, int, int], list[tuple[float, bytes, _Ctx]]] = (
            OrderedDict()
        )
        self._n_pending = 0
        self._next_expiry = float("inf")  # when the oldest held set expires
        # (domain, template id) -> {exporter: fields}, to count collisions across exporters
        self._layouts: dict[tuple[int, int], dict[str, tuple]] = {}
        #: held data sets dropped (expired or over `max_pending`), per exporter, cumulative
        self.dropped_by: dict[str, int] = {}

    @property
    def pending(self) -> int:
        """Data sets held for a template that has not arrived yet."""
        return self._n_pending

    def decode(
        self, datagram: bytes, exporter: str, now: float, batch: FlowBatch | None = None
    ) -> tuple[list[dict], dict[str, int]]:
        """The flows of one datagram and counters (flows, templates, malformed, pending, ...).

        With `batch`, flows go to the batch (columnar) and the list is empty;
        `flows` counts them either way.
        """
        c = _counters()
        if self._n_pending and now >= self._next_expiry:  # not a scan per datagram
            c["dropped"] = self.flush_pending(now)["dropped"]
        out: list[dict] | FlowBatch = [] if batch is None else batch
        before = 0 if batch is None else batch.rows
        try:
            if len(datagram) < 4:
                c["malformed"] += 1
            else:
                version = int.from_bytes(datagram[:2], "big")
                if version == 5:
                    self._v5(datagram, exporter, out, c)
                elif version in (9, 10):
                    self._template_based(datagram, version, exporter, now, out, c)
                else:
                    c["unknown_version"] += 1
        except (struct.error, ValueError, IndexError, OverflowError):
            c["malformed"] += 1
        c["pending_total"] = self._n_pending
        if isinstance(out, FlowBatch):
            c["flows"] = out.rows - before
            return [], c
        c["flows"] = len(out)
        return out, c

    def flush_pending(self, now: float) -> dict[str, int]:
        """Drop held data sets older than `pending_seconds`; {"dropped": n, "pending": left}."""
        dropped, oldest = 0, float("inf")
        cutoff = now - self.pending_seconds
        for key in list(self._pending):
            held = self._pending[key]
            keep = [h for h in held if h[0] > cutoff]
            if keep:
                oldest = min(oldest, *(h[0] for h in keep))
            if len(held) != len(keep):
                dropped += len(held) - len(keep)
                self.dropped_by[key[0]] = self.dropped_by.get(key[0], 0) + len(held) - len(keep)
            if keep:
                self._pending[key] = keep
            else:
                del self._pending[key]
        self._n_pending -= dropped
        self._next_expiry = oldest + self.pending_seconds
        return {"dropped": dropped, "pending": self._n_pending}

    # --- NetFlow v5 -----------------------------------------------------------

    def _v5(self, d: bytes, exporter: str, out: list | FlowBatch, c: dict[str, int]) -> None:
        if len(d) < _V5_HEADER.size:
            c["malformed"] += 1
            return
        _, count, uptime, secs, nsecs, _seq, _etype, _eid, _sampling = _V5_HEADER.unpack_from(d)
        ctx = _Ctx(5, secs * 1_000_000 + nsecs // 1000, uptime)
        body = d[_V5_HEADER.size :]
        have = len(body) // _V5_RECORD.size
        if have < count or count == 0:
            c["malformed"] += 1
        n = min(count, have)
        if isinstance(out, FlowBatch):
            if n:
                out.add(V5_TEMPLATE, body, n, ctx, exporter)
            return
        for r in _V5_RECORD.iter_unpack(body[: n * _V5_RECORD.size]):
            raw = {
                nt.SRC_V4: nt.convert(nt.IP4, r[0]),
                nt.DST_V4: nt.convert(nt.IP4, r[1]),
                nt.IN_IF: r[3],
                nt.OUT_IF: r[4],
                nt.PACKETS: r[5],
                nt.OCTETS: r[6],
                nt.FIRST_UPTIME: r[7],
                nt.LAST_UPTIME: r[8],
                nt.SRC_PORT: r[9],
                nt.DST_PORT: r[10],
                nt.TCP_FLAGS: r[11],
                nt.PROTO: r[12],
            }
            out.append(_flow(raw, ctx, exporter))  # type: ignore[union-attr]

    # --- NetFlow v9 and IPFIX -------------------------------------------------

    def _template_based(
        self, d: bytes, version: int, exporter: str, now: float, out: list | FlowBatch, c: dict
    ) -> None:
        ipfix = version == 10
        if ipfix:
            if len(d) < _IPFIX_HEADER.size:
                c["malformed"] += 1
                return
            _, length, export_s, _seq, domain = _IPFIX_HEADER.unpack_from(d)
            if length < _IPFIX_HEADER.size or length > len(d):
                c["malformed"] += 1
                return
            d = d[:length]
            pos, ctx = _IPFIX_HEADER.size, _Ctx(10, export_s * 1_000_000, None)
            tmpl_id, opt_id = 2, 3
        else:
            if len(d) < _V9_HEADER.size:
                c["malformed"] += 1
                return
            _, _count, uptime, secs, _seq, domain = _V9_HEADER.unpack_from(d)
            pos, ctx = _V9_HEADER.size, _Ctx(9, secs * 1_000_000, uptime)
            tmpl_id, opt_id = 0, 1
        end = len(d)
        while end - pos >= _SET_HEADER.size:
            set_id, set_len = _SET_HEADER.unpack_from(d, pos)
            if set_len < _SET_HEADER.size or pos + set_len > end:
                c["malformed"] += 1
                return
            body = d[pos + _SET_HEADER.size : pos + set_len]
            pos += set_len
            if set_id == tmpl_id:
                self._templates(body, ipfix, False, (exporter, domain), now, out, c)
            elif set_id == opt_id:
                self._templates(body, ipfix, True, (exporter, domain), now, out, c)
            elif set_id >= 256:
                key = (exporter, domain, set_id)
                t = self.templates.get(key)
                if t is None:
                    self._hold(key, now, body, ctx, c)
                else:
                    self._data(t, body, ctx, exporter, out, c)
            # set ids 4-255 (v9 2-255) are reserved: skipped
        if pos != end and not ipfix and any(d[pos:end]):
            c["malformed"] += 1

    def _templates(
        self,
        body: bytes,
        ipfix: bool,
        options: bool,
        where: tuple[str, int],
        now: float,
        out: list | FlowBatch,
        c: dict[str, int],
    ) -> None:
        """Parse a (options) template set; decode data held for the templates it brings."""
        pos, end = 0, len(body)
        while end - pos >= 4:
            tid, count = _SET_HEADER.unpack_from(body, pos)
            pos += 4
            scope = 0
            if options:
                if end - pos < 2:
                    raise ValueError("truncated options template")
                scope = int.from_bytes(body[pos : pos + 2], "big")
                pos += 2
                if not ipfix:  # v9: scope and option lengths in bytes, 4 bytes per field
                    scope, count = scope // 4, (count + scope) // 4
                    if count == 0:
                        raise ValueError("empty options template")
            key = (where[0], where[1], tid)
            if tid < 256:
                if tid == 0 and not any(body[pos - 4 : end]):
                    return  # padding at the end of the set
                raise ValueError(f"template id {tid} < 256")
            if count == 0:  # IPFIX template withdrawal
                self.templates.pop(key, None)
                continue
            fields = []
            for _ in range(count):
                if end - pos < 4:
                    raise ValueError("truncated template record")
                ie, length = _SET_HEADER.unpack_from(body, pos)
                pos += 4
                enterprise = 0
                if ipfix and ie & 0x8000:
                    if end - pos < 4:
                        raise ValueError("truncated enterprise number")
                    enterprise = int.from_bytes(body[pos : pos + 4], "big")
                    ie &= 0x7FFF
                    pos += 4
                if length == nt.VARLEN and not ipfix:
                    raise ValueError("bad field length")
                fields.append((ie, enterprise, length))
            t = nt.Template.compile(tuple(fields), options)
            if t.size == 0:
                raise ValueError("empty template")
            c["options_templates" if options else "templates"] += 1
            old = self.templates.get(key)
            if old is None or old.fields != t.fields or old.options != options:
                if old is not None:
                    c["template_changes"] += 1
                self.templates[key] = t
                # the same id with another layout at another exporter: harmless (templates
                # are per exporter) but worth counting, it is what breaks naive collectors
                others = self._layouts.setdefault(key[1:], {})
                if any(f != t.fields for e, f in others.items() if e != key[0]):
                    c["template_collisions"] += 1
                others[key[0]] = t.fields
            for _at, held, ctx in self._pending.pop(key, []):
                self._n_pending -= 1
                self._data(self.templates[key], held, ctx, where[0], out, c)

    def _data(
        self, t: nt.Template, body: bytes, ctx: _Ctx, exporter: str, out: list | FlowBatch, c: dict
    ) -> None:
        if t.options:
            c["options_records"] += len(body) // t.size
            return
        if isinstance(out, FlowBatch) and not t.variable:
            n = len(body) // t.size
            if n:
                out.add(t, body, n, ctx, exporter)
            return
        try:
            raws = nt.decode_variable(t, body) if t.variable else nt.decode_fixed(t, body)
        except ValueError:
            c["malformed"] += 1
            return
        out.extend([_flow(raw, ctx, exporter) for raw in raws])

    def _hold(self, key: tuple, now: float, body: bytes, ctx: _Ctx, c: dict) -> None:
        if self._n_pending >= self.max_pending:
            c["dropped"] += 1
            self.dropped_by[key[0]] = self.dropped_by.get(key[0], 0) + 1
            return
        self._pending.setdefault(key, []).append((now, body, ctx))
        self._n_pending += 1
        self._next_expiry = min(self._next_expiry, now + self.pending_seconds)
        c["pending"] += 1


def records_to_frame(records: list[dict]) -> pl.DataFrame:
    """A batch of decoded flow records as a polars frame, typed by `schema` (schema order)."""
    present: set[str] = set()
    for r in records:
        present.update(r)
    names = [n for n in schema.NAMES if n in present]
    return pl.DataFrame(
        {n: [r.get(n) for r in records] for n in names},
        schema={n: schema.polars_type(n) for n in names},
    )
