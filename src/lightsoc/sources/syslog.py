"""`syslog` source: receive syslog messages over UDP and TCP.

Every `listen` address (`udp://HOST:PORT`, `tcp://HOST:PORT`) is a
non-blocking socket served by one `selectors` loop in the source's thread, so
a slow, silent or broken peer never blocks the others. A UDP datagram is one
message (trailing LF/NUL removed). A TCP connection is framed per RFC 6587:
a frame that starts with digits and a space is octet counted (`<len> <msg>`),
otherwise messages end at LF, CRLF or NUL; what a peer sent after its last
terminator before closing is a message too.

A message longer than `max_message_bytes` keeps its head (cut at a UTF-8
character boundary), is flagged `_truncated` and counted, never dropped; the
rest of it is read and discarded. Invalid UTF-8 is decoded with backslash
escapes and flagged `_invalid_utf8` (see `sources.lines`).

Records are buffered (one list append per message) and published as one
`RawBatch` when `batch_max_rows` are buffered or every `flush_seconds` (`pipeline.batch_max_ms`).
Network records have no offset: `log.offset` is a per-process sequence number
and `event.id` is `<hash of source id, listener, process start>-<sequence>`.
`log.source.address` is the sender (`ip:port`). There are no checkpoints.

A listener that cannot be bound (port in use, unknown host) is reported in
`metrics.errors` / `metrics.last_error` and retried with backoff while the
others serve; the error is cleared once every listener is bound (binding,
retries and the receive buffer are `sources.listen`'s).
"""

from __future__ import annotations

import hashlib
import logging
import re
import selectors
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from lightsoc.bus.base import RawBatch
from lightsoc.registry import register
from lightsoc.sources.base import Publish, Source
from lightsoc.sources.lines import OFFSET, TRUNCATED, lines_from_list
from lightsoc.sources.listen import Listener, Listeners, host_port, parse_listen
from lightsoc.store.base import Checkpoint

log = logging.getLogger(__name__)

ADDRESS = "log.source.address"
SELECT_SECONDS = 0.2
RECV_CHUNK = 1 << 16
UDP_READS_PER_WAKE = 1024  # then let the other sockets have a turn
_START_NS = time.time_ns()
_TERMINATOR = re.compile(rb"[\n\0]")


@dataclass
class _Listener(Listener):
    prefix: str = ""  # of `event.id`: hash of source id, listener, process start


@dataclass
class _Conn:
    sock: socket.socket
    listener: _Listener
    ip: str
    address: str
    buf: bytearray = field(default_factory=bytearray)
    skipping: bool = False  # discarding the rest of an oversize LF-framed message
    discard: int = 0  # bytes of an oversize octet-counted frame still to discard


