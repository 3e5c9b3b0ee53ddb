"""postfix app parser: fail2ban's annotated postfix lines and exact fields on realistic lines."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightsoc.parsers import get_parser
from lightsoc.parsers._apps import IP_RE

from .fail2ban import fail2ban_cases

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def parse(lines: list[str]) -> pl.DataFrame:
    return get_parser("syslog", {"now": NOW}).parse(pl.Series(lines, dtype=pl.String))


def test_fail2ban_postfix_source_ip() -> None:
    """Measured: all 50 annotated match lines (smtpd and postscreen) give fail2ban's host."""
    cases = [(n, x) for n, x in fail2ban_cases("postfix") if n.get("match")]
    df = parse([x for _, x in cases])
    hits = [g == n["host"] for g, (n, _) in zip(df["source.ip"], cases, strict=True)]
    print(f"fail2ban postfix: {sum(hits)}/{len(cases)} source.ip == host")
    assert len(cases) == 50
    assert all(hits)
    assert (df["event.dataset"] == "postfix").all()
    assert df["event.action"].is_not_null().all()


def test_courier_smtp_is_not_claimed() -> None:
    """courieresmtpd lines (fail2ban courier-smtp) are not postfix: syslog fields only."""
    df = parse([x for _, x in fail2ban_cases("courier-smtp")])
    assert df.height == 8
    assert (df["event.dataset"] == "syslog").all()
    assert "source.ip" not in df.columns or df["source.ip"].is_null().all()


def one(app: str, message: str) -> dict:
    return parse([f"Jan  5 10:00:00 mx {app}[42]: {message}"]).row(0, named=True)


# Formats from postfix's smtpd(8)/postscreen(8) logging (src/smtpd/smtpd.c, smtpd_sasl_glue.c).
@pytest.mark.parametrize(
    ("app", "message", "expected"),
    [
        (
            "postfix/submission/smtpd",
            "warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: "
            "UGFzc3dvcmQ6, sasl_username=bob@example.com",
            (
                "smtp_auth_failure",
                "failure",
                "authentication",
                "203.0.113.5",
                None,
                None,
                "bob@example.com",
                {"smtp.sasl_method": "LOGIN"},
            ),
        ),
        (
            "postfix/smtpd",
            "warning: mail.example.net[198.51.100.2]: SASL PLAIN authentication failed: ",
            (
                "smtp_auth_failure",
                "failure",
                "authentication",
                "198.51.100.2",
                None,
                "mail.example.net",
                None,
                {"smtp.sasl_method": "PLAIN"},
            ),
        ),
        (
            "postfix/smtpd",
            "4BQJ12345Z: client=laptop.example.org[192.0.2.44], sasl_method=PLAIN, "
            "sasl_username=bob",
            (
                "smtp_auth_success",
                "success",
                "authentication",
                "192.0.2.44",
                None,
                "laptop.example.org",
                "bob",
                {"smtp.sasl_method": "PLAIN"},
            ),
        ),
        (
            "postfix/smtpd",
            "NOQUEUE: reject: RCPT from unknown[203.0.113.9]: 554 5.7.1 <x@example.org>: "
            "Relay access denied; from=<a@b.c> to=<x@example.org> proto=ESMTP helo=<x>",
            (
                "smtp_reject",
                "failure",
                "network",
                "203.0.113.9",
                None,
                None,
                None,
                {"smtp.status_code": "554", "smtp.status": "5.7.1", "smtp.command": "RCPT"},
            ),
        ),
        (
            "postfix/smtpd",
            "connect from unknown[2001:db8::25]",
            ("smtp_connect", "success", "network", "2001:db8::25", None, None, None, {}),
        ),
        (
            "postfix/smtpd",
            "disconnect from relay.example.com[192.0.2.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1",
            (
                "smtp_disconnect",
                "success",
                "network",
                "192.0.2.1",
                None,
                "relay.example.com",
                None,
                {},
            ),
        ),
        (
            "postfix/smtps/smtpd",
            "lost connection after AUTH from unknown[192.0.2.23]",
            (
                "smtp_auth_aborted",
                "failure",
                "authentication",
                "192.0.2.23",
                None,
                None,
                None,
                {"smtp.command": "AUTH"},
            ),
        ),
        (
            "postfix/postscreen",
            "PREGREET 11 after 0.1 from [192.0.2.2]:59415: EHLO x\\r\\n",
            (
                "smtp_postscreen_violation",
                "failure",
                "network",
                "192.0.2.2",
                59415,
                None,
                None,
                {"smtp.command": "PREGREET"},
            ),
        ),
    ],
)
def test_postfix_shapes(app: str, message: str, expected: tuple) -> None:
    r = one(app, message)
    labels = json.loads(r["labels"]) if r["labels"] else {}
    got = (
        r["event.action"],
        r["event.outcome"],
        r["event.category"],
        r["source.ip"],
        r["source.port"],
        r["source.domain"],
        r["user.name"],
        labels,
    )
    assert got == expected
    assert (r["service.name"], r["event.dataset"], r["host.name"]) == ("smtp", "postfix", "mx")


def test_unknown_smtpd_message_keeps_syslog_fields() -> None:
    r = one("postfix/smtpd", "warning: hostname foo does not resolve to address 192.0.2.1")
    assert r["event.action"] is None and r["source.ip"] is None
    assert r["message"].startswith("warning: hostname")


@given(st.text(max_size=200))
def test_arbitrary_message_never_raises(text: str) -> None:
    msg = text.replace("\n", " ").replace("\r", " ")
    df = parse(
        [f"Jan  5 10:00:00 mx postfix/smtpd[1]: {msg}", f"Jan  5 10:00:00 mx postscreen: {msg}"]
    )
    assert df.height == 2
    for ip in df["source.ip"].drop_nulls():
        assert re.match(IP_RE, ip)
