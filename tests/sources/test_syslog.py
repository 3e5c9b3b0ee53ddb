"""The "syslog" source with real senders (util-linux `logger`, raw sockets) on loopback.

Every test runs a real Pipeline over a DuckDB store; listeners are on
127.0.0.1 with ports found free by binding port 0 first.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lightsoc import registry
from lightsoc.config import SyslogSourceConfig
from lightsoc.enrich.chain import build_enrichers
from lightsoc.pipeline import Pipeline, SourceSpec
from lightsoc.sources.syslog import SyslogSource
from lightsoc.store.events_duckdb import DuckDBEventStore
from tests.helpers import LightsocServer, cli_json, write_config
from tests.helpers import free_port as free_tcp_port
from tests.sources.tailing import TIMEOUT, wait_until

LOGGER = "/usr/bin/logger"
FAILED = "Failed password for root from 203.0.113.7 port 4242 ssh2"
FIELDS = [
    "event.id",
    "event.original",
    "log.offset",
    "log.source.address",
    "log.syslog.appname",
    "log.syslog.hostname",
    "log.syslog.structured_data",
    "log.syslog.msgid",
    "user.name",
    "source.ip",
    "event.action",
    "event.outcome",
    "message",
    "tags",
]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def logger(*args: str, stdin: str | None = None) -> None:
    subprocess.run([LOGGER, "-n", "127.0.0.1", *args], input=stdin, text=True, check=True)


class Syslog:
    """A SyslogSource in a Pipeline over a DuckDB store."""

    def __init__(self, tmp_path: Path, enrichers: list, **options: Any) -> None:
        self.udp, self.tcp = free_udp_port(), free_tcp_port()
        options.setdefault("listen", [f"udp://127.0.0.1:{self.udp}", f"tcp://127.0.0.1:{self.tcp}"])
        self.config = SyslogSourceConfig(type="syslog", format="syslog", **options)
        self.store = DuckDBEventStore(tmp_path / "events.duckdb")
        self.source = SyslogSource(
            "net", self.config, checkpoints={}, one_shot=False, batch_max_rows=1000
        )
        spec = SourceSpec("net", "syslog", format="syslog")
        self.pipeline = Pipeline(self.store, [self.source], {"net": spec}, enrichers)
        self.pipeline.start()

    def wait_bound(self) -> Syslog:
        n = len(self.config.listen)
        wait_until(lambda: all(self.source.bound_port(i) for i in range(n)), what="listeners bound")
        return self

    def close(self) -> None:
        self.pipeline.stop(timeout=TIMEOUT)
        assert self.pipeline.wait(0), "pipeline did not stop"
        self.store.close()

    def count(self) -> int:
        return self.store.count()

    def wait_count(self, n: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        wait_until(lambda: self.count() >= n, timeout, f"{n} events (have {self.count()})")
        rows = self.store.search(fields=FIELDS, limit=1_000_000).to_pylist()
        assert len(rows) == n
        return sorted(rows, key=lambda r: r["log.offset"])

    def tcp_client(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.tcp), timeout=5)


@pytest.fixture(scope="module")
def enrichers():
    return build_enrichers({})


@pytest.fixture
def syslog(tmp_path, enrichers):
    s = Syslog(tmp_path, enrichers, max_message_bytes=4096).wait_bound()
    yield s
    s.close()


def assert_sshd_failure(row: dict[str, Any]) -> None:
    assert row["log.syslog.appname"] == "sshd"
    assert row["user.name"] == "root"
    assert row["source.ip"] == "203.0.113.7"
    assert row["event.action"] == "ssh_login"
    assert row["event.outcome"] == "failure"
    assert row["message"] == FAILED
    assert row["log.source.address"].startswith("127.0.0.1:")
    assert row["tags"] == []


def test_registered():
    assert registry.get("sources", "syslog") is SyslogSource


def test_udp_rfc3164(syslog):
    logger("-P", str(syslog.udp), "-d", "--rfc3164", "-t", "sshd", "-p", "authpriv.info", FAILED)
    [row] = syslog.wait_count(1)
    assert_sshd_failure(row)
    assert row["event.original"].startswith("<86>")  # authpriv(10)*8 + info(6)
    m = syslog.pipeline.metrics()["sources"]["net"]
    assert m["received"] == 1 and m["bytes"] == len(row["event.original"])
    assert m["extra"]["udp_rcvbuf"] >= 65536
    assert m["senders"]["127.0.0.1"]["received"] == 1
    assert m["senders"]["127.0.0.1"]["last_seen"]
    assert syslog.pipeline.metrics()["sources"]["net"]["senders"] == m["senders"]


def test_udp_rfc5424_structured_data(syslog):
    logger(
        *("-P", str(syslog.udp), "-d", "--rfc5424", "-t", "sshd", "-p", "authpriv.info"),
        *("--msgid", "AUTH", "--sd-id", "origin@32473", "--sd-param", 'ip="10.1.2.3"'),
        FAILED,
    )
    [row] = syslog.wait_count(1)
    assert_sshd_failure(row)
    assert row["log.syslog.msgid"] == "AUTH"
    sd = json.loads(row["log.syslog.structured_data"])
    assert sd["origin@32473"] == {"ip": "10.1.2.3"}


def test_tcp_lf(syslog):
    logger("-P", str(syslog.tcp), "-T", "--rfc3164", "-t", "sshd", "-p", "authpriv.info", FAILED)
    [row] = syslog.wait_count(1)
    assert_sshd_failure(row)


def test_tcp_octet_counting(syslog):
    logger(
        *("-P", str(syslog.tcp), "-T", "--octet-count", "--rfc5424"),
        *("-t", "sshd", "-p", "authpriv.info", FAILED),
    )
    [row] = syslog.wait_count(1)
    assert_sshd_failure(row)
    assert row["event.original"].startswith("<86>1 ")  # the count is framing, not data


def test_many_messages_over_one_tcp_connection(syslog, tmp_path):
    lines = [
        f"Failed password for user{i} from 198.51.100.{i % 250} port {i} ssh2" for i in range(2000)
    ]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n")
    logger(
        "-P", str(syslog.tcp), "-T", "--rfc3164", "-t", "sshd", "-p", "auth.info", "-f", str(path)
    )
    rows = syslog.wait_count(2000, timeout=30)
    assert [r["message"] for r in rows] == lines
    assert [r["user.name"] for r in rows] == [f"user{i}" for i in range(2000)]
    assert len({r["event.id"] for r in rows}) == 2000
    assert {r["log.source.address"] for r in rows} == {rows[0]["log.source.address"]}


def test_octet_counting_and_lf_mixed_from_a_python_socket(syslog):
    msgs = [f"<38>Oct 11 22:14:{i:02d} host sshd[1]: {FAILED}" for i in range(50)]
    data = b""
    for i, m in enumerate(msgs):
        raw = m.encode()
        data += f"{len(raw)} ".encode() + raw if i % 2 else raw + (b"\r\n" if i % 3 else b"\0")
    with syslog.tcp_client() as c:
        for i in range(0, len(data), 7):  # tiny writes: frames split anywhere
            c.sendall(data[i : i + 7])
    rows = syslog.wait_count(50)
    assert [r["event.original"] for r in rows] == msgs
    for r in rows:
        assert_sshd_failure(r)


def test_oversize_message_is_truncated_and_tagged(tmp_path, enrichers):
    s = Syslog(tmp_path, enrichers, max_message_bytes=100).wait_bound()
    try:
        big = b"<38>Oct 11 22:14:15 host sshd[1]: " + b"A" * 5000
        with s.tcp_client() as c:
            c.sendall(big + b"\n" + b"<38>Oct 11 22:14:16 host sshd[1]: after\n")
            c.sendall(b"%d " % len(big) + big)  # octet counted, oversize
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(big, ("127.0.0.1", s.udp))
        rows = s.wait_count(4)
        by_text = {r["event.original"]: r for r in rows}
        assert by_text["<38>Oct 11 22:14:16 host sshd[1]: after"]["tags"] == []
        cut = [r for r in rows if "truncated" in r["tags"]]
        assert len(cut) == 3
        assert {r["event.original"] for r in cut} == {big[:100].decode()}
        assert s.source.metrics.truncated == 3
    finally:
        s.close()


def test_invalid_utf8_is_escaped_and_tagged(syslog):
    with syslog.tcp_client() as c:
        c.sendall(b"<38>Oct 11 22:14:15 host app[1]: caf\xe9 \xff\n")
    [row] = syslog.wait_count(1)
    assert row["event.original"] == "<38>Oct 11 22:14:15 host app[1]: caf\\xe9 \\xff"
    assert "invalid_utf8" in row["tags"]


def test_half_line_before_close_is_a_record(syslog):
    with syslog.tcp_client() as c:
        c.sendall(b"<38>Oct 11 22:14:15 host sshd[1]: Failed password for root from 203.0.113.7")
    [row] = syslog.wait_count(1)
    assert row["event.original"].endswith("from 203.0.113.7")
    assert row["log.syslog.appname"] == "sshd"


def test_silent_and_half_open_clients_do_not_block_others(syslog):
    silent = syslog.tcp_client()  # connects, never sends
    partial = syslog.tcp_client()  # sends half a message, then nothing
    partial.sendall(b"<38>Oct 11 22:14:15 host sshd[1]: half")
    try:
        for i in range(3):
            logger("-P", str(syslog.tcp), "-T", "--rfc3164", "-t", "sshd", f"{FAILED} {i}")
        logger("-P", str(syslog.udp), "-d", "--rfc3164", "-t", "sshd", f"{FAILED} udp")
        rows = syslog.wait_count(4)
        assert sorted(r["message"] for r in rows) == [f"{FAILED} {i}" for i in (0, 1, 2, "udp")]
    finally:
        silent.close()
        partial.close()
    rows = syslog.wait_count(5)  # the half message arrives once its sender closes
    assert any(r["message"] == "half" for r in rows)


def test_port_in_use_is_reported_not_fatal(tmp_path, enrichers):
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    udp = free_udp_port()
    s = Syslog(tmp_path, enrichers, listen=[f"udp://127.0.0.1:{udp}", f"tcp://127.0.0.1:{port}"])
    try:
        wait_until(lambda: s.source.metrics.last_error, what="the bind error")
        m = s.pipeline.metrics()["sources"]["net"]
        assert f"tcp://127.0.0.1:{port}" in m["last_error"]
        assert "in use" in m["last_error"]
        assert m["errors"] == 1
        # the other listener serves meanwhile
        logger("-P", str(udp), "-d", "--rfc3164", "-t", "sshd", "-p", "authpriv.info", FAILED)
        [row] = s.wait_count(1)
        assert_sshd_failure(row)
        # once the port is free the listener is bound by a retry
        taken.close()
        wait_until(lambda: s.source.bound_port(1) == port, what="the retried bind")
        assert s.source.metrics.last_error is None
        logger("-P", str(port), "-T", "--rfc3164", "-t", "sshd", "-p", "authpriv.info", FAILED)
        s.wait_count(2)
    finally:
        taken.close()
        s.close()


def test_bad_host_is_reported(tmp_path, enrichers):
    s = Syslog(tmp_path, enrichers, listen=["udp://host.invalid:5514"])
    try:
        wait_until(lambda: s.source.metrics.last_error, what="the bind error")
        assert "udp://host.invalid:5514" in s.source.metrics.last_error
    finally:
        s.close()


def test_lightsoc_run_with_a_syslog_source(tmp_path):
    udp, tcp = free_udp_port(), free_tcp_port()
    data = tmp_path / "data"
    write_config(
        tmp_path / "lightsoc.yml",
        {
            "net": {
                "type": "syslog",
                "listen": [f"udp://127.0.0.1:{udp}", f"tcp://127.0.0.1:{tcp}"],
                "format": "syslog",
            }
        },
        data_dir=data,
    )
    server = LightsocServer(["--config", tmp_path / "lightsoc.yml"], cwd=tmp_path, data_dir=data)
    try:
        server.start()
        # listeners are bound in order in one go: once TCP accepts, UDP is bound too
        wait_until(lambda: _connects(tcp), what="the TCP listener")
        for i in range(5):
            port, proto = (udp, "-d") if i % 2 else (tcp, "-T")
            logger("-P", str(port), proto, "--rfc3164", "-t", "sshd", f"{FAILED} #{i}")
        wait_until(lambda: server.stats()["events_total"] == 5, 30, "5 events")
        stats = cli_json("stats", "--format", "json", "--data-dir", data, cwd=tmp_path)
        assert stats["events_total"] == 5
        [src] = [s for s in stats["sources"] if s["id"] == "net"]
        assert src["type"] == "syslog" and src["events"] == 5 and src["received"] == 5
        [live] = [s for s in server.stats()["sources"] if s["id"] == "net"]
        assert live["senders"]["127.0.0.1"]["received"] == 5
    finally:
        server.ensure_stopped()
