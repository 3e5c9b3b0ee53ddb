"""Real SigmaHQ rules on real data, parsed by the real parsers.

Web attack payloads (../shared/data/web/payloads) are sent as nginx access log
lines; the benign Apache log must stay quiet; sshd lines from Loghub and
fail2ban's annotated test logs go through the sshd rules.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import polars as pl
import pytest
import yaml

from lightsoc.detect import RuleSet
from lightsoc.parsers import get_parser, parse_records
from tests.parsers.fail2ban import DATA, fail2ban_cases

SIGMA = DATA / "sigma" / "rules"
REPO_RULES = Path(__file__).resolve().parents[2] / "rules"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def nginx_line(target: str, status: int = 200, method: str = "GET") -> str:
    return (
        f'203.0.113.9 - - [29/Nov/2026:10:00:00 +0000] "{method} {target} HTTP/1.1" '
        f'{status} 512 "-" "{BROWSER}"'
    )


def parse(lines: list[str], fmt: str = "auto") -> pl.DataFrame:
    return parse_records(pl.DataFrame({"event.original": lines}), get_parser(fmt))


def payload_lines(name: str, status: int = 200) -> tuple[list[str], list[str]]:
    text = (DATA / "web" / "payloads" / name).read_text(errors="replace")
    payloads = [p for p in text.splitlines() if p.strip() and not p.startswith("#")]
    # what a client sends: reserved characters percent-encoded, the rest raw
    lines = [
        nginx_line("/item?id=" + urllib.parse.quote(p, safe="/'()*,=:;<>@!$"), status)
        for p in payloads
    ]
    return payloads, lines


@pytest.fixture(scope="module")
def web_rules() -> RuleSet:
    rs = RuleSet.load([SIGMA / "web"])
    assert len(rs) >= 40
    return rs


def flagged_by(rs: RuleSet, df: pl.DataFrame) -> dict[str, list[int]]:
    return {r.title: rows for r, rows in rs.evaluate_hits(df).hits}


def test_sqli_rule_agrees_with_a_reference_reading_of_its_yaml(web_rules: RuleSet) -> None:
    """SigmaHQ's SQLi rule vs. a plain-Python reading of the same YAML, line by line."""
    doc = yaml.safe_load(
        (SIGMA / "web/webserver_generic/web_sql_injection_in_access_logs.yml").read_text()
    )
    # Sigma wildcards: * any run, ? one character (`select * ` is a pattern)
    keywords = [
        re.compile(re.escape(k.lower()).replace(r"\*", ".*").replace(r"\?", "."), re.S)
        for k in doc["detection"]["keywords"]
    ]
    _, attacks = payload_lines("SQL_Injection.txt")
    _, not_found = payload_lines("SQL_Injection.txt", status=404)
    benign = (DATA / "web" / "apache_logs_benign.log").read_text().splitlines()
    lines = attacks + not_found + benign
    df = parse(lines)
    got = set(flagged_by(web_rules, df).get("SQL Injection Strings In URI", []))
    methods = df["http.request.method"].to_list()
    status = df["http.response.status_code"].to_list()
    expected = {
        i
        for i, line in enumerate(lines)
        if methods[i] == "GET"
        and status[i] != 404
        and any(k.search(line.lower()) for k in keywords)
    }
    assert got == expected
    assert len(got & set(range(len(attacks)))) > len(attacks) / 2  # most payloads are caught
    assert not got & set(range(len(attacks), 2 * len(attacks)))  # the 404 filter holds


@pytest.mark.parametrize(
    ("payloads", "rule", "at_least"),
    [
        ("XSS_Injection.txt", "Cross Site Scripting Strings", 1000),
        ("Directory_Traversal.txt", "Path Traversal Exploitation Attempts", 100),
    ],
)
def test_attack_payloads_raise_their_rule(web_rules, payloads, rule, at_least) -> None:
    _, lines = payload_lines(payloads)
    hits = flagged_by(web_rules, parse(lines))
    assert len(hits.get(rule, [])) >= at_least


def test_benign_web_log_raises_nothing(web_rules: RuleSet) -> None:
    df = parse((DATA / "web" / "apache_logs_benign.log").read_text().splitlines())
    assert df.height >= 9999
    assert flagged_by(web_rules, df) == {}


