"""DNS from packets: `lightsoc ingest` of a large pcap vs `tshark` on the same file.

Builds (once per work directory) a classic pcap of realistic DNS traffic:
query/response pairs from a few hundred clients to four resolvers, A/AAAA/
MX/TXT/PTR questions over a few thousand names (CNAME chains, 1-4 addresses
per answer, ~3% NXDOMAIN, ~2% unanswered, ~2% over TCP), 500k packets.
Then times `lightsoc ingest FILE --json` (decode, pair, enrich, store in
DuckDB; with the default rules and models, and again without them) and
`tshark -r FILE -T fields -e dns.qry.name > /dev/null`, and prints packets/s
of each and their ratio. Figures, not pass/fail.

    python bench/pcap_dns.py [--packets N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIGHTSOC = Path(sys.executable).with_name("lightsoc")
DEFAULT_PACKETS = 500_000
_TLDS = ["com", "net", "org", "io", "de", "co.uk", "example"]
_WORDS = "mail www api cdn static img login portal shop news app data auth edge m".split()


def _name(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\0"


class _Gen:
    """Builds frames with fixed Ethernet/IPv4/UDP headers around generated DNS."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.clients = [
            socket.inet_aton(
                f"10.{rng.randrange(1, 4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
            for _ in range(400)
        ]
        self.servers = [
            socket.inet_aton(ip) for ip in ("10.0.0.53", "10.0.1.53", "8.8.8.8", "1.1.1.1")
        ]
        self.names = []
        for _ in range(3000):
            dom = f"{rng.choice(_WORDS)}{rng.randrange(1000)}.{rng.choice(_TLDS)}".split(".")
            sub = [rng.choice(_WORDS)] if rng.random() < 0.7 else []
            self.names.append([x.encode() for x in sub + dom])

    def pair(self, i: int) -> list[tuple[bytes, bytes, bytes, int, int, bool]]:
        """(frame payload, src, dst, sport, dport, tcp) for a query and maybe its response."""
        rng = self.rng
        client, server = rng.choice(self.clients), rng.choice(self.servers)
        sport, mid = rng.randrange(1024, 65536), rng.randrange(65536)
        labels = rng.choice(self.names)
        qtype = rng.choices([1, 28, 15, 16, 12], [60, 25, 5, 5, 5])[0]
        question = _name(labels) + struct.pack("!HH", qtype, 1)
        query = struct.pack("!HHHHHH", mid, 0x0100, 1, 0, 0, 0) + question
        tcp = rng.random() < 0.02
        out = [(query, client, server, sport, 53, tcp)]
        if rng.random() < 0.02:
            return out  # unanswered
        rcode = 3 if rng.random() < 0.03 else 0
        answers = b""
        count = 0
        if not rcode:
            target = b"\xc0\x0c"
            if rng.random() < 0.4:  # CNAME to an edge name
                cname = _name([b"edge" + str(rng.randrange(50)).encode(), b"cdn", b"net"])
                answers += target + struct.pack("!HHIH", 5, 1, 300, len(cname)) + cname
                target = struct.pack("!H", 0xC000 | (12 + len(question) + 12))
                count += 1
            for _ in range(rng.randrange(1, 5)):
                if qtype == 28:
                    rdata = bytes(rng.randrange(256) for _ in range(16))
                    answers += target + struct.pack("!HHIH", 28, 1, 60, 16) + rdata
                elif qtype == 1:
                    rdata = struct.pack("!I", rng.randrange(1 << 32))
                    answers += target + struct.pack("!HHIH", 1, 1, 60, 4) + rdata
                elif qtype == 16:
                    txt = b"v=spf1 include:_spf.example.com ~all"
                    answers += target + struct.pack("!HHIH", 16, 1, 300, len(txt) + 1)
                    answers += bytes([len(txt)]) + txt
                else:
                    rdata = struct.pack("!H", 10) + b"\xc0\x0c" if qtype == 15 else b"\xc0\x0c"
                    answers += target + struct.pack("!HHIH", qtype, 1, 300, len(rdata)) + rdata
                count += 1
        resp = struct.pack("!HHHHHH", mid, 0x8180 | rcode, 1, count, 0, 0) + question + answers
        out.append((resp, server, client, 53, sport, tcp))
        return out


def _frames(gen: _Gen, pairs: int) -> list[list[tuple[bytes, int, int]]]:
    """Unique query/response frames: [(frame, offset of the client port, of the DNS id)]."""
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    ip = struct.Struct("!BBHHHBBH4s4s")
    out = []
    for i in range(pairs):
        frames = []
        for msg, src, dst, sport, dport, tcp in gen.pair(i):
            if tcp:
                data = struct.pack("!H", len(msg)) + msg
                l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 65535, 0, 0) + data
                proto, id_off = 6, 14 + 20 + 20 + 2
            else:
                l4 = struct.pack("!HHHH", sport, dport, 8 + len(msg), 0) + msg
                proto, id_off = 17, 14 + 20 + 8
            frame = eth + ip.pack(0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, src, dst) + l4
            frames.append((frame, 34 if dport == 53 else 36, id_off))
        out.append(frames)
    return out


