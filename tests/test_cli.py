"""The `lightsoc` command as a user runs it: real subprocesses, real data, real stores.

DESIGN.md section 8 is the contract: exit codes 0/1/2, one-line errors naming
file, line and field, `--format json` as one ECS object per line, the
`stats --format json` fields, and read commands that go through the API of a
server holding the same data directory.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from tests.cli_helpers import in_process, lines_with, one_line, one_line_error, sshd_events_of
from tests.helpers import (
    SSH_LOG,
    WEB_LOG,
    cli,
    cli_json,
    cli_ndjson,
)

SSH_IP = "173.234.31.186"  # 10 lines of OpenSSH_2k.log
BUSY_IP = "183.62.140.253"  # 867 lines of OpenSSH_2k.log name it; 868 events
BUSY_EVENTS = 868  # checked against sshd_events_of() below
WEB_IP = "83.149.9.216"  # 23 lines of apache_logs_benign.log


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Both sample logs imported once with `ingest --json`; (data dir, summary)."""
    data = tmp_path_factory.mktemp("cli") / "data"
    summary = cli_json("ingest", SSH_LOG, WEB_LOG, "--data-dir", data, "--json")
    return data, summary


# -- ingest ------------------------------------------------------------------
def test_ingest_json_summary(store: tuple[Path, dict]) -> None:
    _, summary = store
    assert summary["files"] == 2
    assert summary["bytes"] == SSH_LOG.stat().st_size + WEB_LOG.stat().st_size
    # one-shot import: the last line of OpenSSH_2k.log has no newline and is a record too
    assert summary["received"] == 12000
    assert summary["events"] == 12000
    assert summary["parse_failures"] == 1  # one access-log line in the sample is cut short
    assert summary["skipped_empty"] == 0
    assert summary["by_dataset"] == {"nginx.access": 9999, "sshd": 2000, "unknown": 1}
    assert summary["seconds"] > 0 and summary["lines_per_s"] > 0


def test_ingest_table_and_same_file_twice_is_stored_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = cli("ingest", SSH_LOG, "--data-dir", data)
    assert first.returncode == 0, first.stderr
    assert f"ingested 1 file(s) into {data}" in first.stdout
    assert re.search(r"│ sshd\s+│\s+2,000 │", first.stdout), first.stdout
    assert "2,000 records, 2,000 events, 0 parse failures, 0 empty lines skipped" in first.stdout

    again = cli_json("ingest", SSH_LOG, "--data-dir", data, "--json")
    assert again["received"] == 0 and again["events"] == 0
    stats = cli_json("stats", "--data-dir", data, "--format", "json")
    assert stats["events_total"] == 2000
    assert stats["sources"][0]["received"] == 2000


def test_ingest_takes_file_names_literally_and_each_file_once(tmp_path: Path) -> None:
    odd = tmp_path / "auth[1] *.log"  # glob characters in a real file name
    shutil.copy(SSH_LOG, odd)
    summary = cli_json(
        "ingest", odd, odd, tmp_path / "." / odd.name, "--json", "--data-dir", tmp_path / "data"
    )
    assert (summary["files"], summary["bytes"]) == (1, SSH_LOG.stat().st_size)
    assert (summary["received"], summary["events"]) == (2000, 2000)


def test_ingest_missing_file_is_exit_1_and_creates_nothing(tmp_path: Path) -> None:
    res = cli("ingest", tmp_path / "nope.log", "--data-dir", tmp_path / "data")
    assert res.returncode == 1
    one_line_error(res, r"not a readable file: .*nope\.log")
    assert not (tmp_path / "data").exists()


def test_ingest_unknown_format_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = in_process(
        capsys, "ingest", SSH_LOG, "--format", "sislog", "--data-dir", tmp_path / "data"
    )
    assert code == 2
    one_line(err, r"--format: no parser named 'sislog'; did you mean 'syslog'\? known: .*")
    assert not (tmp_path / "data").exists()


