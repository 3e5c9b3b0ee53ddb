"""The `pcap` source end to end: `lightsoc ingest` of captures, checkpoints, and a real capture.

The real capture: dnsmasq answers on 127.0.0.1 on a port the test found
free, tcpdump records the loopback, dig asks over UDP and TCP; the capture is
ingested with the CLI and the stored events are compared with what dig got
and with tshark's reading of the same file.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from lightsoc.config import PcapSourceConfig
from lightsoc.enrich.chain import build_enrichers
from lightsoc.pipeline import Pipeline, SourceSpec
from lightsoc.sources.dns_events import community_id
from lightsoc.sources.pcap import PcapSource
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.helpers import cli, cli_json, cli_ndjson
from tests.sources.tailing import wait_until
from tests.sources.test_dns_decode import DATA, DNS_CAPTURES, decode_file, tool, tshark_messages

SINCE = "100000d"  # the shared captures are from 2010-2023


def ingest_json(path: Path | str, data_dir: Path, *more: Path | str) -> dict:
    return cli_json("ingest", path, *more, "--json", "--no-progress", "--data-dir", data_dir)


def test_cli_ingest_shared_captures(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # a capture whose name does not say so: recognised by its magic number
    disguised = tmp_path / "capture.log"
    shutil.copy(DATA / "pcap" / "zeek" / "dns_long-connection.pcap", disguised)
    text = tmp_path / "auth.log"
    text.write_text(
        "Jan  1 00:00:00 host sshd[1]: Failed password for root from 192.0.2.9 port 22 ssh2\n"
    )
    files = [p for p in DNS_CAPTURES if "long-connection" not in p.name] + [disguised]
    expected = sum(decode_file(p)[0].height for p in files)
    summary = ingest_json(files[0], data, *files[1:], text)
    assert summary["events"] == expected + 1
    assert summary["by_dataset"]["dns"] == expected
    assert summary["parse_failures"] == 0 and summary["pcap"]["malformed"] == 0
    assert summary["pcap"]["dns_messages"] == sum(decode_file(p)[1]["dns_messages"] for p in files)
    # importing again stores nothing twice
    again = ingest_json(files[0], data, *files[1:], text)
    assert again["events"] == 0
    stats = cli_json("stats", "--format", "json", "--data-dir", data)
    assert stats["by_dataset"]["dns"] == expected
    rows = cli_ndjson(
        "search",
        "dns.question.name:www.example.notginh",
        "--since",
        SINCE,
        "--format",
        "json",
        "--data-dir",
        data,
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["dns.response_code"] == "NXDOMAIN" and row["dns.type"] == "answer"
    assert row["source.ip"] == "192.168.170.8" and row["destination.ip"] == "192.168.170.20"
    assert row["dns.question.registered_domain"] == "example.notginh"
    assert row["event.dataset"] == "dns" and row["network.protocol"] == "dns"
    assert row["event.duration"] > 0
    # made by the processor thread from the flow key the source left (`_flow`)
    flow = (row["source.ip"], row["source.port"], row["destination.ip"], row["destination.port"])
    ips = socket.inet_aton(flow[0]), socket.inet_aton(flow[2])
    assert row["network.community_id"] == community_id(ips[0], flow[1], ips[1], flow[3], "udp")
    assert "_flow" not in row
    sshd = cli_ndjson(
        "search", "source.ip:192.0.2.9", "--since", SINCE, "--format", "json", "--data-dir", data
    )
    assert len(sshd) == 1 and "Failed password" in sshd[0]["event.original"]


def test_cli_ingest_cut_and_garbage_capture(tmp_path: Path) -> None:
    src = (DATA / "dns" / "tunnel" / "dnscat2.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(src[: len(src) - 50])
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(src[:24] + random.Random(1).randbytes(3000))
    summary = ingest_json(cut, tmp_path / "data", garbage)
    assert summary["pcap"]["cut_records"] + summary["pcap"].get("bad_records", 0) >= 2
    assert summary["events"] >= 11


def _pipeline(store: DuckDBEventStore, src: PcapSource) -> Pipeline:
    return Pipeline(store, [src], {src.id: SourceSpec(src.id, "pcap")}, build_enrichers({}))


def test_pcap_source_checkpoint_resumes_grown_file(tmp_path: Path) -> None:
    full = (DATA / "pcap" / "zeek" / "dns_long-connection.pcap").read_bytes()
    path = tmp_path / "growing.pcap"
    path.write_bytes(full[:1000])
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    try:
        cfg = PcapSourceConfig(type="pcap", file=path)
        first = PcapSource("dns", cfg, checkpoints=store.checkpoints("dns"), one_shot=True)
        p = _pipeline(store, first)
        p.start()
        p.wait()
        n1 = store.count("")
        assert n1 > 0 and first.metrics.extra["cut_records"] == 1
        with open(path, "ab") as fh:
            fh.write(full[1000:])
        second = PcapSource("dns", cfg, checkpoints=store.checkpoints("dns"), one_shot=True)
        p = _pipeline(store, second)
        p.start()
        p.wait()
        m = second.metrics.extra
        assert second.metrics.received + first.metrics.received == 22  # every packet read once
        assert m.get("cut_records", 0) == 0
        total = store.count("")
        # a pair cut by the first import is an unanswered query plus a response without query
        assert total in (11, 12)
        ids = store.search("", fields=["event.id"], limit=100).column("event.id").to_pylist()
        assert len(set(ids)) == len(ids) == total
    finally:
        store.close()


# -- a real capture: dnsmasq, tcpdump, dig ---------------------------------------------
def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    pytest.fail("no free port")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            tool("dnsmasq"), "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={port}", "--user=root",
            f"--pid-file={tmp_path / 'dnsmasq.pid'}",
            "--address=/corp.example/10.1.2.3",
            "--address=/blocked.example/",  # NXDOMAIN
            "--host-record=www.test.example,10.9.8.7,2001:db8::7",
            "--cname=alias.test.example,www.test.example",
            '--txt-record=txt.test.example,"v=spf1 -all","second string"',
            "--mx-host=test.example,mail.test.example,10",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"dnsmasq exited: {proc.stderr.read() if proc.stderr else ''}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("dnsmasq did not start")
        yield port
    finally:
        _stop(proc)


QUESTIONS = [
    ("corp.example", "A", False),
    ("Host1.Corp.Example", "A", False),
    ("blocked.example", "A", False),
    ("www.test.example", "AAAA", False),
    ("alias.test.example", "A", False),
    ("txt.test.example", "TXT", False),
    ("test.example", "MX", False),
    ("deep.sub.corp.example", "A", True),
    ("blocked.example", "A", True),
    ("txt.test.example", "TXT", True),
]


def _dig(port: int, name: str, qtype: str, use_tcp: bool) -> tuple[str, list[str]]:
    args = [tool("dig"), "@127.0.0.1", "-p", str(port), name, qtype, "+tries=1", "+time=5"]
    args += ["+noall", "+comments", "+answer", "+nocookie"] + (["+tcp"] if use_tcp else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    status = re.search(r"status: (\w+)", out)
    assert status, out
    answers = [
        " ".join(line.split()) for line in out.splitlines() if line and not line.startswith(";")
    ]
    return status[1], answers


def test_real_capture_dnsmasq_tcpdump_dig(tmp_path: Path, dnsmasq: int) -> None:
    port = dnsmasq
    pcap = tmp_path / "dns.pcap"
    dump = subprocess.Popen(
        [
            tool("tcpdump"),
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
            str(pcap),
            f"port {port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dump.stderr is not None
        line = dump.stderr.readline()  # "listening on lo, ..." once the capture runs
        assert "listening on" in line, line
        got = {q: _dig(port, *q) for q in QUESTIONS}
        deadline = time.monotonic() + 20
        while decode_file(pcap)[1]["responses"] < len(QUESTIONS):  # written as captured (-U)
            assert time.monotonic() < deadline, "tcpdump did not write every packet"
            time.sleep(0.1)
    finally:
        _stop(dump)
    data = tmp_path / "data"
    summary = ingest_json(pcap, data)
    c = summary["pcap"]
    assert c["malformed"] == 0 and c["queries"] == c["responses"] == len(QUESTIONS)
    assert c["answered"] == len(QUESTIONS) and summary["events"] == len(QUESTIONS)
    rows = cli_ndjson(
        "search", "dns.type:answer", "--format", "json", "--limit", "100", "--data-dir", data
    )
    assert len(rows) == len(QUESTIONS)
    for (name, qtype, use_tcp), (status, answers) in got.items():
        match = [
            r
            for r in rows
            if r["dns.question.name"] == name.lower()
            and r["dns.question.type"] == qtype
            and r["network.transport"] == ("tcp" if use_tcp else "udp")
        ]
        assert len(match) == 1, (name, qtype, use_tcp)
        r = match[0]
        assert r["dns.response_code"] == status
        assert (r.get("dns.answers") or []) == answers, (name, answers)
        ips = [a.split()[-1] for a in answers if a.split()[3] in ("A", "AAAA")]
        assert (r.get("dns.resolved_ip") or []) == ips
        assert r["source.ip"] == r["destination.ip"] == "127.0.0.1"
        assert r["destination.port"] == port and r["event.duration"] >= 0
    assert {r["dns.response_code"] for r in rows} == {"NOERROR", "NXDOMAIN"}
    # tshark, told the port is DNS, reads the same messages
    msgs = tshark_messages(pcap, "-d", f"udp.port=={port},dns", "-d", f"tcp.port=={port},dns")
    assert len(msgs) == c["dns_messages"]
    names = {(m[1].lower(), m[3]) for m in msgs}
    assert names == {(q[0].lower(), resp) for q in QUESTIONS for resp in (False, True)}
    df, _ = decode_file(pcap)
    assert df.filter(pl.col("dns.response_code") == "NXDOMAIN").height == 2


def test_live_capture_on_loopback(tmp_path: Path, dnsmasq: int) -> None:
    port = dnsmasq
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    cfg = PcapSourceConfig(type="pcap", interface="lo", filter=f"port {port}")
    src = PcapSource("live", cfg, checkpoints={}, timeout=1.0)
    p = _pipeline(store, src)
    p.start()
    try:
        wait_until(lambda: src.decoder is not None, what="capture opened")
        want = [("corp.example", "A", False), ("blocked.example", "A", False)]
        want += [("www.test.example", "AAAA", True)]
        got = [_dig(port, *q) for q in want]
        wait_until(lambda: store.count("") >= len(want), what="events stored")
    finally:
        p.stop()
        store_rows = store.search("", limit=100).to_pylist()
        store.close()
    assert len(store_rows) == len(want)
    by_name = {r["dns.question.name"]: r for r in store_rows}
    for (name, _, use_tcp), (status, answers) in zip(want, got, strict=True):
        r = by_name[name]
        assert r["dns.response_code"] == status and (r["dns.answers"] or []) == answers
        assert r["network.transport"] == ("tcp" if use_tcp else "udp")
        assert r["destination.port"] == port and r["event.dataset"] == "dns"
    extra = src.metrics.extra
    assert extra["answered"] == len(want) and extra["capture_captured"] >= 2 * len(want)
    assert src.metrics.received >= 2 * len(want)


def test_cli_help_still_lists_ingest() -> None:
    res = cli("ingest", "--help")
    assert res.returncode == 0 and "paths" in res.stdout
