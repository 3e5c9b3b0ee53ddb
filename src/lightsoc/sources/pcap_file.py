"""Capture files: classic pcap (both byte orders, µs and ns) and pcapng.

`CaptureFile(path, start=offset).batches(n)` yields `PacketBatch`es of at
most `n` packets: `(linktype, [(unix_µs, frame bytes), ...], positions,
end_offset)`. The first two are the shape live capture produces too;
`positions` are the byte offsets of the records (stable ids for events)
and `end_offset` is where reading resumes (a checkpoint). A batch holds
packets of one link type (pcapng interfaces may differ).

pcapng: SHB (several sections, each with its byte order), IDB (link type,
`if_tsresol`), EPB, SPB and the obsolete PB; other blocks are skipped. A
start offset inside a pcapng file is honoured by reading the blocks before
it for their interface descriptions only.

The file is memory-mapped. A classic pcap batch is one copy of its part of
the file plus numpy arrays (`Frames`): the per-record loop only follows the
length fields, and the DNS decoder reads headers and messages from the one
buffer; `Frames` still acts as the list of `(unix_µs, frame)` for other code.
A record cut by the end of the file ends reading cleanly: it is
counted in `counters["cut_records"]` and `end_offset` stays before it (a
file still being written is read on from there). A record whose header is
impossible (length beyond any snap length, bad block length) stops reading
too, counted in `counters["bad_records"]`.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, overload

import numpy as np

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1),  # µs, little endian
    b"\xa1\xb2\xc3\xd4": (">", 1),
    b"\x4d\x3c\xb2\xa1": ("<", 1000),  # ns
    b"\xa1\xb2\x3c\x4d": (">", 1000),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_BOM = 0x1A2B3C4D
MAX_RECORD = 1 << 18  # larger than any snap length in use (262144)
MAX_TS_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


PAD = 64  # zero bytes after a `Frames` buffer: fixed-offset header reads never fail


class Frames(Sequence[tuple[int, bytes]]):
    """The packets of one classic pcap batch, as columns over one buffer.

    `buffer` holds the batch's records (headers included) and `PAD` zero bytes;
    `at`, `lens` and `ts` are each packet's data offset in it, captured length
    and time (unix µs). Indexing and iterating give `(unix_µs, frame bytes)`.
    """

    def __init__(self, buffer: bytes, at: np.ndarray, lens: np.ndarray, ts: np.ndarray) -> None:
        self.buffer, self.at, self.lens, self.ts = buffer, at, lens, ts
        self._items: list[tuple[int, bytes]] | None = None

    @classmethod
    def from_pcap(
        cls, mm: mmap.mmap, records: list[int], end: int, order: str, scale: int
    ) -> Frames:
        """`records`: the offsets of whole records in `mm`, the last one ending at `end`."""
        first = records[0]
        buffer = mm[first:end] + bytes(PAD)
        rec = np.asarray(records, np.int64) - first
        raw = np.frombuffer(buffer, np.uint8)
        head = raw[rec[:, None] + np.arange(12)].view(order + "u4").astype(np.int64)
        ts = head[:, 0] * 1_000_000 + head[:, 1] // scale
        return cls(buffer, rec + 16, head[:, 2], ts)

    def tolist(self) -> list[tuple[int, bytes]]:
        if self._items is None:
            b, starts, stops = self.buffer, self.at.tolist(), (self.at + self.lens).tolist()
            datas = [b[a:e] for a, e in zip(starts, stops, strict=True)]
            self._items = list(zip(self.ts.tolist(), datas, strict=True))
        return self._items

    def __len__(self) -> int:
        return len(self.at)

    @overload
    def __getitem__(self, i: int) -> tuple[int, bytes]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[int, bytes]]: ...
    def __getitem__(self, i: int | slice) -> tuple[int, bytes] | list[tuple[int, bytes]]:
        if isinstance(i, slice) or self._items is not None:
            return self.tolist()[i]
        a = int(self.at[i])  # one packet without making the others' tuples
        return int(self.ts[i]), self.buffer[a : a + int(self.lens[i])]

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return iter(self.tolist())


class PacketBatch(NamedTuple):
    linktype: int
    packets: Sequence[tuple[int, bytes]]  # a list, or `Frames` (classic pcap)
    positions: list[int]
    end_offset: int


def capture_kind(head: bytes) -> str | None:
    """ "pcap", "pcapng" or None, from a file's first bytes."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_MAGIC and len(head) >= 12:
        bom = head[8:12]
        if bom in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            return "pcapng"
    return None