def build_pcap(path: Path, packets: int = DEFAULT_PACKETS, seed: int = 7) -> int:
    """Write a pcap of about `packets` DNS packets; returns the number written.

    20k distinct exchanges are generated and replayed with fresh client ports,
    ids and times (fast to write, realistic repetition of names).
    """
    gen = _Gen(seed)
    rng = gen.rng
    templates = _frames(gen, 20_000)
    rec = struct.Struct("<IIII")
    h = struct.Struct("!H")
    written = 0
    t_us = 1_700_000_000_000_000
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk: list[bytes] = []
        i = 0
        while written < packets:
            pair = templates[i % len(templates)]
            port, mid = h.pack(rng.randrange(1024, 65536)), h.pack(rng.randrange(65536))
            for frame, port_off, id_off in pair:
                f = bytearray(frame)
                f[port_off : port_off + 2] = port
                f[id_off : id_off + 2] = mid
                t_us += rng.randrange(400)
                chunk.append(rec.pack(t_us // 1_000_000, t_us % 1_000_000, len(f), len(f)))
                chunk.append(bytes(f))
                written += 1
            i += 1
            if len(chunk) >= 20000:
                fh.write(b"".join(chunk))
                chunk.clear()
        fh.write(b"".join(chunk))
    return written


#: the rules and stream models off (as `bench/run.py`'s ingest case without detection)
NO_DETECTION = {"detect": {"rules": [], "ml": {"stream": []}}}


def _ingest(pcap: Path, data_dir: Path, detection: bool) -> tuple[dict, float]:
    """`lightsoc ingest` of the capture into a fresh `data_dir`: (its summary, wall s)."""
    shutil.rmtree(data_dir, ignore_errors=True)
    cfg = data_dir.with_suffix(".yml")
    cfg.write_text(json.dumps({"data_dir": str(data_dir), **({} if detection else NO_DETECTION)}))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(LIGHTSOC), "ingest", str(pcap), "--json", "--no-progress", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"lightsoc ingest failed: {proc.stderr.strip()}")
    shutil.rmtree(data_dir, ignore_errors=True)
    return json.loads(proc.stdout), wall


def run(workdir: Path, packets: int = DEFAULT_PACKETS) -> dict:
    """Build the capture (cached), time lightsoc and tshark on it; returns the figures."""
    # absolute: a relative data_dir in the config would be read against the config's folder
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pcap = workdir / f"dns-{packets}.pcap"
    if not pcap.exists():
        tmp = pcap.with_suffix(".tmp")
        build_pcap(tmp, packets)
        tmp.rename(pcap)
    data_dir = workdir / "pcap-dns-data"
    summary, wall = _ingest(pcap, data_dir, detection=True)
    counters = summary.get("pcap", {})
    n = counters.get("packets", packets)
    plain, plain_wall = _ingest(pcap, data_dir, detection=False)
    figures: dict = {
        "packets": n,
        "file_mib": round(pcap.stat().st_size / 2**20, 1),
        "events": summary["events"],
        "dns_messages": counters.get("dns_messages"),
        "malformed": counters.get("malformed"),
        "lightsoc_seconds": round(summary["seconds"], 2),
        "lightsoc_wall_seconds": round(wall, 2),
        "lightsoc_packets_per_s": round(n / summary["seconds"]),
        "lightsoc_peak_rss_mb": summary["peak_rss_mb"],
        # issue 3's scope (decode, enrich, store): the rules and stream models off
        "no_detection_seconds": round(plain["seconds"], 2),
        "no_detection_wall_seconds": round(plain_wall, 2),
        "no_detection_packets_per_s": round(n / plain["seconds"]),
    }
    tshark = shutil.which("tshark")
    if tshark:
        t0 = time.perf_counter()
        with open("/dev/null", "wb") as devnull:
            subprocess.run(
                [tshark, "-r", str(pcap), "-T", "fields", "-e", "dns.qry.name"],
                stdout=devnull,
                stderr=subprocess.DEVNULL,
                check=True,
            )
        tsec = time.perf_counter() - t0
        figures["tshark_seconds"] = round(tsec, 2)
        figures["tshark_packets_per_s"] = round(n / tsec)
        figures["speedup_vs_tshark"] = round(tsec / summary["seconds"], 2)
        figures["speedup_vs_tshark_wall"] = round(tsec / wall, 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=DEFAULT_PACKETS)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="keep the capture here (default: a temp dir)"
    )
    args = ap.parse_args(argv)
    if args.workdir is not None:
        figures = run(args.workdir, args.packets)
    else:
        with tempfile.TemporaryDirectory(prefix="lightsoc-pcap-bench-") as tmp:
            figures = run(Path(tmp), args.packets)
    for k, v in figures.items():
        print(f"{k:28} {v:,}" if isinstance(v, int | float) else f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
