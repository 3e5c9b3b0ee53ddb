"""The built-in SSH, PAM and FTP authentication rules on realistic syslog lines.

Lines are what sshd, PAM and vsftpd write (`auth_lines`); they go through the
real pipeline (`rule_env`). Correlation windows are epoch-aligned tumbling
windows, so bursts are placed inside one window. Real data: Loghub's OpenSSH
log and fail2ban's annotated sshd test log.
"""

from __future__ import annotations

from datetime import datetime

from tests.rules.auth_lines import (
    ATTACKER,
    OFFICE,
    at,
    entities,
    flagged,
    ssh_fail,
    ssh_invalid,
    ssh_ok,
    sshd,
    syslog,
)
from tests.rules.helpers import RuleEnv

BRUTE = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c11"
SPRAY = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c12"
AFTER = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c13"
ENUM = "c8867e5f-cbad-45e7-9ed8-f6b21dc10db7"


# --- SSH brute force, spraying, success after failures ---------------------------------


def test_ssh_brute_force_names_the_attacker(rule_env: RuleEnv) -> None:
    lines = [ssh_fail(at(1 + i * 0.2), ATTACKER, port=40000 + i) for i in range(14)]
    rule_env.ingest(lines)
    (alert,) = rule_env.alerts(BRUTE)
    assert (alert.entity_value, alert.count, alert.severity) == (ATTACKER, 14, "high")
    assert len(flagged(rule_env, "SSH Authentication Failure")) == 14


def test_ssh_brute_force_ignores_typos_and_slow_retries(rule_env: RuleEnv) -> None:
    # a user mistyping twice, then getting in; a script retrying 9 times (one short);
    # 12 failures spread over 30 minutes (never 10 in one 5-minute window)
    lines = [ssh_fail(at(1), OFFICE, "alice"), ssh_fail(at(1.1), OFFICE, "alice")]
    lines += [ssh_ok(at(1.3), OFFICE, "alice", "password")]
    lines += [ssh_fail(at(2 + i * 0.1), "192.0.2.40", "backup") for i in range(9)]
    lines += [ssh_fail(at(i * 2.5), "192.0.2.41", "deploy") for i in range(12)]
    rule_env.ingest(lines)
    assert rule_env.alerts(BRUTE) == []


def test_ssh_password_spraying_counts_distinct_users(rule_env: RuleEnv) -> None:
    users = ["admin", "oracle", "postgres", "ubuntu", "test", "git"]
    lines = [x for i, u in enumerate(users) for x in ssh_invalid(at(1 + i * 0.5), ATTACKER, u)]
    # many failures for two (real) users from another host: brute force, not spraying
    lines += [ssh_fail(at(1 + i * 0.2), "192.0.2.50", ["root", "alice"][i % 2]) for i in range(20)]
    rule_env.ingest(lines)
    (alert,) = rule_env.alerts(SPRAY)
    assert alert.entity_value == ATTACKER and alert.count == len(users)
    assert "192.0.2.50" not in entities(rule_env, SPRAY)
    assert entities(rule_env, BRUTE) == {"192.0.2.50"}


def test_ssh_password_spraying_not_for_few_users(rule_env: RuleEnv) -> None:
    users = ["alice", "alice.smith", "asmith", "alice"]  # someone unsure of their login name
    lines = [x for i, u in enumerate(users) for x in ssh_invalid(at(1 + i), OFFICE, u)]
    rule_env.ingest(lines)
    assert rule_env.alerts(SPRAY) == []


def test_ssh_login_after_failures_fires_on_the_source(rule_env: RuleEnv) -> None:
    lines = [ssh_fail(at(1 + i * 0.1), ATTACKER, "admin") for i in range(8)]
    lines.append(ssh_ok(at(2.5), ATTACKER, "admin", "password"))
    rule_env.ingest(lines)
    (alert,) = rule_env.alerts(AFTER)
    assert (alert.entity_value, alert.severity) == (ATTACKER, "high")


def test_ssh_login_after_failures_needs_failure_first(rule_env: RuleEnv) -> None:
    lines = [
        ssh_ok(at(1), OFFICE, "alice"),  # a login alone
        ssh_ok(at(2), "192.0.2.60", "bob"),
        ssh_fail(at(3), "192.0.2.60", "bob"),  # success, then a failure
        ssh_fail(at(12), "192.0.2.61", "carol"),  # failure and success in different windows
    ]
    rule_env.ingest(lines + [ssh_ok(at(21), "192.0.2.61", "carol")])
    assert rule_env.alerts(AFTER) == []


