"""nginx/apache error-log parsers: exact fields of specific lines."""

from __future__ import annotations

from datetime import UTC, datetime

from lightsoc.parsers.base import OK
from lightsoc.parsers.web_error import ApacheErrorParser, NginxErrorParser

from .test_web_error import labels, one, parse, samples, ts

# --- nginx: exact fields -----------------------------------------------------------------


def test_nginx_user_not_found() -> None:
    row = one(
        NginxErrorParser(),
        '2012/04/09 11:53:29 [error] 2865#0: *66647 user "xyz" was not found in '
        '"/var/www/.htpasswd", client: 192.0.43.10, server: www.myhost.com, request: '
        '"GET /a/b?x=1 HTTP/1.1", host: "www.myhost.com"',
    )
    assert labels(row) == {"log.level": "error"}
    del row["labels"]
    assert row == {
        "@timestamp": ts(2012, 4, 9, 11, 53, 29),
        "event.severity": 3,
        "process.pid": 2865,
        "message": 'user "xyz" was not found in "/var/www/.htpasswd"',
        "source.ip": "192.0.43.10",
        "source.port": None,
        "user.name": "xyz",
        "url.domain": "www.myhost.com",
        "http.request.method": "GET",
        "url.original": "/a/b?x=1",
        "url.path": "/a/b",
        "url.query": "x=1",
        "http.version": "1.1",
        "http.request.referrer": None,
        "event.kind": "event",
        "event.category": "authentication",
        "event.type": "info",
        "event.action": "http_auth_user_not_found",
        "event.outcome": "failure",
        "event.dataset": "nginx.error",
        "event.module": "nginx",
        OK: True,
    }


def test_nginx_password_mismatch_host_and_referrer() -> None:
    row = one(
        NginxErrorParser(),
        '2014/04/02 12:37:58 [error] 6563#0: *1861 user "scribendio": password mismatch, '
        'client: 10.0.2.2, server: scribend.io, request: "GET /admin HTTP/1.1", '
        'host: "Scribend.IO:8443", referrer: "https://scribend.io/admin"',
    )
    assert row["event.action"] == "http_auth_password_mismatch"
    assert row["user.name"] == "scribendio"
    assert row["url.domain"] == "scribend.io"  # host header, port dropped, lower case
    assert row["http.request.referrer"] == "https://scribend.io/admin"


def test_nginx_user_name_injection_does_not_spoof_the_client() -> None:
    line = next(s for s in samples("nginx-http-auth") if "injection" in s.meta.get("desc", ""))
    row = one(NginxErrorParser(), line.line)
    assert row["source.ip"] == "192.0.2.2"  # not the forged 127.0.0.1
    assert row["event.action"] == "http_auth_user_not_found"
    assert row["user.name"].startswith('test": password mismatch, client: 127.0.0.1')


def test_nginx_missing_credentials_and_rate_limits() -> None:
    out = parse(
        NginxErrorParser(),
        [
            "2024/01/02 03:04:05 [error] 7#7: *1 no user/password was provided for basic "
            'authentication, client: 198.51.100.7, server: _, request: "GET /x HTTP/2.0"',
            "2016/09/30 08:36:06 [error] 22923#0: *4758725916 limiting requests, excess: 15.243 by "
            'zone "one", client: 2606:2800:220:1:248:1893:25c8:1946, server: example.com, '
            'request: "GET / HTTP/1.1", host: "example.com"',
            '2024/01/02 03:04:05 [error] 7#7: *2 limiting connections by zone "addr", '
            'client: ::ffff:192.0.2.9, server: example.com, request: "GET / HTTP/1.1"',
        ],
    )
    assert out["event.action"].to_list() == [
        "http_auth_missing",
        "http_rate_limited",
        "http_connection_limited",
    ]
    assert out["event.category"].to_list() == ["authentication", "web", "web"]
    assert out["event.type"].to_list() == ["info", "denied", "denied"]
    assert out["event.outcome"].to_list() == ["failure"] * 3
    assert out["user.name"].to_list() == [None] * 3
    assert out["source.ip"].to_list() == [
        "198.51.100.7",
        "2606:2800:220:1:248:1893:25c8:1946",
        "192.0.2.9",  # IPv4-mapped IPv6 unwrapped
    ]
    assert out["url.domain"].to_list() == [None, "example.com", "example.com"]  # `_` is no name


