"""DNS decoding from packets: shared captures checked against tshark, hand-built edge cases, fuzz.

Every DNS message of a capture must be accounted for: a query/response pair
is one event, an unanswered query or a response without query one event, a
message that does not decode a counted parse-failure event.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from lightsoc.sources.dns_decode import DnsDecoder, community_id
from lightsoc.sources.dns_wire import read_question
from lightsoc.sources.pcap_file import CaptureFile

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DNS_CAPTURES = [
    DATA / "pcap" / "chrissanders" / "dns.pcap",
    DATA / "pcap" / "chrissanders" / "dns_axfr.pcapng",
    DATA / "pcap" / "chrissanders" / "dns_tcp.pcapng",
    DATA / "pcap" / "chrissanders" / "dns_isp_hijack.pcapng",
    DATA / "pcap" / "chrissanders" / "arppoison.pcapng",
    DATA / "pcap" / "zeek" / "dns-txt-multiple.pcap",
    DATA / "pcap" / "zeek" / "dns53.pcap",
    DATA / "pcap" / "zeek" / "dns_long-connection.pcap",
    DATA / "dns" / "tunnel" / "iodine_elastic.pcap",
    DATA / "dns" / "tunnel" / "dnscat2.pcap",
]
NON_DNS_CAPTURES = [
    DATA / "pcap" / "chrissanders" / "http_google.pcapng",
    DATA / "pcap" / "chrissanders" / "synscan.pcapng",
    DATA / "pcap" / "zeek" / "http_bro.org.pcap",
    DATA / "pcap" / "zeek" / "icmp_5-pings.pcap",
]
TCP_PARTIAL = ("malformed_tcp_gap", "malformed_tcp_incomplete")


# -- helpers shared with the other pcap tests ---------------------------------------------
def tool(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        pytest.fail(f"{name} is required for this test and is not installed")
    return path


def decode_file(path: Path, batch: int = 1000, **kw: object) -> tuple[pl.DataFrame, Counter[str]]:
    """All events of a capture (decoder flushed at the end) and the decoder's counters."""
    dec = DnsDecoder(id_prefix="t-", **kw)  # type: ignore[arg-type]
    cf = CaptureFile(path)
    frames = []
    for b in cf.batches(batch):
        dec.decode(b.linktype, b.packets, b.positions)
        dec.expire()
        frames.append(dec.take())
    dec.flush()
    frames.append(dec.take())
    frames = [f for f in frames if f.height]
    df = pl.concat(frames, how="diagonal") if frames else pl.DataFrame()
    counters = dec.counters + cf.counters
    return df, counters


def check_accounting(df: pl.DataFrame, c: Counter[str]) -> None:
    """Every DNS message is in exactly one event or one counted failure."""
    partial = sum(c[k] for k in TCP_PARTIAL)
    assert c["queries"] == c["answered"] + c["unanswered"]
    assert c["responses"] == c["answered"] + c["orphan_responses"]
    assert c["dns_messages"] == c["queries"] + c["responses"] + c["malformed"] - partial
    assert df.height == c["answered"] + c["unanswered"] + c["orphan_responses"] + c["malformed"]
    if df.height:
        assert df["event.id"].n_unique() == df.height


