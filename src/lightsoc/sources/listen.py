"""Listening sockets of the network sources (`syslog`, `netflow`).

A `listen` address is `SCHEME://HOST:PORT` (an IPv6 host in brackets, an
empty host is 0.0.0.0); `udp` is a datagram socket, anything else a TCP
listening socket. `Listeners` owns a source's sockets and the one `selectors`
loop that serves them in the source's thread; framing and decoding stay with
the source, which gets each readable socket back as its `Listener`.

A listener that cannot be bound (port in use, unknown host) is reported in
`metrics.errors` / `metrics.last_error` when its problem changes and retried
with backoff (1 s, doubling up to `RETRY_MAX_SECONDS`) while the others
serve; the error is cleared once every listener is bound. UDP sockets ask
for `udp_receive_buffer_bytes`; the smallest buffer granted is
`metrics.extra["udp_rcvbuf"]`, and a smaller one than asked is logged.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lightsoc.sources.base import Source, set_rcvbuf

# Bursts and parse pauses are absorbed here; small datagrams cost ~1 KiB of it each.
UDP_RCVBUF = 64 << 20
UDP_MAX_DATAGRAM = 1 << 16
RETRY_MAX_SECONDS = 30.0
TCP_BACKLOG = 128


def parse_listen(value: str) -> tuple[str, str, int]:
    """`udp://HOST:PORT` -> ("udp", host, port); IPv6 hosts in brackets."""
    scheme, _, rest = value.partition("://")
    host, _, port = rest.rpartition(":")
    return scheme, host.strip("[]") or "0.0.0.0", int(port)


def host_port(addr: Any) -> str:
    """The "ip:port" of a socket address ("[ip]:port" for IPv6)."""
    ip, port = addr[0], addr[1]
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class Listener:
    """One `listen` address and its socket (None while unbound)."""

    url: str
    transport: str
    host: str
    port: int
    sock: socket.socket | None = None
    next_try: float = 0.0
    delay: float = 1.0
    problem: str | None = None


class Listeners:
    """A source's listeners and the selector that serves them (source thread only).

    `log` is the source module's logger, so records keep their logger name;
    `bind_level` is the level a bind failure is logged at.
    """

    def __init__(
        self,
        source: Source,
        items: list[Listener],
        log: logging.Logger,
        *,
        bind_level: int = logging.WARNING,
    ) -> None:
        self.source = source
        self.items = items
        self.log = log
        self.bind_level = bind_level
        self.rcvbuf = int(getattr(source.config, "udp_receive_buffer_bytes", UDP_RCVBUF))
        self.sel: selectors.BaseSelector | None = None

    def report(self, msg: str, level: int = logging.WARNING) -> None:
        """Count an error of the source; a repeated one is logged once."""
        m = self.source.metrics
        m.errors += 1
        if msg != m.last_error:
            m.last_error = msg
            self.log.log(level, "source %s: %s", self.source.id, msg)

    def bound_port(self, index: int = 0) -> int | None:
        """The port listener `index` is bound to (None while it is not)."""
        sock = self.items[index].sock
        return sock.getsockname()[1] if sock is not None else None

    # -- lifecycle -------------------------------------------------------
    def open(self) -> selectors.BaseSelector:
        """The selector; listeners are bound by `bind_due`."""
        self.sel = selectors.DefaultSelector()
        return self.sel

    def close(self) -> None:
        """Close every listening socket and the selector."""
        for lst in self.items:
            if lst.sock is not None:
                lst.sock.close()
                lst.sock = None
        if self.sel is not None:
            self.sel.close()
            self.sel = None

    def bind_due(self, now: float) -> None:
        """Bind the unbound listeners whose retry time has come."""
        for lst in self.items:
            if lst.sock is None and now >= lst.next_try:
                self._bind(lst)

    def wait(self, timeout: float) -> list[tuple[selectors.SelectorKey, int]]:
        """The sockets ready within `timeout` s (none bound: wait on `stop` instead)."""
        assert self.sel is not None
        if not self.sel.get_map():
            self.source.stop_event.wait(timeout)
            return []
        return self.sel.select(timeout)

    def datagrams(self, lst: Listener, limit: int) -> Iterator[tuple[bytes, Any]]:
        """Up to `limit` (data, address) waiting on a UDP listener; stops when none is left."""
        assert lst.sock is not None
        recv = lst.sock.recvfrom
        for _ in range(limit):
            try:
                got = recv(UDP_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors surfacing on some systems
                self.report(f"{lst.url}: receive failed: {exc}")
                return
            yield got

    # -- binding ---------------------------------------------------------
    def _bind(self, lst: Listener) -> None:
        udp = lst.transport == "udp"
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        sock: socket.socket | None = None
        try:
            infos = socket.getaddrinfo(lst.host, lst.port, type=kind, flags=socket.AI_PASSIVE)
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, kind)
            if udp:
                set_rcvbuf(sock, self.rcvbuf)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            if not udp:
                sock.listen(TCP_BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            if sock is not None:
                sock.close()
            msg = f"cannot listen on {lst.url}: {exc.strerror or exc} (retrying)"
            if msg != lst.problem:  # reported when it changes, not on every retry
                lst.problem = msg
                self.report(msg, self.bind_level)
            lst.next_try = time.monotonic() + lst.delay
            lst.delay = min(lst.delay * 2, RETRY_MAX_SECONDS)
            return
        lst.sock, lst.problem, lst.delay = sock, None, 1.0
        if udp:
            self._note_rcvbuf(lst, sock)
        assert self.sel is not None
        self.sel.register(sock, selectors.EVENT_READ, lst)
        bound = host_port(sock.getsockname())
        self.log.info("source %s: listening on %s://%s", self.source.id, lst.transport, bound)
        if not any(x.problem for x in self.items):
            self.source.metrics.last_error = None

    def _note_rcvbuf(self, lst: Listener, sock: socket.socket) -> None:
        """Report the receive buffer the kernel granted (the smallest over listeners)."""
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        extra = self.source.metrics.extra
        old = extra.get("udp_rcvbuf")
        extra["udp_rcvbuf"] = rcvbuf if old is None else min(old, rcvbuf)
        if rcvbuf < self.rcvbuf:
            self.log.info(
                "source %s: %s receive buffer is %d bytes (asked %d; see net.core.rmem_max)",
                self.source.id,
                lst.url,
                rcvbuf,
                self.rcvbuf,
            )
