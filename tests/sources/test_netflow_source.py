"""The `netflow` source with real peers on 127.0.0.1: softflowd exports the shared
captures into lightsoc (NetflowSource -> Pipeline -> DuckDB) and into nfcapd;
what nfdump reads back must equal what lightsoc stored."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lightsoc.config import NetflowSourceConfig, parse_config
from lightsoc.pipeline import Pipeline, SourceSpec
from lightsoc.runtime import build_pipeline, build_sources, open_stores
from lightsoc.sources.netflow import NetflowSource
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.sources.tailing import wait_until

PCAPS = Path(__file__).resolve().parents[3] / "shared/data/pcap"
TIMEOUT = 30.0
FIELDS = [
    "source.ip",
    "source.port",
    "destination.ip",
    "destination.port",
    "network.transport",
    "source.packets",
    "source.bytes",
    "network.bytes",
    "network.packets",
    "network.community_id",
    "event.dataset",
    "log.source.address",
    "labels",
    "@timestamp",
    "event.start",
]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install softflowd nfdump)")
    return path


def pcap(name: str) -> Path:
    path = PCAPS / name
    if not path.is_file():
        pytest.fail(f"missing shared capture {path} (see /work/shared/data/README.md)")
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def softflowd(capture: Path, port: int, version: int, *extra: str) -> int:
    """Export a capture to 127.0.0.1:port; the number of datagrams it sent."""
    cmd = [tool("softflowd"), "-d", "-r", str(capture), "-c", "none"]
    cmd += ["-n", f"127.0.0.1:{port}", "-v", str(version), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    out = res.stdout + res.stderr
    m = re.search(r"Flows exported: \d+ \(\d+ records\) in (\d+) packets", out)
    assert res.returncode == 0 and m, out
    return int(m.group(1))


class Flows:
    """A NetflowSource in a real Pipeline over a DuckDB store."""

    def __init__(self, data_dir: Path, listen: int = 1, **kw: Any) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = DuckDBEventStore(data_dir / "events.duckdb")
        ports = [free_udp_port() for _ in range(listen)]
        config = NetflowSourceConfig(
            type="netflow", listen=[f"udp://127.0.0.1:{p}" for p in ports], tags=["flows"]
        )
        self.source = NetflowSource("flows", config, checkpoints={}, batch_max_rows=500, **kw)
        spec = SourceSpec("flows", "netflow", tags=["flows"])
        self.pipeline = Pipeline(self.store, [self.source], {"flows": spec}, [])
        self.pipeline.start()
        for i in range(listen):
            wait_until(lambda i=i: self.source.bound_port(i), TIMEOUT, f"listener {i} bound")

    def port(self, i: int = 0) -> int:
        port = self.source.bound_port(i)
        assert port is not None
        return port

    def datagrams(self) -> int:
        return sum(s["datagrams"] for s in self.source.senders.values())

    def settle(self, datagrams: int) -> None:
        """Wait until `datagrams` were received and every flow decoded is stored."""
        wait_until(lambda: self.datagrams() >= datagrams, TIMEOUT, f"{datagrams} datagrams")
        received = self.source.metrics.received
        wait_until(lambda: self.store.count() >= received, TIMEOUT, f"{received} stored")
        assert self.store.count() == received

    def rows(self) -> list[dict[str, Any]]:
        return self.store.search(fields=FIELDS, limit=1_000_000).to_pylist()

    def close(self) -> None:
        self.pipeline.stop(timeout=TIMEOUT)
        self.store.close()


@pytest.fixture
def flows(tmp_path: Path):
    made: list[Flows] = []

    def make(**kw: Any) -> Flows:
        f = Flows(tmp_path / f"data{len(made)}", **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def nfdump_export(tmp: Path, send: Callable[[int], int]) -> list[dict[str, str]]:
    """An export (`send(port)` -> datagrams sent) into nfcapd, read back with
    `nfdump -o csv` (flow rows)."""
    out = tmp / "nfcapd"
    out.mkdir()
    port = free_udp_port()
    cmd = [tool("nfcapd"), "-b", "127.0.0.1", "-p", str(port), "-w", str(out), "-t", "3600"]
    proc = subprocess.Popen(
        [*cmd, "-B", str(8 << 20)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: _port_taken(port) or proc.poll() is not None, TIMEOUT, "nfcapd bound")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        sent = send(port)
        # nfcapd logs the datagrams it has processed only at exit: stop it, then read
        wait_until(lambda: _udp_queue_empty(port), TIMEOUT, "nfcapd to drain its socket")
    finally:
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=TIMEOUT)[0].decode(errors="replace")
    assert sent > 0 and "Bad Packets: 0" in log, log
    res = subprocess.run(
        [tool("nfdump"), "-R", str(out), "-o", "csv"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    )
    text = res.stdout.split("\nSummary")[0]  # flow rows, then totals
    rows = list(csv.DictReader(io.StringIO(text)))
    return [r for r in rows if r.get("sa") and r.get("ibyt", "").isdigit()]


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _udp_queue_empty(port: int) -> bool:
    """No bytes waiting in the receive queue of the UDP socket bound to `port`."""
    want = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == want:
            return int(f[4].split(":")[1], 16) == 0
    return True


def flow_key(
    ip1: str, p1: Any, ip2: str, p2: Any, proto: str, pkts: Any, byts: Any, end: str
) -> tuple:
    """What nfdump and lightsoc must agree on per flow (end time to the second, if given)."""
    proto = {"icmp6": "ipv6-icmp"}.get(proto.lower(), proto.lower())  # nfdump's name
    ports = (int(p1), int(p2)) if proto in ("tcp", "udp") else ()
    return (ip1, ip2, proto, *ports, int(pkts), int(byts), end[:19])


def stored_flows(rows: list[dict[str, Any]], timed: bool) -> Counter[tuple]:
    """The `flow_key`s of flows lightsoc stored (with their end time if `timed`)."""
    return Counter(
        flow_key(
            r["source.ip"],
            r["source.port"],
            r["destination.ip"],
            r["destination.port"],
            r["network.transport"],
            r["network.packets"],
            r["network.bytes"],
            r["@timestamp"].strftime("%Y-%m-%d %H:%M:%S") if timed else "",
        )
        for r in rows
    )


def nfdump_flows(rows: list[dict[str, str]], timed: bool) -> Counter[tuple]:
    """The `flow_key`s of `nfdump -o csv` rows (with their end time if `timed`)."""
    return Counter(
        flow_key(
            e["sa"],
            e["sp"],
            e["da"],
            e["dp"],
            e["pr"],
            e["ipkt"],
            e["ibyt"],
            e["te"] if timed else "",
        )
        for e in rows
    )


def clock(extra: tuple[str, ...]) -> bool:
    """Flow times are absolute (from the capture) only with `-A`: v9/v5 uptimes follow
    softflowd's own clock, which differs between the two runs."""
    return "-A" in extra


