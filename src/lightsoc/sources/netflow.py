"""`netflow` source: receive NetFlow v5/v9 and IPFIX over UDP.

Every `listen` address (`udp://HOST:PORT`) is a non-blocking UDP socket with
a large receive buffer, served by one `selectors` loop in the source's
thread. Each datagram is decoded at once (`NetflowDecoder` with a
`FlowBatch`: templates are parsed, data sets queued), and the batch's ECS
columns are built and published as one `RawBatch(parsed=True)` when
`batch_max_rows` flows are queued or `flush_seconds` (`pipeline.batch_max_ms`) after the first one.

An exporter is its `ip:port`: a UDP "transport session" in RFC 7011 terms,
which is what templates are scoped to, so two exporters behind one address
(or one that restarted on a new port) never share template ids. It is also
`log.source.address` and the key of `senders`, the per-exporter counters
(datagrams, flows, bytes, malformed, unknown_version, templates,
template_changes, template_collisions, pending, dropped, last_seen). Bad input is counted there
and in `metrics.extra` / `metrics.errors`, never fatal. Data sets waiting
for their template are dropped after `pending_seconds` (checked on a timer,
not only when the next datagram arrives).
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from lightsoc.bus.base import RawBatch
from lightsoc.registry import register
from lightsoc.sources.base import Publish, Source, set_rcvbuf
from lightsoc.sources.netflow_columns import FlowBatch
from lightsoc.sources.netflow_decode import NetflowDecoder
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

UDP_RCVBUF = 64 << 20  # as syslog's; past net.core.rmem_max only when privileged
UDP_MAX_DATAGRAM = 1 << 16
READS_PER_WAKE = 2048  # then let the other sockets and the flush timer have a turn
RETRY_MAX_SECONDS = 30.0
#: decoder counters summed per exporter (and in `metrics.extra`)
COUNTED = (
    "malformed",
    "unknown_version",
    "templates",
    "template_changes",
    "template_collisions",
    "pending",
)


def parse_listen(value: str) -> tuple[str, int]:
    """`udp://HOST:PORT` -> (host, port); IPv6 hosts in brackets."""
    _, _, rest = value.partition("://")
    host, _, port = rest.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def exporter_address(addr: Any) -> str:
    """The "ip:port" of a socket address ("[ip]:port" for IPv6)."""
    ip, port = addr[0], addr[1]
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class _Listener:
    url: str
    host: str
    port: int
    sock: socket.socket | None = None
    next_try: float = 0.0
    delay: float = 1.0
    problem: str | None = None


@register("sources", "netflow")
class NetflowSource(Source):
    type = "netflow"

    def __init__(
        self,
        source_id: str,
        config: Any,
        *,
        checkpoints: dict[str, Checkpoint],
        one_shot: bool = False,  # a network source has no end: ignored
        batch_max_rows: int = 65536,
        pending_seconds: float = 10.0,
    ) -> None:
        super().__init__(source_id, config, checkpoints=checkpoints)
        self.batch_max_rows = max(1, batch_max_rows)
        self.rcvbuf = int(getattr(config, "udp_receive_buffer_bytes", UDP_RCVBUF))
        self.listeners = [_Listener(url, *parse_listen(url)) for url in config.listen]
        self.decoder = NetflowDecoder(pending_seconds=pending_seconds)
        #: per exporter "ip:port": counters (see module doc); replaced, never mutated
        self.senders: dict[str, dict[str, Any]] = {}
        self._sel: selectors.BaseSelector | None = None
        self._dropped_seen: dict[str, int] = {}
        self._reset()

    # -- batching --------------------------------------------------------
    def _reset(self) -> None:
        self._batch = FlowBatch()
        self._bytes = 0
        self._first = 0.0
        self._pending_senders: dict[str, list[int]] = {}

    def _datagram(self, data: bytes, exporter: str, now: float) -> None:
        _, c = self.decoder.decode(data, exporter, now, self._batch)
        s = self._pending_senders.get(exporter)
        if s is None:
            s = self._pending_senders[exporter] = [0] * (3 + len(COUNTED))
        s[0] += 1
        s[1] += c["flows"]
        s[2] += len(data)
        s[3] += c["malformed"]
        s[4] += c["unknown_version"]
        s[5] += c["templates"] + c["options_templates"]
        s[6] += c["template_changes"]
        s[7] += c["template_collisions"]
        s[8] += c["pending"]
        self._bytes += len(data)
        if not self._first:
            self._first = now

    def _flush(self, publish: Publish) -> None:
        self.decoder.flush_pending(time.monotonic())
        dropped = {
            k: v - self._dropped_seen.get(k, 0)
            for k, v in self.decoder.dropped_by.items()
            if v != self._dropped_seen.get(k, 0)
        }
        if not self._bytes and not dropped:
            return
        self._dropped_seen = dict(self.decoder.dropped_by)
        rows, lost = self._batch.rows, 0
        try:
            records = self._batch.frame()
        except Exception as exc:  # a decoder bug must not stop the source
            log.exception("source %s: building a batch of %d flows failed", self.id, rows)
            self._error(f"building a batch failed: {type(exc).__name__}: {exc}")
            records, lost = pl.DataFrame(), rows
        now = datetime.now(UTC)
        m = self.metrics
        m.received += rows
        m.bytes += self._bytes
        m.dropped += lost
        if rows:
            m.last_seen = now
        senders = dict(self.senders)
        stamp = now.isoformat()
        for exporter in set(self._pending_senders) | set(dropped):
            add = self._pending_senders.get(exporter, [0] * (3 + len(COUNTED)))
            old = senders.get(exporter) or dict.fromkeys(
                ("datagrams", "flows", "bytes", *COUNTED, "dropped"), 0
            )
            new = dict(old)
            for i, key in enumerate(("datagrams", "flows", "bytes", *COUNTED)):
                new[key] = old[key] + add[i]
            new["dropped"] = old["dropped"] + dropped.get(exporter, 0)
            if exporter in self._pending_senders:
                new["last_seen"] = stamp
            senders[exporter] = new
            for key in ("malformed", "unknown_version"):
                m.errors += add[3 + COUNTED.index(key)]
            for i, key in enumerate(COUNTED):
                m.extra[key] = m.extra.get(key, 0) + add[3 + i]
            m.extra["dropped_sets"] = m.extra.get("dropped_sets", 0) + dropped.get(exporter, 0)
        self.senders = senders
        m.extra["pending_sets"] = self.decoder.pending
        batch = RawBatch(
            source=self.id,
            source_type=self.type,
            records=records,
            checkpoints=[],
            bytes=self._bytes,
            dropped=lost,
            parsed=True,
        )
        self._reset()
        publish(batch)

    def _error(self, msg: str) -> None:
        self.metrics.errors += 1
        if msg != self.metrics.last_error:  # a repeated error is counted, logged once
            self.metrics.last_error = msg
            log.warning("source %s: %s", self.id, msg)

    # -- listeners -------------------------------------------------------
    def _bind(self, lst: _Listener) -> None:
        sock: socket.socket | None = None
        try:
            infos = socket.getaddrinfo(
                lst.host, lst.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            set_rcvbuf(sock, self.rcvbuf)
            sock.bind(sockaddr)
            sock.setblocking(False)
        except OSError as exc:
            if sock is not None:
                sock.close()
            msg = f"cannot listen on {lst.url}: {exc.strerror or exc} (retrying)"
            if msg != lst.problem:
                lst.problem = msg
                self._error(msg)
            lst.next_try = time.monotonic() + lst.delay
            lst.delay = min(lst.delay * 2, RETRY_MAX_SECONDS)
            return
        lst.sock, lst.problem, lst.delay = sock, None, 1.0
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        old = self.metrics.extra.get("udp_rcvbuf")
        self.metrics.extra["udp_rcvbuf"] = rcvbuf if old is None else min(old, rcvbuf)
        if rcvbuf < self.rcvbuf:
            log.info(
                "source %s: %s receive buffer is %d bytes (asked %d; see net.core.rmem_max)",
                self.id,
                lst.url,
                rcvbuf,
                self.rcvbuf,
            )
        assert self._sel is not None
        self._sel.register(sock, selectors.EVENT_READ, lst)
        log.info("source %s: listening on udp://%s", self.id, exporter_address(sock.getsockname()))
        if not any(x.problem for x in self.listeners):
            self.metrics.last_error = None

    def bound_port(self, index: int = 0) -> int | None:
        """The port listener `index` is bound to (None while it is not)."""
        sock = self.listeners[index].sock
        return sock.getsockname()[1] if sock is not None else None

    # -- running ---------------------------------------------------------
    def _read(self, lst: _Listener, publish: Publish) -> None:
        assert lst.sock is not None
        recv = lst.sock.recvfrom
        for _ in range(READS_PER_WAKE):
            try:
                data, addr = recv(UDP_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors surfacing on some systems
                self._error(f"{lst.url}: receive failed: {exc}")
                return
            self._datagram(data, exporter_address(addr), time.monotonic())
            if self._batch.rows >= self.batch_max_rows:
                self._flush(publish)

    def run(self, publish: Publish) -> None:
        self._sel = selectors.DefaultSelector()
        try:
            self._serve(publish)
        finally:
            try:
                self._flush(publish)  # what was received is not lost on stop
            finally:
                for lst in self.listeners:
                    if lst.sock is not None:
                        lst.sock.close()
                        lst.sock = None
                self._sel.close()
                self._sel = None

    def _serve(self, publish: Publish) -> None:
        assert self._sel is not None
        last_tick = time.monotonic()
        while not self.stop_event.is_set():
            now = time.monotonic()
            for lst in self.listeners:
                if lst.sock is None and now >= lst.next_try:
                    self._bind(lst)
            timeout = self.flush_seconds
            if self._first:
                timeout = max(0.0, min(timeout, self._first + self.flush_seconds - now))
            if not self._sel.get_map():
                self.stop_event.wait(timeout)
                events = []
            else:
                events = self._sel.select(timeout)
            for key, _ in events:
                self._read(key.data, publish)
            now = time.monotonic()
            # the timer also expires data held for templates that never came
            if (self._first and now - self._first >= self.flush_seconds) or (
                now - last_tick >= self.flush_seconds and self.decoder.pending
            ):
                self._flush(publish)
                last_tick = now
