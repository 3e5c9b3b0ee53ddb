"""`lightsoc alerts`: the JSON shape, filters, triage actions, errors; and with a server running."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lightsoc.alerts import ALERT_KEYS, AlertCandidate, AlertStore
from lightsoc.store.state import StateStore
from tests.cli_helpers import in_process, one_line
from tests.helpers import LightsocServer, cli, cli_ndjson, write_config

NOW = datetime.now(UTC).replace(microsecond=0)
REQUIRED = (
    "id",
    "rule.id",
    "rule.name",
    "severity",
    "score",
    "entity.type",
    "entity.value",
    "first_seen",
    "last_seen",
    "count",
    "status",
    "event_ids",
)
HOSTILE = "x' OR 1=1; -- [bold red]\x1b[2J<script>"


def seed(data_dir: Path) -> list[int]:
    """Three alerts written straight into the data directory's state store."""
    state = StateStore.for_data_dir(data_dir)
    try:
        changed = AlertStore(state).raise_alerts(
            [
                AlertCandidate(
                    "ssh_brute",
                    "SSH brute force",
                    "high",
                    "ip",
                    "203.0.113.7",
                    NOW - timedelta(hours=2),
                    last_seen=NOW - timedelta(hours=1),
                    count=40,
                    event_ids=["ev1", "ev2"],
                ),
                AlertCandidate(
                    "web_sqli", "SQL injection", "critical", "host", HOSTILE, NOW, score=97
                ),
                AlertCandidate(
                    "dns_nx", "NXDOMAIN burst", "low", "ip", "10.0.0.9", NOW - timedelta(days=3)
                ),
            ]
        )
    finally:
        state.close()
    return [c.alert.id for c in changed]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./lightsoc.yml from elsewhere
    d = tmp_path / "data"
    d.mkdir()
    seed(d)
    return d


def run_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> list[dict]:
    code, out, err = in_process(capsys, "alerts", *argv)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_json_is_one_alert_object_per_line(capsys, data_dir: Path) -> None:
    rows = run_json(capsys, "--format", "json", "--data-dir", data_dir)
    assert [r["rule.id"] for r in rows] == ["web_sqli", "ssh_brute"]  # last 24 h, newest first
    for r in rows:
        assert set(REQUIRED) <= set(r) and tuple(r) == ALERT_KEYS
        assert isinstance(r["id"], int) and isinstance(r["count"], int)
        assert r["first_seen"].endswith("Z") and r["status"] == "open"
    brute = rows[1]
    assert brute["entity.type"] == "ip" and brute["entity.value"] == "203.0.113.7"
    assert (brute["count"], brute["severity"], brute["score"]) == (40, "high", 75.0)
    assert brute["event_ids"] == ["ev1", "ev2"]
    assert rows[0]["entity.value"] == HOSTILE  # JSON keeps the data exactly


def test_filters(capsys, data_dir: Path) -> None:
    ids = lambda *a: [r["rule.id"] for r in run_json(capsys, "--format", "json", *a)]  # noqa: E731
    dd = ("--data-dir", str(data_dir))
    assert ids(*dd, "--since", "7d") == ["web_sqli", "ssh_brute", "dns_nx"]
    assert ids(*dd, "--since", "all", "--severity", "high") == ["web_sqli", "ssh_brute"]
    assert ids(*dd, "--severity", "critical") == ["web_sqli"]
    assert ids(*dd, "--entity", "203.0.113.7") == ["ssh_brute"]
    assert ids(*dd, "--entity", "x' OR 1=1") == []
    assert ids(*dd, "--rule", "web_sqli") == ["web_sqli"]
    assert ids(*dd, "--status", "closed") == []
    assert ids(*dd, "--limit", "1") == ["web_sqli"]


