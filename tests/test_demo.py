"""`lightsoc demo` end to end: generate, ingest through the pipeline, report, serve."""

from __future__ import annotations

import io
import re
import signal
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace

import httpx
from rich.console import Console

from lightsoc import demo
from lightsoc.ingest import IngestSummary
from tests.helpers import (
    LIGHTSOC,
    TOKEN_LINE,
    cli,
    cli_json,
    cli_ndjson,
    env,
    free_port,
    wait_until,
)


def pcap_records(path: Path) -> int:
    """Packets in a classic (little-endian) pcap file."""
    data, pos, n = path.read_bytes(), 24, 0
    while pos < len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        n += 1
    return n


def search(data_dir: Path, query: str) -> list[dict]:
    return cli_ndjson(
        "search", query, "--since", "all", "--limit", "100000", "--format", "json",
        "--data-dir", data_dir,
    )  # fmt: skip


def test_demo_no_serve_stores_every_generated_line(tmp_path):
    data_dir = tmp_path / "demo"
    res = cli("demo", "--hours", "3", "--no-serve", "--data-dir", data_dir, timeout=300)
    assert res.returncode == 0, res.stderr
    logs = data_dir / "logs"
    generated = sum(
        1
        for p in [*logs.rglob("*.log"), logs / "flows.csv"]
        for line in p.read_bytes().splitlines()
        if line.strip()
    )
    dns_queries = pcap_records(logs / "dns.pcap") // 2  # one event per query and its answer
    stats = cli_json("stats", "--format", "json", "--data-dir", data_dir)
    assert stats["events_total"] == generated + dns_queries
    assert stats["parse_failures_total"] == 0
    assert stats["by_dataset"]["dns"] == dns_queries
    assert {"nginx.access", "apache.access", "sshd", "dovecot", "postfix", "netflow"} <= set(
        stats["by_dataset"]
    )
    assert {s["id"] for s in stats["sources"]} == {
        "web1", "web2", "web3", "auth", "mail", "flows", "dns",
    }  # fmt: skip
    # the report answers the analyst's first questions with the injected attacker
    bf_ip = re.search(r"ssh brute force from (\S+):", res.stdout).group(1)
    assert re.search(rf"failed ssh logins .*\b{re.escape(bf_ip)}\b", res.stdout, re.S)
    assert f"lightsoc timeline {bf_ip}" in res.stdout
    _new_sources_answer(data_dir, res.stdout)
    # the built-in rules raised alerts while the demo was ingested: the brute force
    # (a correlation rule over the stored sshd failures) names the attacker
    alerts = cli_ndjson("alerts", "--since", "all", "--format", "json", "--data-dir", data_dir)
    brute = [a for a in alerts if a["rule.name"] == "SSH Brute Force"]
    assert [a["entity.value"] for a in brute] == [bf_ip]
    assert "alerts raised by the built-in rules" in res.stdout
    # running it again starts from a fresh directory, with the same result
    again = cli("demo", "--hours", "3", "--no-serve", "--data-dir", data_dir, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (
        cli_json("stats", "--format", "json", "--data-dir", data_dir)["events_total"]
        == (stats["events_total"])
    )


def test_demo_says_its_default_directory_and_serves_the_api(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [str(LIGHTSOC), "demo", "--hours", "2", "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if "API listening on" in line:
                break
        text = "".join(out)
        assert "using data directory ./lightsoc-demo" in text
        token = TOKEN_LINE.search(text).group(1)
        base = f"http://127.0.0.1:{port}/api/v1"
        assert httpx.get(f"{base}/stats").status_code == 401
        stats = wait_until(
            lambda: httpx.get(f"{base}/stats", headers={"Authorization": f"Bearer {token}"}).json()
        )
        assert stats["events_total"] > 1000
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(out) + rest
    assert "stopped" in rest
    assert (tmp_path / "lightsoc-demo" / "events.duckdb").exists()


def _new_sources_answer(data_dir: Path, out: str) -> None:
    """Mail, flow and DNS attacks from the printed ground truth are stored and found."""
    guesser = re.search(r"imap password guessing from (\S+):", out).group(1)
    assert re.search(rf"failed imap/pop3 logins .*\b{re.escape(guesser)}\b", out, re.S)
    scanner = re.search(r"port scan from (\S+):", out).group(1)
    assert re.search(rf"port scan: 1-packet SYN flows .*\b{re.escape(scanner)}\b", out, re.S)
    target = re.search(r"syn flood on ([0-9.]+):", out).group(1)
    assert re.search(rf"syn flood: big SYN-only flows .*\b{re.escape(target)}\b", out, re.S)
    beacon, c2 = re.search(r"beacon from (\S+) to ([0-9.]+):", out).groups()
    flows = search(data_dir, f"event.dataset:netflow AND destination.ip:{c2}")
    assert len(flows) >= 30 and {e["source.ip"] for e in flows} == {beacon}

    dga = re.search(r"dga host (\S+):", out).group(1)
    nx = search(data_dir, "event.dataset:dns AND dns.response_code:NXDOMAIN")
    assert len(nx) > 100 and {e["source.ip"] for e in nx} == {dga}
    assert all(re.fullmatch(r"[a-z]{10,18}\.[a-z]+", e["dns.question.name"]) for e in nx)
    host, domain = re.search(r"dns tunnel from (\S+) via (\S+):", out).groups()
    tunnel = search(data_dir, f"dns.question.name:*.{domain}")
    assert len(tunnel) > 500 and {e["source.ip"] for e in tunnel} == {host}
    assert {e["dns.question.type"] for e in tunnel} == {"TXT", "NULL", "CNAME"}
    bad, looker = re.search(r"known-bad domain (\S+) \(.*\) looked up by (\S+)", out).groups()
    hits = search(data_dir, f'dns.question.name:"{bad}"')
    assert len(hits) >= 3 and {e["source.ip"] for e in hits} == {looker}
    assert re.search(rf"NXDOMAIN answers by host .*\b{re.escape(dga)}\b", out, re.S)
    assert re.search(rf"TXT/NULL queries \(tunnel\?\) .*\b{re.escape(host)}\b", out, re.S)


def test_demo_says_dns_is_skipped_without_a_pcap_source(tmp_path, monkeypatch):
    """A build without the pcap source still runs the demo and says what it left out."""
    calls: list[tuple[str, str, str]] = []

    def fake_ingest(config, stores, paths, *, fmt, source_id):  # noqa: ANN001, ANN202
        calls.append((paths[0].name, fmt, source_id))
        return IngestSummary(events=1)

    monkeypatch.setattr(demo, "ingest", fake_ingest)
    monkeypatch.setattr(demo, "registry", SimpleNamespace(names=lambda kind: ["file"]))
    files = SimpleNamespace(
        root=tmp_path,
        formats={
            "web1/access.log": "nginx_combined",
            "flows.csv": "nfdump_csv",
            "dns.pcap": "auto",
        },
    )
    buf = io.StringIO()
    demo._ingest_all(None, None, files, Console(file=buf, width=200))
    assert calls == [("access.log", "nginx_combined", "web1"), ("flows.csv", "nfdump_csv", "flows")]
    assert "skipped  dns.pcap" in buf.getvalue() and "DNS not ingested" in buf.getvalue()
