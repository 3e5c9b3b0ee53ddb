"""iptables/UFW app parser (kernel netfilter LOG lines) through the real syslog parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightsoc.parsers import get_parser

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def one(message: str) -> dict:
    line = f"Jan  5 10:00:00 fw kernel: {message}"
    return get_parser("syslog", {"now": NOW}).parse(pl.Series([line])).row(0, named=True)


# Format: the kernel's nf_log_syslog (net/netfilter/nf_log_syslog.c), as UFW and iptables -j LOG write it.
@pytest.mark.parametrize(
    ("message", "expected", "labels"),
    [
        (
            "[12345.678901] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 "
            "SRC=203.0.113.7 DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=54321 DF "
            "PROTO=TCP SPT=51234 DPT=22 WINDOW=29200 RES=0x00 SYN URGP=0",
            ("ufw_block", "denied", "203.0.113.7", 51234, "192.0.2.10", 22, "tcp"),
            {
                "netfilter.prefix": "[UFW BLOCK]",
                "netfilter.in": "eth0",
                "netfilter.mac": "52:54:00:12:34:56:52:54:00:65:43:21:08:00",
            },
        ),
        (
            "IN=eth0 OUT= MAC=aa:bb SRC=203.0.113.7 DST=192.0.2.10 LEN=84 TOS=0x00 PREC=0x00 "
            "TTL=64 ID=1 DF PROTO=ICMP TYPE=8 CODE=0 ID=3 SEQ=1",
            ("iptables", "connection", "203.0.113.7", None, "192.0.2.10", None, "icmp"),
            {"netfilter.in": "eth0", "netfilter.mac": "aa:bb", "icmp.type": "8", "icmp.code": "0"},
        ),
        (
            "[UFW ALLOW] IN=eth0 OUT= MAC=aa SRC=2001:db8::7 DST=2001:db8::1 LEN=80 TC=0 "
            "HOPLIMIT=57 FLOWLBL=0 PROTO=TCP SPT=40000 DPT=443 WINDOW=64800 RES=0x00 SYN URGP=0",
            ("ufw_allow", "allowed", "2001:db8::7", 40000, "2001:db8::1", 443, "tcp"),
            {"netfilter.prefix": "[UFW ALLOW]", "netfilter.in": "eth0", "netfilter.mac": "aa"},
        ),
        (
            "DROP-IN: IN=ppp0 OUT=eth1 SRC=198.51.100.1 DST=10.0.0.5 LEN=40 TOS=0x00 "
            "PREC=0x00 TTL=240 ID=1 PROTO=UDP SPT=53 DPT=33434 LEN=20",
            ("drop_in", "denied", "198.51.100.1", 53, "10.0.0.5", 33434, "udp"),
            {"netfilter.prefix": "DROP-IN:", "netfilter.in": "ppp0", "netfilter.out": "eth1"},
        ),
    ],
)
def test_netfilter_shapes(message: str, expected: tuple, labels: dict) -> None:
    r = one(message)
    got = (
        r["event.action"],
        r["event.type"],
        r["source.ip"],
        r["source.port"],
        r["destination.ip"],
        r["destination.port"],
        r["network.transport"],
    )
    assert got == expected
    assert json.loads(r["labels"]) == labels
    assert (r["event.category"], r["event.dataset"], r["host.name"]) == (
        "network",
        "iptables",
        "fw",
    )


def test_other_kernel_messages_stay_syslog() -> None:
    r = one("usb 1-1: new high-speed USB device number 2 using xhci_hcd")
    assert (r["event.dataset"], r["event.action"], r["source.ip"]) == ("syslog", None, None)


@given(st.text(max_size=200))
def test_arbitrary_message_never_raises(text: str) -> None:
    one(text.replace("\n", " ").replace("\r", " "))
