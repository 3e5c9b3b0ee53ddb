"""NCSA access-log parsers: real apache/nginx logs, escapes, IPv6, vhosts, garbage."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc import registry
from lightsoc.parsers.base import OK
from lightsoc.parsers.web_access import (
    COLUMNS,
    ApacheCombinedParser,
    ApacheCommonParser,
    ApacheVhostCombinedParser,
    NcsaParser,
    NginxCombinedParser,
    NginxCommonParser,
    NginxVhostCombinedParser,
)
from lightsoc.schema import polars_type

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "web"
BENIGN = DATA / "apache_logs_benign.log"
HACKERS = DATA / "hackers-access.log"

UA_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"
)
UA_DRAGON = (
    "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Dragon/36.1.1.21 Chrome/36.0.1985.97 Safari/537.36"
)


def _lines(path: Path) -> pl.Series:
    if not path.exists():
        pytest.fail(f"missing test data (expected ../shared/data beside the checkout) {path}")
    return pl.Series("raw", path.read_text().splitlines(), dtype=pl.String)


def parse(lines: list[str | None], parser: type[NcsaParser] = NginxCombinedParser) -> pl.DataFrame:
    return parser().parse(pl.Series(lines, dtype=pl.String))


def one(line: str, parser: type[NcsaParser] = NginxCombinedParser) -> dict:
    return parse([line], parser).row(0, named=True)


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def benign() -> pl.DataFrame:
    return NginxCombinedParser().parse(_lines(BENIGN))


@pytest.fixture(scope="module")
def hackers() -> pl.DataFrame:
    return ApacheCombinedParser().parse(_lines(HACKERS))


def test_registered() -> None:
    expect = {
        "nginx_combined": NginxCombinedParser,
        "apache_combined": ApacheCombinedParser,
        "apache_vhost_combined": ApacheVhostCombinedParser,
        "nginx_vhost_combined": NginxVhostCombinedParser,
        "nginx_common": NginxCommonParser,
        "apache_common": ApacheCommonParser,
    }
    for name, cls in expect.items():
        assert registry.get("parsers", name) is cls
    prio = [cls.auto_priority for cls in expect.values()]
    vhost, combined, common = prio[2], prio[0], prio[4]
    assert vhost < combined < common


def test_schema_types(benign: pl.DataFrame) -> None:
    assert benign.columns == [*COLUMNS, OK]
    for name in COLUMNS:
        assert benign.schema[name] == polars_type(name), name
    assert benign.schema[OK] == pl.Boolean


def test_benign_first_line(benign: pl.DataFrame) -> None:
    assert benign.row(0, named=True) == {
        "@timestamp": ts(2015, 5, 17, 10, 5, 3),
        "source.ip": "83.149.9.216",
        "user.name": None,
        "http.request.method": "GET",
        "url.original": "/presentations/logstash-monitorama-2013/images/kibana-search.png",
        "url.path": "/presentations/logstash-monitorama-2013/images/kibana-search.png",
        "url.query": None,
        "http.version": "1.1",
        "http.response.status_code": 200,
        "http.response.body.bytes": 203023,
        "http.request.referrer": "http://semicomplete.com/presentations/logstash-monitorama-2013/",
        "user_agent.original": UA_MAC,
        "url.domain": None,
        "destination.port": None,
        "event.kind": "event",
        "event.category": "web",
        "event.type": "access",
        "event.outcome": "success",
        "event.dataset": "nginx.access",
        "event.module": "nginx",
        OK: True,
    }


def test_benign_query_dash_bytes_and_404(benign: pl.DataFrame) -> None:
    q = benign.row(31, named=True)  # line 32
    assert q["source.ip"] == "50.16.19.13"
    assert q["url.original"] == "/blog/tags/puppet?flav=rss20"
    assert (q["url.path"], q["url.query"]) == ("/blog/tags/puppet", "flav=rss20")
    assert q["http.request.referrer"] == "http://www.semicomplete.com/blog/tags/puppet?flav=rss20"
    assert q["user_agent.original"] == "Tiny Tiny RSS/1.11 (http://tt-rss.org/)"

    dash = benign.row(76, named=True)  # line 77: `200 - "-" "Sogou ..."`
    assert dash["http.response.body.bytes"] is None
    assert dash["http.request.referrer"] is None
    assert dash["http.response.status_code"] == 200
    assert dash["@timestamp"] == ts(2015, 5, 17, 11, 5, 11)

    nf = benign.row(62, named=True)  # line 63: 404 with a query that is a Java class path
    assert nf["url.path"] == "/doc/index.html"
    assert nf["url.query"] == "org/elasticsearch/action/search/SearchResponse.html"
    assert (nf["http.response.status_code"], nf["event.outcome"]) == (404, "failure")

    head = benign.row(687, named=True)  # line 688
    assert (head["http.request.method"], head["http.response.body.bytes"]) == ("HEAD", None)


def test_benign_counts(benign: pl.DataFrame) -> None:
    # Line 8899 is cut off inside the user agent (no closing quote): the only failure.
    assert benign.height == 10_000
    assert benign[OK].sum() == 9_999
    failed = benign.with_row_index("line", offset=1).filter(~pl.col(OK))
    assert failed["line"].to_list() == [8899]
    row = failed.row(0, named=True)
    assert all(row[c] is None for c in COLUMNS if c not in ("event.dataset", "event.module"))
    assert benign.group_by("http.version").len().sort("http.version").rows() == [
        (None, 1),
        ("1.0", 700),
        ("1.1", 9299),
    ]
    assert benign["http.response.body.bytes"].null_count() == 669 + 1
    assert benign.filter(pl.col("event.outcome") == "failure").height == 220


def test_hackers_log(hackers: pl.DataFrame) -> None:
    assert hackers.height == 3_456
    assert hackers[OK].all()
    first = hackers.row(0, named=True)
    assert first["@timestamp"] == ts(2015, 10, 25, 3, 11, 25)  # +0100 -> UTC
    assert first["url.original"] == "/linux/doing-pxe-without-dhcp-control"
    assert (first["event.dataset"], first["event.module"]) == ("apache.access", "apache")

    q = hackers.row(5, named=True)  # line 6: percent-encoding stays as sent
    assert q["url.path"] == "/acl_users/credentials_cookie_auth/require_login"
    assert q["url.query"] == "came_from=http%3A//howto.basjes.nl/join_form"

    v6 = hackers.row(2576, named=True)  # line 2577
    assert v6["source.ip"] == "2001:41d0:8:f69::1"
    assert v6["@timestamp"] == ts(2015, 10, 29, 5, 47, 36)
    assert (v6["url.original"], v6["http.response.body.bytes"]) == ("/", 20526)
    assert v6["user_agent.original"] == UA_DRAGON
    assert hackers.filter(pl.col("source.ip").str.contains(":")).height == 12  # grep-counted
    methods = dict(hackers.group_by("http.request.method").len().rows())
    assert methods == {"GET": 2376, "POST": 1080}


def test_escaped_quotes_and_backslashes() -> None:
    line = (
        r'10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "GET /q?s=\"x\" HTTP/1.1" 200 5 '
        r'"http://r/\"a\"" "Mozilla \"quoted\" back\\slash \x07bell"'
    )
    row = one(line)
    assert row[OK]
    assert row["url.original"] == '/q?s="x"'
    assert row["url.query"] == 's="x"'
    assert row["http.request.referrer"] == 'http://r/"a"'
    assert row["user_agent.original"] == r'Mozilla "quoted" back\slash \x07bell'


def test_ipv6_user_and_time_zone() -> None:
    row = one('2001:db8::1 - alice [31/Dec/2023:23:30:00 -0130] "PUT /x HTTP/2.0" 201 0 "-" "-"')
    assert row["source.ip"] == "2001:db8::1"
    assert row["user.name"] == "alice"
    assert row["@timestamp"] == ts(2024, 1, 1, 1, 0, 0)
    assert (row["http.version"], row["http.response.body.bytes"]) == ("2.0", 0)
    assert row["http.request.referrer"] is None and row["user_agent.original"] is None


def test_odd_request_lines_still_parse() -> None:
    head = '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "'
    rows = parse(
        [
            head + r'\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" 400 157 "-" "-"',
            head + '-" 408 0 "-" "-"',
            head + '" 400 0 "-" "-"',
            head + 'GET /a b/c?d e HTTP/1.0" 200 1 "-" "-"',
            head + 'GET /index.html" 200 1 "-" "-"',
            head + 'CONNECT example.com:443 HTTP/1.1" 405 1 "-" "-"',
        ]
    )
    assert rows[OK].all()
    assert rows["http.request.method"].to_list() == [None, None, None, "GET", "GET", "CONNECT"]
    assert rows["url.original"].to_list() == [
        None,
        None,
        None,
        "/a b/c?d e",
        "/index.html",
        "example.com:443",
    ]
    assert rows["url.path"].to_list()[3:] == ["/a b/c", "/index.html", "example.com:443"]
    assert rows["url.query"].to_list()[3:] == ["d e", None, None]
    assert rows["http.version"].to_list() == [None, None, None, "1.0", None, "1.1"]
    assert rows["http.response.status_code"].to_list() == [400, 408, 400, 200, 200, 405]


def test_query_edge_cases() -> None:
    head = '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET '
    rows = parse(
        [head + p + ' HTTP/1.1" 200 1 "-" "-"' for p in ("/a?", "/a?b?c", "/?", "/%3F?x=%20")]
    )
    assert rows["url.path"].to_list() == ["/a", "/a", "/", "/%3F"]
    assert rows["url.query"].to_list() == ["", "b?c", "", "x=%20"]


def test_trailing_fields_and_crlf() -> None:
    base = '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8"'
    rows = parse([base + ' "10.1.1.1, 10.2.2.2"', base + " 0.012", base + "\r", base])
    assert rows[OK].all()
    assert rows["user_agent.original"].to_list() == ["curl/8"] * 4


def test_failures_without_exceptions() -> None:
    lines = [
        "",
        None,
        "garbage",
        "\x00\x01\x02\xff\ufffd binary \x7f",
        '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "cut',
        '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1',  # common, not combined
        '1.2.3.4 - - [32/Foo/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
        '1.2.3.4 - - [01/Jan/2024:00:00:00] "GET / HTTP/1.1" 200 1 "-" "-"',
        '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 2000 1 "-" "-"',
        'h 1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',  # vhost
    ]
    rows = parse(lines)
    assert rows.height == len(lines)
    assert not rows[OK].any()
    assert rows["source.ip"].null_count() == len(lines)
    assert rows["event.dataset"].to_list() == ["nginx.access"] * len(lines)


def test_binary_input_series() -> None:
    line = b'1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"'
    out = NginxCombinedParser().parse(pl.Series([line, b"\xff\xfe"], dtype=pl.Binary))
    assert out[OK].to_list() == [True, False]


def test_vhost_variants() -> None:
    tail = ' - - [01/Jan/2024:00:00:00 +0000] "GET /x?y=1 HTTP/1.1" 301 0 "-" "ua"'
    rows = parse(
        [
            "www.example.com:443 203.0.113.9" + tail,
            "example.org 198.51.100.7" + tail,
            "[2001:db8::5]:8443 2001:db8::6" + tail,
            "203.0.113.9" + tail,  # not a vhost line
        ],
        ApacheVhostCombinedParser,
    )
    assert rows[OK].to_list() == [True, True, True, False]
    assert rows["url.domain"].to_list() == ["www.example.com", "example.org", "[2001:db8::5]", None]
    assert rows["destination.port"].to_list() == [443, None, 8443, None]
    assert rows["source.ip"].to_list()[:3] == ["203.0.113.9", "198.51.100.7", "2001:db8::6"]
    assert rows["event.dataset"][0] == "apache.access"
    nginx = one("example.org 198.51.100.7" + tail, NginxVhostCombinedParser)
    assert (nginx["url.domain"], nginx["event.module"]) == ("example.org", "nginx")


def test_common_format() -> None:
    line = '192.0.2.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'
    row = one(line, ApacheCommonParser)
    assert row[OK]
    assert row["@timestamp"] == ts(2000, 10, 10, 20, 55, 36)
    assert (row["user.name"], row["url.original"], row["http.response.body.bytes"]) == (
        "frank",
        "/apache_pb.gif",
        2326,
    )
    assert row["user_agent.original"] is None
    assert row["event.dataset"] == "apache.access"
    combined = line + ' "-" "curl"'
    assert parse([combined], NginxCommonParser)[OK].to_list() == [False]
    assert one(line + "\r", NginxCommonParser)[OK]


def test_matches_separates_formats() -> None:
    head = '1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1'
    lines = pl.Series(
        [
            "v.example:80 " + head + ' "-" "-"',
            head + ' "-" "-"',
            head,
            "garbage",
            None,
            '{"ip": "1.2.3.4"}',
        ]
    )
    got = {
        name: registry.get("parsers", name)().matches(lines).to_list()
        for name in ("apache_vhost_combined", "nginx_combined", "nginx_common")
    }
    assert got == {
        "apache_vhost_combined": [True, False, False, False, False, False],
        "nginx_combined": [False, True, False, False, False, False],
        "nginx_common": [False, False, True, False, False, False],
    }


def test_larger_batch_keeps_order() -> None:
    lines = [
        f'10.0.{i // 256}.{i % 256} - - [01/Jan/2024:00:00:{i % 60:02d} +0000] "GET /{i} HTTP/1.1" '
        f'{200 + i % 300} {i} "-" "-"'
        for i in range(1001)
    ]
    lines[500] = "broken"
    rows = parse(lines)
    assert rows.height == 1001
    assert rows["url.path"][7] == "/7" and rows["url.path"][1000] == "/1000"
    assert rows[OK].sum() == 1000 and not rows[OK][500]


def test_empty_batch() -> None:
    out = parse([])
    assert out.height == 0
    assert out.columns == [*COLUMNS, OK]


# --- properties -------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=20))
def test_arbitrary_text_never_raises(lines: list[str]) -> None:
    for cls in (NginxCombinedParser, NginxCommonParser, ApacheVhostCombinedParser):
        out = cls().parse(pl.Series(lines, dtype=pl.String))
        assert out.height == len(lines)
        assert cls().matches(pl.Series(lines, dtype=pl.String)).len() == len(lines)


_seg = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-._~%/=&+", max_size=12)
_free = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).filter(
    lambda s: s not in ("", "-")
)


def _esc(value: str | None) -> str:
    """Apache's escaping of a quoted field."""
    return "-" if value is None else value.replace("\\", "\\\\").replace('"', '\\"')


