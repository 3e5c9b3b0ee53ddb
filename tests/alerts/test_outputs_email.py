"""SMTP output against aiosmtpd: STARTTLS on a submission port, implicit TLS,
AUTH, the text/HTML alternative with escaped values, and failures."""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from lightsoc.alerts.outputs import Dispatcher, OutputError, build_output
from lightsoc.config import OutputConfig
from tests.alerts.receivers import SmtpReceiver, self_signed_cert
from tests.alerts.test_outputs_chat import EVIL
from tests.alerts.test_outputs_dispatch import alert

PASSWORD = "smtp-Pa55-very-secret"
# implicit TLS protects AUTH, but aiosmtpd only knows about STARTTLS and warns
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def starttls(cert: tuple[Path, Path]) -> Iterator[SmtpReceiver]:
    r = SmtpReceiver("starttls", *cert, users={"soc": PASSWORD})
    yield r
    r.close()


@pytest.fixture
def implicit_tls(cert: tuple[Path, Path]) -> Iterator[SmtpReceiver]:
    r = SmtpReceiver("ssl", *cert, users={"soc": PASSWORD})
    yield r
    r.close()


def config(receiver: SmtpReceiver, cert: Path, **opts: Any) -> OutputConfig:
    base: dict[str, Any] = {
        "type": "email",
        "host": "127.0.0.1",
        "port": receiver.port,
        "username": "soc",
        "password": PASSWORD,
        "from": "lightsoc@example.org",
        "to": ["soc@example.org", "oncall@example.org"],
        "ca_file": str(cert),
        "timeout": 10,
    }
    return OutputConfig(**{**base, **opts})


def parse(receiver: SmtpReceiver) -> EmailMessage:
    raw = receiver.messages[-1].content
    assert isinstance(raw, bytes)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def bodies(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_starttls_with_auth(starttls: SmtpReceiver, cert: tuple[Path, Path]) -> None:
    out = build_output("mail", config(starttls, cert[0], security="starttls"))
    out.send([alert(1, "critical", description="root login")])
    assert starttls.logins == ["soc"]
    env = starttls.messages[0]
    assert env.mail_from == "lightsoc@example.org"
    assert env.rcpt_tos == ["soc@example.org", "oncall@example.org"]
    msg = parse(starttls)
    assert msg["From"] == "lightsoc@example.org"
    assert msg["To"] == "soc@example.org, oncall@example.org"
    assert msg["Subject"] == "[lightsoc] [CRITICAL] SSH brute force"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = bodies(msg)
    for want in ("203.0.113.1", "ssh-brute-force", "root login", "critical", "alert-1"):
        assert want in text and want in html


def test_implicit_tls(implicit_tls: SmtpReceiver, cert: tuple[Path, Path]) -> None:
    out = build_output(
        "mail", config(implicit_tls, cert[0], security="ssl", subject_prefix="[SOC]")
    )
    out.send([alert(1), alert(2, "low")])
    assert implicit_tls.logins == ["soc"]
    msg = parse(implicit_tls)
    assert msg["Subject"] == "[SOC] lightsoc: 2 alerts (1 high, 1 low)"
    text, _ = bodies(msg)
    assert text.index("203.0.113.1") < text.index("203.0.113.2")  # most severe first


def test_html_escapes_attacker_values(starttls: SmtpReceiver, cert: tuple[Path, Path]) -> None:
    evil = alert(
        3, **{"entity.value": EVIL + ' "onmouseover=x', "rule.name": "<b>x</b>\r\nBcc: a@b"}
    )
    build_output("mail", config(starttls, cert[0])).send([evil])
    msg = parse(starttls)
    assert "Bcc" not in msg.keys()  # noqa: SIM118  (a header cannot be injected)
    assert starttls.messages[0].rcpt_tos == ["soc@example.org", "oncall@example.org"]
    _, html = bodies(msg)
    assert "<script" not in html and "<b>x" not in html and '"onmouseover' not in html
    assert "&lt;script&gt;" in html and "&quot;onmouseover" in html


def test_wrong_password_is_permanent_and_secret_free(
    starttls: SmtpReceiver, cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    out = build_output(
        "mail",
        config(
            starttls, cert[0], password="wrong-" + PASSWORD, max_attempts=3, backoff_initial=0.01
        ),
    )
    with pytest.raises(OutputError) as exc:
        out.send([alert()])
    assert exc.value.retryable is False and "535" in str(exc.value)
    with Dispatcher([out]) as d:
        d.notify([alert()])
        assert d.flush(10)
        stats = d.stats()["mail"]
    assert stats["failed"] == 1 and stats["retried"] == 0
    assert PASSWORD not in repr(stats) and PASSWORD not in caplog.text
    assert starttls.messages == []


def test_untrusted_certificate_is_refused(starttls: SmtpReceiver, cert: tuple[Path, Path]) -> None:
    out = build_output("mail", config(starttls, cert[0], ca_file=None))
    with pytest.raises(OutputError, match="SSLCertVerificationError") as exc:
        out.send([alert()])
    assert not exc.value.retryable
    assert starttls.messages == []


def test_connection_refused_is_retryable(cert: tuple[Path, Path]) -> None:
    receiver = SmtpReceiver("starttls", *cert)
    receiver.close()
    out = build_output("mail", config(receiver, cert[0]))
    with pytest.raises(OutputError) as exc:
        out.send([alert()])
    assert exc.value.retryable
