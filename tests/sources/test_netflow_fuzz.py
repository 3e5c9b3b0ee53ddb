"""Property tests of the NetFlow decoders: the columnar path (`FlowBatch`) against
the record-by-record reference, and garbage that must never raise."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lightsoc import schema
from lightsoc.sources.netflow_columns import FlowBatch
from lightsoc.sources.netflow_decode import NetflowDecoder, records_to_frame
from lightsoc.sources.netflow_templates import REVERSE_PEN, community_id
from tests.sources.test_netflow_decode import SAMPLES, udp_payloads

EXAMPLES = 300
U = st.integers
#: (IE, length) -> value strategy; values a real exporter can send
FIELDS: dict[tuple[int, int], st.SearchStrategy[int]] = {
    (8, 4): U(0, 2**32 - 1),  # source IPv4
    (12, 4): U(0, 2**32 - 1),
    (27, 16): U(0, 2**128 - 1),  # source IPv6
    (28, 16): U(0, 2**128 - 1),
    (7, 2): U(0, 65535),
    (11, 2): U(0, 65535),
    (4, 1): st.sampled_from([1, 6, 17, 58, 132, 47, 0, 255]),
    (6, 1): U(0, 255),
    (6, 2): U(0, 65535),
    (1, 4): U(0, 2**32 - 1),
    (1, 8): U(0, 2**48),
    (1, 3): U(0, 2**24 - 1),
    (2, 4): U(0, 2**32 - 1),
    (2, 6): U(0, 2**48 - 1),
    (10, 2): U(0, 65535),
    (14, 4): U(0, 2**32 - 1),
    (21, 4): U(0, 2**32 - 1),  # last switched (sysUpTime ms)
    (22, 4): U(0, 2**32 - 1),
    (32, 2): U(0, 65535),  # ICMP type/code
    (139, 2): U(0, 65535),
    (150, 4): U(0, 2**32 - 1),  # flowStartSeconds
    (151, 4): U(0, 2**32 - 1),
    (152, 8): U(0, 4 * 10**12),  # flowStartMilliseconds
    (153, 8): U(0, 4 * 10**12),
    (154, 8): U(0, 2**64 - 1),  # flowStartMicroseconds (NTP)
    (157, 8): U(0, 2**64 - 1),  # flowEndNanoseconds (NTP)
    (160, 8): U(0, 4 * 10**12),  # systemInitTimeMilliseconds
    (61, 1): U(0, 1),  # unmapped: direction
    (82, 5): U(0, 2**40 - 1),  # unmapped: interface name bytes
    (15, 4): U(0, 2**32 - 1),  # unmapped: next hop
}
REVERSE = {(1, 8): U(0, 2**40), (2, 4): U(0, 2**32 - 1)}  # RFC 5103 reverse octets/packets


@st.composite
def exports(draw: st.DrawFn) -> tuple[list[bytes], int]:
    """A template and data sets of random records, as v9 or IPFIX datagrams."""
    ipfix = draw(st.booleans())
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=14))
    rev = draw(st.lists(st.sampled_from(sorted(REVERSE)), max_size=2)) if ipfix else []
    layout = [(ie, ln, 0, FIELDS[(ie, ln)]) for ie, ln in keys]
    layout += [(ie, ln, REVERSE_PEN, REVERSE[(ie, ln)]) for ie, ln in rev]
    tfields = b"".join(
        struct.pack("!HHI", ie | 0x8000, ln, pen) if pen else struct.pack("!HH", ie, ln)
        for ie, ln, pen, _ in layout
    )
    tid = draw(U(256, 65535))
    tbody = struct.pack("!HH", tid, len(layout)) + tfields
    tset = struct.pack("!HH", 2 if ipfix else 0, 4 + len(tbody)) + tbody
    n, out = 0, []
    for _ in range(draw(U(1, 3))):  # data sets in datagrams with their own header times
        k = draw(U(1, 8))
        n += k
        recs = b"".join(
            b"".join(draw(s).to_bytes(ln, "big") for _, ln, _, s in layout) for _ in range(k)
        )
        dset = struct.pack("!HH", tid, 4 + len(recs)) + recs
        out.append(_header(ipfix, dset, draw(U(0, 2**32 - 1)), draw(U(0, 2**32 - 1))) + dset)
    tmsg = _header(ipfix, tset, draw(U(0, 2**32 - 1)), 0) + tset
    out.insert(draw(U(0, len(out))), tmsg)  # data may come before its template
    return out, n


def _header(ipfix: bool, body: bytes, secs: int, uptime: int) -> bytes:
    if ipfix:
        return struct.pack("!HHIII", 10, 16 + len(body), secs, 0, 7)
    return struct.pack("!HHIIII", 9, 1, uptime, secs, 0, 7)


def both(datagrams: list[bytes]) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(reference frame, columnar frame, flows counted by the columnar path)."""
    ref, fast, batch = NetflowDecoder(), NetflowDecoder(), FlowBatch()
    records, counted = [], 0
    for d in datagrams:
        recs, c1 = ref.decode(d, "192.0.2.1:2055", 0.0)
        records += recs
        none, c2 = fast.decode(d, "192.0.2.1:2055", 0.0, batch)
        assert none == [] and c1 == c2
        counted += c2["flows"]
    return records_to_frame(records), batch.frame(), counted


