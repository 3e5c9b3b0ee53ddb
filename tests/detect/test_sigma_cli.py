"""`lightsoc rules ...`: import counts on the SigmaHQ folders, list, test, simple rules, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightsoc.detect import RuleSet
from lightsoc.detect.build import imported_dir
from tests.cli_helpers import in_process
from tests.parsers.fail2ban import DATA

SIGMA = DATA / "sigma" / "rules"
REPO_RULES = Path(__file__).resolve().parents[2] / "rules"


def rules_json(capsys, *argv) -> dict:  # noqa: ANN001
    code, out, err = in_process(capsys, "rules", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    ("folder", "loaded", "failed", "reason"),
    [
        ("web/webserver_generic", 13, 0, None),
        ("web/proxy_generic", 25, 4, "has no ECS mapping for log source proxy"),
        ("network/dns", 7, 0, None),
        ("network/zeek", 4, 17, "log source not covered (product: zeek, service: smb_files)"),
        ("linux/builtin", 22, 0, None),
        ("linux/process_creation", 0, 122, "log source not covered (category: process_creation"),
    ],
)
def test_import_counts_per_sigmahq_folder(tmp_path, capsys, folder, loaded, failed, reason):
    data = tmp_path / "data"
    res = rules_json(capsys, "import", SIGMA / folder, "--data-dir", data)
    assert (res["loaded"], res["failed"]) == (loaded, failed)
    if reason:
        assert any(reason in f["reason"] for f in res["failures"])
        assert all(f["rule"].startswith("rule '") for f in res["failures"])
    copied = list(imported_dir(data).rglob("*.yml"))
    assert len(copied) == res["files_copied"] <= loaded
    # what was copied loads again, all of it
    again = RuleSet.load([imported_dir(data)]) if copied else RuleSet()
    assert len(again) == loaded and not again.failures


def test_import_text_output_names_each_failure(tmp_path, capsys):
    code, out, _ = in_process(
        capsys, "rules", "import", SIGMA / "network" / "firewall", "--data-dir", tmp_path
    )
    assert code == 0
    lines = out.splitlines()
    assert (
        lines[0].startswith("failed: rule 'Cleartext Protocol Usage'") or "failed: rule" in lines[0]
    )
    assert lines[-1].startswith("0 rule(s) loaded, 1 failed")


def test_import_of_a_missing_path_is_a_usage_error(tmp_path, capsys):
    code, _, err = in_process(capsys, "rules", "import", tmp_path / "nope", "--data-dir", tmp_path)
    assert code == 2 and "no such file or directory" in err


def test_list_shows_builtin_and_imported(tmp_path, capsys):
    data = tmp_path / "data"
    rules_json(capsys, "import", SIGMA / "network" / "dns", "--data-dir", data)
    code, out, err = in_process(capsys, "rules", "list", "--json", "--data-dir", data)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    builtin = [r for r in rows if str(REPO_RULES) in r["origin"]]
    assert len(builtin) == len(RuleSet.load([REPO_RULES])) >= 5
    imported = [r for r in rows if str(REPO_RULES) not in r["origin"]]
    assert len(imported) == 7 and {r["logsource"] for r in imported} == {"dns"}


def test_rules_test_on_a_log_file(tmp_path, capsys):
    res = rules_json(
        capsys,
        "test",
        REPO_RULES / "linux" / "lnx_sshd_auth_failure.yml",
        "--events",
        DATA / "auth" / "loghub" / "OpenSSH_2k.log",
        "--data-dir",
        tmp_path,
    )
    assert res["events"] == 2000 and res["rules"] == 1
    # 661 attempts: a pre-auth close after its connection's failure is not another one
    assert res["matches"]["SSH Authentication Failure"] == res["flagged"] == 661


def test_rules_test_on_stored_events(tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        in_process(
            capsys, "ingest", DATA / "auth" / "loghub" / "OpenSSH_2k.log", "--data-dir", data
        )[0]
        == 0
    )
    res = rules_json(capsys, "test", REPO_RULES, "--since", "3650d", "--data-dir", data)
    assert res["events"] == 2000 and res["matches"]["SSH Authentication Failure"] == 661


def test_rules_test_bad_format_is_a_usage_error(tmp_path, capsys):
    code, _, err = in_process(
        capsys,
        "rules",
        "test",
        REPO_RULES,
        "--events",
        DATA / "web" / "apache_logs_benign.log",
        "--format",
        "nginx_combind",
        "--data-dir",
        tmp_path,
    )
    assert code == 2 and "--format" in err


def test_simple_rules_add_enable_disable(tmp_path, capsys):
    add = ("rules", "add", "--name", "env probe", "--field", "url.original", "--regex", r"/\.env$")
    assert in_process(capsys, *add, "--severity", "high", "--data-dir", tmp_path)[0] == 0
    code, _, err = in_process(capsys, *add, "--data-dir", tmp_path)
    assert code == 2 and "exists already" in err

    def listed() -> list[dict]:
        _, out, _ = in_process(capsys, "rules", "list", "--json", "--data-dir", tmp_path)
        return [r for r in map(json.loads, out.splitlines()) if r["kind"] == "db"]

    (row,) = listed()
    assert row["title"] == "env probe" and row["level"] == "high" and row["id"].startswith("db:")
    assert in_process(capsys, "rules", "disable", "env probe", "--data-dir", tmp_path)[0] == 0
    assert listed() == []
    assert in_process(capsys, "rules", "enable", "env probe", "--data-dir", tmp_path)[0] == 0
    assert len(listed()) == 1
    code, _, err = in_process(capsys, "rules", "disable", "nope", "--data-dir", tmp_path)
    assert code == 2 and "no simple rule named 'nope'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--field", "url.nope", "--contains", "x"), "not an event field"),
        (("--field", "url.original", "--regex", "a(?=b)"), "regex"),
        (("--field", "url.original", "--regex", "(unclosed"), "regex"),
    ],
)
def test_simple_rule_errors_are_usage_errors(tmp_path, capsys, args, message):
    code, _, err = in_process(capsys, "rules", "add", "--name", "x", *args, "--data-dir", tmp_path)
    assert code == 2
    assert message in err.lower()
    assert len(err.strip().splitlines()) == 1
