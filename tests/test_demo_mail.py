"""The demo's mail.log: postfix/dovecot syslog lines that the real parsers read as intended."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import polars as pl
import pytest

from lightsoc.demo_mail import GUESSED, MAIL_IP, USERS, MailTruth, mail_log
from lightsoc.parsers import get_parser

END = datetime(2024, 5, 14, 12, tzinfo=UTC).timestamp()
START = END - 86_400


@pytest.fixture(scope="module")
def generated() -> tuple[list[bytes], MailTruth]:
    return mail_log(random.Random(11), START, END)


@pytest.fixture(scope="module")
def parsed(generated: tuple[list[bytes], MailTruth]) -> pl.DataFrame:
    lines = [x.decode().removesuffix("\n") for x in generated[0]]
    return get_parser("syslog").parse(pl.Series(lines, dtype=pl.String))


def test_every_line_parses_as_syslog_from_mail1(parsed: pl.DataFrame) -> None:
    assert parsed.height > 3_000
    assert parsed["_ok"].all()
    assert set(parsed["host.name"]) == {"mail1"}
    counts = dict(parsed["event.dataset"].value_counts().iter_rows())
    assert counts["dovecot"] > 1_000 and counts["postfix"] > 1_000
    # RFC 3164 has no year: the parser assumes the current one, so compare the span
    ts = parsed["@timestamp"].dt.epoch("s")
    assert ts.is_sorted() and ts.max() - ts.min() < END - START


def test_guesser_failures_match_ground_truth(parsed: pl.DataFrame, generated: tuple) -> None:
    truth: MailTruth = generated[1]
    mine = parsed.filter(pl.col("source.ip") == truth.guesser_ip)
    assert set(mine["event.dataset"]) == {"dovecot"}
    assert set(mine["event.outcome"]) == {"failure"}
    actions = dict(mine["event.action"].value_counts().iter_rows())
    assert actions == {"imap_auth_failure": truth.attempts, "imap_login": truth.connections}
    assert mine.height == truth.failures >= 150
    assert set(mine["user.name"]) == set(truth.mailboxes) and set(truth.mailboxes) <= set(GUESSED)
    # known mailboxes fail on the password, unknown ones as unknown users
    labels = mine.filter(pl.col("event.action") == "imap_login")["labels"]
    assert labels.str.contains('"dovecot.reason":"auth failed, ').all()
    assert labels.str.contains(f'"dovecot.local_ip":"{MAIL_IP}"').all()
    lines = [x.decode() for x in generated[0] if truth.guesser_ip.encode() in x]
    for line in lines:
        if "auth-worker(" in line:
            user = line.split(": pam(", 1)[1].split(",", 1)[0]
            expected = "Password mismatch" if user in USERS else "unknown user"
            assert expected in line, line
    assert 20 * 60 <= truth.last - truth.first <= 45 * 60


def test_normal_users_log_in_all_day(parsed: pl.DataFrame, generated: tuple) -> None:
    truth: MailTruth = generated[1]
    ok = parsed.filter(
        (pl.col("event.dataset") == "dovecot") & (pl.col("event.outcome") == "success")
    )
    assert set(ok["user.name"]) == set(USERS)
    assert truth.guesser_ip not in set(ok["source.ip"])
    assert set(ok["event.action"]) == {"imap_login", "pop3_login"}
    assert set(ok["service.name"]) == {"imap", "pop3"}
    office = ok.filter(pl.col("source.ip").str.starts_with("10.20."))
    assert office.height > ok.height / 2
    hours = ok["@timestamp"].dt.hour().unique()
    assert hours.len() == 24  # mail clients poll at night too


def test_postfix_lines(parsed: pl.DataFrame) -> None:
    pf = parsed.filter(pl.col("event.dataset") == "postfix")
    actions = dict(pf["event.action"].value_counts().iter_rows())
    assert actions["smtp_connect"] == actions["smtp_disconnect"] > 300
    assert actions["smtp_auth_failure"] == actions["smtp_auth_aborted"] >= 20
    fails = pf.filter(pl.col("event.action") == "smtp_auth_failure")
    assert fails["source.ip"].is_not_null().all()
    assert fails["labels"].str.contains('"smtp.sasl_method":"LOGIN"').all()
    sasl = pf.filter(pl.col("event.action") == "smtp_auth_success")
    assert sasl.height > 50 and set(sasl["user.name"]) <= set(USERS)
    assert sasl["source.ip"].str.starts_with("10.20.").all()
    # deliveries (qmgr, local, smtp, cleanup) are plain syslog events from postfix/*
    apps = set(parsed.filter(pl.col("event.dataset") == "syslog")["log.syslog.appname"])
    assert {"postfix/qmgr", "postfix/local", "postfix/smtp", "postfix/cleanup"} <= apps


def test_deterministic_and_short_windows(generated: tuple) -> None:
    again = mail_log(random.Random(11), START, END)
    assert again == generated
    lines, truth = mail_log(random.Random(3), END - 3600, END)
    assert truth.last < END
    assert sum(truth.guesser_ip.encode() in x for x in lines) == truth.failures