@register("sources", "syslog")
class SyslogSource(Source):
    type = "syslog"

    def __init__(
        self,
        source_id: str,
        config: Any,
        *,
        checkpoints: dict[str, Checkpoint],
        one_shot: bool = False,  # a network source has no end: ignored
        batch_max_rows: int = 65536,
    ) -> None:
        super().__init__(source_id, config, checkpoints=checkpoints)
        self.batch_max_rows = max(1, batch_max_rows)
        self.max_bytes = int(getattr(config, "max_message_bytes", 64 * 1024))
        self._keep = self.max_bytes + 2  # enough for `lines` to see an oversize message
        items: list[Listener] = []
        for url in config.listen:
            raw = f"{source_id}|{url}|{_START_NS}".encode()
            prefix = hashlib.blake2b(raw, digest_size=8).hexdigest() + "-"
            items.append(_Listener(url, *parse_listen(url), prefix=prefix))
        self.listeners = Listeners(self, items, log, bind_level=logging.ERROR)
        #: per sender ip: {"received", "bytes", "last_seen"}; replaced, never mutated
        self.senders: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._conns: dict[int, _Conn] = {}
        self._reset_buffer()

    # -- buffering -------------------------------------------------------
    def _reset_buffer(self) -> None:
        self._msgs: list[bytes] = []
        self._addrs: list[str] = []
        self._prefixes: list[str] = []
        self._bytes = 0
        self._skipped = 0
        self._pending_senders: dict[str, list[int]] = {}
        self._first = 0.0

    def _count(self, ip: str, nbytes: int, messages: int) -> None:
        self._bytes += nbytes
        c = self._pending_senders.get(ip)
        if c is None:
            c = self._pending_senders[ip] = [0, 0]
        c[0] += messages
        c[1] += nbytes
        if not self._first:
            self._first = time.monotonic()

    def _add(self, msg: bytes, listener: _Listener, address: str) -> None:
        if msg == b"" or msg == b"\r":
            self._skipped += 1
            return
        self._msgs.append(msg)
        self._addrs.append(address)
        self._prefixes.append(listener.prefix)

    def _flush(self, publish: Publish) -> None:
        rows = len(self._msgs) + self._skipped
        if not rows and not self._bytes:
            return
        first = self._seq
        self._seq += len(self._msgs)
        frame = lines_from_list(self._msgs, list(range(first, self._seq)), self.max_bytes)
        records = frame.with_columns(
            (pl.Series("p", self._prefixes, pl.Utf8) + pl.col(OFFSET).cast(pl.Utf8)).alias(
                "event.id"
            ),
            pl.Series(ADDRESS, self._addrs, pl.Utf8),
        )
        now = datetime.now(UTC)
        m = self.metrics
        m.received += rows
        m.bytes += self._bytes
        m.skipped_empty += self._skipped
        if records.height:
            m.truncated += int(records[TRUNCATED].sum())
            m.last_seen = now
        senders = dict(self.senders)
        stamp = now.isoformat()
        for ip, (n, nbytes) in self._pending_senders.items():
            old = senders.get(ip, {"received": 0, "bytes": 0})
            senders[ip] = {
                "received": old["received"] + n,
                "bytes": old["bytes"] + nbytes,
                "last_seen": stamp,
            }
        self.senders = senders
        batch = RawBatch(
            source=self.id,
            source_type=self.type,
            records=records,
            checkpoints=[],
            bytes=self._bytes,
            skipped=self._skipped,
        )
        self._reset_buffer()
        publish(batch)

    # -- listeners -------------------------------------------------------
    def bound_port(self, index: int = 0) -> int | None:
        """The port listener `index` is bound to (None while it is not)."""
        return self.listeners.bound_port(index)

    # -- reading ---------------------------------------------------------
    def _read_udp(self, lst: _Listener) -> None:
        for data, addr in self.listeners.datagrams(lst, UDP_READS_PER_WAKE):
            self._count(addr[0], len(data), 1)
            msg = data.rstrip(b"\n\0")
            self._add(msg[: self._keep], lst, host_port(addr))

    def _accept(self, lst: _Listener) -> None:
        sel = self.listeners.sel
        assert lst.sock is not None and sel is not None
        while True:
            try:
                sock, addr = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. too many open files: keep serving the others
                self.listeners.report(f"{lst.url}: accept failed: {exc}")
                self.stop_event.wait(0.1)  # e.g. out of file descriptors: do not spin
                return
            sock.setblocking(False)
            conn = _Conn(sock, lst, addr[0], host_port(addr))
            self._conns[sock.fileno()] = conn
            sel.register(sock, selectors.EVENT_READ, conn)

    def _read_tcp(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by peer: what it sent is kept
            data = b""
        if not data:
            self._close(conn, eof=True)
            return
        before = len(self._msgs) + self._skipped
        conn.buf += data
        self._frames(conn)
        self._count(conn.ip, len(data), len(self._msgs) + self._skipped - before)

    def _frames(self, conn: _Conn) -> None:
        """Take every complete message out of `conn.buf`."""
        buf, pos, end = conn.buf, 0, len(conn.buf)
        keep, lst, address = self._keep, conn.listener, conn.address
        while pos < end:
            if conn.discard:
                n = min(conn.discard, end - pos)
                conn.discard -= n
                pos += n
                continue
            if conn.skipping:
                stop = _terminator(buf, pos)
                if stop < 0:
                    pos = end
                    break
                conn.skipping, pos = False, stop + 1
                continue
            if buf[pos] == 0x3C and (after := self._lf_run(conn, pos, end)) > 0:  # "<PRI>"
                pos = after
                continue
            if 0x30 <= buf[pos] <= 0x39:  # maybe an octet count
                space = buf.find(b" ", pos, min(end, pos + 11))
                if space > pos and buf[pos:space].isdigit():
                    length = int(buf[pos:space])
                    take = min(length, keep)
                    if end - space - 1 < take:
                        break  # wait for the rest of the frame (or its head)
                    start = space + 1
                    msg = bytes(buf[start : start + take])
                    self._add(msg if take < length else msg.rstrip(b"\n\0"), lst, address)
                    pos = start + take
                    conn.discard = length - take
                    continue
                if space < 0 and end - pos < 11 and buf[pos:end].isdigit():
                    break  # cannot tell yet
            stop = _terminator(buf, pos)
            if stop < 0:
                if end - pos > keep:  # an oversize line: keep its head, discard the rest
                    self._add(bytes(buf[pos : pos + keep]), lst, address)
                    conn.skipping, pos = True, end
                break
            self._add(bytes(buf[pos:stop]), lst, address)
            pos = stop + 1
        del buf[:pos]

    def _lf_run(self, conn: _Conn, pos: int, end: int) -> int:
        """Take a run of whole LF-terminated messages in one C-level split.

        The common case (every message starts with its "<PRI>", no NUL, none
        over the size limit) costs a few passes over the bytes instead of a
        Python step per message; anything else falls back to the frame loop
        (returns -1). Returns the position after the run.
        """
        buf = conn.buf
        last = buf.rfind(b"\n", pos, end)
        if last < 0:
            return -1
        region = bytes(buf[pos:last])
        lines = region.split(b"\n")
        if (
            region.count(b"\n<") != len(lines) - 1
            or b"\0" in region
            or max(map(len, lines)) > self._keep - 2
        ):
            return -1
        self._msgs.extend(lines)
        self._addrs.extend([conn.address] * len(lines))
        self._prefixes.extend([conn.listener.prefix] * len(lines))
        return last + 1

    def _close(self, conn: _Conn, eof: bool) -> None:
        """Close a connection; on EOF its unterminated last message is a record."""
        if eof and conn.buf and not conn.skipping and not conn.discard:
            before = len(self._msgs) + self._skipped
            rest = bytes(conn.buf)
            count, _, body = rest.partition(b" ")
            if count.isdigit() and body:  # a partial octet-counted frame
                rest = body
            self._add(rest[: self._keep].rstrip(b"\r\n\0"), conn.listener, conn.address)
            self._count(conn.ip, 0, len(self._msgs) + self._skipped - before)
        conn.buf.clear()
        self._conns.pop(conn.sock.fileno(), None)
        if self.listeners.sel is not None:
            try:
                self.listeners.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.sock.close()

    # -- running ---------------------------------------------------------
    def run(self, publish: Publish) -> None:
        self.listeners.open()
        try:
            self._serve(publish)
        finally:
            for conn in list(self._conns.values()):
                self._close(conn, eof=True)  # what a peer sent is not lost on stop
            try:
                self._flush(publish)
            finally:
                self.listeners.close()
                self._conns.clear()

    def _serve(self, publish: Publish) -> None:
        while not self.stop_event.is_set():
            now = time.monotonic()
            self.listeners.bind_due(now)
            timeout = SELECT_SECONDS
            if self._first:
                timeout = max(0.0, min(timeout, self._first + self.flush_seconds - now))
            for key, _ in self.listeners.wait(timeout):
                target = key.data
                if isinstance(target, _Conn):
                    self._read_tcp(target)
                elif target.transport == "udp":
                    self._read_udp(target)
                else:
                    self._accept(target)
                if len(self._msgs) >= self.batch_max_rows:
                    self._flush(publish)
            if self._first and time.monotonic() - self._first >= self.flush_seconds:
                self._flush(publish)


def _terminator(buf: bytearray, pos: int) -> int:
    """Index of the first LF or NUL at or after `pos` (-1 if none)."""
    m = _TERMINATOR.search(buf, pos)
    return m.start() if m else -1