def tshark_messages(path: Path, *extra: str) -> list[tuple[int, str, int | None, bool]]:
    """(id, name, rcode or None, is response) of every DNS message tshark sees."""
    out = subprocess.run(
        [tool("tshark"), "-r", str(path), *extra, "-Y", "dns", "-T", "fields"]
        + [
            "-e",
            "dns.id",
            "-e",
            "dns.qry.name",
            "-e",
            "dns.flags.rcode",
            "-e",
            "dns.flags.response",
        ]
        + ["-E", "aggregator=\x1f"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.decode("utf-8", "replace")
    msgs = []
    for line in out.splitlines():
        cols = [c.split("\x1f") for c in line.split("\t")]
        for i in range(len(cols[0])):
            mid, name, rcode, resp = (c[i] if i < len(c) else "" for c in cols)
            is_resp = resp in ("1", "True")
            msgs.append((int(mid, 16), name, int(rcode) if is_resp else None, is_resp))
    return msgs


_ESC = re.compile(r"\\(\d{3}|.)")


def loose(name: str | None) -> str:
    """A name as tshark shows it: our `\\DDD` escapes as bytes, then UTF-8 with U+FFFD."""
    raw = _ESC.sub(lambda m: chr(int(m[1])) if m[1].isdigit() else m[1], name or "")
    return _ascii(raw.encode("latin-1").decode("utf-8", "replace"))


def _ascii(name: str) -> str:
    # decoders differ on how many U+FFFD an invalid sequence gives: compare runs of them
    return re.sub(r"[^\x20-\x7e]+", "?", name.lower())


RCODE_NUM = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}


def compare_with_tshark(path: Path, df: pl.DataFrame, c: Counter[str], *extra: str) -> None:
    msgs = tshark_messages(path, *extra)
    assert len(msgs) == c["dns_messages"], (len(msgs), dict(c))
    queries = Counter((m[0], _ascii(m[1])) for m in msgs if not m[3])
    responses = Counter((m[0], _ascii(m[1]), m[2]) for m in msgs if m[3])
    ok = df.filter(pl.col("_parse_ok")) if "_parse_ok" in df.columns else df
    ours_q = Counter(
        (r["dns.id"], loose(r["dns.question.name"]))
        for r in ok.filter(pl.col("event.duration").is_not_null() | (pl.col("dns.type") == "query"))
        .select("dns.id", "dns.question.name")
        .iter_rows(named=True)
    )
    ours_r = Counter(
        (r["dns.id"], loose(r["dns.question.name"]), RCODE_NUM[r["dns.response_code"]])
        for r in ok.filter(pl.col("dns.type") == "answer")
        .select("dns.id", "dns.question.name", "dns.response_code")
        .iter_rows(named=True)
    )
    assert ours_q == queries
    assert ours_r == responses


# -- packet builders ---------------------------------------------------------------------
def ipv4(src: str, dst: str, proto: int, payload: bytes, frag: int = 0) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, frag, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return hdr + payload


def ipv6(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    return (
        struct.pack("!IHBB", 0x60000000, len(payload), proto, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + payload
    )


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int, seq: int, payload: bytes, flags: int = 0x18) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 65535, 0, 0) + payload


def ether(ip: bytes, v6: bool = False, vlan: int | None = None) -> bytes:
    et = b"\x86\xdd" if v6 else b"\x08\x00"
    tag = b"\x81\x00" + struct.pack("!H", vlan) if vlan is not None else b""
    return b"\x02" * 6 + b"\x04" * 6 + tag + et + ip


def qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def query(mid: int, name: str, qtype: int = 1) -> bytes:
    return (
        struct.pack("!HHHHHH", mid, 0x0100, 1, 0, 0, 0) + qname(name) + struct.pack("!HH", qtype, 1)
    )


def response(mid: int, name: str, ips: list[str], rcode: int = 0, qtype: int = 1) -> bytes:
    body = qname(name) + struct.pack("!HH", qtype, 1)
    for ip in ips:  # owner name compressed to the question (offset 12)
        body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + socket.inet_aton(ip)
    return struct.pack("!HHHHHH", mid, 0x8180 | rcode, 1, len(ips), 0, 0) + body


def udp_pair(mid: int, name: str, ips: list[str], rcode: int = 0) -> list[bytes]:
    q = ether(ipv4("10.0.0.1", "10.0.0.53", 17, udp(40000 + mid, 53, query(mid, name))))
    r = ether(
        ipv4("10.0.0.53", "10.0.0.1", 17, udp(53, 40000 + mid, response(mid, name, ips, rcode)))
    )
    return [q, r]


def run(packets: list[bytes], linktype: int = 1, **kw: object) -> tuple[pl.DataFrame, Counter[str]]:
    dec = DnsDecoder(id_prefix="t-", **kw)  # type: ignore[arg-type]
    dec.decode(linktype, [(1_700_000_000_000_000 + i * 1000, p) for i, p in enumerate(packets)])
    dec.flush()
    return dec.take(), dec.counters


# -- shared captures ---------------------------------------------------------------------
@pytest.mark.parametrize("path", DNS_CAPTURES, ids=lambda p: p.name)
def test_shared_capture_matches_tshark(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"shared capture missing: {path}")
    df, c = decode_file(path)
    check_accounting(df, c)
    assert c["malformed"] == 0
    assert df.height > 0
    compare_with_tshark(path, df, c)
    assert set(df["event.dataset"]) == {"dns"}
    assert set(df["network.protocol"]) == {"dns"}
    answered = df.filter(pl.col("event.duration").is_not_null())
    assert (answered["event.duration"] >= 0).all()


@pytest.mark.parametrize("path", NON_DNS_CAPTURES, ids=lambda p: p.name)
def test_non_dns_captures_give_nothing(path: Path) -> None:
    df, c = decode_file(path)
    assert df.height == 0 and c["dns_messages"] == 0
    other = c["non_dns"] + c["fragments"] + c["bad_packets"] + c["tcp_control"]
    assert c["packets"] == other > 0


def test_axfr_over_tcp_with_split_length_prefix() -> None:
    df, c = decode_file(DATA / "pcap" / "chrissanders" / "dns_axfr.pcapng")
    row = df.row(0, named=True)
    assert row["network.transport"] == "tcp" and row["dns.question.type"] == "AXFR"
    assert len(row["dns.answers"]) == 21
    assert row["dns.answers"][0].startswith("contoso.local. 3600 IN SOA dns3.contoso.local. ")
    assert any(" IN SRV 0 100 88 dns3.contoso.local." in a for a in row["dns.answers"])


def test_long_connection_pairs_and_rcodes() -> None:
    df, _ = decode_file(DATA / "pcap" / "zeek" / "dns_long-connection.pcap")
    assert df.height == 11 and set(df["dns.type"]) == {"answer"}
    nx = df.filter(pl.col("dns.question.name") == "www.example.notginh").row(0, named=True)
    assert nx["dns.response_code"] == "NXDOMAIN" and nx["dns.question.type"] == "AAAA"
    ptr = df.filter(pl.col("dns.question.type") == "PTR").row(0, named=True)
    assert ptr["dns.answers"][0].startswith("104.9.192.66.in-addr.arpa. ")
    assert " IN PTR " in ptr["dns.answers"][0]


def test_txt_answers_are_quoted() -> None:
    df, _ = decode_file(DATA / "pcap" / "zeek" / "dns-txt-multiple.pcap")
    txt = [a for a in df.row(0, named=True)["dns.answers"] if " IN TXT " in a]
    assert len(txt) == 1 and txt[0].count('" "') == 1  # one record of two strings
    assert txt[0].split(" IN TXT ")[1].startswith('"k=rsa; p=') and txt[0].endswith('AQAB"')


def test_iodine_unanswered_and_escaped_names() -> None:
    df, c = decode_file(DATA / "dns" / "tunnel" / "iodine_elastic.pcap")
    assert c["unanswered"] == 10 and c["answered"] == 212
    names = df["dns.question.name"].to_list()
    assert any("\\228" in n for n in names)  # 0xe4 escaped, never raw bytes
    assert all(n.isascii() and n.isprintable() for n in names)


# -- hand-built packets ------------------------------------------------------------------
def test_pairing_fields_and_unanswered_timeout() -> None:
    pkts = udp_pair(1, "WWW.Example.COM", ["1.2.3.4", "5.6.7.8"]) + udp_pair(2, "nx.example", [], 3)
    lone_q = ether(ipv4("10.0.0.1", "10.0.0.53", 17, udp(41000, 53, query(3, "slow.example"))))
    dec = DnsDecoder(timeout=5.0, id_prefix="p-")
    base = 1_700_000_000_000_000
    dec.decode(1, [(base + i * 1000, p) for i, p in enumerate(pkts + [lone_q])])
    assert dec.pending == 1
    dec.expire(base + 4_000_000)
    assert dec.pending == 1
    dec.expire(base + 6_000_000)
    assert dec.pending == 0
    df = dec.take()
    first = df.row(0, named=True)
    assert first["dns.question.name"] == "www.example.com"
    assert first["dns.answers"] == [
        "WWW.Example.COM. 300 IN A 1.2.3.4",
        "WWW.Example.COM. 300 IN A 5.6.7.8",
    ]
    assert first["dns.resolved_ip"] == ["1.2.3.4", "5.6.7.8"]
    assert first["event.duration"] == 1_000_000  # 1 ms in ns
    assert first["source.ip"] == "10.0.0.1" and first["destination.port"] == 53
    assert first["source.port"] == 40001 and first["network.transport"] == "udp"
    assert first["@timestamp"].timestamp() == base / 1e6
    assert first["network.community_id"] == community_id(
        socket.inet_aton("10.0.0.1"), 40001, socket.inet_aton("10.0.0.53"), 53, "udp"
    )
    assert df.row(1, named=True)["dns.response_code"] == "NXDOMAIN"
    last = df.row(2, named=True)
    assert last["dns.type"] == "query" and last["dns.response_code"] is None
    assert last["event.duration"] is None and last["dns.question.name"] == "slow.example"


def test_community_id_reference_value() -> None:
    # from the Community ID spec's test data: udp 192.168.1.52:54585 -> 8.8.8.8:53
    cid = community_id(
        socket.inet_aton("192.168.1.52"), 54585, socket.inet_aton("8.8.8.8"), 53, "udp"
    )
    assert cid == "1:d/FP5EW3wiY1vCndhwleRRKHowQ="


def test_link_types_vlan_ipv6() -> None:
    q = udp(5000, 53, query(7, "a.example"))
    r = udp(53, 5000, response(7, "a.example", ["9.9.9.9"]))
    v4q, v4r = ipv4("192.0.2.1", "192.0.2.2", 17, q), ipv4("192.0.2.2", "192.0.2.1", 17, r)
    sll = b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 6 + b"\0\0" + b"\x08\x00"
    sll2 = b"\x08\x00\x00\x00" + b"\0" * 16
    cases = {
        1: [ether(v4q, vlan=10), ether(v4r, vlan=10)],
        113: [sll + v4q, sll + v4r],
        276: [sll2 + v4q, sll2 + v4r],
        101: [v4q, v4r],
        0: [struct.pack("=I", 2) + v4q, struct.pack("=I", 2) + v4r],
        108: [struct.pack("!I", 2) + v4q, struct.pack("!I", 2) + v4r],
    }
    for linktype, pkts in cases.items():
        df, c = run(pkts, linktype)
        assert (df.height, c["answered"]) == (1, 1), linktype
        assert df["source.ip"][0] == "192.0.2.1"
    v6 = [
        ether(ipv6("2001:db8::1", "2001:db8::53", 17, q), v6=True),
        ether(ipv6("2001:db8::53", "2001:db8::1", 17, r), v6=True),
    ]
    df, c = run(v6)
    assert c["answered"] == 1 and df["source.ip"][0] == "2001:db8::1"
    assert df["destination.ip"][0] == "2001:db8::53"


def test_fragments_and_unsupported_are_counted() -> None:
    frag = ether(ipv4("10.0.0.1", "10.0.0.2", 17, udp(53, 53, b"x" * 20), frag=0x2000))
    df, c = run([frag, b"\x01\x02", ether(b"\x60" + b"\0" * 10, v6=True)])
    assert df.height == 0 and c["fragments"] == 1 and c["bad_packets"] == 2
    _, c = run([b"abc"], linktype=147)
    assert c["unsupported_linktype"] == 1


def test_tcp_several_messages_per_segment_and_split_message() -> None:
    msgs = b"".join(struct.pack("!H", len(m)) + m for m in (query(1, "a.x"), query(2, "b.x")))
    resp = b"".join(
        struct.pack("!H", len(m)) + m
        for m in (response(1, "a.x", ["1.1.1.1"]), response(2, "b.x", []))
    )
    c2s = [tcp(1234, 53, 100, b"", 0x02), tcp(1234, 53, 101, msgs)]
    s2c = [tcp(53, 1234, 500, b"", 0x12)]
    cut = 5
    s2c += [tcp(53, 1234, 501, resp[:cut]), tcp(53, 1234, 501 + cut, resp[cut:])]
    s2c += [tcp(53, 1234, 501, resp[:cut])]  # retransmission: ignored
    pkts = [ether(ipv4("10.1.1.1", "10.1.1.53", 6, p)) for p in c2s]
    pkts += [ether(ipv4("10.1.1.53", "10.1.1.1", 6, p)) for p in s2c]
    df, c = run(pkts)
    check_accounting(df, c)
    assert c["answered"] == 2 and c["malformed"] == 0
    assert sorted(df["dns.question.name"]) == ["a.x", "b.x"]
    assert df["event.id"].n_unique() == 2


def test_tcp_gap_and_incomplete_are_counted() -> None:
    m = query(9, "gap.example")
    framed = struct.pack("!H", len(m)) + m
    pkts = [
        tcp(1, 53, 10, framed[:6]),
        tcp(1, 53, 10 + 6 + 3, framed[9:]),  # 3 bytes lost
        tcp(2, 53, 10, framed[:6]),  # never completed
    ]
    df, c = run([ether(ipv4("10.0.0.1", "10.0.0.2", 6, p)) for p in pkts])
    check_accounting(df, c)
    assert c["tcp_gaps"] == 1 and c["malformed_tcp_gap"] == 1
    assert c["malformed_tcp_incomplete"] >= 1
    assert (~df["_parse_ok"]).sum() == c["malformed"]


def _malformed(payload: bytes) -> tuple[pl.DataFrame, Counter[str]]:
    return run([ether(ipv4("10.0.0.1", "10.0.0.53", 17, udp(3333, 53, payload)))])


def test_compression_loop_out_of_range_and_truncation() -> None:
    hdr = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    loop = hdr + b"\x01a\xc0\x0c" + b"\0\x01\0\x01"  # label, then a pointer back to itself
    self_ptr = hdr + b"\xc0\x0c" + b"\0\x01\0\x01"
    out_of_range = hdr + b"\xc0\xff" + b"\0\x01\0\x01"
    bad_label = hdr + b"\x41a"
    for payload, reason in [
        (loop, "pointer_loop"),
        (self_ptr, "pointer_loop"),
        (out_of_range, "bad_pointer"),
        (bad_label, "bad_label"),
        (hdr[:7], "truncated"),
        (query(1, "ok.example")[:-2], "truncated"),
    ]:
        df, c = _malformed(payload)
        assert c["malformed_" + reason] == 1, reason
        row = df.row(0, named=True)
        assert row["_parse_ok"] is False and row["event.original"]
        assert reason in row["labels"] and row.get("dns.question.name") is None
    long_name = hdr + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63
    long_name += b"\x3f" + b"d" * 63 + b"\0\0\x01\0\x01"
    _, c = _malformed(long_name)
    assert c["malformed_name_too_long"] == 1


def test_escaping_of_hostile_labels() -> None:
    msg = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x03a.b\x04\x1b[2J\x00\x00\x01\x00\x01"
    assert read_question(msg, 12)[0] == "a\\.b.\\027[2J"
    df, _ = _malformed(msg)
    assert df["dns.question.name"][0] == "a\\.b.\\027[2j"


def test_unusual_port_is_recognised_strictly() -> None:
    pkts = [
        ether(ipv4("127.0.0.1", "127.0.0.1", 17, udp(50000, 5300, query(5, "corp.example")))),
        ether(
            ipv4(
                "127.0.0.1",
                "127.0.0.1",
                17,
                udp(5300, 50000, response(5, "corp.example", ["10.1.2.3"])),
            )
        ),
        ether(ipv4("127.0.0.1", "127.0.0.1", 17, udp(50001, 5301, b"GET / HTTP/1.1\r\n\r\n"))),
    ]
    df, c = run(pkts)
    assert (
        c["answered"] == 1
        and c["non_dns"] == 1
        and df["dns.resolved_ip"][0].to_list() == ["10.1.2.3"]
    )
