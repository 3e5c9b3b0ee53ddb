"""CLI errors: exit codes 1 and 2 with one line naming file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_helpers import in_process, one_line, one_line_error
from tests.helpers import (
    SSH_LOG,
    cli,
    write_config,
)

SSH_IP = "173.234.31.186"  # 10 lines of OpenSSH_2k.log
BUSY_IP = "183.62.140.253"  # 867 lines of OpenSSH_2k.log name it; 868 events
WEB_IP = "83.149.9.216"  # 23 lines of apache_logs_benign.log


# -- errors ------------------------------------------------------------------
def test_missing_data_dir_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = rf"no lightsoc data in {re.escape(str(tmp_path / 'nowhere'))} \(run .*"
    res = cli("stats", "--data-dir", tmp_path / "nowhere")
    assert res.returncode == 1
    one_line_error(res, message)
    for cmd in (["search", "x"], ["timeline", SSH_IP]):
        code, _, err = in_process(capsys, *cmd, "--data-dir", tmp_path / "nowhere")
        assert code == 1, cmd
        one_line(err, message)
    assert not (tmp_path / "nowhere").exists()


BAD_CONFIGS = [
    (
        "sources:\n  auth:\n    type: file\n    paths: [a.log]\nstore:\n  retention_days: -3\n",
        r"bad\.yml:6: store\.retention_days: .*",
    ),
    (
        "sources:\n  auth:\n    type: fil\n    paths: [a.log]\n",
        r"bad\.yml:3: sources\.auth\.type: unknown type 'fil'.*",
    ),
    (
        "sources:\n  auth:\n    type: file\n    paths: [a.log]\n    format: sislog\n",
        r"bad\.yml:5: sources\.auth\.format: no parser named 'sislog'; did you mean 'syslog'\?.*",
    ),
    ("data_dir: ./d\nsorces: {}\n", r"bad\.yml:2: sorces: .*"),
    ("web:\n  listen: localhost\n", r"bad\.yml:2: web\.listen: .*HOST:PORT.*"),
    ("sources: [\n", r"bad\.yml:2: .*YAML.*"),
]


def test_config_error_is_exit_2_naming_file_line_field(tmp_path: Path) -> None:
    text, message = BAD_CONFIGS[0]
    (tmp_path / "bad.yml").write_text(text)
    res = cli("run", "--config", "bad.yml", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    one_line_error(res, message)
    assert res.stdout == ""
    assert not (tmp_path / "lightsoc-data").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    BAD_CONFIGS,
    ids=["range", "type", "format", "unknown-key", "listen", "yaml"],
)
@pytest.mark.parametrize("command", ["run", "stats", "ingest"])
def test_every_command_reports_config_errors_the_same_way(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
    command: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yml").write_text(text)
    if command == "stats" and "format" in message:
        return  # source formats matter to the commands that read sources
    args = [SSH_LOG] if command == "ingest" else []
    code, out, err = in_process(capsys, command, *args, "--config", "bad.yml")
    assert (code, out) == (2, "")
    one_line(err, message)
    assert not (tmp_path / "d").exists() and not (tmp_path / "lightsoc-data").exists()


def test_missing_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = in_process(capsys, "stats", "--config", tmp_path / "nope.yml")
    assert code == 2
    one_line(err, rf"{re.escape(str(tmp_path))}/nope\.yml: config file not found")


def test_port_in_use_is_exit_1_naming_the_setting(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_config(tmp_path / "lightsoc.yml", {}, port=port)
        res = cli("run", cwd=tmp_path)
    assert res.returncode == 1
    one_line_error(
        res, rf"cannot listen on 127\.0\.0\.1:{port} \(web\.listen, lightsoc\.yml line \d+\): .*"
    )
    assert "Admin API token" not in res.stdout  # nothing announced for a server that never ran
    assert not (tmp_path / "lightsoc-data" / "run" / "server.json").exists()
