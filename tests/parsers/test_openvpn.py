"""openvpn app parser: server log lines through the real syslog parser."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightsoc.parsers import get_parser

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def one(app: str, message: str) -> dict:
    line = f"Jan  5 10:00:00 vpn {app}[811]: {message}"
    return get_parser("syslog", {"now": NOW}).parse(pl.Series([line])).row(0, named=True)


# Formats: OpenVPN 2.x server messages (ssl.c, multi.c, plugin.c; auth-pam plugin).
@pytest.mark.parametrize(
    ("app", "message", "expected"),
    [
        (
            "ovpn-server",
            "203.0.113.9:51234 TLS Auth Error: Auth Username/Password verification failed for peer",
            ("openvpn_auth_failure", "failure", "authentication", None, "203.0.113.9", 51234),
        ),
        (
            "openvpn",
            "203.0.113.9:51234 PLUGIN_CALL: POST "
            "/usr/lib/openvpn/openvpn-plugin-auth-pam.so/PLUGIN_AUTH_USER_PASS_VERIFY status=1",
            ("openvpn_auth_failure", "failure", "authentication", None, "203.0.113.9", 51234),
        ),
        (
            "openvpn",
            "203.0.113.9:51234 PLUGIN_CALL: plugin function PLUGIN_AUTH_USER_PASS_VERIFY failed "
            "with status 1: /usr/lib/openvpn/openvpn-plugin-auth-pam.so",
            ("openvpn_auth_failure", "failure", "authentication", None, "203.0.113.9", 51234),
        ),
        (
            "openvpn",
            "AUTH-PAM: BACKGROUND: user 'bob' failed to authenticate: Authentication failure",
            ("openvpn_auth_failure", "failure", "authentication", "bob", None, None),
        ),
        (
            "openvpn",
            "user 'bob' AUTH FAILED",
            ("openvpn_auth_failure", "failure", "authentication", "bob", None, None),
        ),
        (
            "openvpn",
            "bob/203.0.113.9:51234 SENT CONTROL [bob]: 'AUTH_FAILED' (status=1)",
            ("openvpn_auth_failure", "failure", "authentication", "bob", "203.0.113.9", 51234),
        ),
        (
            "openvpn",
            "203.0.113.9:51234 [bob] Peer Connection Initiated with [AF_INET]203.0.113.9:51234",
            ("openvpn_login", "success", "authentication", "bob", "203.0.113.9", 51234),
        ),
        (
            "openvpn",
            "bob/203.0.113.9:51234 MULTI_sva: pool returned IPv4=10.8.0.6, IPv6=(Not enabled)",
            ("openvpn_session_start", "success", "session", "bob", "203.0.113.9", 51234),
        ),
        (
            "openvpn",
            "bob/203.0.113.9:51234 SIGUSR1[soft,ping-restart] received, client-instance restarting",
            ("openvpn_session_end", "success", "session", "bob", "203.0.113.9", 51234),
        ),
        (
            "openvpn",
            "2001:db8::9:51234 TLS Error: TLS handshake failed",
            ("openvpn_tls_error", "failure", "network", None, "2001:db8::9", 51234),
        ),
    ],
)
def test_openvpn_shapes(app: str, message: str, expected: tuple) -> None:
    r = one(app, message)
    got = (
        r["event.action"],
        r["event.outcome"],
        r["event.category"],
        r["user.name"],
        r["source.ip"],
        r["source.port"],
    )
    assert got == expected
    assert (r["service.name"], r["event.dataset"]) == ("openvpn", "openvpn")


def test_pool_address_in_labels() -> None:
    r = one("openvpn", "bob/203.0.113.9:51234 MULTI_sva: pool returned IPv4=10.8.0.6")
    assert r["labels"] == '{"openvpn.pool_ip":"10.8.0.6"}'


def test_unrecognised_message_has_no_event_fields() -> None:
    r = one("openvpn", "Initialization Sequence Completed")
    assert (r["event.action"], r["source.ip"], r["user.name"]) == (None, None, None)


@given(st.text(max_size=200))
def test_arbitrary_message_never_raises(text: str) -> None:
    one("openvpn", text.replace("\n", " ").replace("\r", " "))