def test_nginx_lines_without_request_context() -> None:
    out = parse(
        NginxErrorParser(),
        [
            "2020/11/25 14:42:16 [crit] 76952#76952: *2454307 SSL_do_handshake() failed (SSL: "
            "error:1408F0C6) while SSL handshaking, client: 142.93.180.14, server: 0.0.0.0:443",
            "2024/01/02 03:04:05 [notice] 1#1: signal process started",
            "2024/01/02 03:04:05 [emerg] 1#1: bind() to 0.0.0.0:80 failed (98: Address in use)",
            "2024/01/02 03:04:05 [debug] 1#1: *9 http cleanup add: 000055, client: unix:, "
            'server: x, request: "GET /cut-at-2k',
        ],
    )
    assert out[OK].all()
    assert out["event.severity"].to_list() == [2, 5, 0, 7]
    assert out["event.type"].to_list() == ["error", "info", "error", "info"]
    assert out["event.category"].to_list() == ["web"] * 4
    assert out["message"].to_list()[1:3] == [
        "signal process started",
        "bind() to 0.0.0.0:80 failed (98: Address in use)",
    ]
    assert out["source.ip"].to_list() == ["142.93.180.14", None, None, None]  # `unix:` is no IP
    assert out["url.domain"].to_list() == [None, None, None, "x"]  # 0.0.0.0:443 is no domain
    assert out["url.original"][3] is None  # truncated request line: no request fields
    assert out["process.pid"].to_list() == [76952, 1, 1, 1]


# --- apache: exact fields ----------------------------------------------------------------


def test_apache_24_user_not_found() -> None:
    row = one(
        ApacheErrorParser(),
        "[Sun Jun 09 07:57:47.123456 2013] [auth_basic:error] [pid 1234:tid 5678] "
        "[client 1.2.3.4:51234] AH01618: user foo not found: /x",
    )
    assert labels(row) == {
        "log.level": "error",
        "apache.module": "auth_basic",
        "apache.code": "AH01618",
    }
    del row["labels"]
    assert row == {
        "@timestamp": datetime(2013, 6, 9, 7, 57, 47, 123456, tzinfo=UTC),
        "event.severity": 3,
        "process.pid": 1234,
        "message": "AH01618: user foo not found: /x",
        "source.ip": "1.2.3.4",
        "source.port": 51234,
        "user.name": "foo",
        "url.domain": None,
        "http.request.method": None,
        "url.original": None,
        "url.path": "/x",
        "url.query": None,
        "http.version": None,
        "http.request.referrer": None,
        "event.kind": "event",
        "event.category": "authentication",
        "event.type": "info",
        "event.action": "http_auth_user_not_found",
        "event.outcome": "failure",
        "event.dataset": "apache.error",
        "event.module": "apache",
        OK: True,
    }


def test_apache_22_password_mismatch_and_referer() -> None:
    out = parse(
        ApacheErrorParser(),
        [
            "[Wed Jul 17 22:18:52 2013] [error] [client 127.0.0.1] user username: "
            'authentication failure for "/basic/file": Password Mismatch',
            "[Mon Nov 18 22:39:33 2013] [error] [client 91.49.82.139] user gg not found: /, "
            "referer: http://sj.hopto.org/management.html",
            "[Wed Jul 17 22:18:52 2013] [error] [client 127.0.0.1] user bob: "
            'authentication failure for "/ldap": LDAP server unavailable',
        ],
    )
    assert out["event.action"].to_list() == [
        "http_auth_password_mismatch",
        "http_auth_user_not_found",
        "http_auth_failure",
    ]
    assert out["user.name"].to_list() == ["username", "gg", "bob"]
    assert out["url.path"].to_list() == ["/basic/file", "/", "/ldap"]
    assert out["http.request.referrer"].to_list() == [
        None,
        "http://sj.hopto.org/management.html",
        None,
    ]
    assert out["message"][1] == "user gg not found: /"
    assert out["process.pid"].to_list() == [None] * 3
    assert [labels(r) for r in out.iter_rows(named=True)] == [{"log.level": "error"}] * 3


