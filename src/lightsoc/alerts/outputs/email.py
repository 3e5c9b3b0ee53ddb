"""SMTP e-mail: one message per batch, plain text plus an HTML alternative.

`security: starttls` (port 587, RFC 3207), `ssl` (implicit TLS, port 465,
RFC 8314) or `none` (port 25, e.g. a local relay). Login only when `username`
is set. Every alert value is HTML-escaped in the HTML part (they come from logs).
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, ClassVar

from lightsoc.alerts.outputs import render
from lightsoc.alerts.outputs.base import Output, OutputError
from lightsoc.config import OutputConfig
from lightsoc.registry import register

PORTS = {"starttls": 587, "ssl": 465, "none": 25}
FIELDS = (
    ("severity", "Severity"),
    ("rule.name", "Rule"),
    ("rule.id", "Rule id"),
    ("entity.type", "Entity type"),
    ("entity.value", "Entity"),
    ("score", "Score"),
    ("count", "Count"),
    ("first_seen", "First seen"),
    ("last_seen", "Last seen"),
    ("status", "Status"),
    ("assignee", "Assignee"),
    ("case_id", "Case"),
    ("id", "Alert id"),
    ("event_ids", "Events"),
    ("tags", "Tags"),
    ("description", "Description"),
)
MAX_ALERTS = 200


@register("outputs", "email")
class EmailOutput(Output):
    """Options: host, port, security, username, password, from, to, subject_prefix, ..."""

    options: ClassVar[tuple[str, ...]] = (
        "host",
        "port",
        "security",
        "username",
        "password",
        "from",
        "to",
        "subject_prefix",
        "timeout",
        "ca_file",
        "verify",
    )
    default_rate_limit = 10

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        super().__init__(output_id, config)
        self.host = self.option("host", str)
        self.security = self.option("security", str, "starttls")
        if self.security not in PORTS:
            raise self.error("security", "expected starttls, ssl or none")
        self.port = self.option(
            "port", int, PORTS[self.security], check=lambda p: 0 < p < 65536, expect="a port"
        )
        self.username = self.option("username", str, None)
        self.password = self.option("password", str, None, secret=True)
        if self.password and not self.username:
            raise self.error("username", "is required when a password is set")
        self.sender = self.option("from", str)
        to = self.option("to", (str, list), expect="an address or a list of addresses")
        self.to = [to] if isinstance(to, str) else to
        if not self.to or not all(isinstance(t, str) and "@" in t for t in self.to):
            raise self.error("to", "expected e-mail addresses")
        self.subject_prefix = self.option("subject_prefix", str, "[lightsoc]")
        self.timeout = self.option("timeout", float, 30.0, check=lambda v: v > 0)
        ca_file = self.option("ca_file", str, None)
        verify = self.option("verify", bool, True)
        self.context = ssl.create_default_context(cafile=ca_file)
        if not verify:  # only for lab relays with self-signed certificates
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE

    @property
    def target(self) -> str:
        return f"smtp://{self.host}:{self.port} ({self.security})"

    # --------------------------------------------------------------- message

    def message(self, alerts: Sequence[dict[str, Any]]) -> EmailMessage:
        ordered = render.by_severity(alerts)[:MAX_ALERTS]
        more = len(alerts) - len(ordered)
        msg = EmailMessage()
        # plain() drops CR/LF: a value cannot add headers
        msg["Subject"] = render.plain(f"{self.subject_prefix} {render.title(ordered)}", 200)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="lightsoc")
        msg.set_content(self._text(ordered, more))
        msg.add_alternative(self._html(ordered, more), subtype="html")
        return msg

    def _text(self, alerts: Sequence[dict[str, Any]], more: int) -> str:
        parts = []
        for a in alerts:
            rows = [
                f"{label}: {render.plain(a.get(k), 1000)}"
                for k, label in FIELDS
                if a.get(k) not in (None, "", [])
            ]
            parts.append("\n".join(rows))
        if more:
            parts.append(f"... and {more} more alerts")
        return "\n\n".join(parts) + "\n"

    def _html(self, alerts: Sequence[dict[str, Any]], more: int) -> str:
        esc = html.escape  # quote=True: values also sit safely in attributes
        tables = []
        for a in alerts:
            rows = "".join(
                f"<tr><th align='left'>{esc(label)}</th>"
                f"<td>{esc(render.plain(a.get(k), 1000))}</td></tr>"
                for k, label in FIELDS
                if a.get(k) not in (None, "", [])
            )
            tables.append(f"<table border='1' cellpadding='4'>{rows}</table>")
        if more:
            tables.append(f"<p>... and {more} more alerts</p>")
        title = esc(render.title(alerts))
        return f"<html><body><h3>{title}</h3>{'<br>'.join(tables)}</body></html>"

    # ------------------------------------------------------------------ send

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        msg = self.message(alerts)
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self.context)
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg, from_addr=self.sender, to_addrs=self.to)
        except smtplib.SMTPResponseException as e:
            # 4xx is transient (greylisting, busy), 5xx permanent (auth, rejected)
            text = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else ""
            raise OutputError(
                f"SMTP {e.smtp_code}: {self.redact(text)[:200]}", retryable=400 <= e.smtp_code < 500
            ) from None
        except smtplib.SMTPRecipientsRefused as e:
            raise OutputError(f"SMTP recipients refused: {sorted(e.recipients)}") from None
        except (OSError, smtplib.SMTPException) as e:
            retryable = isinstance(e, OSError | smtplib.SMTPServerDisconnected) and not isinstance(
                e, ssl.SSLCertVerificationError
            )
            raise OutputError(
                f"{type(e).__name__}: {self.redact(str(e))[:200]}", retryable=retryable
            ) from None