# -- stats -------------------------------------------------------------------
def test_stats_json(store: tuple[Path, dict]) -> None:
    data, _ = store
    stats = cli_json("stats", "--data-dir", data, "--format", "json")
    assert stats["events_total"] == 12000
    assert stats["parse_failures_total"] == 1
    assert stats["by_dataset"] == {"nginx.access": 9999, "sshd": 2000, "unknown": 1}
    [src] = stats["sources"]
    last_seen = src.pop("last_seen")
    assert datetime.fromisoformat(last_seen).tzinfo is not None
    assert {
        k: src[k] for k in ("id", "type", "received", "events", "parse_failures", "dropped")
    } == {
        "id": "ingest",
        "type": "file",
        "received": 12000,
        "events": 12000,
        "parse_failures": 1,
        "dropped": 0,
    }


def test_stats_table(store: tuple[Path, dict]) -> None:
    data, _ = store
    res = cli("stats", "--data-dir", data)
    assert res.returncode == 0, res.stderr
    assert "events: 12,000   parse failures: 1" in res.stdout
    assert re.search(r"│ nginx\.access\s+│\s+9,999 │", res.stdout)
    assert re.search(r"│ ingest\s+│ file\s+│ 12000\s+│ 12000\s+│ 1\s+│ 0\s+│", res.stdout)


def test_stats_top_lists_the_noisiest_clients_and_domains(store: tuple[Path, dict]) -> None:
    data, _ = store
    stats = cli_json(
        "stats", "--top", "2", "--since", "all", "--data-dir", data, "--format", "json"
    )
    top = stats["top"]
    assert set(top) == {"source.ip", "dns.question.registered_domain", "url.domain"}
    assert top["source.ip"][0] == [BUSY_IP, BUSY_EVENTS]
    assert len(top["source.ip"]) == 2 and top["source.ip"][1][1] <= BUSY_EVENTS
    assert top["dns.question.registered_domain"] == []  # no DNS in these logs
    table = cli("stats", "--top", "2", "--since", "all", "--data-dir", data)
    assert re.search(rf"│ {re.escape(BUSY_IP)}\s+│\s+{BUSY_EVENTS} │", table.stdout), table.stdout


