"""Syslog parser: real Loghub Linux/OpenSSH logs, RFC 5424, year inference, PRI, garbage."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import _apps
from lightsoc.parsers.syslog import SyslogParser
from lightsoc.schema import POLARS_SCHEMA

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
LOGHUB = DATA / "auth" / "loghub"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def parse(lines: list[str | None], now: datetime = NOW, **options: object) -> pl.DataFrame:
    return SyslogParser(dict(options)).parse(pl.Series(lines, dtype=pl.String), now=now)


def one(line: str, now: datetime = NOW, **options: object) -> dict:
    return parse([line], now, **options).row(0, named=True)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {path}")
    return path


def test_registered() -> None:
    assert registry.get("parsers", "syslog") is SyslogParser


def test_types_follow_schema() -> None:
    df = parse(["<13>Jan  5 10:00:00 h sshd[1]: Accepted password for a from 1.2.3.4 port 22 ssh2"])
    for name, dtype in df.schema.items():
        if name != "_ok":
            assert dtype == POLARS_SCHEMA[name], name


def test_linux_2k_headers() -> None:
    """Every line of Loghub Linux_2k: timestamp, host, app, pid, message vs the structured CSV."""
    path = _need(LOGHUB / "Linux_2k.log")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    ref = pl.read_csv(LOGHUB / "Linux_2k.log_structured.csv", infer_schema_length=0)
    df = parse(lines, now=datetime(2005, 12, 31, tzinfo=UTC))
    assert df.height == ref.height == 2000
    assert df["_ok"].all()
    assert (df["log.syslog.hostname"] == "combo").all()
    assert (df["host.name"] == "combo").all()
    ts = df["@timestamp"]
    assert (ts.dt.year() == 2005).all()
    assert ts.dt.strftime("%b %-d %H:%M:%S").to_list() == [
        f"{m} {d} {t}" for m, d, t in ref.select("Month", "Date", "Time").rows()
    ]
    both = pl.concat([df, ref], how="horizontal")
    plain = both.filter(~pl.col("Component").str.contains(" "))
    assert plain.height == 1992
    assert plain["log.syslog.appname"].to_list() == plain["Component"].to_list()
    assert plain["process.name"].to_list() == plain["Component"].to_list()
    assert plain["log.syslog.procid"].to_list() == plain["PID"].to_list()
    pids = plain["PID"].cast(pl.Int64, strict=False)
    assert plain["process.pid"].to_list() == pids.to_list()
    msg = plain["message"].str.strip_chars().to_list()
    assert msg == plain["Content"].str.strip_chars().to_list()
    # Tags with a space ("syslogd 1.4.1:", "-- root[2421]:") are no RFC 3164 tag: the
    # whole rest of the line is the message, app name unknown.
    odd = both.filter(pl.col("Component").str.contains(" "))
    assert odd["log.syslog.appname"].is_null().all()
    for row in odd.rows(named=True):
        assert row["message"].startswith(row["Component"])
        assert row["message"].endswith(row["Content"])


def test_linux_2k_year_inference_matches_embedded_dates() -> None:
    """ftpd lines carry the full date in the message: inference must agree with it."""
    path = _need(LOGHUB / "Linux_2k.log")
    lines = [
        x for x in path.read_text(errors="replace").splitlines() if " ftpd[" in x and " at " in x
    ]
    df = parse(lines, now=datetime(2006, 3, 1, tzinfo=UTC))  # within a year after the log
    embedded = (
        df["message"]
        .str.extract(r" at \w{3} (\w{3} +\d+ \d\d:\d\d:\d\d \d{4})")
        .str.replace(r" +", " ")
        .str.strptime(pl.Datetime("us", "UTC"), "%b %d %H:%M:%S %Y")
    )
    assert embedded.null_count() == 0 and len(lines) > 900
    # ftpd's own clock may be a second off syslogd's
    assert ((df["@timestamp"] - embedded).abs() <= timedelta(seconds=2)).all()


def test_openssh_2k_headers() -> None:
    path = _need(LOGHUB / "OpenSSH_2k.log")
    lines = path.read_text().splitlines()
    ref = pl.read_csv(LOGHUB / "OpenSSH_2k.log_structured.csv", infer_schema_length=0)
    df = parse(lines)
    assert df["_ok"].all()
    assert (df["log.syslog.hostname"] == "LabSZ").all()
    assert (df["log.syslog.appname"] == "sshd").all()
    assert df["log.syslog.procid"].to_list() == ref["Pid"].to_list()
    assert df["message"].str.strip_chars_end().to_list() == ref["Content"].to_list()
    assert (df["event.dataset"] == "sshd").all()
    # December lines parsed in June: last year
    assert (df["@timestamp"].dt.year() == 2023).all()


def test_rfc5424_structured_data_and_bom() -> None:
    line = (
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        '[examplePriority@32473 class="high" q="a\\"b\\]c"] \ufeffAn application event log entry'
    )
    r = one(line)
    assert r["_ok"]
    assert r["@timestamp"] == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert (r["log.syslog.facility.code"], r["log.syslog.severity.code"]) == (20, 5)
    assert r["log.syslog.hostname"] == r["host.name"] == "mymachine.example.com"
    assert r["log.syslog.appname"] == "evntslog"
    assert r["log.syslog.procid"] is None and r["process.pid"] is None
    assert r["log.syslog.msgid"] == "ID47"
    assert r["message"] == "An application event log entry"
    assert json.loads(r["log.syslog.structured_data"]) == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high", "q": 'a"b]c'},
    }


def test_rfc5424_offsets_nil_values_and_unescaped_brackets() -> None:
    df = parse(
        [
            "<34>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time",
            "<38>1 2019-07-08T17:40:17.954167-04:00 h sshd 55555 - "
            '[timeQuality tzKnown="1"][x@1 test="[brackets]"] Failed unknown for invalid user '
            "redmond from 192.0.2.1 port 59197 ssh2",
            "<14>1 - - - - - -",
            "<14>1 - - - - - [a@1]",
        ]
    )
    assert df["_ok"].all()
    r0, r1, r2, r3 = df.rows(named=True)
    assert r0["@timestamp"] == datetime(2003, 8, 24, 12, 14, 15, 3, tzinfo=UTC)
    assert r0["process.pid"] == 8710 and r0["log.syslog.procid"] == "8710"
    assert r0["log.syslog.structured_data"] is None and r0["message"] == "%% It's time"
    assert json.loads(r1["log.syslog.structured_data"])["x@1"] == {"test": "[brackets]"}
    assert r1["event.dataset"] == "sshd" and r1["source.ip"] == "192.0.2.1"
    assert r1["user.name"] == "redmond"
    assert r2["@timestamp"] is None and r2["log.syslog.hostname"] is None
    assert r2["message"] == ""
    assert json.loads(r3["log.syslog.structured_data"]) == {"a@1": {}}


def test_rfc3339_file_format() -> None:
    df = parse(
        [
            "2024-01-15T10:00:00.123456+01:00 web1 sshd[812]: Connection closed by 10.0.0.1 port 22",
            "2024-01-15T10:00:00Z web1 CRON[5]: (root) CMD (true)",
            "2024-01-15T10:00:00 web1 kernel: naive",
        ]
    )
    assert df["_ok"].all()
    assert df["@timestamp"].to_list() == [
        datetime(2024, 1, 15, 9, 0, 0, 123456, tzinfo=UTC),
        datetime(2024, 1, 15, 10, 0, tzinfo=UTC),
        datetime(2024, 1, 15, 10, 0, tzinfo=UTC),
    ]
    assert df["process.name"].to_list() == ["sshd", "CRON", "kernel"]
    assert df["process.pid"].to_list() == [812, 5, None]
    assert df["message"][1] == "(root) CMD (true)"


def test_timezone_option() -> None:
    r = one("Jan 15 10:00:00 h app: x", timezone="Asia/Shanghai")
    assert r["@timestamp"] == datetime(2024, 1, 15, 2, 0, tzinfo=UTC)
    r = one("2024-01-15T10:00:00 h app: x", timezone="Asia/Shanghai")
    assert r["@timestamp"] == datetime(2024, 1, 15, 2, 0, tzinfo=UTC)
    r = one("2024-01-15T10:00:00+00:00 h app: x", timezone="Asia/Shanghai")
    assert r["@timestamp"] == datetime(2024, 1, 15, 10, 0, tzinfo=UTC)


def test_year_inference() -> None:
    new_year = datetime(2025, 1, 1, 0, 5, tzinfo=UTC)
    assert one("Dec 31 23:59:59 h a: x", new_year)["@timestamp"].year == 2024
    assert one("Jan  1 00:04:00 h a: x", new_year)["@timestamp"].year == 2025
    # less than a day ahead (sender clock skew) stays in the current year
    assert one("Jan  1 20:00:00 h a: x", new_year)["@timestamp"].year == 2025
    assert one("Jan  3 00:00:00 h a: x", new_year)["@timestamp"].year == 2024
    # New Year's Eve here, already January at the sender: next year
    eve = datetime(2024, 12, 31, 23, 30, tzinfo=UTC)
    assert one("Jan  1 00:10:00 h a: x", eve)["@timestamp"] == datetime(
        2025, 1, 1, 0, 10, tzinfo=UTC
    )
    assert one("Dec 31 23:00:00 h a: x", eve)["@timestamp"].year == 2024
    # Feb 29 in a non-leap year: the last leap year that fits
    assert (
        one("Feb 29 12:00:00 h a: x", datetime(2025, 3, 1, tzinfo=UTC))["@timestamp"].year == 2024
    )
    # the injectable `now` as an option
    p = SyslogParser({"now": new_year})
    assert p.parse(pl.Series(["Dec 31 23:59:59 h a: x"]))["@timestamp"][0].year == 2024


def test_single_digit_day_both_spacings() -> None:
    df = parse(["Jun  9 01:02:03 h a: x", "Jun 9 01:02:03 h a: x", "Jun 19 01:02:03 h a: x"])
    assert df["@timestamp"].dt.day().to_list() == [9, 9, 19]


@pytest.mark.parametrize(
    ("pri", "facility", "severity"),
    [
        ("<0>", 0, 0),
        ("<13>", 1, 5),
        ("<38>", 4, 6),
        ("<86>", 10, 6),
        ("<191>", 23, 7),
        ("", None, None),
    ],
)
def test_pri(pri: str, facility: int | None, severity: int | None) -> None:
    r = one(f"{pri}Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert r["_ok"]
    assert (r["log.syslog.facility.code"], r["log.syslog.severity.code"]) == (facility, severity)


def test_out_of_range_pri_is_dropped() -> None:
    r = one("<999>Oct 11 22:14:15 h a: x")
    assert r["_ok"] and r["log.syslog.facility.code"] is None


def test_lenient_headers() -> None:
    df = parse(
        [
            "Feb 12 12:00:00 sshd[12345]: error: kex_exchange_identification: closed",  # no host
            "Mar  3 00:17:22 [sshd]: User root from 211.188.220.49 not allowed because x",
            "Jun 25 23:53:34 [sshd] User root from 1.2.3.4 not allowed because x",
            "Jan  1 00:00:00 host last message repeated 3 times",  # no tag
            "Jan  1 00:00:00.123 host app: fraction",
            "Jan  1 00:00:00 fe80::1 app: ipv6 host",
        ]
    )
    assert df["_ok"].all()
    assert df["log.syslog.hostname"].to_list() == [None, None, None, "host", "host", "fe80::1"]
    assert df["process.name"].to_list() == ["sshd", "sshd", "sshd", None, "app", "app"]
    assert df["message"][3] == "last message repeated 3 times"
    assert df["source.ip"][1] == "211.188.220.49" and df["source.ip"][2] == "1.2.3.4"


def test_garbage_empty_binary() -> None:
    lines = ["garbage", "", None, "\x00\x01\x02\ufffd", "<34>", "Dec 99 99:99:99 h a: x", "{}"]
    df = parse(lines)
    assert df.height == len(lines)
    assert not df["_ok"].any()
    assert df["message"].is_null().all()


def test_binary_input_with_invalid_utf8() -> None:
    raw = pl.Series([b"Jan  5 10:00:00 h app: ok", b"\xff\xfe\x00junk", None], dtype=pl.Binary)
    df = SyslogParser().parse(raw, now=NOW)
    assert df["_ok"].to_list() == [True, False, False]
    assert df["message"][0] == "ok"


def test_matches() -> None:
    p = SyslogParser()
    s = pl.Series(
        [
            "Jan  5 10:00:00 h app: ok",
            "<34>1 2003-10-11T22:14:15.003Z h a - - - m",
            "<34>1 - h a - - - m",
            "2024-01-15T10:00:00Z h a: m",
            '{"a": 1}',
            '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326',
            None,
        ]
    )
    assert p.matches(s).to_list() == [True, True, True, True, False, False, False]


def test_matches_daemon_files_in_syslog_shape_only() -> None:
    """multilog's TAI64N label and "date time app: msg" lines; other space-stamped text is not."""
    s = pl.Series(
        [
            "@400000004c91b044077a9e94 imap-login: Info: Aborted login (auth failed)",
            "2013-08-11 03:56:40 auth-worker(default): Info: pam(u,1.2.3.4): unknown user",
            "2013-08-11 03:56:40.123 named[812]: client 192.0.2.1#53 query refused",
            # nfdump and argus text output: a timestamp with a space, then numbers
            "2009-09-25 14:31:52.123     0.000 TCP     192.0.2.1:80 ->   192.0.2.2:1024    1    46",
            "2024-01-15 10:00:00 e tcp 192.0.2.1.80 -> 192.0.2.2.1024 CON",
            "@40000000 not a label",
        ]
    )
    assert SyslogParser().matches(s).to_list() == [True, True, True, False, False, False]


