"""NetFlow throughput: flow records/s decoded, and decoded + stored end to end.

Generates a realistic export (NetFlow v9 with softflowd's IPv4/IPv6 templates,
and IPFIX with millisecond timestamps; ~30 flows a datagram, templates
resent every 20 datagrams, addresses and ports drawn from pools so that
hosts repeat as in real traffic), then measures:

  decoder   `NetflowDecoder` + `FlowBatch.frame()` alone, in batches of
            `batch_max_rows` (columns built, ready to publish)
  reference the record-by-record dict path (`decode` + `records_to_frame`)
  e2e       UDP on 127.0.0.1 -> NetflowSource -> Pipeline -> DuckDB store, once
            without enrichers and once with the default chain (geoip, networks,
            domains); the sender keeps at most `window` flows unstored
            so the socket buffer never overflows; flows/s = stored flows
            over the time from the first datagram sent to the last flow stored.

    python bench/netflow.py [--flows N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from lightsoc.config import NetflowSourceConfig
from lightsoc.enrich.chain import build_enrichers
from lightsoc.pipeline import Pipeline, SourceSpec
from lightsoc.sources.netflow import NetflowSource
from lightsoc.sources.netflow_columns import FlowBatch
from lightsoc.sources.netflow_decode import NetflowDecoder, records_to_frame
from lightsoc.store.events_duckdb import DuckDBEventStore

PER_DATAGRAM = 30
BATCH_ROWS = 32768  # PipelineConfig.batch_max_rows' default
# softflowd's templates (IE, length): IPv4 and IPv6 flows, NetFlow v9 (uptime times)
V4 = [(8, 4), (12, 4), (22, 4), (21, 4), (1, 4), (2, 4), (10, 4), (14, 4)]
V4 += [(61, 1), (136, 1), (7, 2), (11, 2), (4, 1), (6, 1), (60, 1), (5, 1)]
V6 = [(27, 16), (28, 16)] + V4[2:]
# IPFIX: flowStart/EndMilliseconds instead of uptime
IPFIX = [(8, 4), (12, 4), (152, 8), (153, 8)] + V4[4:]


def _dtype(fields: list[tuple[int, int]]) -> np.dtype:
    fmt = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8", 16: "V16"}
    return np.dtype([(f"f{i}_{ie}", fmt[ln]) for i, (ie, ln) in enumerate(fields)])


def _records(fields: list[tuple[int, int]], n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` records of a template: hosts from pools with a long tail, as at a site edge."""
    a = np.zeros(n, dtype=_dtype(fields))
    hosts = 0x0A000000 + rng.integers(0, 500, n)  # 10.0.x.y: 500 internal hosts
    remote = 0xC6336400 + rng.zipf(1.5, n) % 20000  # remote hosts, a few of them busy
    six = np.frombuffer(bytes.fromhex("20010db8" + "00" * 12), dtype=np.uint8)
    proto = rng.choice([6, 17, 1], n, p=[0.7, 0.25, 0.05])
    for name in a.dtype.names or ():
        ie = int(name.split("_")[1])
        if ie == 8:
            a[name] = hosts
        elif ie == 12:
            a[name] = remote
        elif ie in (27, 28):  # 2001:db8::/32, 100 internal and 2000 remote hosts
            raw = np.tile(six, (n, 1))
            pool = rng.integers(0, 100, n) if ie == 27 else 100 + rng.zipf(1.5, n) % 2000
            raw[:, 14], raw[:, 15] = pool >> 8, pool & 255
            a[name] = raw.view("V16").ravel()
        elif ie == 22:
            a[name] = 4_000_000 + rng.integers(0, 50_000, n)
        elif ie == 21:
            a[name] = 4_060_000 + rng.integers(0, 50_000, n)
        elif ie == 152:
            a[name] = 1_700_000_000_000 + rng.integers(0, 60_000, n)
        elif ie == 153:
            a[name] = 1_700_000_060_000 + rng.integers(0, 60_000, n)
        elif ie == 1:
            a[name] = rng.lognormal(7, 2, n).astype(np.uint32) + 40
        elif ie == 2:
            a[name] = rng.integers(1, 200, n)
        elif ie == 7:
            a[name] = rng.integers(1024, 65535, n)
        elif ie == 11:
            a[name] = rng.choice([80, 443, 53, 22, 25, 123, 8080], n)
        elif ie == 4:
            a[name] = proto
        elif ie == 6:
            a[name] = rng.integers(0, 64, n)
        elif ie == 60:
            a[name] = 6 if fields[0][1] == 16 else 4
    return a