@st.composite
def _combined(draw: st.DrawFn) -> tuple[str, dict]:
    if draw(st.booleans()):
        ip = str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    else:
        ip = str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1))))
    path = "/" + "/".join(draw(st.lists(_seg, max_size=4)))
    query = draw(st.none() | _seg)
    target = path if query is None else f"{path}?{query}"
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PROPFIND", "M-SEARCH"]))
    status = draw(st.integers(100, 599))
    size = draw(st.none() | st.integers(0, 2**40))
    user = draw(st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True))
    ref = draw(st.none() | _free)
    ua = draw(st.none() | _free)
    when = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**9)))
    line = (
        f"{ip} - {user or '-'} [{when.strftime('%d/%b/%Y:%H:%M:%S +0000')}] "
        f'"{method} {target} HTTP/1.1" {status} {"-" if size is None else size} '
        f'"{_esc(ref)}" "{_esc(ua)}"'
    )
    expect = {
        "@timestamp": when,
        "source.ip": ip,
        "user.name": user,
        "http.request.method": method,
        "url.original": target,
        "url.path": path,
        "url.query": query,
        "http.version": "1.1",
        "http.response.status_code": status,
        "http.response.body.bytes": size,
        "http.request.referrer": ref,
        "user_agent.original": ua,
        "event.outcome": "success" if status < 400 else "failure",
        OK: True,
    }
    return line, expect