def test_tai64n_label_and_space_stamped_lines() -> None:
    df = parse(
        [
            "@400000004c91b044077a9e94 dovecot-auth: pam_unix(dovecot:auth): authentication "
            "failure; logname= uid=0 euid=0 tty=dovecot ruser=root rhost=176.61.140.225  user=root",
            "2013-08-11 03:56:40 auth-worker(default): Info: pam(username,1.2.3.4): "
            "pam_authenticate() failed: Authentication failure (password mismatch?)",
        ]
    )
    assert df["_ok"].all()
    assert df["@timestamp"].to_list() == [
        datetime(2010, 9, 16, 5, 50, 50, 125476, tzinfo=UTC),
        datetime(2013, 8, 11, 3, 56, 40, tzinfo=UTC),
    ]
    assert df["host.name"].to_list() == [None, None]
    assert df["process.name"].to_list() == ["dovecot-auth", "auth-worker(default)"]
    assert df["source.ip"].to_list() == ["176.61.140.225", "1.2.3.4"]
    assert df["user.name"].to_list() == ["root", "username"]


def test_pam_failures_of_apps_without_a_parser() -> None:
    """Any program's pam_unix failure line; apps with a parser keep their own action."""
    df = parse(
        [
            "Feb  7 15:10:42 example pure-ftpd: (pam_unix) authentication failure; logname= "
            "uid=0 euid=0 tty=pure-ftpd ruser=sample-user rhost=192.168.1.1 ",
            "Jul 19 18:11:26 srv2 vsftpd: pam_unix(vsftpd:auth): authentication failure; "
            "logname= uid=0 euid=0 tty=ftp ruser=an8767 rhost=www.google.com",
            "May 12 09:47:54 vaio sshd[16004]: (pam_unix) authentication failure; logname= "
            "uid=0 euid=0 tty=ssh ruser= rhost=71-13-115-12.static.example.com  user=root",
            "Jul 19 18:11:26 srv2 cron[1]: pam_unix(cron:session): session opened for user root",
        ]
    )
    assert df["event.action"].to_list() == [
        "pam_auth_failure",
        "pam_auth_failure",
        "ssh_login",  # sshd's parser: alone in its process, the attempt's only record
        None,
    ]
    assert df["event.dataset"].to_list() == ["syslog", "syslog", "sshd", "syslog"]
    assert df["source.ip"].to_list() == ["192.168.1.1", None, None, None]
    assert df["source.domain"].to_list() == [
        None,
        "www.google.com",
        "71-13-115-12.static.example.com",
        None,
    ]
    assert df["user.name"].to_list() == ["sample-user", "an8767", "root", None]