# -- search ------------------------------------------------------------------
def test_search_json_is_one_ecs_object_per_line(store: tuple[Path, dict]) -> None:
    data, _ = store
    res = cli(
        "search",
        f"source.ip:{BUSY_IP}",
        "--since",
        "all",
        "--limit",
        "10000",
        "--format",
        "json",
        "--data-dir",
        data,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == sshd_events_of(SSH_LOG, BUSY_IP) == BUSY_EVENTS
    events = [json.loads(line) for line in lines]
    for e in events:
        assert e["source.ip"] == BUSY_IP
        assert e["event.dataset"] == "sshd"
        assert {"@timestamp", "event.id", "event.ingested", "log.offset"} <= e.keys()
        assert not any(isinstance(v, dict) for v in e.values())  # dotted names, not nested
    assert len({e["event.id"] for e in events}) == BUSY_EVENTS
    # all but the stitched address-less line ("fatal: Write failed") name the client
    assert sum(BUSY_IP in e["event.original"] for e in events) == lines_with(SSH_LOG, BUSY_IP)
    stamps = [e["@timestamp"] for e in events]
    assert stamps == sorted(stamps, reverse=True)  # newest first


def test_search_limit_and_boolean_query(store: tuple[Path, dict]) -> None:
    data, _ = store
    events = cli_ndjson(
        "search",
        f"source.ip:{SSH_IP} OR source.ip:{WEB_IP}",
        "--since",
        "all",
        "--limit",
        "5",
        "--format",
        "json",
        "--data-dir",
        data,
    )
    assert len(events) == 5
    everything = cli_ndjson(
        "search",
        f"source.ip:{SSH_IP} OR source.ip:{WEB_IP}",
        "--since",
        "all",
        "--limit",
        "1000",
        "--format",
        "json",
        "--data-dir",
        data,
    )
    assert len(everything) == sshd_events_of(SSH_LOG, SSH_IP) + lines_with(WEB_LOG, WEB_IP) == 33
    assert everything[:5] == events
    assert {e["event.dataset"] for e in everything} == {"sshd", "nginx.access"}


def test_search_since(store: tuple[Path, dict]) -> None:
    """The samples are months or years old: a recent window finds nothing, 3650d finds them."""
    data, _ = store
    assert (
        cli_ndjson(
            "search",
            f"source.ip:{SSH_IP}",
            "--since",
            "15m",
            "--format",
            "json",
            "--data-dir",
            data,
        )
        == []
    )
    assert (
        len(
            cli_ndjson(
                "search",
                f"source.ip:{SSH_IP}",
                "--since",
                "3650d",
                "--format",
                "json",
                "--data-dir",
                data,
            )
        )
        == 10
    )


def test_search_table_and_fields(store: tuple[Path, dict]) -> None:
    data, _ = store
    res = cli(
        "search",
        f"source.ip:{SSH_IP} AND user.name:webmaster",
        "--since",
        "all",
        "--fields",
        "@timestamp,user.name,source.ip",
        "--data-dir",
        data,
    )
    assert res.returncode == 0, res.stderr
    assert re.search(r"┃ @timestamp\s+┃ user\.name ┃ source\.ip\s+┃", res.stdout)
    assert res.stdout.count(f"│ webmaster │ {SSH_IP} │") == 4
    assert res.stdout.rstrip().endswith("4 event(s)")


def test_tables_show_log_content_as_is(tmp_path: Path) -> None:
    """Log content is attacker-controlled: no rich markup, no terminal escapes."""
    evil = (
        "Dec 10 06:55:46 LabSZ sshd[1]: Failed password for root from 10.9.8.7 port 22 ssh2"
        " [/bold] [red]x[/red] [link=http://evil.example]click[/link] :smile:"
        " \x1b]0;pwned\x07\x1b[2J [preauth]\n"
    )
    (tmp_path / "evil.log").write_text(evil)
    data = tmp_path / "data"
    assert cli("ingest", tmp_path / "evil.log", "--data-dir", data).returncode == 0
    res = cli(
        "search", "10.9.8.7", "--since", "all", "--fields", "event.original", "--data-dir", data
    )
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    shown = " ".join(line.strip("│ ") for line in res.stdout.splitlines() if "│" in line)
    for text in (
        "[/bold] [red]x[/red] [link=http://evil.example]click[/link] :smile:",
        "\\x1b]0;pwned\\x07\\x1b[2J [preauth]",
    ):
        assert text in shown, shown


def test_bad_query_is_exit_2_with_the_place(
    store: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = store
    res = cli("search", "source.ip:(", "--since", "all", "--data-dir", data)
    assert res.returncode == 2
    one_line_error(res, r"query ends after '\(' at position 10; .*")
    assert res.stdout == ""
    code, out, err = in_process(
        capsys, "search", "no.such.field:1", "--since", "all", "--data-dir", data
    )
    assert (code, out) == (2, "")
    one_line(err, r"unknown field 'no\.such\.field'.*")


def test_bad_since_is_exit_2(store: tuple[Path, dict], capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = store
    res = cli("timeline", SSH_IP, "--since", "5x", "--data-dir", data)
    assert res.returncode == 2
    assert "argument --since: invalid duration '5x': use e.g. 15m, 24h, 7d, 3650d or all" in (
        res.stderr
    )
    for since in ("yesterday", "-1h", "", "24", "1.5h", "7 days"):
        code, _, err = in_process(capsys, "search", "x", f"--since={since}", "--data-dir", data)
        assert code == 2, since
        assert "invalid duration" in err, since
    for since in ("15m", "24h", "3650d", "1w", "ALL", "all"):
        code, _, err = in_process(capsys, "search", "x", f"--since={since}", "--data-dir", data)
        assert code == 0, (since, err)


def test_bad_limit_is_exit_2(store: tuple[Path, dict], capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = store
    for limit in ("0", "-5", "ten"):
        code, _, err = in_process(capsys, "search", "x", f"--limit={limit}", "--data-dir", data)
        assert code == 2
        assert "argument --limit:" in err


# -- timeline ----------------------------------------------------------------
def test_timeline_is_in_time_order(store: tuple[Path, dict]) -> None:
    data, _ = store
    events = cli_ndjson(
        "timeline", WEB_IP, "--since", "all", "--format", "json", "--data-dir", data
    )
    assert len(events) == lines_with(WEB_LOG, WEB_IP) == 23
    stamps = [datetime.fromisoformat(e["@timestamp"]) for e in events]
    assert stamps == sorted(stamps)
    assert stamps[0] < stamps[-1]
    assert all(e["source.ip"] == WEB_IP for e in events)

    table = cli("timeline", SSH_IP, "--since", "all", "--data-dir", data)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if SSH_IP in line]
    assert len(rows) == 10
    assert "ssh_reverse_mapping_failed" in rows[0]  # the first thing this address did
