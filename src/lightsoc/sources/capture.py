"""Live packet capture on one Linux interface for the `pcap` source.

`LiveCapture` reads frames from an AF_PACKET `SOCK_RAW` socket (Ethernet
framing, `lo` included). The filter expression is compiled by libpcap itself
(loaded with ctypes: `pcap_open_dead` + `pcap_compile`) and attached to the
socket with `SO_ATTACH_FILTER`, so the kernel drops unwanted packets and cuts
frames to `snaplen` before they are copied to user space. No tcpdump process.

Details that mirror libpcap's own Linux capture code:

* The socket is created with protocol 0, which delivers nothing, and the
  filter is attached before `bind(ETH_P_ALL)`: no unfiltered packet can be
  queued ahead of the filter.
* On a loopback device every packet is seen twice (outgoing and incoming).
  libpcap skips the `PACKET_OUTGOING` copy in user space; here a 3-instruction
  prefix on the filter drops it in the kernel (pkttype is a BPF ancillary
  load), with the same user-space check kept as a fallback.
* Timestamps are the kernel's receive time (`SO_TIMESTAMPNS` ancillary data).
* `PACKET_AUXDATA` gives the original frame length (the kernel filter has
  already truncated the frame) and the VLAN tag the driver stripped, which is
  put back into the frame.
* `PACKET_STATISTICS` resets on every read, so its counts are accumulated.

A capture is meant to be used from one thread (read, stats, close). `read`
raises OSError if the interface goes away (e.g. ENETDOWN); reopen to resume.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import select
import socket
import struct
import threading
import time
from types import TracebackType

from lightsoc.sources.base import set_rcvbuf

__all__ = ["LiveCapture", "compile_filter"]

# Linux constants the `socket` module does not export.
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
SO_ATTACH_FILTER = 26
SO_TIMESTAMP = 29
SO_TIMESTAMPNS = 35
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
BPF_MAXINSNS = 4096
SKF_AD_OFF = 0xFFFFF000  # -0x1000 as the u32 `k` of a BPF_LD|BPF_ABS
SKF_AD_PKTTYPE = 4
PACKET_OUTGOING = 4

DLT_EN10MB = 1
DLT_RAW = 12
# ARPHRD_* (from /sys/class/net/IF/type) -> DLT of what a SOCK_RAW socket returns.
_LINKTYPES = {1: DLT_EN10MB, 772: DLT_EN10MB, 65534: DLT_RAW}
_ARPHRD_LOOPBACK = 772

_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_TIMESPEC = _TIMEVAL = struct.Struct("@ll")  # struct timespec / struct timeval
_PACKET_STATS = struct.Struct("=II")  # struct tpacket_stats
_VLAN = struct.Struct("!HH")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_AUXDATA.size)


class _BpfInsn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_BpfInsn))]


_PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
_libpcap: ctypes.CDLL | None = None
# Old libpcap versions have a non-reentrant filter parser; one lock is cheap.
_compile_lock = threading.Lock()


def _load_libpcap() -> ctypes.CDLL:
    global _libpcap
    if _libpcap is not None:
        return _libpcap
    names = [ctypes.util.find_library("pcap"), "libpcap.so.1", "libpcap.so.0.8", "libpcap.so"]
    last: OSError | None = None
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as e:
            last = e
    else:
        raise OSError(f"libpcap not found (install libpcap0.8): {last}")
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_compile.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(_BpfProgram),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    ]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_freecode.restype = None
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    lib.pcap_close.restype = None
    _libpcap = lib
    return lib


def compile_filter(
    expr: str, linktype: int = DLT_EN10MB, snaplen: int = 65535
) -> list[tuple[int, int, int, int]]:
    """Compile a tcpdump filter expression to classic BPF `(code, jt, jf, k)` with libpcap.

    Raises ValueError carrying libpcap's message when the expression is invalid.
    """
    lib = _load_libpcap()
    with _compile_lock:
        handle = lib.pcap_open_dead(linktype, snaplen)
        if not handle:
            raise OSError(f"pcap_open_dead({linktype}, {snaplen}) failed")
        try:
            prog = _BpfProgram()
            if lib.pcap_compile(
                handle, ctypes.byref(prog), expr.encode(), 1, _PCAP_NETMASK_UNKNOWN
            ):
                msg = (lib.pcap_geterr(handle) or b"unknown error").decode(errors="replace")
                raise ValueError(f"invalid capture filter {expr!r}: {msg}")
            try:
                return [
                    (i.code, i.jt, i.jf, i.k)
                    for i in (prog.bf_insns[n] for n in range(prog.bf_len))
                ]
            finally:
                lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(handle)


def _interface_type(interface: str) -> int:
    """ARPHRD type of `interface`; OSError naming it when it does not exist."""
    try:
        socket.if_nametoindex(interface)  # also rejects names that are not plain names
        with open(f"/sys/class/net/{interface}/type") as f:
            return int(f.read().strip())
    except OSError as e:
        raise OSError(
            e.errno or errno.ENODEV, f"capture interface {interface!r}: no such interface"
        ) from e


class LiveCapture:
    """Frames from one interface, filtered in the kernel by a libpcap-compiled BPF program."""

    def __init__(
        self,
        interface: str,
        bpf_filter: str | None = None,
        snaplen: int = 65535,
        *,
        buffer_bytes: int = 32 << 20,
        promiscuous: bool = False,
    ) -> None:
        if not 64 <= snaplen <= 262144:
            raise ValueError(f"snaplen must be between 64 and 262144, got {snaplen}")
        self.interface = interface
        self.bpf_filter = bpf_filter
        self.snaplen = snaplen
        arphrd = _interface_type(interface)
        if arphrd not in _LINKTYPES:
            raise ValueError(
                f"capture interface {interface!r}: unsupported link type ARPHRD {arphrd}"
            )
        self.linktype: int = _LINKTYPES[arphrd]
        self._loopback = arphrd == _ARPHRD_LOOPBACK
        # An empty expression compiles to "accept, cut to snaplen": the kernel truncates
        # even without a filter, so less is copied to user space.
        insns_filter = compile_filter(bpf_filter or "", self.linktype, snaplen)
        if self._loopback:
            # Drop the loopback's outgoing copy in the kernel (libpcap skips it in user space):
            # half the packets never reach the queue. pkttype is an ancillary load.
            insns = [(0x20, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE), (0x15, 0, 1, 4), (0x06, 0, 0, 0)]
            insns += insns_filter
        else:
            insns = insns_filter
        if len(insns) > BPF_MAXINSNS:
            raise ValueError(f"capture filter {bpf_filter!r} is too long ({len(insns)} insns)")

        try:
            # Protocol 0: nothing is delivered until bind() below, after the filter is set.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as e:
            raise PermissionError(
                e.errno, f"capture on {interface!r}: not permitted (needs root or CAP_NET_RAW)"
            ) from e
        try:
            self._attach(sock, insns)
            set_rcvbuf(sock, buffer_bytes)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
            try:
                sock.bind((interface, ETH_P_ALL))
            except OSError as e:
                raise OSError(
                    e.errno, f"capture on {interface!r}: cannot bind: {e.strerror}"
                ) from e
            if promiscuous:
                mreq = struct.pack(
                    "iHH8s", socket.if_nametoindex(interface), PACKET_MR_PROMISC, 0, b""
                )
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._view = memoryview(bytearray(snaplen))
        self._bufs = [self._view]
        self._received = 0
        self._dropped = 0
        self._captured = 0
        self._skipped = 0
        self._truncated = 0
        self._bytes = 0

    @staticmethod
    def _attach(sock: socket.socket, insns: list[tuple[int, int, int, int]]) -> None:
        arr = (_BpfInsn * len(insns))(*insns)
        fprog = _SockFprog(len(insns), ctypes.cast(arr, ctypes.POINTER(_BpfInsn)))
        try:
            # The kernel copies the program during the call; `arr` only has to live until then.
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
        except OSError as e:
            raise ValueError(f"kernel rejected the capture filter: {e.strerror}") from e

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def fileno(self) -> int:
        """The socket's descriptor (for an outer select loop)."""
        if self._sock is None:
            raise ValueError("capture is closed")
        return self._sock.fileno()

    def read(self, max_packets: int, timeout: float) -> list[tuple[int, bytes]]:
        """Up to `max_packets` frames as (Unix microseconds, frame); at most `timeout` s of waiting."""
        return [(ts, frame) for ts, frame, _ in self.read_frames(max_packets, timeout)]

    def read_frames(self, max_packets: int, timeout: float) -> list[tuple[int, bytes, int]]:
        """Like `read`, with each frame's original length (for a pcap record's `orig_len`)."""
        sock = self._sock
        if sock is None:
            raise ValueError("capture is closed")
        # Hot loop: locals instead of attribute lookups, counters added once at the end.
        out: list[tuple[int, bytes, int]] = []
        recv, bufs, view, snaplen = sock.recvmsg_into, self._bufs, self._view, self.snaplen
        ethernet = self.linktype == DLT_EN10MB
        deadline = time.monotonic() + max(timeout, 0.0)
        skipped = truncated = nbytes = 0
        try:
            while len(out) < max_packets:
                try:
                    n, anc, _flags, addr = recv(bufs, _ANC_SIZE)
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._poll.poll(max(1, int(remaining * 1000)))
                    continue
                if addr[2] == PACKET_OUTGOING and self._loopback:
                    skipped += 1  # normally already dropped by the kernel filter prefix
                    continue
                ts = orig = 0
                vlan = b""
                for level, kind, data in anc:
                    if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
                        sec, nsec = _TIMESPEC.unpack_from(data)
                        ts = sec * 1_000_000 + nsec // 1000
                    elif kind == PACKET_AUXDATA and level == SOL_PACKET:
                        status, orig, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(data)
                        if ethernet and (tci or status & TP_STATUS_VLAN_VALID):
                            if not status & TP_STATUS_VLAN_TPID_VALID:
                                tpid = 0x8100
                            vlan = _VLAN.pack(tpid, tci)
                    elif kind == SO_TIMESTAMP and level == socket.SOL_SOCKET:
                        sec, usec = _TIMEVAL.unpack_from(data)
                        ts = sec * 1_000_000 + usec
                caplen = n if n < snaplen else snaplen
                if vlan and caplen >= 12:
                    # The driver moved the 802.1Q tag into skb metadata; put it back like libpcap.
                    frame = b"".join((view[:12], vlan, view[12:caplen]))[:snaplen]
                    orig += 4
                else:
                    frame = bytes(view[:caplen])
                orig = orig or caplen
                if orig > len(frame):
                    truncated += 1
                nbytes += len(frame)
                out.append((ts or time.time_ns() // 1000, frame, orig))
        finally:
            self._captured += len(out)
            self._skipped += skipped
            self._truncated += truncated
            self._bytes += nbytes
        return out

    def _poll_kernel_stats(self) -> None:
        if self._sock is None:
            return
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _PACKET_STATS.size)
        packets, drops = _PACKET_STATS.unpack(raw)
        self._received += packets
        self._dropped += drops

    def stats(self) -> dict[str, int]:
        """Cumulative counters since open.

        `received`: packets that passed the kernel filter, drops included (the
        loopback's outgoing copies never pass it); `dropped`: kernel drops
        (receive buffer full); `captured`: frames returned; `outgoing_skipped`:
        loopback duplicates skipped in user space (normally 0); `truncated`:
        frames cut to snaplen; `bytes`: captured bytes.
        """
        self._poll_kernel_stats()
        return {
            "received": self._received,
            "dropped": self._dropped,
            "captured": self._captured,
            "outgoing_skipped": self._skipped,
            "truncated": self._truncated,
            "bytes": self._bytes,
        }

    def close(self) -> None:
        """Close the socket (idempotent); `stats()` keeps the final counts."""
        sock = self._sock
        if sock is None:
            return
        try:
            self._poll_kernel_stats()
        except OSError:
            pass
        self._sock = None
        self._poll.unregister(sock.fileno())
        sock.close()

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()