@pytest.mark.parametrize(
    ("capture", "version", "extra"),
    [
        ("chrissanders/synscan.pcapng", 9, ()),
        ("zeek/ftp_bruteforce.pcap", 10, ("-A", "milli")),
        ("zeek/icmp_5-pings.pcap", 9, ()),
        ("chrissanders/dns_isp_hijack.pcapng", 10, ("-A", "milli")),
        ("zeek/ssh_sshguess.pcap", 5, ()),
    ],
)
def test_softflowd_export_matches_nfdump(
    flows: Any, tmp_path: Path, capture: str, version: int, extra: tuple[str, ...]
) -> None:
    path = pcap(capture)
    expected = nfdump_export(tmp_path, lambda port: softflowd(path, port, version, *extra))
    f = flows()
    sent = softflowd(path, f.port(), version, *extra)
    f.settle(sent)
    rows = f.rows()
    assert len(rows) == len(expected) > 0
    assert sum(r["network.bytes"] for r in rows) == sum(int(e["ibyt"]) for e in expected)
    assert sum(r["network.packets"] for r in rows) == sum(int(e["ipkt"]) for e in expected)
    assert stored_flows(rows, clock(extra)) == nfdump_flows(expected, clock(extra))
    (exporter,) = f.source.senders
    counters = f.source.senders[exporter]
    assert exporter.startswith("127.0.0.1:") and counters["datagrams"] == sent
    assert counters["flows"] == len(rows) and counters["malformed"] == 0
    assert counters["templates"] >= (0 if version == 5 else 1)
    assert {r["log.source.address"] for r in rows} == {exporter}
    assert {r["event.dataset"] for r in rows} == {"netflow"}
    assert all(r["network.community_id"].startswith("1:") for r in rows)
    assert all(r["event.start"] <= r["@timestamp"] for r in rows)
    assert all(f'"netflow.version":"{version}"' in r["labels"] for r in rows)
    (stats,) = [s for s in f.store.stats()["sources"] if s["id"] == "flows"]
    assert stats["received"] == len(rows) and stats["events"] == len(rows)
    if capture.startswith("zeek/icmp"):
        assert {r["network.transport"] for r in rows} == {"icmp"}