def is_capture(path: str | Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return capture_kind(fh.read(12)) is not None
    except OSError:
        return False


class CaptureFile:
    """One capture file read from `start` (0 or an `end_offset` published before)."""

    def __init__(self, path: str | Path, start: int = 0) -> None:
        self.path = str(path)
        self.start = start
        self.counters: Counter[str] = Counter()
        self.size = os.path.getsize(self.path)

    def batches(self, max_packets: int = 65536, first: int | None = None) -> Iterator[PacketBatch]:
        """Batches of up to `max_packets`, the first of up to `first` (a small first
        batch gets the first events of an import to the later stages sooner)."""
        if self.size < 12:
            if self.size:
                self.counters["cut_records"] += 1
            return
        with open(self.path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                kind = capture_kind(mm[:12])
                if kind == "pcap":
                    yield from self._pcap(mm, max_packets, first or max_packets)
                elif kind == "pcapng":
                    yield from self._pcapng(mm, max_packets, first or max_packets)
                else:
                    raise ValueError(f"{self.path}: not a pcap or pcapng file")
            finally:
                mm.close()

    # -- classic pcap ---------------------------------------------------------
    def _pcap(self, mm: mmap.mmap, max_packets: int, limit: int) -> Iterator[PacketBatch]:
        size = len(mm)
        if size < 24:
            self.counters["cut_records"] += 1
            return
        order, scale = PCAP_MAGICS[bytes(mm[:4])]
        linktype = struct.unpack_from(order + "I", mm, 20)[0] & 0xFFFF
        captured = struct.Struct(order + "I").unpack_from  # a record's captured length
        off = max(self.start, 24)
        last = size - 16  # the last offset a whole record header fits at
        done = False
        while not done:
            positions: list[int] = []
            addpos = positions.append
            for _ in range(limit):
                if off > last:
                    if off < size:
                        self.counters["cut_records"] += 1
                    done = True
                    break
                (incl,) = captured(mm, off + 8)
                stop = off + 16 + incl
                if stop > size or incl > MAX_RECORD:  # one test for both (rare) ends
                    self.counters["bad_records" if incl > MAX_RECORD else "cut_records"] += 1
                    done = True
                    break
                addpos(off)
                off = stop
            if positions:
                frames = Frames.from_pcap(mm, positions, off, order, scale)
                yield PacketBatch(linktype, frames, positions, off)
                limit = max_packets

    # -- pcapng ---------------------------------------------------------------
    def _pcapng(self, mm: mmap.mmap, max_packets: int, limit: int) -> Iterator[PacketBatch]:
        size = len(mm)
        off = 0
        order = "<"
        # per interface: (linktype, snaplen, multiplier, divisor) for µs
        ifaces: list[tuple[int, int, int, int]] = []
        packets: list[tuple[int, bytes]] = []
        positions: list[int] = []
        cur_link = -1
        h2: struct.Struct = struct.Struct("<II")
        epb: struct.Struct = struct.Struct("<IIIII")
        while True:
            if off + 12 > size:
                if off < size:
                    self.counters["cut_records"] += 1
                break
            if mm[off : off + 4] == PCAPNG_MAGIC:  # SHB: (re)sets byte order and interfaces
                bom = bytes(mm[off + 8 : off + 12])
                order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                if struct.unpack_from(order + "I", mm, off + 8)[0] != _BOM:
                    self.counters["bad_records"] += 1
                    break
                h2 = struct.Struct(order + "II")
                epb = struct.Struct(order + "IIIII")
                ifaces = []
            btype, blen = h2.unpack_from(mm, off)
            if blen < 12 or blen % 4 or blen > MAX_RECORD + 1024:
                self.counters["bad_records"] += 1
                break
            end = off + blen
            if end > size:
                self.counters["cut_records"] += 1
                break
            if btype == 1:  # IDB
                ifaces.append(self._idb(mm, off, end, order))
            elif off >= self.start and btype in (6, 2, 3):
                pkt = self._packet(mm, off, end, btype, epb, order, ifaces)
                if pkt is None:
                    self.counters["bad_records"] += 1
                else:
                    link, item = pkt
                    if link != cur_link or len(packets) >= limit:
                        if packets:
                            yield PacketBatch(cur_link, packets, positions, off)
                            packets, positions, limit = [], [], max_packets
                        cur_link = link
                    packets.append(item)
                    positions.append(off)
            off = end
        if packets or off > self.start:
            yield PacketBatch(cur_link if cur_link >= 0 else 1, packets, positions, off)

    def _idb(self, mm: mmap.mmap, off: int, end: int, order: str) -> tuple[int, int, int, int]:
        linktype, _, snaplen = struct.unpack_from(order + "HHI", mm, off + 8)
        mult, div = 1, 1  # default resolution: µs
        o = off + 16
        while o + 4 <= end - 4:
            code, ln = struct.unpack_from(order + "HH", mm, o)
            if code == 0:
                break
            if code == 9 and ln >= 1:  # if_tsresol
                r = mm[o + 4]
                units = 2 ** (r & 0x7F) if r & 0x80 else 10 ** (r & 0x7F)
                if units >= 1_000_000:
                    div = units // 1_000_000 if units % 1_000_000 == 0 else units
                    mult = 1 if units % 1_000_000 == 0 else 1_000_000
                else:
                    mult, div = 1_000_000, units
            o += 4 + ((ln + 3) & ~3)
        return linktype, snaplen, mult, div

    def _packet(
        self,
        mm: mmap.mmap,
        off: int,
        end: int,
        btype: int,
        epb: struct.Struct,
        order: str,
        ifaces: list[tuple[int, int, int, int]],
    ) -> tuple[int, tuple[int, bytes]] | None:
        if btype == 6:  # EPB
            if end - off < 32:
                return None
            iface, hi, lo, caplen, _ = epb.unpack_from(mm, off + 8)
            data_off = off + 28
        elif btype == 2:  # obsolete PB: 2-byte interface id and drops count
            if end - off < 32:
                return None
            iface = struct.unpack_from(order + "H", mm, off + 8)[0]
            hi, lo, caplen, _ = struct.unpack_from(order + "IIII", mm, off + 12)
            data_off = off + 28
        else:  # SPB: interface 0, no timestamp, captured = min(original, snaplen, room)
            if not ifaces or end - off < 16:
                return None
            orig = struct.unpack_from(order + "I", mm, off + 8)[0]
            link, snaplen = ifaces[0][:2]
            caplen = min(orig, snaplen or orig, end - off - 16)
            return link, (0, mm[off + 12 : off + 12 + caplen])
        if iface >= len(ifaces) or data_off + caplen > end - 4:
            return None
        link, _, mult, div = ifaces[iface]
        ts = (hi << 32) | lo
        ts_us = ts if mult == div else ts * mult // div
        if ts_us > MAX_TS_US:  # damaged or absurd: keep the packet, not the time
            self.counters["bad_timestamps"] += 1
            ts_us = 0
        return link, (ts_us, mm[data_off : data_off + caplen])