def generate(flows: int, seed: int = 1) -> list[bytes]:
    """Export datagrams: 60% v9 IPv4, 10% v9 IPv6, 30% IPFIX, `flows` flows in all."""
    rng = np.random.default_rng(seed)
    kinds = [(9, 1024, V4), (9, 2048, V6), (10, 1280, IPFIX)]
    count = -(-flows // PER_DATAGRAM)
    which = rng.choice(3, count, p=[0.6, 0.1, 0.3])
    pools = [
        _records(f, int((which == i).sum()) * PER_DATAGRAM, rng)
        for i, (_, _, f) in enumerate(kinds)
    ]
    used = [0, 0, 0]
    out: list[bytes] = []
    for k in range(count):
        i = int(which[k])
        version, tid, fields = kinds[i]
        n = min(PER_DATAGRAM, flows - k * PER_DATAGRAM)
        recs = pools[i][used[i] : used[i] + n].tobytes()
        used[i] += n
        sets = struct.pack("!HH", tid, 4 + len(recs)) + recs
        if k % 20 < 3:  # templates first, then again every 20 datagrams
            t = struct.pack("!HH", tid, len(fields))
            t += b"".join(struct.pack("!HH", *f) for f in fields)
            sets = struct.pack("!HH", 0 if version == 9 else 2, 4 + len(t)) + t + sets
        if version == 9:
            head = struct.pack("!HHIIII", 9, 1, 4_100_000, 1_700_000_100, k, 0)
        else:
            head = struct.pack("!HHIII", 10, 16 + len(sets), 1_700_000_100, k, 0)
        out.append(head + sets)
    return out


def bench_decoder(datagrams: list[bytes], flows: int) -> dict[str, Any]:
    dec, built = NetflowDecoder(), 0
    t0 = time.perf_counter()
    batch = FlowBatch()
    for d in datagrams:
        dec.decode(d, "127.0.0.1:2055", 0.0, batch)
        if batch.rows >= BATCH_ROWS:
            built += batch.frame().height
            batch = FlowBatch()
    built += batch.frame().height
    seconds = time.perf_counter() - t0
    assert built == flows, (built, flows)
    # the reference path on a slice (it is slow)
    ref, part = NetflowDecoder(), datagrams[: max(1, len(datagrams) // 10)]
    t0 = time.perf_counter()
    recs: list[dict] = []
    for d in part:
        recs += ref.decode(d, "127.0.0.1:2055", 0.0)[0]
    records_to_frame(recs)
    ref_s = time.perf_counter() - t0
    return {
        "decoder_flows": built,
        "decoder_seconds": round(seconds, 3),
        "decoder_flows_per_s": round(built / seconds),
        "reference_flows_per_s": round(len(recs) / ref_s),
    }


def bench_e2e(
    datagrams: list[bytes], flows: int, workdir: Path, window: int, enrich: bool
) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a fresh store per run: an earlier run's flows would count again
    data = workdir / f"e2e-{int(enrich)}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    store = DuckDBEventStore(data / "events.duckdb")
    config = NetflowSourceConfig(type="netflow", listen=[f"udp://127.0.0.1:{port}"])
    source = NetflowSource("flows", config, checkpoints={}, batch_max_rows=BATCH_ROWS)
    stored = [0]
    done = threading.Event()

    def on_batch(b: Any) -> None:
        stored[0] += b.events.height
        if stored[0] >= flows:
            done.set()

    pipeline = Pipeline(
        store,
        [source],
        {"flows": SourceSpec("flows", "netflow")},
        build_enrichers({}) if enrich else [],
        on_batch=on_batch,
    )
    pipeline.start()
    while source.bound_port() is None:
        time.sleep(0.01)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = ("127.0.0.1", port)
    t0 = time.perf_counter()
    sent = 0
    for d in datagrams:
        while sent - stored[0] > window:  # pace: never more than `window` flows unstored
            time.sleep(0.002)
        sender.sendto(d, dest)
        sent += PER_DATAGRAM
    ok = done.wait(60)
    seconds = time.perf_counter() - t0
    sender.close()
    pipeline.stop(timeout=60)
    received = sum(s["datagrams"] for s in source.senders.values())
    count = store.count()
    store.close()
    stages = {k: round(v.seconds, 3) for k, v in pipeline.processor.stages.items()}
    return {
        "flows_stored": count,
        "complete": ok and count == flows,
        "datagrams_lost": len(datagrams) - received,
        "seconds": round(seconds, 3),
        "flows_per_s": round(count / seconds),
        "stage_seconds": stages,
        "udp_rcvbuf": source.metrics.extra.get("udp_rcvbuf"),
    }


def run(workdir: Path, flows: int = 300_000, window: int = 90_000) -> dict[str, Any]:
    """Generate, decode alone, then run end to end; the figures as a dict."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    datagrams = generate(flows)
    out: dict[str, Any] = {
        "flows": flows,
        "datagrams": len(datagrams),
        "generate_seconds": round(time.perf_counter() - t0, 2),
    }
    out.update(bench_decoder(datagrams, flows))
    # stored without enrichment (the source's own ceiling), then with the default chain
    out["e2e_no_enrich"] = bench_e2e(datagrams, flows, workdir, window, enrich=False)
    out["e2e_default_enrich"] = bench_e2e(datagrams, flows, workdir, window, enrich=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=300_000)
    ap.add_argument("--window", type=int, default=90_000, help="max flows sent but not stored")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="lightsoc-netflow-bench-") as tmp:
            figures = run(Path(tmp), args.flows, args.window)
    else:
        figures = run(args.workdir, args.flows, args.window)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