def test_starter_rules_on_payloads_and_benign() -> None:
    rs = RuleSet.load([REPO_RULES])
    assert not rs.failures and len(rs) >= 4
    for name, rule, share in (
        ("SQL_Injection.txt", "SQL Injection Keywords In Request", 0.6),
        ("XSS_Injection.txt", "Cross-Site Scripting Attempt", 0.65),
        ("Directory_Traversal.txt", "Path Traversal Or Local File Inclusion Attempt", 0.6),
    ):
        _, lines = payload_lines(name)
        hits = flagged_by(rs, parse(lines))
        assert len(hits.get(rule, [])) >= share * len(lines), (name, len(hits.get(rule, [])))
    benign = parse((DATA / "web" / "apache_logs_benign.log").read_text().splitlines())
    flagged = sum(len(rows) for rows in flagged_by(rs, benign).values())
    assert flagged <= benign.height * 0.001


def test_scanner_user_agent_rule() -> None:
    rs = RuleSet.load([REPO_RULES / "web" / "web_scanner_user_agent.yml"])
    lines = [
        nginx_line("/").replace(BROWSER, "sqlmap/1.7.2#stable (https://sqlmap.org)"),
        nginx_line("/").replace(
            BROWSER, "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)"
        ),
        nginx_line("/"),
    ]
    assert flagged_by(rs, parse(lines)) == {"Web Vulnerability Scanner User Agent": [0, 1]}


def test_sshd_rule_on_loghub_counts_the_failure_lines() -> None:
    lines = (DATA / "auth" / "loghub" / "OpenSSH_2k.log").read_text().splitlines()
    rs = RuleSet.load([REPO_RULES / "linux"])
    # failures and refusals naming the client, pre-auth drops included; not pam_unix's
    # duplicate of "Failed password", nor "input_userauth_request" (repeats "Invalid user")
    failure = re.compile(
        r"sshd\[\d+\]: (?:(?:message repeated \d+ times: \[ )?"
        r"Failed (?!publickey for (?!invalid))\S+ for |Invalid user "
        r"|maximum authentication attempts exceeded|Did not receive identification string"
        r"|.*\[preauth\]$)"
    )
    duplicate = re.compile(r"sshd\[\d+\]: (?:pam_unix|PAM \d+ more|input_userauth_request)")
    df = parse(lines)
    # one attempt counts once: the parser turns a pre-auth close after a failure of the same
    # process into ssh_disconnect, and a pam_unix line alone in its process into ssh_login
    action = df["event.action"].to_list()
    expected = [
        i
        for i, ln in enumerate(lines)
        if (failure.search(ln) and not duplicate.search(ln) and action[i] != "ssh_disconnect")
        or (duplicate.search(ln) and action[i] == "ssh_login")
    ]
    closes = sum(
        1 for i, ln in enumerate(lines) if failure.search(ln) and action[i] == "ssh_disconnect"
    )
    got = flagged_by(rs, df)["SSH Authentication Failure"]
    assert got == expected and len(got) > 600 and closes > 400


def test_sshd_rules_on_fail2ban_lines() -> None:
    cases = fail2ban_cases("sshd")
    df = parse([line for _, line in cases])
    rs = RuleSet.load([REPO_RULES / "linux", SIGMA / "linux" / "builtin" / "sshd"])
    out = rs.evaluate(df)
    names = out["rule.name"].to_list()
    for (_note, line), flagged in zip(cases, names, strict=True):
        if "Failed password for" in line or "Invalid user" in line:
            assert flagged and "SSH Authentication Failure" in flagged, line
        if "Accepted password" in line or "Accepted publickey" in line:
            assert not flagged, line


def test_sigma_sshd_rule_on_a_real_exploit_line() -> None:
    """SigmaHQ's 'Suspicious OpenSSH Daemon Error' on sshd lines that carry its strings."""
    rs = RuleSet.load([SIGMA / "linux" / "builtin" / "sshd"])
    lines = [
        "Dec 10 06:55:46 LabSZ sshd[24200]: fatal: buffer_get_string: bad string length 1234",
        "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for root from 1.2.3.4 port 22 ssh2",
    ]
    hits = flagged_by(rs, parse(lines))
    assert [rows for rows in hits.values()] == [[0]]