# --- crafted datagrams: bad input, template changes and collisions -------------


def v9(source_id: int, *sets: bytes, uptime: int = 1000, secs: int = 1_700_000_000) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), uptime, secs, 0, source_id) + b"".join(sets)


def flowset(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, len(body) + 4) + body


def template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)


ADDRS = [(8, 4), (12, 4), (4, 1), (1, 4)]  # src, dst, proto, octets
SWAPPED = [(12, 4), (8, 4), (4, 1), (1, 4)]


def data(src: int, dst: int, octets: int) -> bytes:
    return bytes([10, 0, 0, src, 10, 0, 0, dst, 17]) + struct.pack("!I", octets)


def sender(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


def test_garbage_and_truncated_datagrams_are_counted_and_the_source_keeps_running(
    flows: Any,
) -> None:
    f = flows()
    good = v9(0, flowset(0, template(300, ADDRS)), flowset(300, data(1, 2, 99)))
    bad = [
        b"",
        b"\x00",
        random.Random(7).randbytes(200),
        b"\x00\x07" + bytes(30),  # unknown version
        good[:30],  # cut inside the template set
        b"\x00\x05\x00\x1e" + bytes(20),  # v5 claiming 30 records, carrying none
        b"\x00\x0a\x00\xff" + bytes(12),  # IPFIX longer than the datagram
    ]
    with sender() as s:
        for d in bad:
            s.sendto(d, ("127.0.0.1", f.port()))
        s.sendto(good, ("127.0.0.1", f.port()))
        exporter = f"127.0.0.1:{s.getsockname()[1]}"
        f.settle(len(bad) + 1)
    c = f.source.senders[exporter]
    assert c["datagrams"] == len(bad) + 1 and c["flows"] == 1
    assert c["unknown_version"] >= 1 and c["malformed"] >= 5
    assert c["malformed"] + c["unknown_version"] <= len(bad)
    m = f.source.metrics
    assert m.errors == c["malformed"] + c["unknown_version"] and m.received == 1
    assert m.bytes == sum(map(len, bad)) + len(good)
    (row,) = f.rows()
    assert (row["source.ip"], row["destination.ip"], row["network.bytes"]) == (
        "10.0.0.1",
        "10.0.0.2",
        99,
    )


def test_template_change_and_id_collision_across_exporters(flows: Any) -> None:
    f = flows(listen=2, pending_seconds=1.0)
    with sender("127.0.0.2") as a, sender("127.0.0.3") as b:
        ea, eb = (f"{h}:{s.getsockname()[1]}" for h, s in (("127.0.0.2", a), ("127.0.0.3", b)))
        # the same template id and source id, different layouts, on two listeners
        a.sendto(v9(0, flowset(0, template(300, ADDRS))), ("127.0.0.1", f.port(0)))
        b.sendto(v9(0, flowset(0, template(300, SWAPPED))), ("127.0.0.1", f.port(1)))
        f.settle(2)
        a.sendto(v9(0, flowset(300, data(1, 2, 10))), ("127.0.0.1", f.port(0)))
        b.sendto(v9(0, flowset(300, data(1, 2, 20))), ("127.0.0.1", f.port(1)))
        f.settle(4)
        # exporter a redefines 300 (swapped) and sends data in the same datagram
        a.sendto(
            v9(0, flowset(0, template(300, SWAPPED)), flowset(300, data(1, 2, 30))),
            ("127.0.0.1", f.port(0)),
        )
        # b sends data for a template it never defined: held, then expired
        b.sendto(v9(0, flowset(301, data(1, 2, 40))), ("127.0.0.1", f.port(1)))
        f.settle(6)
    got = sorted(
        (r["log.source.address"], r["network.bytes"], r["source.ip"], r["destination.ip"])
        for r in f.rows()
    )
    assert got == [
        (ea, 10, "10.0.0.1", "10.0.0.2"),
        (ea, 30, "10.0.0.2", "10.0.0.1"),
        (eb, 20, "10.0.0.2", "10.0.0.1"),
    ]
    sa = f.source.senders[ea]
    assert (sa["templates"], sa["template_changes"], sa["flows"]) == (2, 1, 2)
    # b's 300 differed from a's first layout; a's new layout equals b's: no collision
    assert (sa["template_collisions"], f.source.senders[eb]["template_collisions"]) == (0, 1)
    wait_until(lambda: f.source.senders[eb]["dropped"] == 1, TIMEOUT, "held set to expire")
    sb = f.source.senders[eb]
    assert (sb["templates"], sb["template_changes"], sb["pending"], sb["flows"]) == (1, 0, 1, 1)
    assert f.source.metrics.extra["dropped_sets"] == 1 and f.source.decoder.pending == 0


def test_config_driven_source_through_runtime(tmp_path: Path) -> None:
    port = free_udp_port()
    config = parse_config(
        f"""
data_dir: {tmp_path / "data"}
sources:
  flows:
    type: netflow
    listen: ["udp://127.0.0.1:{port}"]
    tags: [edge]
"""
    )
    stores = open_stores(tmp_path / "data", config)
    try:
        (source,) = build_sources(config, stores)
        assert isinstance(source, NetflowSource)
        pipeline = build_pipeline(config, stores, [source])
        pipeline.start()
        try:
            wait_until(lambda: source.bound_port() == port, TIMEOUT, "listener bound")
            sent = softflowd(pcap("zeek/ssh_sshguess.pcap"), port, 9)
            wait_until(
                lambda: sum(s["datagrams"] for s in source.senders.values()) >= sent,
                TIMEOUT,
                "datagrams",
            )
            n = source.metrics.received
            wait_until(lambda: stores.events.count() >= n, TIMEOUT, f"{n} flows stored")
        finally:
            pipeline.stop(timeout=TIMEOUT)
        rows = stores.events.search(fields=["tags", "lightsoc.source"], limit=10_000).to_pylist()
        assert len(rows) == n > 0
        assert all(r["tags"] == ["edge"] and r["lightsoc.source"] == "flows" for r in rows)
        metrics = pipeline.metrics()["sources"]["flows"]
        assert metrics["type"] == "netflow" and metrics["received"] == n
        assert list(metrics["senders"].values())[0]["flows"] == n
    finally:
        stores.close()


def test_bench_script_runs_end_to_end(tmp_path: Path) -> None:
    """bench/netflow.py on a small export: every flow decoded and stored (figures unchecked)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "netflow.py"
    spec = importlib.util.spec_from_file_location("bench_netflow", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.run(tmp_path, flows=3000)
    assert figures["decoder_flows"] == 3000
    for run in ("e2e_no_enrich", "e2e_default_enrich"):
        assert figures[run]["complete"] and figures[run]["flows_stored"] == 3000
        assert figures[run]["datagrams_lost"] == 0


def test_ipv6_and_icmpv6_flows_match_nfdump(flows: Any, tmp_path: Path) -> None:
    """softflowd's IPv6 templates (ICMPv6 type/code in IE 139), crafted: none of the
    shared captures has IPv6 traffic."""
    fields = [(27, 16), (28, 16), (4, 1), (139, 2), (7, 2), (11, 2), (1, 4), (2, 4)]
    fields += [(22, 4), (21, 4)]
    link, group = "fe80::260:97ff:fe07:69ea", "ff02::1"
    web, client = "2001:db8::80", "2001:db8:1::2"
    recs = [  # src, dst, proto, icmp type/code, sport, dport, octets, packets
        (link, group, 58, 134 * 256, 0, 0, 64, 1),  # router advertisement
        (group, link, 58, 128 * 256, 0, 0, 104, 2),  # echo request
        (client, web, 6, 0, 50000, 443, 4000, 9),
        (web, client, 6, 0, 443, 50000, 90000, 70),
        (client, web, 17, 0, 5353, 53, 80, 1),
    ]
    body = b"".join(
        socket.inet_pton(socket.AF_INET6, a)
        + socket.inet_pton(socket.AF_INET6, b)
        + struct.pack("!BHHHIIII", proto, icmp, sp, dp, octets, pkts, 900, 950)
        for a, b, proto, icmp, sp, dp, octets, pkts in recs
    )
    msg = v9(1, flowset(0, template(2049, fields)), flowset(2049, body))

    def send(port: int) -> int:
        with sender() as s:
            s.sendto(msg, ("127.0.0.1", port))
        return 1

    expected = nfdump_export(tmp_path, send)
    f = flows()
    f.settle(send(f.port()))
    rows = f.rows()
    assert stored_flows(rows, timed=False) == nfdump_flows(expected, timed=False)
    assert len(rows) == len(recs)
    icmp = [r for r in rows if r["network.transport"] == "ipv6-icmp"]
    assert len(icmp) == 2
    ra = next(r for r in icmp if r["source.ip"] == link)
    assert ra["network.community_id"] == "1:pkvHqCL88/tg1k4cPigmZXUtL00="  # spec test vector
