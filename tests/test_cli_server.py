"""CLI commands next to a running `lightsoc run`: reads go through its API."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from tests.cli_helpers import one_line_error
from tests.helpers import (
    SSH_LOG,
    WEB_LOG,
    LightsocServer,
    cli,
    cli_json,
    cli_ndjson,
    free_port,
    wait_until,
    write_config,
)

SSH_IP = "173.234.31.186"  # 10 lines of OpenSSH_2k.log
BUSY_IP = "183.62.140.253"  # 867 lines of OpenSSH_2k.log name it; 868 events
BUSY_EVENTS = 868  # checked against sshd_events_of() below
WEB_IP = "83.149.9.216"  # 23 lines of apache_logs_benign.log


# -- with a running server ---------------------------------------------------
@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """`lightsoc run` with no arguments in a directory holding ./lightsoc.yml without
    `data_dir`: it must use that file and ./lightsoc-data."""
    cwd = tmp_path_factory.mktemp("running")
    shutil.copy(SSH_LOG, cwd / "auth.log")
    write_config(
        cwd / "lightsoc.yml",
        {"auth": {"type": "file", "paths": ["auth.log"], "format": "syslog"}},
        port=free_port(),
    )
    server = LightsocServer([], cwd=cwd, data_dir=cwd / "lightsoc-data")
    try:
        server.start()
        # tailing: the last line has no newline yet, so it is not a record yet
        wait_until(lambda: server.stats()["events_total"] == 1999, 30, "1999 events")
        yield server
    finally:
        server.ensure_stopped()


def test_run_uses_cwd_config_and_default_data_dir(running: LightsocServer) -> None:
    info = json.loads((running.cwd / "lightsoc-data" / "run" / "server.json").read_text())
    assert info["url"] == running.url and info["pid"] == running.pid
    assert info["token"].startswith("lsoc_")
    assert (running.cwd / "lightsoc-data" / "run" / "server.json").stat().st_mode & 0o077 == 0
    assert running.admin_token  # first start of this data directory
    # a read command in the same directory finds the data and the server by itself
    stats = cli_json("stats", "--format", "json", cwd=running.cwd)
    assert stats["events_total"] == 1999


def test_read_commands_go_through_the_running_server(
    running: LightsocServer, tmp_path: Path
) -> None:
    data = running.cwd / "lightsoc-data"
    stats = cli_json(
        "stats",
        "--format",
        "json",
        "--top",
        "1",
        "--since",
        "all",
        "--data-dir",
        data,
        cwd=tmp_path,
    )
    assert "pipeline" in stats  # live metrics: only the server's API has them
    assert stats["top"]["source.ip"] == [["183.62.140.253", BUSY_EVENTS]]  # /aggregate/top
    assert stats["events_total"] == 1999
    assert stats["by_dataset"] == {"sshd": 1999}
    [src] = stats["sources"]
    assert {
        k: src[k] for k in ("id", "type", "received", "events", "parse_failures", "dropped")
    } == {
        "id": "auth",
        "type": "file",
        "received": 1999,
        "events": 1999,
        "parse_failures": 0,
        "dropped": 0,
    }
    assert datetime.fromisoformat(src["last_seen"]).tzinfo is not None
    assert src["lag_bytes"] == 0 and src["errors"] == 0

    found = cli_ndjson(
        "search",
        f"source.ip:{BUSY_IP}",
        "--since",
        "all",
        "--limit",
        "2000",
        "--format",
        "json",
        "--data-dir",
        data,
        cwd=tmp_path,
    )
    assert len(found) == BUSY_EVENTS
    timeline = cli_ndjson(
        "timeline", SSH_IP, "--since", "all", "--format", "json", "--data-dir", data, cwd=tmp_path
    )
    assert len(timeline) == 10
    assert [e["@timestamp"] for e in timeline] == sorted(e["@timestamp"] for e in timeline)

    table = cli("stats", "--data-dir", data, cwd=tmp_path)
    assert table.returncode == 0 and "events: 1,999" in table.stdout


def test_usage_errors_through_the_server_are_exit_2(running: LightsocServer) -> None:
    data = running.cwd / "lightsoc-data"
    res = cli("search", "source.ip:(", "--since", "all", "--data-dir", data)
    assert res.returncode == 2
    one_line_error(res, r"query ends after '\(' at position 10; .*")


def test_ingest_into_a_running_server_is_exit_1(running: LightsocServer, tmp_path: Path) -> None:
    res = cli("ingest", WEB_LOG, "--data-dir", running.cwd / "lightsoc-data", cwd=tmp_path)
    assert res.returncode == 1
    one_line_error(
        res,
        rf".*lightsoc-data is in use by the lightsoc server at "
        rf"{re.escape(running.url)} \(pid {running.pid}\); stop it first.*",
    )
    assert running.stats()["events_total"] == 1999