# --- invalid users --------------------------------------------------------------------


def test_invalid_user_lines_are_flagged(rule_env: RuleEnv) -> None:
    lines = ssh_invalid(at(1), ATTACKER, "oracle")
    lines.append(
        sshd(at(1.1), f"Connection closed by invalid user oracle {ATTACKER} port 51000 [preauth]")
    )
    rule_env.ingest(lines)
    got = flagged(rule_env, "SSH Login Attempt For Unknown User")
    assert got == sorted(lines[:2])  # the preauth disconnect is no further attempt


def test_invalid_user_rule_ignores_existing_users(rule_env: RuleEnv) -> None:
    lines = [
        ssh_fail(at(1), OFFICE, "alice"),
        ssh_ok(at(1.2), OFFICE, "alice", "password"),
        sshd(at(1.3), "pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)"),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "SSH Login Attempt For Unknown User") == []


def test_invalid_user_enumeration_on_a_key_only_server(rule_env: RuleEnv) -> None:
    """No "Failed password" lines at all: only the notices and preauth disconnects."""
    users = ["admin", "support", "user1", "ftpuser", "pi", "oracle", "test"]
    lines: list[str] = []
    for i, u in enumerate(users):
        port = 33000 + i
        lines += [
            sshd(at(2 + i * 0.3), f"Invalid user {u} from {ATTACKER} port {port}"),
            sshd(
                at(2 + i * 0.3),
                f"Connection closed by invalid user {u} {ATTACKER} port {port} [preauth]",
            ),
        ]
    rule_env.ingest(lines)
    (alert,) = rule_env.alerts(ENUM)
    assert (alert.entity_value, alert.count, alert.severity) == (ATTACKER, len(users), "medium")
    assert rule_env.alerts(SPRAY) == [] and rule_env.alerts(BRUTE) == []


def test_invalid_user_enumeration_needs_distinct_names(rule_env: RuleEnv) -> None:
    # the same wrong name ten times (a misconfigured client), four names from another host
    lines = [x for i in range(10) for x in ssh_invalid(at(1 + i * 0.2), OFFICE, "jenkins")]
    lines += [
        x
        for i, u in enumerate(["bob", "bobby", "rob", "robert"])
        for x in ssh_invalid(at(3 + i), "192.0.2.70", u)
    ]
    rule_env.ingest(lines)
    assert rule_env.alerts(ENUM) == []
    assert len(flagged(rule_env, "SSH Login Attempt For Unknown User")) == 28


# --- root login -----------------------------------------------------------------------


def test_root_login_with_password_and_with_key(rule_env: RuleEnv) -> None:
    pw = ssh_ok(at(1), ATTACKER, "root", "password")
    key = ssh_ok(at(2), "192.0.2.80", "root", "publickey")
    rule_env.ingest([pw, key])
    assert flagged(rule_env, "SSH Root Login With Password") == [pw]
    assert flagged(rule_env, "SSH Root Login With Key") == [key]
    levels = {a.rule_name: (a.severity, a.entity_value) for a in rule_env.alerts()}
    assert levels["SSH Root Login With Password"][0] == "high"


def test_root_login_rules_ignore_other_users_and_failures(rule_env: RuleEnv) -> None:
    lines = [
        ssh_ok(at(1), OFFICE, "alice", "password"),
        ssh_ok(at(1), OFFICE, "rootbeer", "publickey"),
        ssh_fail(at(2), ATTACKER, "root"),
        sshd(at(2), f"ROOT LOGIN REFUSED FROM {ATTACKER} port 40022 [preauth]"),
        sshd(at(3), "pam_unix(sshd:session): session opened for user root(uid=0) by (uid=0)"),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "SSH Root Login With Password") == []
    assert flagged(rule_env, "SSH Root Login With Key") == []


# --- sshd failure messages, PAM duplicates ------------------------------------------------


