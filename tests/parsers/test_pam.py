"""PAM failure messages of any program: fail2ban's pam-generic lines and tricky rhost fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from lightsoc.parsers.pam import parse_pam
from lightsoc.parsers.syslog import SyslogParser

from .fail2ban import fail2ban_cases

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def parse(lines: list[str]) -> pl.DataFrame:
    return SyslogParser({"now": NOW}).parse(pl.Series(lines, dtype=pl.String))


@pytest.mark.parametrize("name", ["pam-generic", "vsftpd"])
def test_fail2ban_pam_lines_give_the_host(name: str) -> None:
    """Every annotated pam failure line with a host gives it as source.ip or source.domain.

    (Including one fail2ban's regex does not match, the old "vsftpd(pam_unix)[pid]:" tag:
    it is the same pam_unix failure, and its note names the host.)
    """
    cases = [(n, x) for n, x in fail2ban_cases(name) if "authentication failure;" in x]
    df = parse([x for _, x in cases])
    assert (df["event.outcome"] == "failure").all()
    assert (df["event.category"] == "authentication").all()
    hosted = [(i, n["host"]) for i, (n, _) in enumerate(cases) if n.get("host")]
    assert len(hosted) >= 3
    got = [df["source.ip"][i] or df["source.domain"][i] for i, _ in hosted]
    assert got == [h for _, h in hosted]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # the host is the rhost= followed only by user=...: a fake rhost in ruser= or in
        # the (client-chosen) user name does not count
        (
            "pam_unix(auth): authentication failure; logname= uid=0 euid=0 tty=xxx "
            "ruser=test rhost=192.0.2.151 rhost=192.0.2.1",
            ("192.0.2.1", None, "test", "app"),
        ),
        (
            "pam_unix(auth): authentication failure; logname= uid=0 euid=0 tty=xxx ruser= "
            "rhost=192.0.2.2 user=test rhost=192.0.2.152",
            ("192.0.2.2", None, "test rhost=192.0.2.152", "app"),
        ),
        (
            "pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 "
            "tty=dovecot ruser=rhost=1.2.3.4 rhost=192.0.43.10",
            ("192.0.43.10", None, "rhost=1.2.3.4", "dovecot"),
        ),
        (
            "pam_sss(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 "
            "tty=tty1 ruser= rhost= user=alice",
            (None, None, "alice", "login"),
        ),
        (
            "pam_unix(su:auth): authentication failure; logname=bob uid=1000 euid=0 "
            "tty=/dev/pts/0 ruser=bob rhost=  user=root",
            (None, None, "root", "su"),
        ),
        (
            "(pam_unix) authentication failure; logname= uid=0 euid=0 tty= ruser= "
            "rhost=::ffff:66.232.129.62  user=mark",
            ("66.232.129.62", None, "mark", "app"),
        ),
        ("pam_unix(cron:session): session opened for user root", (None, None, None, None)),
        ("authentication failure for a web form", (None, None, None, None)),
    ],
)
def test_shapes(message: str, expected: tuple) -> None:
    out = parse_pam(pl.DataFrame({"message": [message], "_app": ["app"]})).row(0, named=True)
    got = (out["source.ip"], out["source.domain"], out["user.name"], out["service.name"])
    assert got == expected
    if expected[3] is not None:
        assert (out["event.action"], out["event.outcome"]) == ("pam_auth_failure", "failure")
        assert json.loads(out["labels"] or "{}").get("pam.module", "pam_unix").startswith("pam_")
    else:
        assert out["event.action"] is None
