"""The built-in mail rules (IMAP/POP3, SMTP AUTH, SMTP rejections) on realistic lines.

Lines are what dovecot and postfix write (`auth_lines`), through the real
pipeline (`rule_env`); bursts sit inside one epoch-aligned window.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime

import polars as pl

from lightsoc.detect import RuleSet
from lightsoc.parsers import get_parser, parse_records
from tests.parsers.fail2ban import DATA, fail2ban_cases
from tests.rules.auth_lines import (
    ATTACKER,
    OFFICE,
    at,
    entities,
    flagged,
    imap_fail,
    imap_ok,
    smtp_fail,
    smtp_ok,
    syslog,
)
from tests.rules.helpers import RuleEnv

BRUTE = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c11"
SPRAY = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c12"
MAIL_BURST = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c14"
SMTP_BURST = "f48d000a-34c5-446f-b076-23db768f7940"


# --- IMAP/POP3 and SMTP ----------------------------------------------------------------


def test_imap_pop3_failure_burst(rule_env: RuleEnv) -> None:
    lines = [imap_fail(at(1 + i * 0.3), ATTACKER, f"user{i}") for i in range(6)]
    lines += [imap_fail(at(3 + i * 0.3), ATTACKER, "info", "pop3") for i in range(6)]
    rule_env.ingest(lines)
    (alert,) = rule_env.alerts(MAIL_BURST)
    assert (alert.entity_value, alert.count) == (ATTACKER, 12)


def test_imap_burst_ignores_a_stale_client(rule_env: RuleEnv) -> None:
    # a phone with an old password retrying every 2 minutes, other users logging in fine
    lines = [imap_fail(at(i * 2), OFFICE, "bob") for i in range(5)]
    lines += [imap_ok(at(1 + i * 0.1), OFFICE, f"user{i}") for i in range(20)]
    rule_env.ingest(lines)
    assert rule_env.alerts(MAIL_BURST) == []


def test_smtp_auth_failure_burst(rule_env: RuleEnv) -> None:
    lines = [smtp_fail(at(1 + i * 0.25), ATTACKER, ["LOGIN", "PLAIN"][i % 2]) for i in range(15)]
    rule_env.ingest(lines)
    assert flagged(rule_env, "SMTP Authentication Failure") == sorted(lines)
    (alert,) = rule_env.alerts(SMTP_BURST)
    assert (alert.entity_value, alert.count, alert.severity) == (ATTACKER, 15, "medium")


def test_smtp_burst_ignores_few_failures_and_successes(rule_env: RuleEnv) -> None:
    lines = [smtp_fail(at(1 + i), OFFICE) for i in range(4)]
    lines += [smtp_ok(at(1 + i * 0.2), OFFICE) for i in range(30)]
    lines += [
        syslog(at(2), "mail1", "postfix/smtpd", f"connect from unknown[{ATTACKER}]"),
        syslog(
            at(2), "mail1", "postfix/smtpd", f"lost connection after AUTH from unknown[{ATTACKER}]"
        ),
    ]
    rule_env.ingest(lines)
    assert rule_env.alerts(SMTP_BURST) == []
    assert len(flagged(rule_env, "SMTP Authentication Failure")) == 4


# --- Dovecot: login processes and the auth process ------------------------------------------


def dovecot_auth(t: datetime, ip: str, user: str) -> str:
    return syslog(
        t,
        "mail1",
        "dovecot",
        f"auth-worker(304): pam({user},{ip}): pam_authenticate() failed: "
        "Authentication failure (password mismatch?)",
    )


def test_submission_and_managesieve_failures_count(rule_env: RuleEnv) -> None:
    lines = [imap_fail(at(1 + i * 0.3), ATTACKER, f"u{i}", "submission") for i in range(5)]
    lines += [imap_fail(at(3 + i * 0.3), ATTACKER, f"v{i}", "managesieve") for i in range(5)]
    rule_env.ingest(lines)
    (alert,) = rule_env.alerts(MAIL_BURST)
    assert (alert.entity_value, alert.count) == (ATTACKER, 10)


def test_dovecot_auth_process_lines_are_flagged_not_counted_again(rule_env: RuleEnv) -> None:
    """Each of 12 attempts is logged by auth-worker and imap-login: counted 12 times, not 24."""
    auth, login = [], []
    for i in range(12):
        t = at(1 + i * 0.3)
        auth.append(dovecot_auth(t, ATTACKER, f"user{i}"))
        login.append(imap_fail(t, ATTACKER, f"user{i}"))
    auth.append(
        syslog(
            at(4),
            "mail1",
            "auth",
            "pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 "
            f"tty=dovecot ruser=web rhost={ATTACKER}",
        )
    )
    rule_env.ingest(auth + login + [imap_ok(at(5), OFFICE)])
    assert flagged(rule_env, "Dovecot Auth Backend Failure") == sorted(auth)
    assert flagged(rule_env, "PAM Authentication Failure") == []
    (alert,) = rule_env.alerts(MAIL_BURST)
    assert (alert.entity_value, alert.count) == (ATTACKER, 12)


# --- SMTP client rejections ---------------------------------------------------------------

SMTP_REJECT_BURST = "b6d295c5-08d8-4b05-ad9d-f12c35c76f08"


def smtp_reject(t: datetime, ip: str, rcpt: str, what: str = "Relay access denied") -> str:
    return syslog(
        t,
        "mx1",
        "postfix/smtpd",
        f"NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 <{rcpt}>: {what}; "
        f"from=<spam@example.net> to=<{rcpt}> proto=ESMTP helo=<WIN-6A0KEE6QVP5>",
    )


def test_smtp_client_rejected_burst(rule_env: RuleEnv) -> None:
    lines = [smtp_reject(at(1 + i * 0.2), ATTACKER, f"user{i}@example.org") for i in range(20)]
    lines += [
        syslog(
            at(6),
            "mx1",
            "postfix/smtpd",
            f"improper command pipelining after RSET from unknown[{ATTACKER}]",
        ),
        syslog(
            at(6),
            "mx1",
            "postfix/postscreen",
            f"PREGREET 14 after 0.08 from [{ATTACKER}]:59415: EHLO ylmf-pc\\r\\n",
        ),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "SMTP Client Rejected") == sorted(lines)
    (alert,) = rule_env.alerts(SMTP_REJECT_BURST)
    assert (alert.entity_value, alert.count, alert.severity) == (ATTACKER, 22, "medium")


def test_smtp_client_rejected_ignores_delivered_mail_and_a_few_rejects(rule_env: RuleEnv) -> None:
    rejects = [
        smtp_reject(
            at(1 + i), OFFICE, "nobody@example.org", "Recipient address rejected: User unknown"
        )
        for i in range(5)
    ]
    benign = [
        syslog(at(2), "mx1", "postfix/smtpd", f"connect from mail.example.com[{OFFICE}]"),
        syslog(at(2), "mx1", "postfix/smtpd", f"4F2k1X0abcz: client=mail.example.com[{OFFICE}]"),
        syslog(
            at(2),
            "mx1",
            "postfix/smtpd",
            f"disconnect from mail.example.com[{OFFICE}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
        ),
        smtp_fail(at(3), OFFICE),
    ]
    rule_env.ingest(rejects + benign)
    assert flagged(rule_env, "SMTP Client Rejected") == sorted(rejects)
    assert rule_env.alerts(SMTP_REJECT_BURST) == []


def test_smtp_session_with_failed_auth(rule_env: RuleEnv) -> None:
    lines = [
        syslog(
            at(1),
            "mx1",
            "postfix/smtpd",
            f"disconnect from unknown[{ATTACKER}] ehlo=1 auth=0/1 rset=1 quit=1 commands=3/4",
        ),
        syslog(
            at(1), "mx1", "postfix/smtpd", f"lost connection after AUTH from unknown[{ATTACKER}]"
        ),
    ]
    benign = [
        syslog(
            at(2),
            "mx1",
            "postfix/submission/smtpd",
            f"disconnect from unknown[{OFFICE}] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8",
        ),
        syslog(at(2), "mx1", "postfix/smtpd", f"lost connection after DATA from unknown[{OFFICE}]"),
        syslog(
            at(3),
            "mx1",
            "postfix/smtpd",
            f"warning: unknown[{OFFICE}]: SASL LOGIN authentication failed: Connection lost to authentication server",
        ),
    ]
    rule_env.ingest(lines + benign)
    assert flagged(rule_env, "SMTP Session With Failed AUTH") == sorted(lines)
    assert flagged(rule_env, "SMTP Authentication Failure") == []


# --- real data ----------------------------------------------------------------------------

_FAILED = re.compile(
    r"^(\w{3} +\d+ \d\d):(\d\d):\d\d \S+ sshd\[\d+\]: Failed \S+ for .* from (\S+) port"
)


def test_loghub_openssh_brute_force_sources(rule_env: RuleEnv) -> None:
    """Brute-force entities on Loghub's OpenSSH_2k equal a plain count per 5-minute window."""
    lines = (DATA / "auth" / "loghub" / "OpenSSH_2k.log").read_text().splitlines()
    per_window: Counter[tuple[str, str, int]] = Counter()
    for line in lines:
        m = _FAILED.match(line)
        if m:  # epoch-aligned 5-minute windows = minute // 5 within the hour
            per_window[(m[3], m[1], int(m[2]) // 5)] += 1
    expected = {ip for (ip, _, _), n in per_window.items() if n >= 10}
    accepted = {
        m[1] for line in lines if (m := re.search(r"Accepted \S+ for \S+ from (\S+) port", line))
    }
    assert len(expected) >= 3 and accepted

    rule_env.ingest(lines)
    assert entities(rule_env, BRUTE) == expected
    assert not accepted & entities(rule_env, BRUTE)  # the legitimate user's login
    assert not accepted & entities(rule_env, SPRAY)


def test_fail2ban_sshd_corpus_stream_rules() -> None:
    """fail2ban's annotated sshd corpus through the parsers and the built-in stream rules.

    Unknown-user attempts are exactly the lines a plain regex finds; the locked root
    account (Debian/Ubuntu default) raises no locked-account flag; nobody logs in as root.
    (Stream rules only: the corpus spans 2004-2026, a correlation pass over it is slow.)
    """
    lines = [line for _, line in fail2ban_cases("sshd")]
    df = parse_records(pl.DataFrame({"event.original": lines}), get_parser("auto"))
    names = RuleSet.load(["builtin"]).evaluate(df)["rule.name"].to_list()
    hits = {
        title: [ln for ln, got in zip(lines, names, strict=True) if title in (got or [])]
        for title in (
            "SSH Login Attempt For Unknown User",
            "SSH Login Attempt On Locked Account",
            "SSH Root Login With Password",
            "SSH Root Login With Key",
        )
    }
    unknown = re.compile(r"\b(?:Invalid user \S* ?from |Failed \S+ for (?:invalid|illegal) user )")
    expected = [ln for ln in lines if unknown.search(ln)]
    assert len(expected) >= 10 and hits["SSH Login Attempt For Unknown User"] == expected
    assert any("User root not allowed because account is locked" in ln for ln in lines)
    assert hits["SSH Login Attempt On Locked Account"] == []
    assert hits["SSH Root Login With Password"] == hits["SSH Root Login With Key"] == []


def test_fail2ban_postfix_corpus_smtp_failures() -> None:
    """fail2ban's postfix corpus: the SMTP rule flags exactly the SASL failure lines.

    Except the server's own failure ("Connection lost to authentication server").
    """
    lines = [line for _, line in fail2ban_cases("postfix")]
    df = parse_records(pl.DataFrame({"event.original": lines}), get_parser("auto"))
    out = RuleSet.load(["builtin"]).evaluate(df)
    names = out["rule.name"].to_list()
    got = [
        ln for ln, n in zip(lines, names, strict=True) if "SMTP Authentication Failure" in (n or [])
    ]
    expected = [
        ln
        for ln in lines
        if re.search(r"SASL \S+ authentication failed", ln)
        and "Connection lost to authentication server" not in ln
    ]
    assert len(expected) >= 10 and got == expected
    # rejects, RBL hits and relay denials are not authentication failures
    assert len(lines) > len(expected)
