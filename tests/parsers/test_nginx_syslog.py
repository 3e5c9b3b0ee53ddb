"""nginx app parser: access (combined, JSON) and error lines as nginx 1.22 sends them over syslog."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from lightsoc.parsers import get_parser

NOW = datetime(2026, 11, 29, tzinfo=UTC)
# Captured from nginx 1.22.1 (Debian 12) with `access_log syslog:server=...`.
COMBINED = (
    r"<190>Nov 29 14:00:55 vm nginx: 127.0.0.1 - - [29/Nov/2026:14:00:55 +0000] "
    r'"GET /a?q=%27%22x HTTP/1.1" 200 3 "-" "Evil \x22agent\x22"'
)
JSON = (
    r'<190>Nov 29 14:00:55 vm nginxjson: {"time":"2026-11-29T14:00:55+00:00",'
    r'"remote_addr":"127.0.0.1","request":"GET /a?q=%27%22x HTTP/1.1","status":200,'
    r'"body_bytes_sent":3,"http_user_agent":"Evil \"agent\""}'
)
ERROR = (
    r'<187>Nov 29 14:00:55 vm nginx: 2026/11/29 14:00:55 [error] 6321#6321: *2 user "bob": '
    r'password mismatch, client: 127.0.0.1, server: , request: "GET /secret/ HTTP/1.1", '
    r'host: "127.0.0.1:28080"'
)
OTHER = "<190>Nov 29 14:00:55 vm nginx: worker process 123 exited"


def parse(*lines: str) -> list[dict]:
    return get_parser("syslog", {"now": NOW}).parse(pl.Series(list(lines))).to_dicts()


def test_combined_json_and_error_lines():
    combined, js, error, other = parse(COMBINED, JSON, ERROR, OTHER)
    for r in (combined, js):
        assert r["_ok"] and r["event.dataset"] == "nginx.access"
        assert (r["source.ip"], r["url.original"]) == ("127.0.0.1", "/a?q=%27%22x")
        assert (r["http.request.method"], r["http.response.status_code"]) == ("GET", 200)
    assert combined["user_agent.original"] == r"Evil \x22agent\x22"  # as nginx escaped it
    assert js["user_agent.original"] == 'Evil "agent"'
    assert error["event.dataset"] == "nginx.error"
    assert (error["user.name"], error["event.outcome"]) == ("bob", "failure")
    # not an nginx log line: still a good syslog event
    assert other["_ok"] and other["event.dataset"] == "syslog" and other["url.original"] is None


def test_other_apps_in_the_same_batch_are_untouched():
    sshd = "<38>Nov 29 14:00:56 vm sshd[7]: Failed password for root from 1.2.3.4 port 22 ssh2"
    rows = parse(COMBINED, sshd)
    assert rows[0]["event.dataset"] == "nginx.access"
    assert (rows[1]["event.dataset"], rows[1]["user.name"]) == ("sshd", "root")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=200), min_size=1, max_size=8))
def test_any_message_keeps_rows_and_never_raises(messages):
    lines = [f"<190>Nov 29 14:00:55 vm nginx: {m}" for m in messages]
    out = get_parser("syslog", {"now": NOW}).parse(pl.Series(lines))
    assert out.height == len(lines)