@settings(max_examples=150, deadline=None)
@given(st.lists(_combined(), min_size=1, max_size=10))
def test_generated_combined_round_trip(cases: list[tuple[str, dict]]) -> None:
    out = parse([line for line, _ in cases])
    for i, (_, expect) in enumerate(cases):
        row = out.row(i, named=True)
        assert {k: row[k] for k in expect} == expect


@pytest.mark.parametrize("path", [BENIGN, HACKERS], ids=["benign", "hackers"])
def test_split_fast_path_agrees_with_the_format_regex(path: Path) -> None:
    from lightsoc.parsers.web_access import RX_COMBINED, split_combined

    text = _lines(path)
    fast, ok = split_combined(text)
    assert ok.mean() > 0.95  # the fast path carries real traffic
    regex = (
        text.to_frame("raw")
        .select(pl.col("raw").str.extract_groups(RX_COMBINED).alias("m"))
        .unnest("m")
    )
    mask = ok.arg_true()
    for col in fast.columns:
        if col == "ts":  # same instant; the regex keeps the text, the fast path rebuilds it
            continue
        assert fast[col].gather(mask).to_list() == regex[col].gather(mask).to_list(), col
    assert fast["ts"].gather(mask).to_list() == regex["ts"].gather(mask).to_list()


def test_split_fast_path_refuses_what_it_cannot_split_exactly() -> None:
    from lightsoc.parsers.web_access import split_combined

    lines = pl.Series(
        [
            '1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "r" "ua"',
            '1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET /\\"x HTTP/1.1" 200 5 "r" "ua"',
            '1.2.3.4 - - [1/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "r" "ua"',
            '1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "r"',
            '1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 20 5 "r" "ua"',
            '1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5  "r" "ua"',
            '1.2.3.4  - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "r" "ua"',
            '1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "r" "ua" "xff"',
        ]
    )
    _, ok = split_combined(lines)
    assert ok.to_list() == [True, False, False, False, False, False, False, True]
    # and the parser gives the regex's answer for every one of them
    out = NginxCombinedParser().parse(lines)
    assert out[OK].to_list() == [True, True, False, False, False, False, False, True]
