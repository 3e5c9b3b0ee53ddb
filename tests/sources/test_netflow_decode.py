"""NetFlow v5/v9/IPFIX decoding against akvorado's sample captures and crafted datagrams.

Expected first-flow values were checked by hand against the raw bytes, e.g.
nfv5.pcap: header sys_uptime 2874339000 ms at unix 1680626679 (16:44:39Z),
record first = last = 2874324000 -> 15 s earlier; data.pcap (v9): uptime
944951609 at 1647285928, first/last 944948659 -> 2.950 s earlier; IPFIX
(ipfixprobe): flowStartMicroseconds NTP 0xce740b4f.7df7a4e7 -> 2009-10-05
06:06:07.492059Z.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import schema
from lightsoc.sources.netflow_decode import NetflowDecoder, records_to_frame
from lightsoc.sources.netflow_templates import community_id, tcp_flags

SAMPLES = Path(__file__).resolve().parents[3] / "shared/data/flows/netflow_samples"


def udp_payloads(path: Path) -> list[bytes]:
    """UDP payloads of a classic pcap (Ethernet/VLAN, IPv4/IPv6)."""
    data = path.read_bytes()
    e = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(e + "I", data[20:24])[0]
    assert linktype == 1, "Ethernet captures only"
    pos, out = 24, []
    while pos + 16 <= len(data):
        incl = struct.unpack(e + "I", data[pos + 8 : pos + 12])[0]
        pkt = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        etype, off = struct.unpack("!H", pkt[12:14])[0], 14
        while etype == 0x8100:
            etype, off = struct.unpack("!H", pkt[off + 2 : off + 4])[0], off + 4
        if etype == 0x800:
            proto, off = pkt[off + 9], off + (pkt[off] & 15) * 4
        elif etype == 0x86DD:
            proto, off = pkt[off + 6], off + 40
        else:
            continue
        if proto == 17:
            length = struct.unpack("!H", pkt[off + 4 : off + 6])[0]
            out.append(pkt[off + 8 : off + length])
    return out


def payload(name: str) -> bytes:
    (p,) = udp_payloads(SAMPLES / name)
    return p


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def decode_all(names: list[str], exporter: str = "192.0.2.100") -> tuple[list[dict], list[dict]]:
    dec = NetflowDecoder()
    flows, counters = [], []
    for n in names:
        f, c = dec.decode(payload(n), exporter, 0.0)
        flows += f
        counters.append(c)
    return flows, counters


BASE = {
    "event.kind": "event",
    "event.category": "network",
    "event.type": "connection",
    "event.dataset": "netflow",
    "event.module": "netflow",
}


def test_v5_first_flow_and_totals() -> None:
    flows, (c,) = decode_all(["nfv5.pcap"], "10.19.144.41")
    assert c["flows"] == 29 and c["malformed"] == 0
    assert flows[0] == {
        **BASE,
        "@timestamp": utc(2023, 4, 4, 16, 44, 24),
        "event.start": utc(2023, 4, 4, 16, 44, 24),
        "event.end": utc(2023, 4, 4, 16, 44, 24),
        "event.duration": 0,
        "log.source.address": "10.19.144.41",
        "source.ip": "161.202.212.212",
        "source.port": 30104,
        "destination.ip": "202.152.70.24",
        "destination.port": 11963,
        "network.transport": "tcp",
        "source.bytes": 133,
        "source.packets": 1,
        "network.bytes": 133,
        "network.packets": 1,
        "network.community_id": community_id("161.202.212.212", "202.152.70.24", 6, 30104, 11963),
        "labels": '{"netflow.version":"5","netflow.tcp_flags":"PSH,ACK",'
        '"netflow.input_interface":"117","netflow.output_interface":"86"}',
    }
    assert flows[-1]["event.duration"] == 22_000_000_000
    assert sum(f["network.bytes"] for f in flows) == 88345
    assert sum(f["network.packets"] for f in flows) == 78


def test_v9_template_then_data() -> None:
    flows, (ct, cd) = decode_all(["template.pcap", "data.pcap"])
    assert ct["templates"] == 1 and ct["flows"] == 0
    assert cd["flows"] == 4 and cd["malformed"] == 0
    first = flows[0]
    assert first["@timestamp"] == utc(2022, 3, 14, 19, 25, 25, 50000)
    assert first["event.start"] == first["event.end"] == first["@timestamp"]
    assert (first["source.ip"], first["source.port"]) == ("198.38.121.178", 443)
    assert (first["destination.ip"], first["destination.port"]) == ("91.170.143.87", 19624)
    assert (first["network.transport"], first["source.bytes"], first["source.packets"]) == (
        "tcp",
        1500,
        1,
    )
    assert first["labels"] == (
        '{"netflow.version":"9","netflow.tcp_flags":"ACK",'
        '"netflow.input_interface":"335","netflow.output_interface":"450"}'
    )
    assert sum(f["network.bytes"] for f in flows) == 5848
    assert sum(f["network.packets"] for f in flows) == 4


def test_v9_data_before_template_in_one_datagram_and_options() -> None:
    flows, (c,) = decode_all(["data+templates.pcap"], "102.102.144.1")
    assert c["pending"] == 1 and c["pending_total"] == 0  # held, then decoded in place
    assert c["templates"] == 1 and c["options_templates"] == 1 and c["options_records"] == 1
    assert c["flows"] == 21 and c["malformed"] == 0
    first = flows[0]
    assert first["@timestamp"] == utc(2023, 5, 14, 17, 28, 30, 480000)
    assert (first["source.ip"], first["source.port"]) == ("120.120.28.238", 63308)
    assert (first["destination.ip"], first["destination.port"]) == ("120.120.244.112", 31424)
    assert (first["network.transport"], first["network.bytes"]) == ("udp", 48)
    assert sum(f["network.bytes"] for f in flows) == 58329
    assert sum(f["network.packets"] for f in flows) == 66


def test_ipfix_biflow_with_ntp_times() -> None:
    flows, (ct, cd) = decode_all(["ipfixprobe-templates.pcap", "ipfixprobe-data.pcap"])
    assert ct["templates"] == 2 and cd["flows"] == 4 and cd["malformed"] == 0
    first = flows[0]
    assert first["event.start"] == utc(2009, 10, 5, 6, 6, 7, 492059)
    assert first["@timestamp"] == first["event.end"] == utc(2009, 10, 5, 6, 6, 7, 526084)
    assert first["event.duration"] == 34_025_000
    assert (first["source.ip"], first["source.port"]) == ("10.10.1.4", 56166)
    assert (first["destination.ip"], first["destination.port"]) == ("10.10.1.1", 53)
    assert first["network.transport"] == "udp"
    assert (first["source.bytes"], first["destination.bytes"], first["network.bytes"]) == (
        62,
        128,
        190,
    )
    assert sum(f["source.bytes"] for f in flows) == 24268
    assert sum(f["network.bytes"] for f in flows) == 25942
    assert sum(f["network.packets"] for f in flows) == 60


def test_data_before_template_is_held_then_decoded_or_dropped() -> None:
    dec = NetflowDecoder(pending_seconds=10)
    flows, c = dec.decode(payload("data.pcap"), "192.0.2.100", 100.0)
    assert flows == [] and c["pending"] == 1 and dec.pending == 1
    flows, c = dec.decode(payload("template.pcap"), "192.0.2.100", 105.0)
    assert len(flows) == 4 and c["flows"] == 4 and dec.pending == 0

    dec = NetflowDecoder(pending_seconds=10)
    dec.decode(payload("data.pcap"), "192.0.2.100", 100.0)
    assert dec.flush_pending(105.0) == {"dropped": 0, "pending": 1}
    assert dec.flush_pending(111.0) == {"dropped": 1, "pending": 0}
    flows, c = dec.decode(payload("template.pcap"), "192.0.2.100", 112.0)
    assert flows == [] and c["templates"] == 1

    dec = NetflowDecoder(pending_seconds=10, max_pending=1)
    dec.decode(payload("data.pcap"), "192.0.2.100", 100.0)
    _, c = dec.decode(payload("data.pcap"), "192.0.2.100", 101.0)
    assert c["dropped"] == 1 and dec.pending == 1
    _, c = dec.decode(b"\x00\x05", "192.0.2.100", 200.0)  # decode expires old sets too
    assert c["dropped"] == 1 and dec.pending == 0


def v9(source_id: int, *flowsets: bytes, uptime: int = 1000, secs: int = 1_700_000_000) -> bytes:
    return struct.pack("!HHIIII", 9, len(flowsets), uptime, secs, 0, source_id) + b"".join(flowsets)


def flowset(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, len(body) + 4) + body


def template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)


ADDRS = [(8, 4), (12, 4), (4, 1), (1, 4)]  # src, dst, proto, octets
SWAPPED = [(12, 4), (8, 4), (4, 1), (1, 4)]
DATA = bytes([10, 0, 0, 1, 10, 0, 0, 2, 17]) + struct.pack("!I", 99)


def test_template_ids_do_not_collide_across_exporters_or_domains() -> None:
    dec = NetflowDecoder()
    dec.decode(v9(0, flowset(0, template(300, ADDRS))), "192.0.2.1", 0.0)
    dec.decode(v9(0, flowset(0, template(300, SWAPPED))), "192.0.2.2", 0.0)
    a, _ = dec.decode(v9(0, flowset(300, DATA)), "192.0.2.1", 0.0)
    b, _ = dec.decode(v9(0, flowset(300, DATA)), "192.0.2.2", 0.0)
    assert (a[0]["source.ip"], b[0]["source.ip"]) == ("10.0.0.1", "10.0.0.2")
    assert a[0]["log.source.address"] == "192.0.2.1"
    none, c = dec.decode(v9(7, flowset(300, DATA)), "192.0.2.1", 0.0)  # other source id
    assert none == [] and c["pending"] == 1


def test_template_redefinition_replaces_layout() -> None:
    dec = NetflowDecoder()
    dec.decode(v9(0, flowset(0, template(300, ADDRS))), "192.0.2.1", 0.0)
    before, _ = dec.decode(v9(0, flowset(300, DATA)), "192.0.2.1", 0.0)
    after, c = dec.decode(
        v9(0, flowset(0, template(300, SWAPPED)), flowset(300, DATA)), "192.0.2.1", 0.0
    )
    assert before[0]["source.ip"] == after[0]["destination.ip"] == "10.0.0.1"
    assert after[0]["source.ip"] == "10.0.0.2" and c["templates"] == 1
    assert after[0]["network.transport"] == "udp" and after[0]["network.bytes"] == 99
    # uptime-less v9 flow: times default to the export time
    assert after[0]["@timestamp"] == datetime.fromtimestamp(1_700_000_000, UTC)


def test_ipfix_variable_length_and_enterprise_fields() -> None:
    fields = struct.pack("!HH", 8, 4) + struct.pack("!HHI", 0x8000 | 5, 2, 9)
    fields += struct.pack("!HH", 82, 65535) + struct.pack("!HH", 2, 8)
    fields += struct.pack("!HH", 150, 4)
    tset = struct.pack("!HH", 2, 8 + len(fields)) + struct.pack("!HH", 400, 5) + fields
    rec1 = bytes([10, 1, 1, 1]) + b"\xff\xff" + b"\x04eth0" + struct.pack("!QI", 7, 1_700_000_000)
    long_name = b"x" * 300
    rec2 = bytes([10, 1, 1, 2]) + b"\0\0" + b"\xff" + struct.pack("!H", 300) + long_name
    rec2 += struct.pack("!QI", 8, 1_700_000_001)
    dset = struct.pack("!HH", 400, 4 + len(rec1) + len(rec2) + 1) + rec1 + rec2 + b"\0"
    body = tset + dset
    msg = struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_100, 1, 42) + body
    flows, c = NetflowDecoder().decode(msg, "192.0.2.9", 0.0)
    assert c["templates"] == 1 and c["malformed"] == 0
    assert [(f["source.ip"], f["network.packets"]) for f in flows] == [
        ("10.1.1.1", 7),
        ("10.1.1.2", 8),
    ]
    assert flows[1]["event.start"] == utc(2023, 11, 14, 22, 13, 21)
    # a record cut short is malformed, not an exception
    cut = msg[:-20]
    cut = cut[:2] + struct.pack("!H", len(cut)) + cut[4:]
    cut = (
        cut[: 16 + len(tset)]
        + struct.pack("!HH", 400, len(cut) - 16 - len(tset))
        + cut[16 + len(tset) + 4 :]
    )
    flows, c = NetflowDecoder().decode(cut, "192.0.2.9", 0.0)
    assert c["malformed"] == 1


def test_malformed_and_unknown_versions_are_counted() -> None:
    dec = NetflowDecoder()
    data = payload("template.pcap")
    assert dec.decode(data[:-7], "a", 0.0)[1]["malformed"] == 1
    assert dec.decode(payload("nfv5.pcap")[:100], "a", 0.0)[1]["malformed"] == 1
    assert dec.decode(b"", "a", 0.0)[1]["malformed"] == 1
    assert dec.decode(b"\x00\x07" + bytes(30), "a", 0.0)[1]["unknown_version"] == 1
    assert dec.decode(b"\x00\x0a" + bytes(30), "a", 0.0)[1]["malformed"] == 1


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"", b"\x00\x05", b"\x00\x09", b"\x00\x0a"]),
    st.binary(max_size=300),
)
def test_arbitrary_bytes_never_raise(prefix: bytes, junk: bytes) -> None:
    dec = NetflowDecoder()
    dec.decode(payload("template.pcap"), "x", 0.0)
    flows, c = dec.decode(prefix + junk, "x", 0.0)
    assert c["flows"] == len(flows)
    records_to_frame(flows)


@pytest.mark.parametrize(
    ("src", "dst", "proto", "sport", "dport", "expected"),
    [  # published vectors (Community ID spec / Elasticsearch community_id processor tests)
        ("128.232.110.120", "66.35.250.204", 6, 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        ("66.35.250.204", "128.232.110.120", 6, 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        ("8.8.8.8", "192.168.1.52", 17, 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
        ("192.168.170.8", "192.168.170.56", 132, 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
        ("192.168.0.89", "192.168.0.1", 1, 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
        ("fe80::260:97ff:fe07:69ea", "ff02::1", 58, 134, 0, "1:pkvHqCL88/tg1k4cPigmZXUtL00="),
        (
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            "2607:f8b0:400c:c03::1a",
            6,
            63943,
            25,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
        ),
    ],
)
def test_community_id_vectors(
    src: str, dst: str, proto: int, sport: int, dport: int, expected: str
) -> None:
    assert community_id(src, dst, proto, sport, dport) == expected


def test_tcp_flag_names() -> None:
    assert tcp_flags(0x12) == "SYN,ACK" and tcp_flags(0) == ""


def test_records_to_frame_uses_schema_types() -> None:
    flows, _ = decode_all(["ipfixprobe-templates.pcap", "ipfixprobe-data.pcap"])
    df = records_to_frame(flows)
    assert df.height == 4
    for name, dtype in df.schema.items():
        assert dtype == schema.polars_type(name)
    assert df["@timestamp"].dtype == pl.Datetime("us", "UTC")
    assert records_to_frame([]).height == 0
