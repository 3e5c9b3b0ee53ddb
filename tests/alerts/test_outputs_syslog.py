"""Syslog/CEF output against real UDP and TCP listeners."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from lightsoc import __version__
from lightsoc.alerts.outputs import Dispatcher, OutputError, build_output
from lightsoc.alerts.outputs.syslog_cef import cef
from lightsoc.config import OutputConfig
from tests.alerts.receivers import SyslogReceiver, wait_for
from tests.alerts.test_outputs_dispatch import alert

HEADER = re.compile(
    r"^<(?P<pri>\d+)>1 (?P<ts>\S+) (?P<host>\S+) lightsoc - ALERT (?P<rest>.*)$", re.S
)


@pytest.fixture
def udp() -> Iterator[SyslogReceiver]:
    r = SyslogReceiver("udp")
    yield r
    r.close()


@pytest.fixture
def tcp() -> Iterator[SyslogReceiver]:
    r = SyslogReceiver("tcp")
    yield r
    r.close()


def split_cef(record: str) -> tuple[list[str], dict[str, str]]:
    """Parse CEF the way a SIEM does: unescaped `|` splits the header, `k=` the extension."""
    fields, cur, i = [], "", 0
    while len(fields) < 7:
        c = record[i]
        if c == "\\":
            cur += record[i + 1]
            i += 2
            continue
        if c == "|":
            fields.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    ext = record[i:]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9]+)=", ext))
    out: dict[str, str] = {}
    for k, nxt in zip(keys, [*keys[1:], None], strict=True):
        raw = ext[k.end() : nxt.start() if nxt else len(ext)]
        # the key regex must not have matched an escaped '='
        out[k.group(1)] = (
            raw.replace("\\=", "=").replace("\\n", "\n").replace("\\r", "\r").replace("\\\\", "\\")
        )
    return fields, out


def test_cef_over_udp(udp: SyslogReceiver) -> None:
    out = build_output(
        "siem",
        OutputConfig(type="syslog", host="127.0.0.1", port=udp.port, hostname="soc-box"),
    )
    out.send(
        [alert(1, "critical"), alert(2, "low", **{"entity.type": "user", "entity.value": "bob"})]
    )
    wait_for(lambda: len(udp.datagrams) == 2, what="2 datagrams")
    first = HEADER.match(udp.datagrams[0].decode())
    assert first, udp.datagrams[0]
    assert int(first["pri"]) == 20 * 8 + 2  # local4.crit
    assert first["host"] == "soc-box"
    datetime.fromisoformat(first["ts"].replace("Z", "+00:00"))
    assert first["rest"].startswith("- CEF:0|")
    fields, ext = split_cef(first["rest"][2:])
    assert fields == [
        "CEF:0",
        "lightsoc",
        "lightsoc",
        __version__,
        "ssh-brute-force",
        "SSH brute force",
        "10",
    ]
    assert ext["src"] == "203.0.113.1"
    assert ext["externalId"] == "alert-1"
    assert ext["cnt"] == "12" and ext["cn1"] == "70" and ext["cn1Label"] == "score"
    assert ext["start"] == str(int(datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp() * 1000))
    assert ext["end"] == str(int(datetime(2024, 5, 1, 10, 5, tzinfo=UTC).timestamp() * 1000))
    assert ext["cs3"] == "ev-1-1,ev-1-2"
    second = HEADER.match(udp.datagrams[1].decode())
    assert second and int(second["pri"]) == 20 * 8 + 5  # local4.notice
    _, ext2 = split_cef(second["rest"][2:])
    assert ext2["suser"] == "bob" and "src" not in ext2


def test_cef_escaping() -> None:
    evil = "a|b\\c=d\nsrc=6.6.6.6 | CEF:0|x"
    record = cef(
        alert(1, **{"rule.name": evil, "rule.id": "r|1", "entity.value": evil, "description": evil})
    )
    assert "\n" not in record and "\r" not in record
    fields, ext = split_cef(record)
    assert len(fields) == 7
    assert fields[4] == "r|1"
    assert fields[5] == "a|b\\c=d src=6.6.6.6 | CEF:0|x"  # header: line break -> space
    assert ext["src"] == evil  # round-trips exactly; no injected src key
    assert ext["msg"] == evil
    assert list(ext).count("src") == 1
    assert "a|b\\\\c\\=d\\nsrc\\=6.6.6.6" in record


def test_rfc5424_over_tcp_octet_counting(tcp: SyslogReceiver) -> None:
    out = build_output(
        "siem",
        OutputConfig(
            type="syslog",
            host="127.0.0.1",
            port=tcp.port,
            protocol="tcp",
            format="rfc5424",
            facility="auth",
        ),
    )
    weird = alert(1, "medium", **{"entity.value": 'x"]\\\ny'})
    with Dispatcher([out]) as d:
        d.notify([weird, alert(2)])
        assert d.flush(10)
    data = wait_for(lambda: (b := tcp.data()).count(b"ALERT") == 2 and b, what="2 frames")
    frames = []
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    assert len(frames) == 2
    m = HEADER.match(frames[0].decode())
    assert m and int(m["pri"]) == 4 * 8 + 4  # auth.warning
    sd, _, msg = m["rest"].partition("] ")
    assert sd.startswith("[lightsoc@32473 ")
    assert 'entity_value="x\\"\\]\\\\\ny"' in sd
    assert json.loads(msg) == weird


def test_tcp_lf_framing_and_refused(tcp: SyslogReceiver) -> None:
    out = build_output(
        "siem",
        OutputConfig(type="syslog", host="127.0.0.1", port=tcp.port, protocol="tcp", framing="lf"),
    )
    out.send([alert(1, description="multi\nline")])
    data = wait_for(lambda: tcp.data().endswith(b"\n") and tcp.data(), what="a frame")
    assert data.count(b"\n") == 1  # the newline in the description is escaped
    tcp.close()
    with pytest.raises(OutputError) as exc:
        out.send([alert()])
    assert exc.value.retryable


@pytest.mark.parametrize(
    ("opts", "option"),
    [
        ({"protocol": "sctp"}, "protocol"),
        ({"format": "leef"}, "format"),
        ({"facility": "local9"}, "facility"),
        ({}, "host"),
    ],
)
def test_syslog_config_errors(opts: dict[str, str], option: str) -> None:
    base = {"host": "127.0.0.1"} if option != "host" else {}
    with pytest.raises(ValueError, match=f"'siem'.*'{option}'"):
        build_output("siem", OutputConfig(type="syslog", **base, **opts))