def test_apache_client_forms() -> None:
    out = parse(
        ApacheErrorParser(),
        [
            "[Sat Jul 20 22:11:44.147674 2013] [authz_owner:error] [pid 17540:tid 1] "
            "[client [2606:2800:220:1:248:1893:25c8:1946]:51548] AH01637: Authorization failed",
            "[Thu Jul 11 01:21:44 2013] [error] [client 2606:2800:220:1:248:1893:25c8:1946] "
            "user test-ipv6 not found: /",
            "[Tue Jul 09 14:27:42.650548 2019] [proxy_fcgi:error] [pid 22075:tid 1] "
            "[client 127.0.0.1] AH01071: Got error 'Primary script unknown'",
            "[Sat Sep 28 09:18:06 2018] [error] [client 192.0.2.1:55555] [client 192.0.2.1] "
            "ModSecurity: Access denied",
            "[Mon Jan 01 00:00:00 2024] [core:error] [pid 9] (13)Permission denied: "
            "[client 192.0.2.5:80] AH00035: access to /x denied",
            "[Mon Jan 01 00:00:00 2024] [notice] [client unknown] hello",
        ],
    )
    assert out[OK].all()
    assert out["source.ip"].to_list() == [
        "2606:2800:220:1:248:1893:25c8:1946",
        "2606:2800:220:1:248:1893:25c8:1946",
        "127.0.0.1",
        "192.0.2.1",
        "192.0.2.5",
        None,
    ]
    assert out["source.port"].to_list() == [51548, None, None, 55555, 80, None]
    assert out["message"][3] == "[client 192.0.2.1] ModSecurity: Access denied"
    assert out["message"][4] == "(13)Permission denied: AH00035: access to /x denied"


def test_apache_path_with_forged_client_tag_is_no_login_failure() -> None:
    # fail2ban's DoS sample: the requested path contains "[client X] user root not found"
    row = one(
        ApacheErrorParser(),
        "[Sat Jun 01 02:17:42 2013] [error] [client 192.168.33.1] File does not exist: "
        "/srv/http/site/[client 192.168.0.1] user root not found",
    )
    assert row["source.ip"] == "192.168.33.1"
    assert row["event.category"] == "web" and row["event.action"] is None
    assert row["user.name"] is None


def test_apache_levels_and_modules() -> None:
    out = parse(
        ApacheErrorParser(),
        [
            "[Mon Dec 23 07:49:01.981912 2013] [:error] [pid 3790] [client 1.2.3.4:1] x",
            "[Mon Dec 23 07:49:01 2013] [ssl:trace3] [pid 3790] y",
            "[Mon Dec 23 07:49:01 2013] [warn] z",
        ],
    )
    assert out["event.severity"].to_list() == [3, 7, 4]
    assert [labels(r) for r in out.iter_rows(named=True)] == [
        {"log.level": "error"},
        {"log.level": "trace3", "apache.module": "ssl"},
        {"log.level": "warn"},
    ]


def test_apache_weekday_is_not_checked() -> None:
    # fail2ban's samples have wrong weekdays (15 Mar 2010 was a Monday); apache's never do.
    row = one(ApacheErrorParser(), "[Sat Mar 15 16:04:06.105212 2010] [core:error] [pid 1] x")
    assert row["@timestamp"] == datetime(2010, 3, 15, 16, 4, 6, 105212, tzinfo=UTC)
