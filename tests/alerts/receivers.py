"""Real receivers on 127.0.0.1 for the alert output tests.

`HttpReceiver`: a threading HTTP server that records every request and answers
from a script (`respond`), like the webhook services do; it can hang.
`SmtpReceiver`: aiosmtpd with STARTTLS or implicit TLS and optional AUTH.
`SyslogReceiver`: a UDP or TCP listener collecting what arrives.
`self_signed_cert`: a certificate for 127.0.0.1 made with `openssl req`.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ------------------------------------------------------------------------ HTTP


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class HttpReceiver:
    """Records requests; answers with scripted replies, then with `default`."""

    def __init__(self, default: Reply | None = None) -> None:
        self.requests: list[Request] = []
        self.default = default or Reply()
        self.script: list[Reply] = []
        self.release = threading.Event()  # ends hanging requests
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    raw_query=parts.query,
                )
                with receiver.lock:
                    receiver.requests.append(req)
                    reply = receiver.script.pop(0) if receiver.script else receiver.default
                if reply.hang:
                    receiver.release.wait(30)
                    return
                data = (
                    reply.body.encode()
                    if isinstance(reply.body, str)
                    else json.dumps(reply.body).encode()
                )
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def respond(self, *replies: Reply) -> None:
        with self.lock:
            self.script.extend(replies)

    def wait(self, n: int, timeout: float = 10.0) -> list[Request]:
        wait_for(lambda: len(self.requests) >= n, timeout, f"{n} request(s)")
        return self.requests

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------ SMTP


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert, key) for CN/SAN 127.0.0.1, made with Debian's `openssl`."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


class SmtpReceiver:
    """aiosmtpd on a free port: `mode` is `starttls` or `ssl`; AUTH if `users` given."""

    def __init__(
        self, mode: str, cert: Path, key: Path, users: dict[str, str] | None = None
    ) -> None:
        self.recorder = _Recorder()
        self.logins: list[str] = []
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        users = users or {}

        def authenticator(
            server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and users.get(data.login.decode()) == (
                data.password.decode()
            )
            if ok:
                self.logins.append(data.login.decode())
            return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535

        kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_required": bool(users)}
        if mode == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            kwargs.update(ssl_context=ctx)
            # implicit TLS: AUTH is already protected, aiosmtpd only knows STARTTLS
            kwargs["auth_require_tls"] = False
        self.port = _free_port()
        self.controller = Controller(
            self.recorder, hostname="127.0.0.1", port=self.port, server_hostname="127.0.0.1",
            **kwargs,
        )  # fmt: skip
        self.controller.start()

    @property
    def messages(self) -> list[Envelope]:
        return self.recorder.messages

    def close(self) -> None:
        self.controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- syslog


class SyslogReceiver:
    """Collects raw datagrams (UDP) or the raw byte stream (TCP)."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.datagrams: list[bytes] = []
        self.stream = bytearray()
        self.lock = threading.Lock()
        receiver = self
        if protocol == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.settimeout(0.2)
            self.port = self.sock.getsockname()[1]
            self.running = True
            self.thread = threading.Thread(target=self._udp, daemon=True)
            self.thread.start()
        else:

            class Handler(socketserver.BaseRequestHandler):
                def handle(self) -> None:
                    while chunk := self.request.recv(65536):
                        with receiver.lock:
                            receiver.stream.extend(chunk)

            self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
            self.server.daemon_threads = True
            self.port = self.server.server_address[1]
            self.thread = threading.Thread(
                target=self.server.serve_forever, args=(0.05,), daemon=True
            )
            self.thread.start()

    def _udp(self) -> None:
        while self.running:
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.datagrams.append(data)

    def data(self) -> bytes:
        with self.lock:
            return bytes(self.stream)

    def close(self) -> None:
        if self.protocol == "udp":
            self.running = False
            self.sock.close()
        else:
            self.server.shutdown()
            self.server.server_close()
