"""dhcp app parser (dnsmasq-dhcp, ISC dhcpd) through the real syslog parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightsoc.parsers import get_parser

NOW = datetime(2024, 6, 1, tzinfo=UTC)
MAC = "aa:bb:cc:dd:ee:ff"


def one(app: str, message: str) -> dict:
    line = f"Jan  5 10:00:00 gw {app}[123]: {message}"
    return get_parser("syslog", {"now": NOW}).parse(pl.Series([line])).row(0, named=True)


# Formats: dnsmasq's log_packet() (src/rfc2131.c) and ISC dhcpd's server/dhcp.c log lines.
@pytest.mark.parametrize(
    ("app", "message", "expected"),
    [
        (
            "dnsmasq-dhcp",
            f"DHCPACK(eth0) 192.168.1.50 {MAC} laptop",
            ("dhcp_ack", "192.168.1.50", {"dhcp.hostname": "laptop", "dhcp.interface": "eth0"}),
        ),
        (
            "dnsmasq-dhcp",
            f"3151543101 DHCPDISCOVER(br0) {MAC}",
            ("dhcp_discover", None, {"dhcp.interface": "br0"}),
        ),
        (
            "dnsmasq-dhcp",
            f"DHCPREQUEST(eth0) 192.168.1.50 {MAC}",
            ("dhcp_request", "192.168.1.50", {"dhcp.interface": "eth0"}),
        ),
        (
            "dnsmasq-dhcp",
            f"DHCPOFFER(eth0) 192.168.1.50 {MAC}",
            ("dhcp_offer", "192.168.1.50", {"dhcp.interface": "eth0"}),
        ),
        (
            "dhcpd",
            f"DHCPACK on 192.168.1.50 to {MAC} (laptop) via eth0",
            ("dhcp_ack", "192.168.1.50", {"dhcp.hostname": "laptop", "dhcp.interface": "eth0"}),
        ),
        (
            "dhcpd",
            f"DHCPREQUEST for 192.168.1.50 (192.168.1.1) from {MAC} (laptop) via eth0",
            (
                "dhcp_request",
                "192.168.1.50",
                {"dhcp.hostname": "laptop", "dhcp.interface": "eth0"},
            ),
        ),
        (
            "dhcpd",
            f"DHCPDISCOVER from {MAC} via eth0",
            ("dhcp_discover", None, {"dhcp.interface": "eth0"}),
        ),
        (
            "dhcpd",
            f"DHCPOFFER on 192.168.1.50 to {MAC} (laptop) via eth0",
            ("dhcp_offer", "192.168.1.50", {"dhcp.hostname": "laptop", "dhcp.interface": "eth0"}),
        ),
    ],
)
def test_dhcp_shapes(app: str, message: str, expected: tuple) -> None:
    r = one(app, message)
    action, ip, labels = expected
    assert (r["event.action"], r["source.ip"]) == (action, ip)
    assert json.loads(r["labels"]) == labels | {"dhcp.mac": MAC}
    assert (r["event.category"], r["event.dataset"], r["host.name"]) == ("network", "dhcp", "gw")


def test_dhcpd_inform_has_no_mac() -> None:
    r = one("dhcpd", "DHCPINFORM from 192.168.1.7 via eth0")
    assert (r["event.action"], r["source.ip"]) == ("dhcp_inform", "192.168.1.7")
    assert json.loads(r["labels"]) == {"dhcp.interface": "eth0"}


def test_other_dhcpd_messages_stay_syslog() -> None:
    r = one("dhcpd", "Wrote 3 leases to leases file.")
    assert (r["event.dataset"], r["event.action"]) == ("syslog", None)


@given(st.text(max_size=200))
def test_arbitrary_message_never_raises(text: str) -> None:
    msg = text.replace("\n", " ").replace("\r", " ")
    one("dhcpd", msg)
    one("dnsmasq-dhcp", msg)