def same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    """Equal frames; a column one side lacks must be all null on the other."""
    names = [n for n in schema.NAMES if n in a.columns or n in b.columns]
    a, b = (
        f.with_columns(
            pl.lit(None, schema.polars_type(n)).alias(n) for n in names if n not in f.columns
        ).select(names)
        for f in (a, b)
    )
    assert_frame_equal(a.sort(a.columns), b.sort(b.columns))


@settings(max_examples=EXAMPLES, deadline=None)
@given(exports())
def test_columnar_decoding_matches_the_reference(export: tuple[list[bytes], int]) -> None:
    datagrams, n = export
    ref, fast, counted = both(datagrams)
    assert ref.height == fast.height == counted == n
    same(ref, fast)
    for name, dtype in fast.schema.items():
        assert dtype == schema.polars_type(name)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=48, max_size=48), min_size=1, max_size=30), U(0, 2**32 - 1))
def test_v5_columnar_matches_the_reference(records: list[bytes], uptime: int) -> None:
    header = struct.pack("!HHIIIIBBH", 5, len(records), uptime, 1_700_000_000, 5, 0, 0, 0, 0)
    ref, fast, counted = both([header + b"".join(records)])
    assert ref.height == fast.height == counted == len(records)
    same(ref, fast)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.sampled_from([b"", b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x0a\x00\x30"]),
    st.binary(max_size=400),
    st.integers(0, 3),
)
def test_garbage_never_raises_and_counts_add_up(prefix: bytes, junk: bytes, cut: int) -> None:
    dec, batch = NetflowDecoder(max_pending=5), FlowBatch()
    templates = [
        udp_payloads(SAMPLES / n)[0] for n in ("template.pcap", "ipfixprobe-templates.pcap")
    ]
    for t in templates:  # known template ids make junk data sets decodable
        dec.decode(t, "x", 0.0, batch)
    flows = 0
    for d in (prefix + junk, (prefix + junk)[: len(prefix + junk) // (cut + 1)]):
        _, c = dec.decode(d, "x", 1.0, batch)
        assert c["flows"] >= 0 and c["pending_total"] == dec.pending <= 5
        flows += c["flows"]
    assert batch.rows == flows
    assert batch.frame().height == flows


def test_truncated_sample_datagrams_never_raise() -> None:
    names = ["nfv5.pcap", "template.pcap", "data.pcap", "data+templates.pcap"]
    names += ["ipfixprobe-templates.pcap", "ipfixprobe-data.pcap"]
    whole = [udp_payloads(SAMPLES / n)[0] for n in names]
    for i, d in enumerate(whole):
        dec, batch, flows = NetflowDecoder(), FlowBatch(), 0
        for before in whole[:i]:  # the templates the sample needs
            flows += dec.decode(before, "x", 0.0, batch)[1]["flows"]
        for end in range(len(d)):
            _, c = dec.decode(d[:end], "x", 0.0, batch)
            flows += c["flows"]
        assert batch.rows == flows == batch.frame().height


def test_icmpv6_is_ipv6_icmp_with_its_community_id() -> None:
    fields = [(27, 16), (28, 16), (4, 1), (139, 2), (1, 4)]
    tbody = struct.pack("!HH", 300, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)
    src = bytes.fromhex("fe80000000000000026097fffe0769ea")
    dst = bytes.fromhex("ff02" + "00" * 13 + "01")
    rec = src + dst + bytes([58]) + struct.pack("!HI", 134 * 256, 64)
    body = struct.pack("!HH", 0, 4 + len(tbody)) + tbody + struct.pack("!HH", 300, 4 + len(rec))
    msg = struct.pack("!HHIIII", 9, 2, 0, 1_700_000_000, 0, 1) + body + rec
    ref, fast, _ = both([msg])
    same(ref, fast)
    row = fast.row(0, named=True)
    assert row["network.transport"] == "ipv6-icmp"
    assert (row["source.ip"], row["destination.ip"]) == ("fe80::260:97ff:fe07:69ea", "ff02::1")
    assert row["network.community_id"] == "1:pkvHqCL88/tg1k4cPigmZXUtL00="  # spec vector
    assert row["network.community_id"] == community_id(row["source.ip"], "ff02::1", 58, 134, 0)
    assert row["@timestamp"] == datetime.fromtimestamp(1_700_000_000, UTC)