def test_message_repeated_is_unwrapped_for_apps() -> None:
    r = one(
        "Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 5 times: "
        "[ Failed password for root from 5.36.59.76 port 42393 ssh2]"
    )
    assert r["message"].startswith("message repeated 5 times")
    assert (r["event.action"], r["user.name"], r["source.ip"]) == (
        "ssh_login",
        "root",
        "5.36.59.76",
    )


def test_unknown_app_stays_generic_and_apps_can_be_disabled() -> None:
    r = one("Jan  5 10:00:00 h cron[1]: hello")
    assert (r["event.dataset"], r["event.module"], r["event.kind"]) == ("syslog", "system", "event")
    df = parse(["Jan  5 10:00:00 h sshd[1]: Invalid user x from 1.2.3.4"], apps=False)
    assert df["event.dataset"][0] == "syslog" and "event.action" not in df.columns


def test_app_parser_registry_one_function_per_app() -> None:
    @_apps.app_parser("lightsoc-test-app")
    def parse_test(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(
            pl.col("message").str.to_uppercase().alias("event.action"),
            pl.lit("test").alias("event.dataset"),
        )

    try:
        df = parse(
            [
                "Jan  5 10:00:00 h /usr/bin/lightsoc-test-app[1]: hello",
                "Jan  5 10:00:00 h other: hello",
                "Jan  5 10:00:00 h Lightsoc-Test-App(pam_unix)[2]: bye",
            ]
        )
    finally:
        _apps._APPS.pop("lightsoc-test-app")
    assert df["event.action"].to_list() == ["HELLO", None, "BYE"]
    assert df["event.dataset"].to_list() == ["test", "syslog", "test"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=200)), max_size=20))