def test_ssh_refusals_and_preauth_failures_are_flagged_with_the_client(rule_env: RuleEnv) -> None:
    ip = ATTACKER
    lines = [
        sshd(at(1), f"ROOT LOGIN REFUSED FROM {ip} port 40001 [preauth]"),
        sshd(at(1.1), f"User root from {ip} not allowed because not listed in AllowUsers"),
        sshd(at(1.2), f"User oracle from {ip} not allowed because listed in DenyUsers"),
        sshd(at(1.3), f"refused connect from {ip} ({ip})"),
        sshd(at(1.4), f"error: PAM: Authentication failure for alice from {ip}"),
        sshd(at(1.5), f"Connection closed by authenticating user root {ip} port 40002 [preauth]"),
        # its own connection (after a failure of the same one it would only end that failure)
        syslog(
            at(1.6),
            "bastion",
            "sshd",
            f"Received disconnect from {ip} port 40003:11: Bye Bye [preauth]",
            78,
        ),
        sshd(at(1.7), f"Unable to negotiate with {ip} port 40004: no matching cipher found."),
        sshd(at(1.8), "User nobody from scanner.example.net not allowed because not in any group"),
    ]
    # one connection: the address is logged first, the verdict without it
    conn = [
        syslog(
            at(2), "bastion", "sshd", f"Connection from {ip} port 40010 on 10.0.0.5 port 22", 77
        ),
        syslog(at(2.1), "bastion", "sshd", "fatal: Unable to negotiate a key exchange method", 77),
    ]
    rule_env.ingest(lines + conn)
    assert flagged(rule_env, "SSH Authentication Failure") == sorted(lines + conn[1:])
    events = rule_env.stores.events.search(
        f'source.ip:"{ip}"', fields=["event.original"], limit=100
    ).to_pylist()
    assert {e["event.original"] for e in events} >= set(lines[:-1] + conn)


def test_ssh_failure_rule_ignores_duplicates_key_offers_and_clean_exits(rule_env: RuleEnv) -> None:
    lines = [
        # the PAM module's line and the notice repeat an attempt sshd logs itself
        sshd(
            at(1),
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
            f"ruser= rhost={OFFICE}  user=alice",
        ),
        sshd(at(1.1), "input_userauth_request: invalid user test [preauth]"),
        # an agent offering keys before the right one
        sshd(at(2), f"Failed publickey for git from {OFFICE} port 57904 ssh2: ECDSA SHA256:x"),
        sshd(at(2), f"Accepted publickey for git from {OFFICE} port 57904 ssh2: RSA SHA256:y"),
        sshd(at(3), f"Connection closed by {OFFICE} port 57904"),
        sshd(at(3), f"Received disconnect from {OFFICE} port 57904:11: disconnected by user"),
        # no address anywhere for this process: nothing to attribute
        syslog(
            at(4), "bastion", "sshd", "Disconnecting: Too many authentication failures [preauth]", 9
        ),
        syslog(at(4), "bastion", "sshd", "User root not allowed because account is locked", 9),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "SSH Authentication Failure") == []
    assert flagged(rule_env, "SSH Login Failure") == []
    assert flagged(rule_env, "PAM Authentication Failure") == []


def test_ssh_brute_force_counts_an_attempt_once(rule_env: RuleEnv) -> None:
    """sshd logs pam_unix's failure and its own "Failed password" per attempt: 12, not 24."""
    lines = []
    for i in range(12):
        t = at(1 + i * 0.2)
        lines += [
            sshd(
                t,
                "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
                f"ruser= rhost={ATTACKER}  user=root",
            ),
            ssh_fail(t, ATTACKER, port=41000 + i),
        ]
    rule_env.ingest(lines)
    (alert,) = rule_env.alerts(BRUTE)
    assert (alert.entity_value, alert.count) == (ATTACKER, 12)
    assert len(flagged(rule_env, "SSH Authentication Failure")) == 12


def test_failed_publickey_for_an_invalid_user_counts(rule_env: RuleEnv) -> None:
    lines = [
        sshd(
            at(1 + i * 0.2),
            f"Failed publickey for invalid user u{i} from {ATTACKER} port {42000 + i} ssh2: "
            "RSA SHA256:v3dpapGleDaUKf4V1vKyR9ZyUgjaJAmoCTcb2PLljI",
        )
        for i in range(10)
    ]
    rule_env.ingest(lines)
    (alert,) = rule_env.alerts(BRUTE)
    assert (alert.entity_value, alert.count) == (ATTACKER, 10)


