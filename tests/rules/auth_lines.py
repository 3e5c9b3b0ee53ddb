"""Syslog lines as sshd, dovecot and postfix write them, for the authentication rule tests.

RFC 3339 timestamps (rsyslog's file format) keep the year unambiguous.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.rules.helpers import T0, RuleEnv

ATTACKER = "203.0.113.66"
OFFICE = "198.51.100.20"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def syslog(t: datetime, host: str, app: str, msg: str, pid: int = 4242) -> str:
    """One rsyslog file line (RSYSLOG_FileFormat: RFC 3339 timestamp)."""
    return f"{t.strftime('%Y-%m-%dT%H:%M:%S.%f')}+00:00 {host} {app}[{pid}]: {msg}"


def sshd(t: datetime, msg: str) -> str:
    return syslog(t, "bastion", "sshd", msg)


def ssh_fail(t: datetime, ip: str, user: str = "root", port: int = 50000) -> str:
    return sshd(t, f"Failed password for {user} from {ip} port {port} ssh2")


def ssh_invalid(t: datetime, ip: str, user: str, port: int = 51000) -> list[str]:
    """An attempt on a password server: the notice, then the failure."""
    return [
        sshd(t, f"Invalid user {user} from {ip} port {port}"),
        sshd(t, f"Failed password for invalid user {user} from {ip} port {port} ssh2"),
    ]


def ssh_ok(t: datetime, ip: str, user: str = "alice", method: str = "publickey") -> str:
    tail = (
        ": ED25519 SHA256:Zx1pQ0m3nH2b9yQ0xW9z6c5F8sT1kV4rL7aB2dE3fG4"
        if method != "password"
        else ""
    )
    return sshd(t, f"Accepted {method} for {user} from {ip} port 52311 ssh2{tail}")


def imap_fail(t: datetime, ip: str, user: str = "alice", proto: str = "imap") -> str:
    return syslog(
        t,
        "mail1",
        "dovecot",
        f"{proto}-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{user}>, "
        f"method=PLAIN, rip={ip}, lip=10.0.0.25, TLS, session=<{t:%M%S%f}>",
    )


def imap_ok(t: datetime, ip: str, user: str = "alice") -> str:
    return syslog(
        t,
        "mail1",
        "dovecot",
        f"imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=10.0.0.25, "
        f"mpid=3121, TLS, session=<{t:%M%S%f}>",
    )


def smtp_fail(t: datetime, ip: str, method: str = "LOGIN") -> str:
    return syslog(
        t,
        "mail1",
        "postfix/submission/smtpd",
        f"warning: unknown[{ip}]: SASL {method} authentication failed: UGFzc3dvcmQ6",
    )


def smtp_ok(t: datetime, ip: str, user: str = "alice@example.org") -> str:
    return syslog(
        t,
        "mail1",
        "postfix/submission/smtpd",
        f"4F2k1X0abcz: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}",
    )


def flagged(env: RuleEnv, title: str) -> list[str]:
    """The lines `title` flagged, sorted (the store does not keep input order)."""
    return sorted(env.flagged(title))


def entities(env: RuleEnv, rule_id: str) -> set[str]:
    return {a.entity_value for a in env.alerts(rule_id)}
