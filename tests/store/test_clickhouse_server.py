"""The ClickHouse event store over the native protocol, against Debian's clickhouse-server.

A throwaway server (Debian bookworm ships 18.16) runs as a subprocess with its own
config in tmp_path, listening on 127.0.0.1 and free ports, as the `clickhouse`
user when the test runs as root. Missing binaries FAIL the test (`make setup`
installs the package), never skip. The same operations as the contract suite
run through `clickhouse://127.0.0.1:<port>/lightsoc` and are compared with the
DuckDB store fed the same events.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightsoc.store.base import Checkpoint, SourceCounters, TimeRange
from lightsoc.store.events_clickhouse import ClickHouseEventStore
from lightsoc.store.events_duckdb import DuckDBEventStore

from .test_events_contract import DAYS, QUERIES, T0, TR, mixed_events

SERVER = "/usr/sbin/clickhouse-server"
START_WAIT_S = 60.0
START_ATTEMPTS = 3

CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>information</level><log>{root}/log/server.log</log>
        <errorlog>{root}/log/error.log</errorlog><size>10M</size><count>1</count></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <max_concurrent_queries>20</max_concurrent_queries>
    <timezone>Pacific/Chatham</timezone>
</yandex>
"""
# not UTC on purpose: the store must not depend on the server's time zone
USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    from clickhouse_driver import Client

    client = Client("127.0.0.1", port=port, connect_timeout=1, send_receive_timeout=5)
    try:
        client.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        client.disconnect()


