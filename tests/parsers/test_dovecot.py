"""dovecot app parser: fail2ban's annotated dovecot lines and exact fields on realistic lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightsoc.parsers import get_parser

from .fail2ban import fail2ban_cases

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def parse(lines: list[str]) -> pl.DataFrame:
    return get_parser("syslog", {"now": NOW}).parse(pl.Series(lines, dtype=pl.String))


def test_fail2ban_dovecot_source_ip() -> None:
    """Every annotated match line gives fail2ban's host.

    Four of them carry a daemontools TAI64N label (``@400000004c91b044...``) instead
    of a syslog header; one is stamped ``2013-08-11 03:56:40 auth-worker(default):``.
    """
    cases = [(n, x) for n, x in fail2ban_cases("dovecot") if n.get("match")]
    df = parse([x for _, x in cases])
    hits = [g == n["host"] for g, (n, _) in zip(df["source.ip"], cases, strict=True)]
    print(f"fail2ban dovecot: {sum(hits)}/{len(cases)} source.ip == host")
    assert (len(cases), sum(hits)) == (48, 48)
    assert df["_ok"].all()
    assert df["event.action"].is_not_null().all()
    assert (df["event.category"] == "authentication").all()


def test_tai64n_label_is_the_timestamp() -> None:
    """multilog's label: 2^62 + 10 + Unix seconds, then nanoseconds (tai64nlocal's reading)."""
    df = parse(
        [
            "@400000004c91b044077a9e94 imap-login: Info: Aborted login (auth failed, 1 attempts):"
            " user=<martin@example.de>, method=CRAM-MD5, rip=80.187.101.33, lip=80.254.129.240",
            "@4000000065b0e6da00000000 dovecot-auth: pam_unix(dovecot:auth): authentication"
            " failure; logname= uid=0 euid=0 tty=dovecot ruser=web rhost=176.61.140.224",
        ]
    )
    assert df["_ok"].all()
    assert df["@timestamp"].to_list() == [
        datetime(2010, 9, 16, 5, 50, 50, 125476, tzinfo=UTC),
        datetime(2024, 1, 24, 10, 30, 40, tzinfo=UTC),
    ]
    assert df["process.name"].to_list() == ["imap-login", "dovecot-auth"]
    assert df["source.ip"].to_list() == ["80.187.101.33", "176.61.140.224"]
    assert df["event.outcome"].to_list() == ["failure", "failure"]


def test_fail2ban_dovecot_non_matching_lines_are_not_failures() -> None:
    cases = [(n, x) for n, x in fail2ban_cases("dovecot") if n.get("match") is False]
    df = parse([x for _, x in cases])
    assert df.height == 10
    assert (df["event.outcome"].fill_null("unknown") == "unknown").all()


def one(app: str, message: str) -> dict:
    return parse([f"Jan  5 10:00:00 mail {app}: {message}"]).row(0, named=True)


# Formats from dovecot's login-common/client-common.c and auth/passdb-pam.c log messages.
@pytest.mark.parametrize(
    ("app", "message", "expected"),
    [
        (
            "dovecot",
            "imap-login: Login: user=<bob>, method=PLAIN, rip=203.0.113.4, lip=192.0.2.1, "
            "mpid=1234, TLS, session=<abc>",
            ("imap_login", "success", "start", "bob", "203.0.113.4", "imap"),
        ),
        (
            "dovecot[442]",
            "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, "
            "method=PLAIN, rip=203.0.113.4, lip=192.0.2.1, TLS",
            ("imap_login", "failure", "info", "bob", "203.0.113.4", "imap"),
        ),
        (
            "dovecot",
            "pop3-login: Aborted login (auth failed, 3 attempts in 10 secs): user=<eve>, "
            "method=LOGIN, rip=2001:db8::4, lip=2001:db8::1",
            ("pop3_login", "failure", "info", "eve", "2001:db8::4", "pop3"),
        ),
        (
            "pop3-login",
            "Info: Login: user=<carol>, method=PLAIN, rip=198.51.100.8, lip=192.0.2.1",
            ("pop3_login", "success", "start", "carol", "198.51.100.8", "pop3"),
        ),
        (
            "auth",
            "pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot "
            "ruser=bob rhost=203.0.113.7  user=bob",
            ("imap_auth_failure", "failure", "info", "bob", "203.0.113.7", "imap"),
        ),
        (
            "dovecot",
            "auth-worker(3270): pam(bob,203.0.113.8): pam_authenticate() failed: "
            "Authentication failure (password mismatch?)",
            ("imap_auth_failure", "failure", "info", "bob", "203.0.113.8", "imap"),
        ),
    ],
)
def test_dovecot_shapes(app: str, message: str, expected: tuple) -> None:
    r = one(app, message)
    got = (
        r["event.action"],
        r["event.outcome"],
        r["event.type"],
        r["user.name"],
        r["source.ip"],
        r["service.name"],
    )
    assert got == expected
    assert (r["event.category"], r["event.dataset"], r["host.name"]) == (
        "authentication",
        "dovecot",
        "mail",
    )


def test_login_labels() -> None:
    r = one(
        "dovecot",
        "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, "
        "method=PLAIN, rip=203.0.113.4, lip=192.0.2.1",
    )
    assert json.loads(r["labels"]) == {
        "dovecot.method": "PLAIN",
        "dovecot.reason": "auth failed, 1 attempts in 2 secs",
        "dovecot.local_ip": "192.0.2.1",
    }


@given(st.text(max_size=200))
def test_arbitrary_message_never_raises(text: str) -> None:
    msg = text.replace("\n", " ").replace("\r", " ")
    df = parse(
        [
            f"Jan  5 10:00:00 mail dovecot: {msg}",
            f"Jan  5 10:00:00 mail auth-worker(1): {msg}",
            f"Jan  5 10:00:00 mail imap-login: {msg}",
        ]
    )
    assert df.height == 3