def test_table_shows_hostile_values_inert(capsys, data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # no wrapping inside the value
    code, out, err = in_process(capsys, "alerts", "--data-dir", data_dir)
    assert code == 0, err
    assert "\x1b" not in out and "\\x1b" in out  # ESC shown, never sent to the terminal
    assert "[bold red]" in out  # rich markup printed, not interpreted
    assert "2 alert(s)" in out


def test_ack_close_fp_and_history(capsys, data_dir: Path) -> None:
    ssh, sqli, nx = _ids(capsys, data_dir)
    rows = run_json(capsys, "ack", str(ssh), str(sqli), "--format", "json", "--data-dir", data_dir)
    assert [(r["id"], r["status"]) for r in rows] == [(ssh, "acknowledged"), (sqli, "acknowledged")]
    for argv in (("close", str(ssh), "--note", "blocked"), ("fp", str(nx))):
        run_json(capsys, *argv, "--format", "json", "--data-dir", data_dir)
    [assigned] = run_json(
        capsys, "assign", str(sqli), "--to", "alice", "--format", "json", "--data-dir", data_dir
    )
    assert assigned["assignee"] == "alice"
    [shown] = run_json(capsys, "show", str(ssh), "--format", "json", "--data-dir", data_dir)
    assert shown["status"] == "closed"
    assert [(h["action"], h["to_status"], h["note"]) for h in shown["history"]] == [
        ("acknowledge", "acknowledged", None),
        ("close", "closed", "blocked"),
    ]
    assert all(h["who"].startswith("cli") for h in shown["history"])
    rows = run_json(capsys, "--format", "json", "--status", "acknowledged", "--data-dir", data_dir)
    assert [(r["id"], r["assignee"]) for r in rows] == [(sqli, "alice")]
    assert (
        run_json(
            capsys,
            "--status",
            "false_positive",
            "--since",
            "all",
            "--format",
            "json",
            "--data-dir",
            data_dir,
        )[0]["id"]
        == nx
    )
    code, out, err = in_process(capsys, "alerts", "show", str(ssh), "--data-dir", data_dir)
    assert code == 0 and "close -> closed" in out and "(blocked)" in out


def _ids(capsys, data_dir: Path) -> tuple[int, int, int]:
    rows = run_json(capsys, "--format", "json", "--since", "all", "--data-dir", data_dir)
    by_rule = {r["rule.id"]: r["id"] for r in rows}
    return by_rule["ssh_brute"], by_rule["web_sqli"], by_rule["dns_nx"]


def test_entities(capsys, data_dir: Path) -> None:
    rows = run_json(capsys, "entities", "--format", "json", "--data-dir", data_dir)
    assert rows[0]["entity.value"] == HOSTILE and rows[0]["score"] == pytest.approx(97, abs=0.5)
    assert {"entity.type", "entity.value", "score", "alerts", "max_severity", "last_seen"} <= set(
        rows[0]
    )
    assert [
        r["entity.value"]
        for r in run_json(
            capsys, "entities", "--top", "1", "--format", "json", "--data-dir", data_dir
        )
    ] == [HOSTILE]


@pytest.mark.parametrize(
    ("argv", "code", "pattern"),
    [
        (("frobnicate",), 2, r"alerts: unknown action 'frobnicate'.*"),
        (("ack",), 2, r"alerts ack: give at least one alert id"),
        (("close", "abc"), 2, r"alerts close: not an alert id: 'abc'"),
        (("assign", "1"), 2, r"alerts assign: give the assignee with --to NAME.*"),
        (("list", "3"), 2, r"alerts list: takes no alert ids.*"),
        (("--status", "done"), 2, r"--status: unknown status 'done'.*"),
        (("ack", "999"), 1, r"no alert 999"),
        (("show", "999"), 1, r"no alert 999"),
    ],
)
def test_errors(capsys, data_dir: Path, argv: tuple[str, ...], code: int, pattern: str) -> None:
    got, _out, err = in_process(capsys, "alerts", *argv, "--data-dir", data_dir)
    assert got == code
    one_line(err, pattern)


def test_a_bad_transition_fails_only_that_alert(capsys, data_dir: Path) -> None:
    ssh, sqli, _nx = _ids(capsys, data_dir)
    run_json(capsys, "close", str(ssh), "--format", "json", "--data-dir", data_dir)
    code, out, err = in_process(
        capsys, "alerts", "ack", str(ssh), str(sqli), "--data-dir", data_dir
    )
    assert code == 1
    one_line(err, rf"alert {ssh} is closed; it cannot become acknowledged")
    assert f"alert {sqli}: acknowledged" in out


def test_missing_data_dir_is_a_runtime_error(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = in_process(capsys, "alerts", "--data-dir", tmp_path / "nope")
    assert code == 1
    one_line(err, r"no lightsoc data in .*nope.*")
    assert not (tmp_path / "nope").exists()


# -- with `lightsoc run` holding the data directory ------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LightsocServer]:
    root = tmp_path_factory.mktemp("alerts-cli")
    config = write_config(root / "lightsoc.yml", {}, data_dir=root / "data")
    srv = LightsocServer(["--config", config], cwd=root, data_dir=root / "data")
    try:
        srv.start()
        yield srv
    finally:
        srv.ensure_stopped()


def test_cli_reads_and_triages_while_the_server_runs(server: LightsocServer) -> None:
    """The real console script, while `lightsoc run` holds the data directory."""
    ids = seed(server.data_dir)
    rows = cli_ndjson("alerts", "--format", "json", "--data-dir", server.data_dir)
    assert sorted(r["id"] for r in rows) == sorted(ids[:2])
    res = cli("alerts", "ack", str(ids[0]), "--data-dir", server.data_dir)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"alert {ids[0]}: acknowledged"
    # the server sees the change at once (same database)
    resp = server.get(f"/api/v1/alerts/{ids[0]}", server.admin_token)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "acknowledged" and body["history"][0]["who"].startswith("cli")
    res = cli("alerts", "--data-dir", server.data_dir)
    assert res.returncode == 0 and "acknowledged" in res.stdout, res.stderr