def _start(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server on free ports (retrying if another process takes one first)."""
    run_as: list[str] = []
    if os.geteuid() == 0:  # data files belong to the server's own user, not root
        ch = pwd.getpwnam("clickhouse")
        run_as = ["runuser", "-u", "clickhouse", "--"]
    last = ""
    for attempt in range(START_ATTEMPTS):
        base = root / f"run{attempt}"
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        tcp, http = _free_port(), _free_port()
        (base / "config.xml").write_text(CONFIG.format(root=base, tcp=tcp, http=http))
        (base / "users.xml").write_text(USERS)
        if run_as:
            for p in [base, *base.rglob("*")]:
                os.chown(p, ch.pw_uid, ch.pw_gid)
        proc = subprocess.Popen(
            [*run_as, SERVER, f"--config-file={base / 'config.xml'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=base,
        )
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(tcp):
                return proc, tcp
            time.sleep(0.2)
        _stop(proc)
        err = base / "log" / "error.log"
        last = err.read_text(errors="replace")[-2000:] if err.exists() else ""
        last = last or (proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else "")
    pytest.fail(f"clickhouse-server did not start: {last}", pytrace=False)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """A running clickhouse-server for this module; its native port."""
    if not Path(SERVER).exists() or shutil.which("runuser") is None:
        pytest.fail(
            f"{SERVER} not found: install Debian's clickhouse-server (`make setup` as root)",
            pytrace=False,
        )
    # Not in pytest's tmp dir: that is private to root, and the server runs as `clickhouse`.
    root = Path(tempfile.mkdtemp(prefix="lightsoc-ch-"))
    os.chmod(root, 0o755)
    try:
        proc, port = _start(root)
        try:
            yield port
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stores(server: int, tmp_path: Path, request: pytest.FixtureRequest):
    from clickhouse_driver import Client

    db = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:40]
    ch = ClickHouseEventStore(f"clickhouse://127.0.0.1:{server}/{db}")
    duck = DuckDBEventStore(tmp_path / "events.duckdb")
    yield duck, ch
    ch.close()
    duck.close()
    client = Client("127.0.0.1", port=server)
    client.execute(f"DROP DATABASE IF EXISTS `{db}`")
    client.disconnect()


def _key(row: tuple) -> tuple:
    """A sort key of histogram_by rows (ties in a bucket have no set order)."""
    return row[0], repr(row[1]), row[2]


def test_server_version_gates_newer_features(stores):
    _, ch = stores
    assert ch.version[:2] == (18, 16)
    assert ch.dialect.json_functions is False  # no JSONExtract: visitParam functions
    ddl = (
        ch.engine.query(
            "SELECT create_table_query FROM system.tables WHERE database = ? AND name = 'events'",
            [ch.db],
        )
        .column(0)[0]
        .as_py()
    )
    assert "ReplacingMergeTree" in ddl and "bloom_filter" not in ddl
    assert "non_replicated_deduplication_window" not in ddl


def test_network_path_agrees_with_duckdb(stores):
    duck, ch = stores
    data = mixed_events()
    for s in stores:
        s.append(
            data.slice(0, 350),
            [Checkpoint("web", "1:2", "/a", "fp", 10, 0, 350)],
            [SourceCounters("web", "file", received=350, events=350, last_seen=T0)],
            batch_id="b-1",
        )
        s.append(data.slice(350), batch_id="b-2")
    for q in QUERIES:
        assert ch.count(q) == duck.count(q), q
        assert ch.count(q, limit=3) == duck.count(q, limit=3)
        for order in ("desc", "asc"):
            assert (
                ch.search(q, TR, limit=20, order=order, offset=3).to_pylist()
                == duck.search(q, TR, limit=20, order=order, offset=3).to_pylist()
            ), q
    for field in ("source.ip", "event.dataset", "user.name"):
        assert ch.top(field, n=5) == duck.top(field, n=5)
    assert ch.top_many(["source.ip", "host.name"], "NOT event.dataset:dns", n=3) == duck.top_many(
        ["source.ip", "host.name"], "NOT event.dataset:dns", n=3
    )
    for interval in (3600, 86400):
        assert ch.histogram(interval, "fail*") == duck.histogram(interval, "fail*")
        got = ch.histogram_by(interval, "event.dataset", "", TR, 2)
        assert sorted(got, key=_key) == sorted(
            duck.histogram_by(interval, "event.dataset", "", TR, 2), key=_key
        )
    for entity in ("root", "10.0.0.1", "198.51.100.4"):
        for kw in ({}, {"order": "desc", "limit": 5}, {"datasets": ["netflow", "unknown"]}):
            assert ch.timeline(entity, **kw).to_pylist() == duck.timeline(entity, **kw).to_pylist()
        a, b = duck.entity_summary(entity), ch.entity_summary(entity)
        assert (b.total, b.datasets, b.roles, b.geo, b.first_seen) == (
            a.total,
            a.datasets,
            a.roles,
            a.geo,
            a.first_seen,
        )
    ids = ["e0001", "e0333", "e0598"]
    around = TimeRange(T0, T0 + __import__("datetime").timedelta(days=DAYS))
    assert ch.events_by_id(ids, around).to_pylist() == duck.events_by_id(ids, around).to_pylist()
    assert ch.checkpoints("web") == duck.checkpoints("web")
    assert ch.source_counters() == duck.source_counters()
    assert (
        ch.search("labels.env:prod", limit=5).to_pylist()
        == duck.search("labels.env:prod", limit=5).to_pylist()
    )


def test_replays_over_the_network_do_not_duplicate(stores):
    _, ch = stores
    data = mixed_events(200)
    counters = [SourceCounters("web", "file", received=200, events=200, last_seen=T0)]
    assert ch.append(data, counters=counters, batch_id="b-1") is True
    page = ch.search("", limit=50).to_pylist()
    assert ch.append(data, counters=counters, batch_id="b-1") is False
    raw = f"SELECT count() FROM `{ch.db}`.events"  # noqa: S608 - without FINAL
    ch.engine.execute(f"SYSTEM STOP MERGES `{ch.db}`.events")
    ch.append(data.slice(20, 100))  # re-read events without a batch id (18.x: no insert token)
    ch.append(data.slice(20, 100))
    assert ch.engine.query(raw).column(0)[0].as_py() == 400  # stored twice ...
    assert ch.count() == 200  # ... read once (FINAL)
    assert ch.search("", limit=50).to_pylist() == page
    assert ch.top("host.name", n=5) == [
        ("bastion", 40),
        ("dns1", 40),
        ("fw1", 40),
        ("misc", 40),
        ("web1", 40),
    ]
    assert ch.source_counters()[0]["received"] == 200
    assert ch.stats()["events_total"] == 200


def test_retention_on_the_server(stores):
    _, ch = stores
    data = mixed_events()
    ch.append(data)
    now = T0 + __import__("datetime").timedelta(days=DAYS, hours=6)
    cutoff = now - __import__("datetime").timedelta(days=2)
    older = sum(1 for t in data["@timestamp"].to_list() if t < cutoff)
    assert ch.retention(2, now=now) == older
    assert ch.count() == data.height - older
    assert ch.count("", TimeRange(None, cutoff)) == 0
