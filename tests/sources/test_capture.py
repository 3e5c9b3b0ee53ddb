"""Live capture on `lo`: kernel BPF filtering, no loopback duplicates, DNS vs tshark."""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightsoc.sources.capture import LiveCapture, compile_filter

# Generous bounds so a loaded machine never fails a test; nothing asserts on durations.
GIVE_UP_S = 10.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required for this test and is not installed")
    return path


def _udp_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.settimeout(GIVE_UP_S)
    return s


def _free_port_udp_tcp() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(50):
        u = _udp_socket()
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    pytest.fail("no free UDP+TCP port on 127.0.0.1")


def _collect(cap: LiveCapture, n: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    end = time.monotonic() + GIVE_UP_S
    while len(out) < n and time.monotonic() < end:
        out += cap.read(n - len(out), 0.5)
    return out


def _udp(frame: bytes) -> tuple[str, str, int, int, bytes]:
    """(src, dst, sport, dport, payload) of an Ethernet/IPv4/UDP frame."""
    assert struct.unpack_from("!H", frame, 12)[0] == 0x0800
    ip = frame[14:]
    assert ip[0] >> 4 == 4 and ip[9] == 17
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    sport, dport, ulen = struct.unpack_from("!HHH", ip, ihl)
    assert ulen == total - ihl
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    return src, dst, sport, dport, bytes(ip[ihl + 8 : total])


def _dns(payload: bytes) -> tuple[int, bool, str]:
    """(id, is_response, first question name) of a DNS message."""
    dns_id, flags = struct.unpack_from("!HH", payload)
    labels, pos = [], 12
    while payload[pos]:
        labels.append(payload[pos + 1 : pos + 1 + payload[pos]].decode())
        pos += 1 + payload[pos]
    return dns_id, bool(flags & 0x8000), ".".join(labels)


def _write_pcap(path: Path, linktype: int, frames: list[tuple[int, bytes]]) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for ts, frame in frames:
            f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
            f.write(frame)


@pytest.fixture
def ports() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two bound receivers: P (captured) and Q (must be filtered out)."""
    p, q = _udp_socket(), _udp_socket()
    yield p, q
    p.close()
    q.close()


def test_compile_filter_matches_tcpdump() -> None:
    expr = "udp port 53 and host 10.1.2.3"
    ours = compile_filter(expr)
    assert ours[-1][0] & 0x07 == 0x06  # BPF_RET
    out = subprocess.run(
        [_tool("tcpdump"), "-dd", "-y", "EN10MB", "-s", "65535", expr],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = [
        tuple(int(x, 0) for x in m)
        for m in re.findall(r"\{\s*(\w+),\s*(\w+),\s*(\w+),\s*(\w+)\s*\}", out)
    ]
    assert ours == theirs


def test_invalid_filter_raises_libpcap_message() -> None:
    with pytest.raises(ValueError, match="syntax error") as ei:
        compile_filter("udp prot 53")
    assert "udp prot 53" in str(ei.value)
    with pytest.raises(ValueError, match="syntax error"):
        LiveCapture("lo", "port port")


@pytest.mark.parametrize("name", ["nosuchif0", "../lo", ""])
def test_unknown_interface_is_named(name: str) -> None:
    with pytest.raises(OSError, match=re.escape(repr(name))):
        LiveCapture(name, "udp")


def test_not_permitted_is_clear() -> None:
    # A child that drops root (to nobody) after importing must get a clear PermissionError.
    code = (
        "import os\n"
        "from lightsoc.sources.capture import LiveCapture, compile_filter\n"
        "compile_filter('udp')\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n    LiveCapture('lo')\nexcept PermissionError as e:\n    print('PERM', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "PERM" in r.stdout, r.stderr
    assert "'lo'" in r.stdout and "not permitted" in r.stdout


def test_udp_filtered_no_duplicates(ports: tuple[socket.socket, socket.socket]) -> None:
    p, q = ports
    port_p, port_q = p.getsockname()[1], q.getsockname()[1]
    sender = _udp_socket()
    sport = sender.getsockname()[1]
    expected = [f"to-P #{i}".encode() for i in range(20)]
    with LiveCapture("lo", f"udp port {port_p}") as cap:
        assert cap.linktype == 1
        before = time.time_ns() // 1000
        for i, payload in enumerate(expected):
            sender.sendto(payload, ("127.0.0.1", port_p))
            sender.sendto(f"to-Q #{i}".encode(), ("127.0.0.1", port_q))
        # Once the receivers have them, the tap has queued every copy for the capture too.
        for _ in expected:
            p.recv(100)
            q.recv(100)
        after = time.time_ns() // 1000
        frames = _collect(cap, len(expected))
        extra = cap.read(1000, 0.2)
        stats = cap.stats()
    sender.close()
    assert extra == []
    decoded = [_udp(f) for _, f in frames]
    assert [d[4] for d in decoded] == expected  # each once, in order, nothing for Q
    assert all(d[:4] == ("127.0.0.1", "127.0.0.1", sport, port_p) for d in decoded)
    stamps = [ts for ts, _ in frames]
    assert stamps == sorted(stamps)
    assert before - 1_000_000 <= stamps[0] and stamps[-1] <= after + 1_000_000
    assert stats["captured"] == len(expected)
    # The loopback's outgoing copies are dropped by the kernel filter, so never counted.
    assert stats["outgoing_skipped"] == 0
    assert stats["dropped"] == 0 and stats["truncated"] == 0
    assert stats["received"] == stats["captured"] + stats["outgoing_skipped"] + stats["dropped"]
    assert stats["bytes"] == sum(len(f) for _, f in frames)
    with pytest.raises(ValueError, match="closed"):
        cap.read(1, 0)
    cap.close()  # idempotent
    assert cap.stats() == stats


def test_snaplen_truncates_and_keeps_original_length(
    ports: tuple[socket.socket, socket.socket],
) -> None:
    p, _ = ports
    port_p = p.getsockname()[1]
    sender = _udp_socket()
    with LiveCapture("lo", f"udp dst port {port_p}", snaplen=96) as cap:
        sender.sendto(b"a" * 1000, ("127.0.0.1", port_p))
        sender.sendto(b"b" * 10, ("127.0.0.1", port_p))
        p.recv(2000)
        p.recv(2000)
        frames = cap.read_frames(10, 0.0)
        stats = cap.stats()
    sender.close()
    assert [(len(f), orig) for _, f, orig in frames] == [(96, 14 + 20 + 8 + 1000), (52, 52)]
    assert frames[0][1][42:] == b"a" * (96 - 42)
    assert stats["truncated"] == 1 and stats["captured"] == 2


def test_read_respects_max_packets(ports: tuple[socket.socket, socket.socket]) -> None:
    p, _ = ports
    sender = _udp_socket()
    with LiveCapture("lo", f"udp dst port {p.getsockname()[1]}") as cap:
        for i in range(5):
            sender.sendto(b"%d" % i, ("127.0.0.1", p.getsockname()[1]))
            p.recv(10)
        first, rest, empty = cap.read(2, 0.0), cap.read(10, 0.0), cap.read(10, 0.0)
    sender.close()
    assert [_udp(f)[4] for _, f in first + rest] == [b"0", b"1", b"2", b"3", b"4"]
    assert (len(first), len(rest), empty) == (2, 3, [])


def test_no_filter_and_promiscuous(ports: tuple[socket.socket, socket.socket]) -> None:
    p, _ = ports
    marker = os.urandom(16).hex().encode()
    sender = _udp_socket()
    with LiveCapture("lo", None, promiscuous=True) as cap:
        sender.sendto(marker, ("127.0.0.1", p.getsockname()[1]))
        p.recv(100)
        frames = cap.read(100_000, 0.0)  # lo may carry other traffic; ours is queued already
    sender.close()
    assert sum(marker in f for _, f in frames) == 1


def test_filter_attached_before_any_packet(ports: tuple[socket.socket, socket.socket]) -> None:
    """Open captures while lo is busy with non-matching traffic: nothing may leak in."""
    p, q = ports
    stop = threading.Event()

    def flood() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not stop.is_set():
            for _ in range(50):
                s.sendto(b"noise", ("127.0.0.1", q.getsockname()[1]))
            time.sleep(0)
        s.close()

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        leaked = 0
        for _ in range(20):
            with LiveCapture("lo", f"udp port {p.getsockname()[1]}") as cap:
                leaked += len(cap.read(1000, 0.02))
    finally:
        stop.set()
        t.join()
    assert leaked == 0


def test_dns_query_and_response_match_tshark(tmp_path: Path) -> None:
    dnsmasq, dig, tshark = _tool("dnsmasq"), _tool("dig"), _tool("tshark")
    port = _free_port_udp_tcp()
    log = (tmp_path / "dnsmasq.log").open("w")
    proc = subprocess.Popen(
        [
            dnsmasq,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            f"--port={port}",
            "--address=/corp.example/10.1.2.3",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_dns_ready(proc, port, tmp_path / "dnsmasq.log")
        with LiveCapture("lo", f"udp port {port}") as cap:
            out = subprocess.run(
                [dig, "@127.0.0.1", "-p", str(port), "corp.example", "A", "+tries=1", "+time=5"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            frames = _collect(cap, 2)
            frames += cap.read(100, 0.2)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    m = re.search(r"status: NOERROR, id: (\d+)", out)
    assert m, out
    dig_id = int(m.group(1))
    assert "10.1.2.3" in out

    assert len(frames) == 2
    (_, q_frame), (_, r_frame) = frames
    q, r = _udp(q_frame), _udp(r_frame)
    assert q[3] == port and r[2] == port and q[2] == r[3]
    assert _dns(q[4]) == (dig_id, False, "corp.example")
    assert _dns(r[4]) == (dig_id, True, "corp.example")

    pcap = tmp_path / "dns.pcap"
    _write_pcap(pcap, cap.linktype, frames)
    fields = subprocess.run(
        [tshark, "-r", str(pcap), "-d", f"udp.port=={port},dns", "-T", "fields"]
        + [
            a
            for f in ("frame.time_epoch", "dns.id", "dns.qry.name", "dns.flags.response", "dns.a")
            for a in ("-e", f)
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split("\t") for line in fields.splitlines()]
    assert len(rows) == 2
    for (ts, _), row in zip(frames, rows, strict=True):
        assert round(float(row[0]) * 1_000_000) == ts
        assert int(row[1], 0) == dig_id and row[2] == "corp.example"
    assert [row[3] for row in rows] in (["0", "1"], ["False", "True"])
    assert rows[1][4] == "10.1.2.3"


def _wait_dns_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Query until dnsmasq answers, before any capture is open (probes must not be captured)."""
    query = (
        struct.pack("!HHHHHH", 0x5EED, 0x0100, 1, 0, 0, 0)
        + b"\x04corp\x07example\x00\x00\x01\x00\x01"
    )
    s = _udp_socket()
    s.settimeout(0.2)
    end = time.monotonic() + GIVE_UP_S
    try:
        while time.monotonic() < end:
            if proc.poll() is not None:
                pytest.fail(f"dnsmasq exited {proc.returncode}: {log.read_text()}")
            s.sendto(query, ("127.0.0.1", port))
            try:
                if s.recv(512)[:2] == query[:2]:
                    return
            except (TimeoutError, ConnectionRefusedError):
                continue
    finally:
        s.close()
    pytest.fail(f"dnsmasq did not answer on port {port}: {log.read_text()}")
