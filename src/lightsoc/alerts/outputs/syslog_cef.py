"""Syslog forwarding of alerts, one message per alert: CEF or RFC 5424 with JSON.

Each message has an RFC 5424 header (`<PRI>1 TIMESTAMP HOST lightsoc - ALERT`).
`format: cef` puts an ArcSight CEF record in it
(`CEF:0|lightsoc|lightsoc|VERSION|rule.id|rule.name|SEVERITY 0-10|ext`):
in header fields `\\` and `|` are escaped with a backslash, in extension values
`\\` and `=`, and line breaks become `\\n` / `\\r` (ArcSight "Implementing
ArcSight CEF", "Character encoding"). `format: rfc5424` sends structured data
`[lightsoc@32473 ...]` (32473: the RFC 5612 documentation enterprise number;
`"`, `\\` and `]` escaped per RFC 5424 6.3.3) and the alert as JSON.
UDP sends a datagram per message; TCP uses RFC 6587 octet counting (or LF).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from lightsoc import __version__
from lightsoc.alerts.outputs.base import Output, OutputError
from lightsoc.config import OutputConfig
from lightsoc.registry import register

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
#: alert severity -> (CEF severity 0-10, syslog severity 0-7)
SEVERITY = {
    "informational": (1, 6),
    "low": (3, 5),
    "medium": (5, 4),
    "high": (8, 3),
    "critical": (10, 2),
}
ENTITY_KEYS = {"ip": "src", "user": "suser", "host": "shost", "domain": "dhost", "url": "request"}
MAX_UDP_BYTES = 8192


def cef_header(value: Any) -> str:
    text = str(value if value is not None else "")
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r", " ").replace("\n", " ")  # no line breaks in the header


def cef_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    text = str(value if value is not None else "")
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def sd_value(value: Any) -> str:
    text = str(value if value is not None else "")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _ms(iso: Any) -> str | None:
    """ISO 8601 -> epoch milliseconds (CEF `start`/`end`/`rt`)."""
    try:
        dt = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return str(int(dt.timestamp() * 1000))


def cef(alert: dict[str, Any]) -> str:
    """One alert as a CEF record."""
    sev = SEVERITY.get(str(alert.get("severity")), (5, 4))[0]
    header = "|".join(
        [
            "CEF:0",
            "lightsoc",
            "lightsoc",
            cef_header(__version__),
            cef_header(alert.get("rule.id")),
            cef_header(alert.get("rule.name")),
            str(sev),
        ]
    )
    ext: list[tuple[str, Any]] = [("externalId", alert.get("id"))]
    etype, evalue = str(alert.get("entity.type") or ""), alert.get("entity.value")
    key = ENTITY_KEYS.get(etype)
    if key and evalue is not None:
        ext.append((key, evalue))
    ext += [
        ("cs1Label", "entity"),
        ("cs1", f"{etype}:{evalue}" if evalue is not None else None),
        ("cn1Label", "score"),
        ("cn1", alert.get("score")),
        ("cnt", alert.get("count")),
        ("start", _ms(alert.get("first_seen"))),
        ("end", _ms(alert.get("last_seen"))),
        ("rt", _ms(alert.get("last_seen"))),
        ("cs2Label", "status"),
        ("cs2", alert.get("status")),
        ("cs3Label", "event_ids"),
        ("cs3", alert.get("event_ids")),
        ("cat", alert.get("tags")),
        ("msg", alert.get("description")),
    ]
    pairs = [f"{k}={cef_value(v)}" for k, v in ext if v not in (None, "", [])]
    return f"{header}|{' '.join(pairs)}"


@register("outputs", "syslog")
class SyslogOutput(Output):
    """Options: host, port (514), protocol (udp|tcp), format (cef|rfc5424), facility, framing."""

    options: ClassVar[tuple[str, ...]] = (
        "host", "port", "protocol", "format", "facility", "framing", "hostname", "timeout",
    )  # fmt: skip
    default_rate_limit = 6000  # a log pipeline, not a chat: effectively unlimited

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        super().__init__(output_id, config)
        self.host = self.option("host", str)
        self.port = self.option("port", int, 514, check=lambda p: 0 < p < 65536, expect="a port")
        self.protocol = self.option("protocol", str, "udp")
        if self.protocol not in ("udp", "tcp"):
            raise self.error("protocol", "expected udp or tcp")
        self.format = self.option("format", str, "cef")
        if self.format not in ("cef", "rfc5424"):
            raise self.error("format", "expected cef or rfc5424")
        facility = self.option("facility", str, "local4")
        if facility not in FACILITIES:
            raise self.error("facility", f"expected one of {', '.join(FACILITIES)}")
        self.facility = FACILITIES[facility]
        self.framing = self.option("framing", str, "octet-counting")
        if self.framing not in ("octet-counting", "lf"):
            raise self.error("framing", "expected octet-counting or lf")
        self.hostname = self.option("hostname", str, socket.gethostname() or "-")
        self.timeout = self.option("timeout", float, 10.0, check=lambda v: v > 0)

    @property
    def target(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port} ({self.format})"

    def message(self, alert: dict[str, Any], now: datetime | None = None) -> str:
        pri = self.facility * 8 + SEVERITY.get(str(alert.get("severity")), (5, 4))[1]
        ts = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        host = "".join(c for c in self.hostname if 33 <= ord(c) <= 126)[:255] or "-"
        head = f"<{pri}>1 {ts} {host} lightsoc - ALERT"
        if self.format == "cef":
            return f"{head} - {cef(alert)}"
        sd_fields = [
            ("id", alert.get("id")),
            ("rule_id", alert.get("rule.id")),
            ("severity", alert.get("severity")),
            ("score", alert.get("score")),
            ("entity_type", alert.get("entity.type")),
            ("entity_value", alert.get("entity.value")),
        ]
        params = " ".join(f'{k}="{sd_value(v)}"' for k, v in sd_fields if v is not None)
        # JSON escapes control characters, so the MSG is one line
        body = json.dumps(alert, ensure_ascii=False, default=str)
        return f"{head} [lightsoc@32473 {params}] {body}"

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        messages = [self.message(a).encode() for a in alerts]
        try:
            if self.protocol == "udp":
                with socket.socket(
                    socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM
                ) as s:
                    for m in messages:
                        s.sendto(m[:MAX_UDP_BYTES], (self.host, self.port))
            else:
                frames = [
                    f"{len(m)} ".encode() + m if self.framing == "octet-counting" else m + b"\n"
                    for m in messages
                ]
                with socket.create_connection((self.host, self.port), timeout=self.timeout) as s:
                    s.sendall(b"".join(frames))
        except OSError as e:
            raise OutputError(f"{type(e).__name__}: {e}", retryable=True) from None
