"""Capture file reading: pcap (both byte orders, µs/ns), pcapng (several interfaces), cuts, fuzz.

Reference conversions are made with Wireshark's `editcap`; packet counts and
timestamps are checked against `tshark`.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightsoc.sources.pcap_file import CaptureFile, capture_kind, is_capture
from tests.sources.test_dns_decode import DATA, decode_file, ether, ipv4, query, tool, udp

DNS_PCAP = DATA / "pcap" / "chrissanders" / "dns.pcap"  # pcapng despite its name
ZEEK_PCAP = DATA / "pcap" / "zeek" / "dns_long-connection.pcap"


def read_all(path: Path, batch: int = 1000) -> tuple[list[tuple[int, int, bytes]], CaptureFile]:
    cf = CaptureFile(path)
    out = [(b.linktype, ts, data) for b in cf.batches(batch) for ts, data in b.packets]
    return out, cf


def tshark_times(path: Path) -> list[int]:
    out = subprocess.run(
        [tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # µs from the decimal text (float would lose the last digits)
    return [
        int(s.split(".")[0]) * 1_000_000 + int((s.split(".")[1] + "000000")[:6])
        for s in out.split()
    ]


def write_pcap(
    path: Path,
    packets: list[tuple[int, bytes]],
    *,
    big: bool = False,
    ns: bool = False,
    linktype: int = 1,
) -> None:
    o = ">" if big else "<"
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    with open(path, "wb") as fh:
        fh.write(struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype))
        for ts, data in packets:
            frac = ts % 1_000_000 * (1000 if ns else 1)
            fh.write(struct.pack(o + "IIII", ts // 1_000_000, frac, len(data), len(data)) + data)


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng(path: Path, blocks: list[bytes]) -> None:
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    path.write_bytes(shb + b"".join(blocks))


def idb(linktype: int, tsresol: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = struct.pack("<HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + struct.pack("<HH", 0, 0)
    return _block(1, struct.pack("<HHI", linktype, 0, 65535) + opts)


def epb(iface: int, ts_units: int, data: bytes) -> bytes:
    return _block(
        6,
        struct.pack("<IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data))
        + data,
    )


# -- tests ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [DNS_PCAP, ZEEK_PCAP, DATA / "dns" / "tunnel" / "iodine_elastic.pcap"],
    ids=lambda p: p.name,
)
def test_packets_and_times_match_tshark(path: Path) -> None:
    pkts, cf = read_all(path, batch=7)
    assert [ts for _, ts, _ in pkts] == tshark_times(path)
    assert not cf.counters


@pytest.mark.parametrize("fmt", ["pcap", "nsecpcap", "pcapng"])
def test_editcap_conversions_read_the_same(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"x.{fmt}"
    subprocess.run(
        [tool("editcap"), "-F", fmt, str(ZEEK_PCAP), str(out)], check=True, capture_output=True
    )
    assert capture_kind(out.read_bytes()[:12]) == ("pcapng" if fmt == "pcapng" else "pcap")
    assert [p[1:] for p in read_all(out)[0]] == [p[1:] for p in read_all(ZEEK_PCAP)[0]]


def test_byte_orders_and_nanoseconds(tmp_path: Path) -> None:
    pkts = [(1_700_000_000_123_456 + i, b"frame%d" % i) for i in range(5)]
    for big in (False, True):
        for ns in (False, True):
            p = tmp_path / f"{big}{ns}.pcap"
            write_pcap(p, pkts, big=big, ns=ns)
            got, cf = read_all(p, batch=2)
            assert [(ts, d) for _, ts, d in got] == pkts and not cf.counters
    # ns timestamps are truncated to µs
    p = tmp_path / "ns.pcap"
    with open(p, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        fh.write(struct.pack("<IIII", 10, 999_999_999, 1, 1) + b"x")
    assert read_all(p)[0][0][1] == 10_999_999


def test_pcapng_interfaces_linktypes_and_resolution(tmp_path: Path) -> None:
    q = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1000, 53, query(1, "x.example")))
    blocks = [
        idb(1),  # Ethernet, µs
        idb(101, tsresol=9),  # raw IP, ns
        epb(0, 1_700_000_000_000_001, ether(q)),
        epb(1, 1_700_000_000_000_002_000, q),
        epb(1, 1_700_000_000_000_003_000, q),
        _block(5, b"\0" * 12),  # an interface statistics block: skipped
        _block(3, struct.pack("<I", len(ether(q))) + ether(q)),  # SPB: interface 0
        epb(0, 1_700_000_000_000_004, ether(q)),
    ]
    p = tmp_path / "multi.pcapng"
    write_pcapng(p, blocks)
    cf = CaptureFile(p)
    batches = list(cf.batches(100))
    assert [(b.linktype, len(b.packets)) for b in batches] == [(1, 1), (101, 2), (1, 2)]
    assert [ts for b in batches for ts, _ in b.packets] == [
        1_700_000_000_000_001, 1_700_000_000_000_002, 1_700_000_000_000_003, 0, 1_700_000_000_000_004,
    ]  # fmt: skip
    assert batches[-1].end_offset == p.stat().st_size
    assert is_capture(p)
    # tshark reads the same file (and shows no time for the SPB, which has none)
    assert tshark_times(p) == [1_700_000_000_000_000 + i for i in (1, 2, 3, 4)]
    df, c = decode_file(p)
    assert c["queries"] == 5 and c["unanswered"] == 5 and c["bad_packets"] == 0


def test_resume_from_an_offset(tmp_path: Path) -> None:
    for path in (DNS_PCAP, ZEEK_PCAP):
        batches = list(CaptureFile(path).batches(3))
        middle = batches[1].end_offset
        rest = [p for b in CaptureFile(path, start=middle).batches(100) for p in b.packets]
        assert rest == [p for b in batches[2:] for p in b.packets]


def test_a_smaller_first_batch_then_full_ones() -> None:
    """pcap and pcapng: the first batch holds `first` packets, the rest `max_packets`."""
    for path in (ZEEK_PCAP, DNS_PCAP):
        whole = [p for b in CaptureFile(path).batches(1000) for p in b.packets]
        sizes = [len(b.packets) for b in CaptureFile(path).batches(4, first=1)]
        assert sizes[0] == 1 and set(sizes[1:-1]) == {4} and 0 < sizes[-1] <= 4
        again = [p for b in CaptureFile(path).batches(4, first=1) for p in b.packets]
        assert again == whole


@pytest.mark.parametrize("path", [DNS_PCAP, ZEEK_PCAP], ids=lambda p: p.name)
def test_cut_file_ends_cleanly(tmp_path: Path, path: Path) -> None:
    data = path.read_bytes()
    full, _ = read_all(path)
    for cut in (len(data) - 1, len(data) - 30, len(data) // 2, 30, 13):
        p = tmp_path / "cut"
        p.write_bytes(data[:cut])
        got, cf = read_all(p)
        assert got == full[: len(got)]
        assert cf.counters["cut_records"] == 1
        if got:
            assert sum(len(d) for _, _, d in got) < cut


def test_garbage_is_not_a_capture(tmp_path: Path) -> None:
    p = tmp_path / "text.log"
    p.write_bytes(b"Jan  1 00:00:00 host sshd[1]: hello\n")
    assert not is_capture(p)
    with pytest.raises(ValueError):
        list(CaptureFile(p).batches())
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert not is_capture(empty) and list(CaptureFile(empty).batches()) == []


FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_SEEDS = [DNS_PCAP.read_bytes(), ZEEK_PCAP.read_bytes()]


@FUZZ
@given(
    st.sampled_from([0, 1]),
    st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 255)), max_size=8),
    st.integers(0, 1500),
)
def test_fuzz_corrupted_captures_never_raise(
    tmp_path: Path, seed: int, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(_SEEDS[seed])
    for i, v in flips:
        if 12 <= i < len(data):  # keep the magic: a capture with damage inside
            data[i] = v
    p = tmp_path / "fuzz.pcap"
    p.write_bytes(bytes(data[: max(12, len(data) - cut)]))
    df, c = decode_file(p)
    assert c["packets"] >= 0 and df.height <= c["packets"] + c["malformed"]


def test_pcapng_sections_concatenated(tmp_path: Path) -> None:
    parts = [DATA / "pcap" / "chrissanders" / n for n in ("dns_tcp.pcapng", "dns_axfr.pcapng")]
    p = tmp_path / "two-sections.pcapng"
    p.write_bytes(b"".join(x.read_bytes() for x in parts))
    got, cf = read_all(p, batch=5)
    assert [ts for _, ts, _ in got] == tshark_times(p) and not cf.counters
    assert len(got) == sum(len(read_all(x)[0]) for x in parts)
    df, c = decode_file(p)
    assert c["answered"] == 3 and c["malformed"] == 0
