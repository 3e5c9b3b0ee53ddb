"""`lightsoc demo` end to end: generate, ingest through the pipeline, report, serve."""

from __future__ import annotations

import re
import signal
import subprocess

import httpx

from tests.helpers import LIGHTSOC, TOKEN_LINE, cli, cli_json, env, free_port, wait_until


def test_demo_no_serve_stores_every_generated_line(tmp_path):
    data_dir = tmp_path / "demo"
    res = cli("demo", "--hours", "3", "--no-serve", "--data-dir", data_dir, timeout=300)
    assert res.returncode == 0, res.stderr
    generated = sum(
        1
        for p in (data_dir / "logs").rglob("*.log")
        for line in p.read_bytes().splitlines()
        if line.strip()
    )
    stats = cli_json("stats", "--format", "json", "--data-dir", data_dir)
    assert stats["events_total"] == generated
    assert stats["parse_failures_total"] == 0
    assert {"nginx.access", "apache.access", "sshd"} <= set(stats["by_dataset"])
    assert {s["id"] for s in stats["sources"]} == {"web1", "web2", "web3", "auth"}
    # the report answers the analyst's first questions with the injected attacker
    bf_ip = re.search(r"ssh brute force from (\S+):", res.stdout).group(1)
    assert re.search(rf"failed ssh logins .*\b{re.escape(bf_ip)}\b", res.stdout, re.S)
    assert f"lightsoc timeline {bf_ip}" in res.stdout
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
