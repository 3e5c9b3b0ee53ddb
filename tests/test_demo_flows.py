"""The demo's flows.csv: byte-for-byte what nfdump prints, and the injected patterns are there.

The format check is a round trip through the real tools: the same records are
sent as NetFlow v5 to a real `nfcapd` on 127.0.0.1 and read back with
`nfdump -o csv`; every line must equal ours except the exporter address and
the receive time.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from lightsoc.demo_flows import (
    HEADER,
    Record,
    flow_records,
    flows_csv,
    format_flow,
    interfaces,
    summary_lines,
)
from lightsoc.parsers import get_parser

END = datetime(2024, 5, 14, 12, tzinfo=UTC).timestamp()
START = END - 86_400
_FLAG_BITS = {c: 1 << (7 - i) for i, c in enumerate("CEUAPRSF")}
_V5_HEAD = struct.Struct("!HHIIIIBBH")
_V5_REC = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")


@pytest.fixture(scope="module")
def generated() -> tuple[list[bytes], object]:
    return flows_csv(random.Random(5), START, END)


@pytest.fixture(scope="module")
def flows(generated: tuple) -> pl.DataFrame:
    text = [x.decode().removesuffix("\n") for x in generated[0]]
    out = get_parser("nfdump_csv").parse(pl.Series(text, dtype=pl.String))
    assert out["_ok"].all()
    return out.filter(pl.col("event.dataset") == "netflow").with_columns(
        pl.col("labels").str.json_path_match("$['netflow.tcp_flags']").alias("flags")
    )


def netflow_v5(records: list[Record]) -> list[bytes]:
    """NetFlow v5 export packets (30 records each) carrying ``records``."""
    boot = records[0][0] - 1_000
    out = []
    for n in range(0, len(records), 30):
        chunk = records[n : n + 30]
        sent = max(r[0] + r[1] for r in chunk) + 1_000
        head = _V5_HEAD.pack(
            5, len(chunk), sent - boot, sent // 1000, sent % 1000 * 10**6, n, 0, 0, 0
        )
        body = b"".join(
            _V5_REC.pack(
                socket.inet_aton(sa),
                socket.inet_aton(da),
                bytes(4),
                *interfaces(sa),
                pkts,
                byts,
                start - boot,
                start + dur - boot,
                sp,
                dp,
                0,
                sum(_FLAG_BITS[c] for c in flg if c != "."),
                6 if pr == "TCP" else 17,
                0,
                0,
                0,
                0,
                0,
                0,
            )
            for start, dur, sa, da, sp, dp, pr, flg, pkts, byts in chunk
        )
        out.append(head + body)
    return out


def _udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_nfcapd_and_nfdump_print_the_same_lines(tmp_path: Path) -> None:
    nfcapd, nfdump = shutil.which("nfcapd"), shutil.which("nfdump")
    assert nfcapd and nfdump, "nfdump/nfcapd are not installed (apt-get install nfdump)"
    records, _ = flow_records(random.Random(9), END - 3600, END)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [nfcapd, "-w", str(tmp_path), "-b", "127.0.0.1", "-p", str(port), "-t", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not _udp_port_taken(port):
            assert proc.poll() is None and time.monotonic() < deadline, "nfcapd did not start"
            time.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for packet in netflow_v5(records):
                s.sendto(packet, ("127.0.0.1", port))
                time.sleep(0.001)  # paced: loopback UDP drops bursts beyond its buffer
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=30)[0].decode()
    assert f"Flows: {len(records)}," in log, log
    files = sorted(tmp_path.glob("nfcapd.2*"))
    assert len(files) == 1, log
    got = subprocess.run(
        [nfdump, "-r", str(files[0]), "-o", "csv"],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        check=True,
    ).stdout.splitlines()
    mine = [HEADER, *(format_flow(r) for r in records), *summary_lines(records)]
    assert len(got) == len(mine) == len(records) + 4
    assert got[0] == mine[0] and got[-3:] == mine[-3:]  # header and summary
    for theirs, ours in zip(got[1:-3], mine[1:-3], strict=True):
        a, b = theirs.split(","), ours.split(",")
        # column 44 is the exporter (127.0.0.1 here), 47 the time nfcapd received it
        assert a[:44] + a[45:47] == b[:44] + b[45:47], (theirs, ours)
        assert a[44] == "127.0.0.1" and b[44] == "10.20.0.1"


def test_every_line_parses(generated: tuple, flows: pl.DataFrame) -> None:
    lines, truth = generated
    assert lines[0].decode() == HEADER + "\n"
    assert lines[-3:-1] == [b"Summary\n", b"flows,bytes,packets,avg_bps,avg_pps,avg_bpp\n"]
    assert flows.height == truth.flows == len(lines) - 4
    assert 20_000 <= truth.flows <= 60_000
    n, byts, pkts = (int(x) for x in lines[-1].decode().split(",")[:3])
    assert (n, byts, pkts) == (
        flows.height,
        flows["network.bytes"].sum(),
        flows["network.packets"].sum(),
    )
    ts = flows["@timestamp"].dt.epoch("s")
    assert ts.is_sorted() and START <= ts.min() and ts.max() < END
    assert set(flows["network.transport"]) == {"tcp", "udp"}
    assert flows["source.ip"].str.starts_with("10.20.").mean() > 0.5


def test_port_scan(generated: tuple, flows: pl.DataFrame) -> None:
    truth = generated[1]
    scan = flows.filter(pl.col("source.ip") == truth.scanner)
    assert scan["destination.port"].n_unique() == truth.scan_ports >= 100
    assert set(scan["destination.ip"]) == set(truth.scan_targets)
    assert (scan["network.packets"] == 1).all() and set(scan["flags"]) == {"......S."}
    replies = flows.filter(pl.col("destination.ip") == truth.scanner)
    assert "...A.R.." in set(replies["flags"])  # closed ports answer with RST
    # nobody else sends this many 1-packet SYNs
    syn1 = flows.filter((pl.col("network.packets") == 1) & (pl.col("flags") == "......S."))
    top = syn1.group_by("source.ip").len().sort("len", descending=True)
    assert top.row(0) == (truth.scanner, scan.height) and (top.height == 1 or top[1, 1] < 10)


def test_beacon(generated: tuple, flows: pl.DataFrame) -> None:
    truth = generated[1]
    b = flows.filter(
        (pl.col("source.ip") == truth.beacon_host) & (pl.col("destination.ip") == truth.beacon_ip)
    )
    assert b.height == truth.beacons >= 250
    assert set(b["destination.port"]) == {truth.beacon_port}
    gaps = b["@timestamp"].dt.epoch("s").diff().drop_nulls()
    assert gaps.min() >= 0.9 * truth.beacon_period - 1
    assert gaps.max() <= 1.1 * truth.beacon_period + 1
    assert abs(gaps.mean() - truth.beacon_period) < 10
    assert b["network.bytes"].max() - b["network.bytes"].min() <= 8
    assert flows.filter(pl.col("destination.ip") == truth.beacon_ip)["source.ip"].n_unique() == 1


def test_ddos(generated: tuple, flows: pl.DataFrame) -> None:
    truth = generated[1]
    hit = flows.filter(
        (pl.col("destination.ip") == truth.ddos_target)
        & (pl.col("destination.port") == truth.ddos_port)
        & (pl.col("flags") == "......S.")
        & (pl.col("source.ip") != truth.scanner)
    )
    assert set(hit["source.ip"]) == set(truth.ddos_sources)
    assert len(truth.ddos_sources) >= 500
    ts = hit["@timestamp"].dt.epoch("s")
    assert truth.ddos_start - 1 <= ts.min() and ts.max() <= truth.ddos_end
    assert truth.ddos_end - truth.ddos_start <= 300
    assert (hit["network.packets"] >= 20).all()


def test_deterministic(generated: tuple) -> None:
    assert flows_csv(random.Random(5), START, END) == generated
    other, _ = flows_csv(random.Random(6), START, END)
    assert other != generated[0]
