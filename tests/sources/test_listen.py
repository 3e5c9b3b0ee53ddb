"""`sources.listen`: binding with retry and backoff, reporting, serving, on 127.0.0.1.

Retries are driven by passing `now` to `bind_due`, so backoff is checked
without waiting for it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from lightsoc.sources.base import Publish, Source
from lightsoc.sources.listen import (
    RETRY_MAX_SECONDS,
    Listener,
    Listeners,
    host_port,
    parse_listen,
)

log = logging.getLogger("tests.listen")


class Probe(Source):
    """A source that only owns listeners."""

    type = "probe"

    def run(self, publish: Publish) -> None:  # never run: the tests drive `Listeners`
        raise NotImplementedError


def listeners(*urls: str, bind_level: int = logging.WARNING) -> Listeners:
    source = Probe("net", SimpleNamespace(udp_receive_buffer_bytes=1 << 16), checkpoints={})
    items = [Listener(url, *parse_listen(url)) for url in urls]
    return Listeners(source, items, log, bind_level=bind_level)


@pytest.fixture
def held() -> Iterator[dict[str, socket.socket]]:
    """A UDP and a TCP socket holding a port each on 127.0.0.1 (closed at the end)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    socks = {"udp": udp, "tcp": tcp}
    for s in socks.values():
        s.bind(("127.0.0.1", 0))
    tcp.listen(1)
    yield socks
    for s in socks.values():
        s.close()


def test_parse_listen_and_host_port() -> None:
    assert parse_listen("udp://127.0.0.1:2055") == ("udp", "127.0.0.1", 2055)
    assert parse_listen("tcp://[::1]:514") == ("tcp", "::1", 514)
    assert parse_listen("udp://:514") == ("udp", "0.0.0.0", 514)
    assert host_port(("10.0.0.1", 53)) == "10.0.0.1:53"
    assert host_port(("2001:db8::1", 53, 0, 0)) == "[2001:db8::1]:53"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_port_in_use_is_retried_with_backoff_then_bound(
    held: dict[str, socket.socket], transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    taken = held[transport]
    port = taken.getsockname()[1]
    url = f"{transport}://127.0.0.1:{port}"
    ls = listeners(url, bind_level=logging.ERROR)
    m = ls.source.metrics
    lst = ls.items[0]
    ls.open()
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            ls.bind_due(0.0)
            assert ls.bound_port() is None and lst.delay == 2.0
            problem = m.last_error
            assert m.errors == 1 and problem is not None
            assert problem.startswith(f"cannot listen on {url}: ")
            assert problem.endswith("(retrying)") and "in use" in problem
            ls.bind_due(lst.next_try - 0.001)  # not due yet: no attempt
            assert lst.delay == 2.0
            delays = []
            for _ in range(6):  # the same problem again: counted once, delay doubles
                ls.bind_due(lst.next_try)
                delays.append(lst.delay)
            assert delays == [4.0, 8.0, 16.0] + [RETRY_MAX_SECONDS] * 3
            assert m.errors == 1
            taken.close()
            ls.bind_due(lst.next_try)
        assert ls.bound_port() == port and lst.delay == 1.0 and lst.problem is None
        assert m.last_error is None and m.errors == 1
        assert ("udp_rcvbuf" in m.extra) == (transport == "udp")
        records = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert records == [
            (logging.ERROR, f"source net: {problem}"),
            (logging.INFO, f"source net: listening on {url}"),
        ]
    finally:
        ls.close()
    assert lst.sock is None and ls.sel is None


def test_one_listener_failing_keeps_the_error_until_every_one_is_bound(
    held: dict[str, socket.socket],
) -> None:
    taken = held["udp"].getsockname()[1]
    ls = listeners("udp://127.0.0.1:0", f"udp://127.0.0.1:{taken}")
    ls.open()
    try:
        ls.bind_due(0.0)
        assert ls.bound_port(0) and ls.bound_port(1) is None
        assert f"udp://127.0.0.1:{taken}" in (ls.source.metrics.last_error or "")
        held["udp"].close()
        ls.bind_due(ls.items[1].next_try)
        assert ls.bound_port(1) == taken and ls.source.metrics.last_error is None
    finally:
        ls.close()


def test_an_unknown_host_is_reported_at_the_bind_level(caplog: pytest.LogCaptureFixture) -> None:
    ls = listeners("udp://host.invalid:5514")
    ls.open()
    try:
        with caplog.at_level(logging.WARNING, logger=log.name):
            ls.bind_due(0.0)
        assert "udp://host.invalid:5514" in (ls.source.metrics.last_error or "")
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        # nothing is bound: `wait` waits on the stop event instead of the selector
        ls.source.stop()
        assert ls.wait(5.0) == []
    finally:
        ls.close()


def test_datagrams_are_read_in_order_up_to_the_limit_per_call() -> None:
    ls = listeners("udp://127.0.0.1:0")
    ls.open()
    try:
        ls.bind_due(0.0)
        port = ls.bound_port()
        assert port
        lst = ls.items[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            for i in range(5):
                s.sendto(b"m%d" % i, ("127.0.0.1", port))
            got: list[tuple[bytes, object]] = []
            for _ in range(20):  # bounded: each wait is at most 1 s
                if len(got) == 5:
                    break
                for key, _ in ls.wait(1.0):
                    assert key.data is lst
                    chunk = list(ls.datagrams(lst, 2))
                    assert len(chunk) <= 2
                    got += chunk
            assert [d for d, _ in got] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
            assert {host_port(a) for _, a in got} == {host_port(s.getsockname())}
        assert list(ls.datagrams(lst, 10)) == []  # nothing left: no error
        assert ls.source.metrics.errors == 0
    finally:
        ls.close()


def test_report_counts_every_error_and_logs_a_repeat_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ls = listeners("udp://127.0.0.1:0")
    with caplog.at_level(logging.WARNING, logger=log.name):
        for msg in ("a", "a", "b", "a"):
            ls.report(msg)
    assert ls.source.metrics.errors == 4 and ls.source.metrics.last_error == "a"
    assert [r.getMessage() for r in caplog.records] == [
        "source net: a",
        "source net: b",
        "source net: a",
    ]


def _granted(code: str) -> int:
    """SO_RCVBUF of a UDP socket after `set_rcvbuf(sock, 4 * rmem_max)`, in a child
    that first runs `code` (e.g. dropping root)."""
    script = (
        "import os, socket\n"
        "from pathlib import Path\n"
        "from lightsoc.sources.base import set_rcvbuf\n"
        "want = 4 * int(Path('/proc/sys/net/core/rmem_max').read_text())\n"
        f"{code}\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "set_rcvbuf(s, want)\n"
        "print(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_root_gets_a_receive_buffer_past_rmem_max_and_others_the_cap() -> None:
    # The tests run as root (`make test`), like a collector that binds port 514.
    assert os.geteuid() == 0
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    # SO_RCVBUFFORCE: what was asked (the kernel doubles it for its bookkeeping)
    assert _granted("") >= 4 * rmem_max
    # without CAP_NET_ADMIN the kernel caps SO_RCVBUF at rmem_max (doubled)
    assert _granted("os.setgid(65534); os.setuid(65534)") == 2 * rmem_max
