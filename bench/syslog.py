"""Syslog over UDP and TCP into a real `lightsoc run`: what is sent vs what is stored.

  udp   paced senders at 50k msg/s for 10 s (the issue's target), then higher
        rates for 5 s each until messages are lost: the highest loss-free rate.
  tcp   two sender processes, as fast as they can, over one connection each:
        messages/s stored (from the first byte sent to the last event committed).

Both run twice: without detection (issue 3's scope, a source's throughput: the
same `detect` settings as the ingest benchmark's first case) and with the
built-in rules and models, which flag every message here (all sshd failures
from 10,000 addresses: the worst case for alerting).

The server runs in its own process and the senders in others, so the figures
include the kernel, the parse, the enrichment and the commit. Counts come from
the running server's stats API.

    python bench/syslog.py [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
LIGHTSOC = Path(sys.executable).with_name("lightsoc")
LINE = (
    "<38>Nov 29 14:00:{s:02d} web-{h} sshd[{pid}]: Failed password for invalid user "
    "admin{n} from 203.0.{a}.{b} port {port} ssh2"
)
UDP_RATES = (50_000, 75_000, 100_000, 125_000)
#: the rules and stream models off (as `bench/run.py`'s ingest case without detection)
NO_DETECTION = {"detect": {"rules": [], "ml": {"stream": []}}}


def _free_ports(*kinds: int) -> list[int]:
    """A free port per socket kind, all bound at once: two TCP ports picked one after
    the other (each socket closed before the next is bound) can be the same."""
    socks = [socket.socket(socket.AF_INET, kind) for kind in kinds]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _messages(count: int, seed: int) -> list[bytes]:
    return [
        LINE.format(
            s=i % 60, h=seed, pid=1000 + i % 50, n=i, a=i % 250, b=(i // 250) % 250, port=i % 60000
        ).encode()
        for i in range(count)
    ]


def _send_udp(port: int, rate: int, seconds: float, seed: int) -> int:
    """Send `rate` msg/s for `seconds`, paced per millisecond; returns messages sent."""
    msgs = _messages(10_000, seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    addr = ("127.0.0.1", port)
    total = int(rate * seconds)
    sent = 0
    t0 = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + rate // 1000)
        while sent < due:
            sock.sendto(msgs[sent % len(msgs)], addr)
            sent += 1
        time.sleep(0.0005)
    return sent


def _send_tcp(port: int, count: int, seed: int) -> None:
    msgs = _messages(10_000, seed)
    chunk = b"".join(m + b"\n" for m in msgs)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(count // len(msgs)):
            sock.sendall(chunk)


class Server:
    """`lightsoc run` with one syslog source listening on UDP and TCP (`detection`:
    the built-in rules and models on, as by default)."""

    def __init__(self, work: Path, detection: bool = True) -> None:
        self.udp, self.tcp, web = _free_ports(socket.SOCK_DGRAM, *[socket.SOCK_STREAM] * 2)
        self.data = work / "syslog-data"
        subprocess.run(["rm", "-rf", str(self.data)], check=True)
        cfg = work / "syslog-bench.yml"
        cfg.write_text(
            json.dumps(
                {
                    "data_dir": str(self.data),
                    **({} if detection else NO_DETECTION),
                    "web": {"listen": f"127.0.0.1:{web}"},
                    "sources": {
                        "net": {
                            "type": "syslog",
                            "format": "syslog",
                            "listen": [
                                f"udp://127.0.0.1:{self.udp}",
                                f"tcp://127.0.0.1:{self.tcp}",
                            ],
                        }
                    },
                }
            )
        )
        self.proc = subprocess.Popen(
            [str(LIGHTSOC), "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (self.data / "run" / "server.json").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("lightsoc run did not start")
            time.sleep(0.2)
        info = json.loads((self.data / "run" / "server.json").read_text())
        self.client = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['token']}"}
        )

    def stored(self) -> int:
        return int(self.client.get("/api/v1/stats", timeout=30).json()["events_total"])

    def wait_stable(self, expect: int, timeout: float = 60.0) -> int:
        """The stored count once it reaches `expect` or stops growing for 10 s."""
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = self.stored()
            if n >= expect:
                return n
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since > 10:
                return n
            time.sleep(0.2)
        return last

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def bench_udp(server: Server) -> dict:
    results = []
    loss_free = 0
    with mp.Pool(1) as pool:
        for rate in UDP_RATES:
            seconds = 10.0 if rate == UDP_RATES[0] else 5.0
            before = server.stored()
            t0 = time.perf_counter()
            sent = pool.apply(_send_udp, (server.udp, rate, seconds, 1))
            offered = sent / (time.perf_counter() - t0)
            stored = server.wait_stable(before + sent) - before
            results.append(
                {"rate": rate, "offered_per_s": round(offered), "sent": sent, "stored": stored}
            )
            print(
                f"  udp {rate:>7,}/s offered {offered:>9,.0f}/s: sent {sent:,}, stored {stored:,}"
                f" ({sent - stored:,} lost)",
                flush=True,
            )
            if stored < sent:
                break
            loss_free = rate
    return {"runs": results, "highest_loss_free_rate": loss_free}


def bench_tcp(server: Server, per_sender: int = 1_000_000) -> dict:
    before = server.stored()
    t0 = time.perf_counter()
    senders = [mp.Process(target=_send_tcp, args=(server.tcp, per_sender, seed)) for seed in (2, 3)]
    for p in senders:
        p.start()
    total = 2 * (per_sender // 10_000) * 10_000
    stored = server.wait_stable(before + total, timeout=120) - before
    seconds = time.perf_counter() - t0
    for p in senders:
        p.join()
    return {
        "sent": total,
        "stored": stored,
        "seconds": round(seconds, 2),
        "stored_per_s": round(stored / seconds),
    }


def _run_server(workdir: Path, detection: bool) -> dict:
    print(f"  {'with' if detection else 'without'} detection:", flush=True)
    server = Server(workdir, detection)
    try:
        return {"udp": bench_udp(server), "tcp": bench_tcp(server)}
    finally:
        server.stop()


def run(workdir: Path) -> dict:
    """Figures with detection on (`udp`, `tcp`) and off (`no_detection`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    plain = _run_server(workdir, detection=False)
    return {**_run_server(workdir, detection=True), "no_detection": plain, "rmem_max": _rmem_max()}


def _rmem_max() -> int | None:
    """The kernel's cap on UDP receive buffers, which decides the loss-free rate."""
    try:
        return int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / "out")
    args = p.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    res = run(args.out)
    for label, r in (("without detection", res["no_detection"]), ("with detection", res)):
        tcp = r["tcp"]
        print(
            f"syslog {label}: udp highest loss-free rate "
            f"{r['udp']['highest_loss_free_rate']:,} msg/s (target: no loss at 50,000/s for "
            f"10 s); tcp {tcp['stored']:,}/{tcp['sent']:,} stored in {tcp['seconds']} s = "
            f"{tcp['stored_per_s']:,} msg/s (target >= 150,000)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
