"""nginx/apache error-log parsers, checked against fail2ban's annotated test logs.

fail2ban's filter test files put a `# failJSON: {...}` comment before each log
line: `match` (would the filter ban), `host` (the address it would ban) and
`time` (the line's wall-clock time, no zone). Every annotated line with a host
must give that host as `source.ip` and that time as `@timestamp` (read as UTC).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfoNotFoundError

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers import get_parser
from lightsoc.parsers.base import OK
from lightsoc.parsers.web_access import NginxCombinedParser
from lightsoc.parsers.web_error import (
    COLUMNS,
    ApacheErrorParser,
    ErrorLogParser,
    NginxErrorParser,
)
from lightsoc.schema import polars_type

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
F2B = DATA / "auth" / "fail2ban"

NGINX_FILES = ("nginx-http-auth", "nginx-limit-req")
APACHE_FILES = (
    "apache-auth",
    "apache-modsecurity",
    "apache-nohome",
    "apache-noscript",
    "apache-overflows",
)
ACCESS_FILES = ("nginx-botsearch", "apache-badbots")


@dataclass(frozen=True)
class Sample:
    """One annotated line of a fail2ban test log."""

    meta: dict
    line: str

    @property
    def time(self) -> datetime | None:
        t = self.meta.get("time")
        return None if t is None else datetime.fromisoformat(t).replace(tzinfo=UTC)


def samples(name: str) -> list[Sample]:
    """The (failJSON, next line) pairs of a fail2ban test log."""
    path = F2B / name
    if not path.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {path}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    out = []
    for i, line in enumerate(lines[:-1]):
        if line.startswith("# failJSON:"):
            out.append(Sample(json.loads(line.split(":", 1)[1]), lines[i + 1]))
    return out


def parse(parser: ErrorLogParser, lines: list[str | None]) -> pl.DataFrame:
    return parser.parse(pl.Series(lines, dtype=pl.String))


def one(parser: ErrorLogParser, line: str) -> dict:
    return parse(parser, [line]).row(0, named=True)


def labels(row: dict) -> dict:
    return json.loads(row["labels"])


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# apache-auth's `ErrorLog syslog` samples: syslog lines (`Feb 15 16:23:00 srv httpd[..]: ...`),
# which the `syslog` parser takes, not `apache_error` (year-less time, syslog host).
SYSLOG_WRAPPED = {"apache-auth": 4}


def test_registered_and_detection_order() -> None:
    assert registry.get("parsers", "nginx_error") is NginxErrorParser
    assert registry.get("parsers", "apache_error") is ApacheErrorParser
    prio = {n: c.auto_priority for n, c in registry.all_of("parsers").items() if n != "auto"}
    # after every access-log and nginx_json parser, before syslog
    for name in ("nginx_error", "apache_error"):
        assert max(prio["nginx_json"], prio["apache_common"]) < prio[name] < prio["syslog"]


# --- fail2ban sample logs ----------------------------------------------------------------


def _check_file(parser: ErrorLogParser, name: str) -> tuple[int, int]:
    """(matched, total) of annotated lines with a host; asserts the time of every match."""
    cases = [s for s in samples(name) if s.meta.get("match") and s.meta.get("host")]
    out = parse(parser, [s.line for s in cases])
    hits = 0
    for s, row in zip(cases, out.iter_rows(named=True), strict=True):
        if row["source.ip"] != s.meta["host"]:
            continue
        hits += 1
        assert row[OK], s.line
        if s.time is not None:  # failJSON time has whole seconds; apache 2.4 logs microseconds
            assert row["@timestamp"].replace(microsecond=0) == s.time, s.line
    return hits, len(cases)


@pytest.mark.parametrize("name", NGINX_FILES)
def test_fail2ban_nginx_hosts_and_times(name: str) -> None:
    hits, total = _check_file(NginxErrorParser(), name)
    assert total > 0
    assert hits == total  # 100%


@pytest.mark.parametrize("name", APACHE_FILES)
def test_fail2ban_apache_hosts_and_times(name: str) -> None:
    hits, total = _check_file(ApacheErrorParser(), name)
    assert total > 0
    # 100% of apache error-log lines; apache-auth 36 of 40: its 4 syslog-wrapped lines
    assert hits == total - SYSLOG_WRAPPED.get(name, 0)


def test_fail2ban_overall_share() -> None:
    hits = total = 0
    for names, parser in ((NGINX_FILES, NginxErrorParser()), (APACHE_FILES, ApacheErrorParser())):
        for name in names:
            h, t = _check_file(parser, name)
            hits, total = hits + h, total + t
    assert (hits, total) == (76, 80)  # the 4 misses are the syslog-wrapped apache lines


def test_syslog_wrapped_apache_lines_go_to_syslog() -> None:
    wrapped = [s.line for s in samples("apache-auth") if s.line[:3] == "Feb"]
    assert len(wrapped) == SYSLOG_WRAPPED["apache-auth"]
    assert not ApacheErrorParser().matches(pl.Series(wrapped)).any()
    out = get_parser("auto").parse(pl.Series(wrapped))
    assert out[OK].all() and set(out["event.dataset"]) == {"syslog"}


@pytest.mark.parametrize(
    ("name", "parser"), [("nginx-http-auth", NginxErrorParser), ("apache-auth", ApacheErrorParser)]
)
def test_fail2ban_non_matches_are_no_login_failures(name: str, parser: type) -> None:
    """Lines fail2ban must not ban on (a DoS vector, stale digest nonces, mod_evasive,
    nginx upstream errors) parse, but are not authentication events."""
    lines = [s.line for s in samples(name) if s.meta.get("match") is False]
    assert lines
    out = parse(parser(), lines)
    assert out[OK].all()
    assert (out["event.category"] == "web").all()
    assert out["user.name"].null_count() == len(lines)


def test_fail2ban_auth_actions() -> None:
    lines = [s.line for s in samples("apache-auth")]
    out = parse(ApacheErrorParser(), lines).filter(pl.col("event.category") == "authentication")
    counts = dict(out.group_by("event.action").len().iter_rows())
    assert counts == {
        "http_auth_user_not_found": 11,
        "http_auth_password_mismatch": 4,
        "http_auth_failure": 10,
    }
    assert (out["event.outcome"] == "failure").all()
    nginx = parse(NginxErrorParser(), [s.line for s in samples("nginx-http-auth")])
    actions = nginx["event.action"].drop_nulls().value_counts().sort("event.action")
    assert dict(actions.iter_rows()) == {
        "http_auth_password_mismatch": 4,
        "http_auth_user_not_found": 3,
    }


def _access_lines(name: str) -> tuple[list[Sample], list[Sample]]:
    """(access-log, nginx error-log) samples with a host; nginx-botsearch mixes both."""
    cases = [s for s in samples(name) if s.meta.get("match") and s.meta.get("host")]
    is_error = NginxErrorParser().matches(pl.Series([s.line for s in cases]))
    return (
        [s for s, e in zip(cases, is_error, strict=True) if not e],
        [s for s, e in zip(cases, is_error, strict=True) if e],
    )


@pytest.mark.parametrize("name", ACCESS_FILES)
def test_fail2ban_access_logs_with_nginx_combined(name: str) -> None:
    access, errors = _access_lines(name)
    assert access
    out = NginxCombinedParser().parse(pl.Series([s.line for s in access]))
    assert out[OK].all()
    assert out["source.ip"].to_list() == [s.meta["host"] for s in access]  # 100%
    if errors:  # nginx-botsearch's 404 lines from the error log
        got = parse(NginxErrorParser(), [s.line for s in errors])
        assert got[OK].all()
        assert got["source.ip"].to_list() == [s.meta["host"] for s in errors]
        assert got["@timestamp"].to_list() == [s.time for s in errors]


def test_auto_splits_a_mixed_access_and_error_log() -> None:
    access, errors = _access_lines("nginx-botsearch")
    assert (len(access), len(errors)) == (8, 4)
    lines = [s.line for s in access + errors]
    out = get_parser("auto").parse(pl.Series(lines))
    assert out[OK].all()
    assert out["event.dataset"].to_list() == ["nginx.access"] * 8 + ["nginx.error"] * 4
    assert out["source.ip"].to_list() == [s.meta["host"] for s in access + errors]


# --- options, detection, garbage ---------------------------------------------------------


def test_timezone_option() -> None:
    lines = [
        "2012/04/09 11:53:29 [error] 1#0: x",
        "[Mon Jan 09 11:53:29 2012] [error] x",
    ]
    nginx = parse(NginxErrorParser({"timezone": "Europe/Berlin"}), lines[:1])
    apache = parse(ApacheErrorParser({"timezone": "America/New_York"}), lines[1:])
    assert nginx["@timestamp"][0] == ts(2012, 4, 9, 9, 53, 29)  # CEST, +2
    assert apache["@timestamp"][0] == ts(2012, 1, 9, 16, 53, 29)  # EST, -5
    with pytest.raises(ZoneInfoNotFoundError):
        NginxErrorParser({"timezone": "Nowhere/Nothing"})


# Not in either format (never matched) ...
GARBAGE = [
    "",
    None,
    "hello world",
    "2012/04/09 11:53:29 error 1#0: no brackets",
    "[Sat Jun 01 02:17:42 2013] no level",
    '192.0.2.1 - - [20/Jan/2015:19:53:28 +0100] "GET / HTTP/1.1" 404 47 "-" "-"',
    "Feb 15 16:23:00 srv httpd[22034]: [error] [client 127.0.0.1] user x not found: /",
    '{"message": "2012/04/09 11:53:29 [error] 1#0: x"}',
]
# ... and shaped right but with an invalid time: the cheap `matches` takes them, `parse` fails.
BAD_TIME = [
    "2012/13/45 11:53:29 [error] 1#0: bad date",
    "[Sat Foo 01 02:17:42 2013] [error] bad month",
    "[Sat Feb 30 02:17:42 2013] [error] no such day",
]


@pytest.mark.parametrize("parser", [NginxErrorParser(), ApacheErrorParser()])
def test_garbage_is_not_ok(parser: ErrorLogParser) -> None:
    lines = GARBAGE + BAD_TIME
    out = parse(parser, lines)
    assert out.height == len(lines)
    assert not out[OK].any()
    # failed rows carry no half-parsed fields
    fields = out.drop(OK, "event.dataset", "event.module")
    assert fields.null_count().sum_horizontal()[0] == len(lines) * fields.width
    assert set(out["event.dataset"]) == {parser.dataset}
    assert not parser.matches(pl.Series(GARBAGE, dtype=pl.String)).any()


def test_detection_is_exclusive() -> None:
    nginx = [s.line for n in NGINX_FILES for s in samples(n)]
    apache = [s.line for n in APACHE_FILES for s in samples(n) if s.line[:1] == "["]
    assert NginxErrorParser().matches(pl.Series(nginx)).all()
    assert not ApacheErrorParser().matches(pl.Series(nginx)).any()
    assert ApacheErrorParser().matches(pl.Series(apache)).all()
    assert not NginxErrorParser().matches(pl.Series(apache)).any()
    out = get_parser("auto").parse(pl.Series(nginx + apache))
    assert out[OK].all()
    assert out["event.dataset"].to_list() == ["nginx.error"] * len(nginx) + ["apache.error"] * len(
        apache
    )


def test_output_schema_and_empty_batch() -> None:
    for parser in (NginxErrorParser(), ApacheErrorParser()):
        out = parse(parser, [])
        assert out.height == 0
        assert out.columns == [*COLUMNS, OK]
        for name in COLUMNS:
            assert out.schema[name] == polars_type(name), name


def test_binary_input() -> None:
    raw = pl.Series([b"2012/04/09 11:53:29 [error] 1#0: caf\xc3\xa9", b"\xff\xfe"], dtype=pl.Binary)
    out = NginxErrorParser().parse(raw)
    assert out[OK].to_list() == [True, False]
    assert out["message"][0] == "café"


# --- properties --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=200)), max_size=20))
def test_arbitrary_text_never_raises(lines: list[str | None]) -> None:
    for parser in (NginxErrorParser(), ApacheErrorParser()):
        out = parse(parser, lines)
        assert out.height == len(lines)
        assert out.columns == [*COLUMNS, OK]
        assert parser.matches(pl.Series(lines, dtype=pl.String)).len() == len(lines)


_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@st.composite
def _nginx_line(draw: st.DrawFn) -> tuple[str, dict]:
    if draw(st.booleans()):
        ip = str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    else:
        ip = str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1))))
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    when = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**9)))
    level = draw(st.sampled_from(["error", "warn", "crit", "info"]))
    user = draw(_text)
    kind = draw(st.sampled_from(["nf", "pw", "other"]))
    msg = {
        "nf": f'user "{user}" was not found in "/etc/htpasswd"',
        "pw": f'user "{user}": password mismatch',
        "other": draw(_text),
    }[kind]
    line = (
        f"{when:%Y/%m/%d %H:%M:%S} [{level}] 42#0: *7 {msg}, client: {ip}, server: s, "
        f'request: "GET /p HTTP/1.1", host: "h"'
    )
    expect = {
        "@timestamp": when,
        "source.ip": ip,
        "process.pid": 42,
        "url.path": "/p",
        "url.domain": "h",
        OK: True,
    }
    if kind != "other":
        expect["user.name"] = user or None
        expect["event.category"] = "authentication"
    return line, expect


@settings(max_examples=150, deadline=None)
@given(st.lists(_nginx_line(), min_size=1, max_size=10))
def test_generated_nginx_lines(cases: list[tuple[str, dict]]) -> None:
    out = parse(NginxErrorParser(), [line for line, _ in cases])
    for i, (_, expect) in enumerate(cases):
        row = out.row(i, named=True)
        assert {k: row[k] for k in expect} == expect