def test_arbitrary_text_never_raises(lines: list[str | None]) -> None:
    df = parse(lines)
    assert df.height == len(lines)
    assert df["_ok"].dtype == pl.Boolean


_SYSLOGISH = st.builds(
    lambda pri, day, host, app, msg: f"{pri}Jan {day:2d} 10:00:00 {host} {app}: {msg}",
    st.sampled_from(["", "<13>", "<191>", "<0>"]),
    st.integers(1, 31),
    st.from_regex(re.compile(r"[a-z0-9.-]{1,20}"), fullmatch=True),
    st.sampled_from(["sshd[1]", "sudo", "su", "cron[22]", "x"]),
    st.text(max_size=80),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_SYSLOGISH, min_size=1, max_size=10))
def test_syslog_shaped_text_parses(lines: list[str]) -> None:
    df = parse(lines)
    assert df.height == len(lines)
    assert df["_ok"].all()
    assert df["@timestamp"].null_count() == 0


def test_broken_app_parser_does_not_break_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    @_apps.app_parser("lightsoc-broken-app")
    def broken(frame: pl.DataFrame) -> pl.DataFrame:
        raise RuntimeError("boom")

    try:
        df = parse(["Jan  5 10:00:00 h lightsoc-broken-app: hi", "Jan  5 10:00:00 h sshd[1]: hi"])
    finally:
        _apps._APPS.pop("lightsoc-broken-app")
    assert df["_ok"].all()
    assert df["event.dataset"].to_list() == ["syslog", "sshd"]
    assert "boom" in caplog.text
