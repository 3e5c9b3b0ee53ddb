"""vsftpd parser: its own log file (ctime stamp, [pid N]) and its syslog messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import get_parser, parse_records
from lightsoc.parsers.syslog import SyslogParser
from lightsoc.parsers.vsftpd import VsftpdParser

from .fail2ban import fail2ban_cases

LOG = [
    'Fri Jan 19 12:20:33 2007 [pid 27202] [anonymous] FAIL LOGIN: Client "64.106.46.98"',
    'Thu Sep  8 00:39:49 2016 [pid 15019] [guest] FAIL LOGIN: Client "::ffff:192.0.2.1", '
    '"User is not in the allow user list."',
    'Sun Jan 21 10:00:00 2024 [pid 2] CONNECT: Client "::ffff:192.0.2.7"',
    'Sun Jan 21 10:00:01 2024 [pid 1] [bob] OK LOGIN: Client "192.0.2.7"',
    'Sun Jan 21 10:00:05 2024 [pid 3] [bob] OK DOWNLOAD: Client "192.0.2.7", "/pub/f.iso", '
    "12345 bytes, 1024.00Kbyte/sec",
    'Sun Jan 21 10:00:06 2024 [pid 3] [bob] FAIL UPLOAD: Client "192.0.2.7", "/ro/x", 0.00Kbyte/sec',
    'Sun Jan 21 10:00:07 2024 [pid 3] [bob] OK DELETE: Client "192.0.2.7", "/pub/old"',
    'Sun Jan 21 10:00:08 2024 [pid 3] [bob] FTP command: Client "192.0.2.7", "PWD"',
]


def parse(lines: list[str], **options: object) -> pl.DataFrame:
    return VsftpdParser(dict(options)).parse(pl.Series(lines, dtype=pl.String))


def test_registered() -> None:
    assert registry.get("parsers", "vsftpd") is VsftpdParser


def test_log_file_fields() -> None:
    df = parse(LOG)
    assert df["_ok"].all()
    assert df["event.action"].to_list() == [
        "ftp_login",
        "ftp_login",
        "ftp_connect",
        "ftp_login",
        "ftp_download",
        "ftp_upload",
        "ftp_delete",
        None,
    ]
    assert df["event.outcome"].to_list() == [
        "failure",
        "failure",
        "success",
        "success",
        "success",
        "failure",
        "success",
        None,
    ]
    assert df["event.category"].to_list()[:5] == [
        "authentication",
        "authentication",
        "network",
        "authentication",
        "file",
    ]
    assert df["event.type"].to_list()[:7] == [
        "info",
        "info",
        "start",
        "start",
        "access",
        "creation",
        "deletion",
    ]
    assert df["source.ip"].to_list()[:4] == ["64.106.46.98", "192.0.2.1", "192.0.2.7", "192.0.2.7"]
    assert df["user.name"].to_list()[:4] == ["anonymous", "guest", None, "bob"]
    assert df["process.pid"].to_list()[:3] == [27202, 15019, 2]
    assert df["@timestamp"].to_list()[:2] == [
        datetime(2007, 1, 19, 12, 20, 33, tzinfo=UTC),
        datetime(2016, 9, 8, 0, 39, 49, tzinfo=UTC),
    ]
    assert json.loads(df["labels"][1]) == {"ftp.reason": "User is not in the allow user list."}
    assert json.loads(df["labels"][4]) == {"ftp.path": "/pub/f.iso"}
    assert set(df["event.dataset"]) == {"vsftpd"}


def test_timezone_option() -> None:
    df = parse(LOG[:1], timezone="Europe/Berlin")
    assert df["@timestamp"][0] == datetime(2007, 1, 19, 11, 20, 33, tzinfo=UTC)


def test_auto_detection_and_fail2ban_lines() -> None:
    """fail2ban's vsftpd corpus mixes syslog (pam_unix) and vsftpd.log lines: all parse."""
    cases = fail2ban_cases("vsftpd")
    df = parse_records(pl.DataFrame({"event.original": [x for _, x in cases]}), get_parser("auto"))
    assert df["_parse_ok"].all()
    own = df.filter(pl.col("event.dataset") == "vsftpd")
    assert own.height == 2
    assert own["source.ip"].to_list() == ["64.106.46.98", "192.0.2.1"]
    hosts = [n.get("host") for n, x in cases if "FAIL LOGIN" in x]
    assert own["source.ip"].to_list() == hosts


def test_syslog_messages() -> None:
    """syslog_enable=YES: the same messages under the vsftpd tag."""
    df = SyslogParser().parse(
        pl.Series(
            [
                'Jan 21 10:00:01 ftp1 vsftpd[811]: [bob] FAIL LOGIN: Client "::ffff:203.0.113.9"',
                'Jan 21 10:00:02 ftp1 vsftpd[812]: CONNECT: Client "203.0.113.9"',
                "Jan 21 10:00:03 ftp1 vsftpd[813]: pam_unix(vsftpd:auth): authentication "
                "failure; logname= uid=0 euid=0 tty=ftp ruser=bob rhost=203.0.113.9  user=bob",
            ]
        ),
        now=datetime(2024, 6, 1, tzinfo=UTC),
    )
    assert df["event.dataset"].to_list() == ["vsftpd", "vsftpd", "syslog"]
    assert df["event.action"].to_list() == ["ftp_login", "ftp_connect", "pam_auth_failure"]
    assert df["source.ip"].to_list() == ["203.0.113.9"] * 3
    assert df["host.name"].to_list() == ["ftp1"] * 3


def test_not_claimed() -> None:
    s = pl.Series(
        [
            'Jan 21 10:00:01 ftp1 vsftpd[811]: [bob] OK LOGIN: Client "1.2.3.4"',
            "Fri Jan 19 12:20:33 2007 something else",
            '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326',
            None,
        ]
    )
    assert VsftpdParser().matches(s).to_list() == [False, False, False, False]


@given(st.lists(st.text(max_size=80), max_size=5))
def test_arbitrary_text_never_raises(lines: list[str]) -> None:
    df = parse(lines)
    assert df.height == len(lines)