# --- PAM failures of other programs, vsftpd ------------------------------------------------


def pam_fail(t: datetime, app: str, svc: str, rhost: str, user: str = "admin") -> str:
    return syslog(
        t,
        "files1",
        app,
        f"pam_unix({svc}:auth): authentication failure; logname= uid=0 euid=0 tty=ftp "
        f"ruser={user} rhost={rhost}  user={user}",
    )


def test_pam_failure_burst_on_an_ftp_server(rule_env: RuleEnv) -> None:
    lines = [pam_fail(at(1 + i * 0.3), "vsftpd", "vsftpd", ATTACKER, f"u{i}") for i in range(7)]
    lines += [
        syslog(
            at(4 + i * 0.3),
            "files1",
            "proftpd",
            "(pam_unix) authentication failure; logname= uid=0 euid=0 tty= ruser= "
            f"rhost={ATTACKER}  user=mark",
        )
        for i in range(5)
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "PAM Authentication Failure") == sorted(lines)
    (alert,) = rule_env.alerts("2197523b-5007-4433-a4a9-2671aab0cea5")
    assert (alert.entity_value, alert.count, alert.severity) == (ATTACKER, 12, "medium")


def test_pam_rule_ignores_sessions_and_few_failures(rule_env: RuleEnv) -> None:
    lines = [pam_fail(at(1 + i), "vsftpd", "vsftpd", OFFICE, "bob") for i in range(3)]
    lines += [
        syslog(
            at(2),
            "files1",
            "su",
            "pam_unix(su:session): session opened for user root by bob(uid=1000)",
        ),
        syslog(at(2), "files1", "CRON", "pam_unix(cron:session): session closed for user root"),
        syslog(at(3), "files1", "vsftpd", "pam_unix(vsftpd:auth): check pass; user unknown"),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "PAM Authentication Failure") == sorted(lines[:3])
    assert rule_env.alerts("2197523b-5007-4433-a4a9-2671aab0cea5") == []


def vsftpd_log(t: datetime, pid: int, msg: str) -> str:
    """A vsftpd.log line: ctime stamp (day padded with a space), [pid N]."""
    return f"{t:%a %b} {t.day:2d} {t:%H:%M:%S %Y} [pid {pid}] {msg}"


def test_ftp_login_failure_burst_from_vsftpd_log(rule_env: RuleEnv) -> None:
    lines = [
        vsftpd_log(at(1 + i * 0.4), 27200 + i, f'[admin{i}] FAIL LOGIN: Client "::ffff:{ATTACKER}"')
        for i in range(11)
    ]
    benign = [
        vsftpd_log(at(2), 30000, f'CONNECT: Client "{OFFICE}"'),
        vsftpd_log(at(2), 30001, f'[bob] OK LOGIN: Client "{OFFICE}"'),
        vsftpd_log(
            at(2),
            30001,
            f'[bob] OK DOWNLOAD: Client "{OFFICE}", "/pub/a.iso", 10 bytes, 1.00Kbyte/sec',
        ),
    ]
    rule_env.ingest(lines + benign)
    assert flagged(rule_env, "FTP Login Failure") == sorted(lines)
    (alert,) = rule_env.alerts("53a51fe3-74fa-4a50-8469-b27f21e9a012")
    assert (alert.entity_value, alert.count) == (ATTACKER, 11)


def test_ftp_rule_ignores_successful_sessions(rule_env: RuleEnv) -> None:
    lines = [
        vsftpd_log(at(1), 1, f'[bob] FAIL LOGIN: Client "{OFFICE}"'),
        vsftpd_log(at(1.2), 2, f'[bob] OK LOGIN: Client "{OFFICE}"'),
        vsftpd_log(at(1.3), 2, f'[bob] FAIL UPLOAD: Client "{OFFICE}", "/ro/x", 0.00Kbyte/sec'),
        syslog(at(2), "files1", "vsftpd", f'[carol] OK LOGIN: Client "{OFFICE}"'),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "FTP Login Failure") == lines[:1]
    assert rule_env.alerts("53a51fe3-74fa-4a50-8469-b27f21e9a012") == []
