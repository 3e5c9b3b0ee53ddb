"""The vectorised path of the DNS decoder (`dns_fast`) gives exactly the frames of the per-packet one.

Same events in the same order, same values, same counters: on the shared
captures, on a synthetic capture with repeated messages (the message cache),
and on generated mixes of fast-path and other packets.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lightsoc.sources import dns_fast
from lightsoc.sources.dns_decode import DnsDecoder, flow_key
from lightsoc.sources.dns_events import community_id, community_ids, sha1_rows
from lightsoc.sources.pcap_file import CaptureFile, Frames
from tests.sources.test_dns_decode import (
    DNS_CAPTURES,
    NON_DNS_CAPTURES,
    decode_file,
    ether,
    ipv4,
    ipv6,
    query,
    response,
    tcp,
    udp,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def both(packets: list[tuple[int, bytes]], batch: int, linktype: int = 1, **kw: object) -> None:
    """Decode with and without the fast path; frames and counters must be equal."""
    out = []
    for fast in (True, False):
        dec = DnsDecoder(id_prefix="t-", fast=fast, **kw)  # type: ignore[arg-type]
        frames = []
        for i in range(0, len(packets), batch):
            dec.decode(linktype, packets[i : i + batch])
            dec.expire()
            frames.append(dec.take())
        dec.flush()
        frames.append(dec.take())
        frames = [f for f in frames if f.height]
        df = pl.concat(frames, how="diagonal") if frames else pl.DataFrame()
        out.append((df, dict(dec.counters), dec.ports))
    assert_frame_equal(out[0][0], out[1][0])
    assert out[0][1] == out[1][1]
    assert out[0][2] == out[1][2]


@pytest.mark.parametrize("path", DNS_CAPTURES + NON_DNS_CAPTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("batch", [7, 1000])
def test_fast_path_equals_slow_path_on_shared_captures(path: Path, batch: int) -> None:
    if not path.exists():
        pytest.fail(f"shared capture missing: {path}")
    fast, cf = decode_file(path, batch)
    slow, cs = decode_file(path, batch, fast=False)
    assert_frame_equal(fast, slow)
    assert cf == cs


def _exchange(i: int, name: str, tcp_too: bool) -> list[bytes]:
    client, port, mid = f"10.0.{i % 3}.{i % 200 + 1}", 1024 + i * 7 % 60000, i * 31 % 65536
    q, r = query(mid, name), response(mid, name, [f"192.0.2.{i % 5}"] * (i % 3))
    if tcp_too and i % 5 == 0:
        return [
            ether(ipv4(client, "10.0.0.53", 6, tcp(port, 53, 1, struct.pack("!H", len(q)) + q))),
            ether(ipv4("10.0.0.53", client, 6, tcp(53, port, 1, struct.pack("!H", len(r)) + r))),
        ]
    return [
        ether(ipv4(client, "10.0.0.53", 17, udp(port, 53, q))),
        ether(ipv4("10.0.0.53", client, 17, udp(53, port, r))),
    ]


def test_fast_path_equals_slow_path_with_repeats_and_tcp() -> None:
    names = ["www.example.com", "Mail.Example.ORG", "a.b.c", "x\\.y.test"]
    frames = []
    for i in range(3000):
        frames += _exchange(i, names[i % len(names)], True)
        if i % 97 == 0:  # a retransmission, a VLAN-tagged copy, a query never answered
            frames.append(frames[-2])
            frames.append(ether(frames[-2][14:], vlan=5))
            frames.append(ether(ipv4("10.9.9.9", "10.0.0.53", 17, udp(999, 53, query(i, "u")))))
    packets = [(1_700_000_000_000_000 + i * 3000, f) for i, f in enumerate(frames)]
    both(packets, 1000, timeout=1.0)
    both(packets, 4096, max_pending=50)


def test_dns_only_batches_are_paired_whole_and_equal_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No VLAN tags or other UDP: `dns_pairs` takes every batch, across batch borders,
    with TCP exchanges, retransmissions and queries never answered in between."""
    paired = []
    real = dns_fast.pair_batch
    monkeypatch.setattr(dns_fast, "pair_batch", lambda *a: paired.append(len(a[3])) or real(*a))
    names = ["www.example.com", "Mail.Example.ORG", "a.b.c", "x\\.y.test"]
    frames = []
    for i in range(3000):
        frames += _exchange(i, names[i % len(names)], True)
        if i % 97 == 0:  # a query sent twice, one never answered
            frames[-1:-1] = [frames[-2]]
            frames.append(ether(ipv4("10.9.9.9", "10.0.0.53", 17, udp(999, 53, query(i, "u")))))
    packets = [(1_700_000_000_000_000 + i * 3000, f) for i, f in enumerate(frames)]
    both(packets, 1000, timeout=1.0)
    udp_packets = sum(f[23] == 17 for _, f in packets)  # the rest is TCP (every 5th exchange)
    assert len(paired) == -(-len(packets) // 1000) and sum(paired) == udp_packets
    paired.clear()
    both(packets, 333, community_id=False)
    assert len(paired) == -(-len(packets) // 333)
    vlan = [*packets[:10], (packets[10][0], ether(packets[10][1][14:], vlan=5)), *packets[11:20]]
    paired.clear()
    both(vlan, 1000)  # a tagged UDP packet could wait under a fast key: the loop decodes
    assert paired == []


_PAYLOADS = st.one_of(
    st.builds(query, st.integers(0, 3), st.sampled_from(["a.com", "B.org", "c"])),
    st.builds(
        response,
        st.integers(0, 3),
        st.sampled_from(["a.com", "B.org"]),
        st.lists(st.sampled_from(["1.2.3.4", "5.6.7.8"]), max_size=3),
        st.integers(0, 5),
    ),
    st.binary(max_size=40),
    st.just(b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\xc0\x00\x00\x01\x00\x01"),
)


@st.composite
def _frame(draw: st.DrawFn) -> bytes:
    payload = draw(_PAYLOADS)
    a, b = draw(st.sampled_from([("10.0.0.1", "10.0.0.53"), ("10.0.0.53", "10.0.0.1")]))
    sport, dport = draw(st.sampled_from([(3333, 53), (53, 3333), (4444, 5353), (7, 9)]))
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return ether(ipv4(a, b, 6, tcp(sport, dport, 1, struct.pack("!H", len(payload)) + payload)))
    if kind == 1:
        return ether(ipv6("fe80::1", "fe80::2", 17, udp(sport, dport, payload)))
    if kind == 2:
        return ether(ipv4(a, b, 17, udp(sport, dport, payload)), vlan=1)
    if kind == 3:
        return ether(ipv4(a, b, 17, udp(sport, dport, payload), frag=draw(st.integers(1, 0x4000))))
    frame = ether(ipv4(a, b, 17, udp(sport, dport, payload)))
    if kind == 4:  # damaged: cut, or a byte of the headers changed
        if draw(st.booleans()):
            return frame[: draw(st.integers(0, len(frame)))]
        i = draw(st.integers(0, 53))
        return frame[:i] + bytes([draw(st.integers(0, 255))]) + frame[i + 1 :]
    return frame


def _from_file(packets: list[tuple[int, bytes]], batch: int, **kw: object) -> pl.DataFrame:
    """The events of `packets` written to a classic pcap and read back (`Frames` batches),
    checking on the way that each batch reads as the list it stands for."""
    from tests.sources.test_pcap_file import write_pcap

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pcap"
        write_pcap(path, packets)
        dec = DnsDecoder(id_prefix="t-", **kw)  # type: ignore[arg-type]
        frames, seen = [], []
        for b in CaptureFile(path).batches(batch):
            assert isinstance(b.packets, Frames)
            n = len(b.packets)
            assert [b.packets[i] for i in range(n)] == b.packets[:] == packets[len(seen) :][:n]
            assert b.packets[-1] == packets[len(seen) + n - 1]
            seen += b.packets
            dec.decode(b.linktype, b.packets, b.positions)
            dec.expire()
            frames.append(dec.take())
        dec.flush()
        frames.append(dec.take())
    assert seen == packets
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()


def _from_lists(packets: list[tuple[int, bytes]], batch: int, **kw: object) -> pl.DataFrame:
    dec = DnsDecoder(id_prefix="t-", fast=False, **kw)  # type: ignore[arg-type]
    frames = []
    for i in range(0, len(packets), batch):
        chunk = packets[i : i + batch]
        dec.decode(1, chunk, list(range(i, i + len(chunk))))
        dec.expire()
        frames.append(dec.take())
    dec.flush()
    frames.append(dec.take())
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()


def test_pcap_buffer_batches_decode_as_packet_lists() -> None:
    """A classic pcap batch is one buffer (`Frames`), decoded from it in place: the same
    events as the per-packet decoder on the same packets as a list (ids aside: those
    come from file offsets)."""
    frames = []
    for i in range(1500):
        frames += _exchange(i, ["www.example.com", "a.b.c"][i % 2], True)
        if i % 97 == 0:  # a retransmission, a VLAN-tagged copy (the loop path), a lone query
            frames.append(frames[-2])
            frames.append(ether(frames[-2][14:], vlan=5))
            frames.append(ether(ipv4("10.9.9.9", "10.0.0.53", 17, udp(999, 53, query(i, "u")))))
    packets = [(1_700_000_000_000_000 + i * 3000, f) for i, f in enumerate(frames)]
    dns_only = [p for p in packets if p[1][12:14] == b"\x08\x00"]  # the whole-batch pairing
    for pk in (packets, dns_only):
        for batch in (1000, 4096):
            got = _from_file(pk, batch, timeout=1.0).drop("event.id")
            assert_frame_equal(got, _from_lists(pk, batch, timeout=1.0).drop("event.id"))


@FUZZ
@given(st.lists(_frame(), max_size=40), st.integers(1, 12))
def test_fuzz_fast_path_equals_slow_path(frames: list[bytes], batch: int) -> None:
    packets = [(1_700_000_000_000_000 + i * 1000, f) for i, f in enumerate(frames)]
    both(packets, batch)


_V4 = st.sampled_from([b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", b"\xff" * 4, b"\0" * 4])
_FLOW = st.tuples(
    _V4, st.integers(0, 65535), _V4, st.integers(0, 65535), st.just("udp"), st.integers(0, 65535)
)
_OTHER = st.tuples(
    _V4 | st.just(b"\1" * 16),
    st.integers(0, 65535),
    _V4 | st.just(b"\2" * 16),
    st.integers(0, 65535),
    st.sampled_from(["udp", "tcp"]),
    st.integers(0, 65535),
)


@given(st.lists(_FLOW, max_size=20), st.lists(_OTHER | st.none(), max_size=3))
def test_community_ids_vectorised_equal_one_by_one(flows: list, other: list) -> None:
    """All IPv4/UDP keys (numpy) or mixed with others and None (one by one)."""
    for rows in (flows, flows + other):
        keys = [flow_key(*k) if k is not None else None for k in rows]
        want = [community_id(*k[:5]) if k is not None else None for k in rows]
        assert community_ids(keys).to_list() == want


@given(st.lists(st.binary(min_size=16, max_size=16), max_size=50))
def test_sha1_rows_equal_hashlib(records: list[bytes]) -> None:
    """DuckDB's column of digests is hashlib's, row for row (none: an empty array)."""
    got = sha1_rows(b"".join(records), 16)
    assert got.shape == (len(records), 20)
    assert [bytes(row) for row in got] == [hashlib.sha1(r).digest() for r in records]


def test_message_columns_gather_what_the_messages_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each distinct parsed message becomes a row once; batches are gathers of those
    rows, equal to converting every message, also across the size bound's reset."""
    from lightsoc.sources.dns_events import _list_series
    from lightsoc.sources.dns_pairs import _FIELDS, _LISTS, MessageColumns

    msgs = [
        (0x8180, f"n{i}.example", "A", f"\0n{i}.example. 60 IN A 192.0.2.{i}", f"\0192.0.2.{i}")
        for i in range(7)
    ]
    msgs.append((0x8183, "nx.example", "AAAA", None, None))  # NXDOMAIN: null lists
    mc = MessageColumns()
    monkeypatch.setattr(MessageColumns, "MAX_ROWS", 12)
    for batch in ([msgs[0], msgs[1], msgs[0]], msgs[2:], [msgs[7], msgs[1]] * 3, msgs[::-1]):
        got = mc.columns(batch)
        for f, values in zip(_FIELDS, list(zip(*batch, strict=True))[1:], strict=True):
            want = _list_series(f, values) if f in _LISTS else pl.Series(f, values, pl.Utf8)
            assert got[f].to_list() == want.to_list()
        assert len(mc._row) <= 12
