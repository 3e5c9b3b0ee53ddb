"""Scale-out over Redis (issue 7): processors' throughput, and syslog-to-event/alert latency.

  throughput  for k in `processors` (1, 2, 4) `lightsoc run --role process` OS
              processes: a fresh Redis stream filled with the same `batches` raw
              batches of `batch_lines` combined-format access lines each
              (bench/gen_access_log.py, split and id'd as the file source does),
              a fresh ClickHouse database on one clickhouse-server, a fresh
              PostgreSQL state database, the default rules and enrichers;
              events/s from the first delivery until the consumer group has lag 0
              and nothing pending; the stored count is checked exact (FINAL, and
              before any merge); CPU seconds of every process (psutil).
  latency     1 collector (syslog over TCP) + 1 processor + the rules of
              rules/linux, at each of `rates` msg/s: send -> event visible in
              ClickHouse, send -> alert visible in PostgreSQL, p50/p99
              (bench/scaleout_latency.py). 20/s is the issue's pace; 2/s is one
              message per bus batch, below what one processor can take, so its
              figure is the path's own latency. The collector's syslog source
              publishes a batch 0.2 s after the first message it buffered
              (`pipeline.batch_max_ms`, default 200), so any
              steady stream of 5 msg/s or more is 5 batches/s, each costing the
              processor a fixed ~0.1 CPU-s here: whether the latency holds or a
              backlog grows shows in the p50 of the first vs the last quarter.

Start-up and first-batch costs are kept out of the throughput figure: the
processors start one after the other on an empty group, each takes a warm-up
batch (its first batch loads parsers, rules and enrichers; 500 other lines,
not counted), then the group is held past every id while the bench fills the
stream (no processor reads or trims it meanwhile), the processors settle, and
the group is pointed at the fill (`XGROUP SETID`); the clock starts at the
first delivery (polled every 2 ms; `wake_seconds` is the time a blocked read
took to notice, excluded).

Servers: redis-server (append-only, fsync every second, as in production),
Debian's clickhouse-server and a PostgreSQL cluster, all throwaway on
127.0.0.1 (bench/scaleout_servers.py), killed at the end even on failure.

    python bench/scaleout.py [--batches 100] [--batch-lines 5000] [--processors 1 2 4]
                             [--messages 300] [--rates 20 2] [--poll 0.02] [--out bench/out]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
from clickhouse_driver import Client

from lightsoc.bus.base import RawBatch
from lightsoc.bus.redis import RedisBus
from lightsoc.sources.lines import OFFSET, LineSplitter

HERE = Path(__file__).resolve().parent


def _sibling(name: str) -> Any:  # noqa: ANN401 - bench modules are loaded by path
    qualified = f"lightsoc_bench_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, HERE / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[qualified] = mod
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return sys.modules[qualified]


S = _sibling("scaleout_servers")
L = _sibling("scaleout_latency")
L.S = S
DRAIN_TIMEOUT_S = 300.0
START_POLL_S = 0.002
DRAIN_POLL_S = 0.02
WARM_LINES = 500
HOLD_ID = "99999999999999-0"  # past every auto id: the group reads nothing new


# -- throughput --------------------------------------------------------------
def make_batches(work: Path, batches: int, batch_lines: int) -> list[pl.DataFrame]:
    """Raw records as a file source publishes them (`event.original`, offsets, ids)."""
    gen = _sibling("gen_access_log")
    log = work / f"access-{batches * batch_lines}.log"
    if not log.exists():
        gen.write_combined_log(log, lines=batches * batch_lines)
    data = log.read_bytes()
    frames = []
    splitter = LineSplitter()
    pos = 0
    for _ in range(batches):
        end = pos
        for _ in range(batch_lines):
            end = data.index(b"\n", end) + 1
        frame, _skipped = splitter.feed(data[pos:end])
        frames.append(
            frame.with_columns(
                (pl.lit("bench-web-") + pl.col(OFFSET).cast(pl.Utf8)).alias("event.id"),
                pl.lit(str(log)).alias("log.file.path"),
            )
        )
        pos = end
    return frames


def fill(url: str, frames: list[pl.DataFrame]) -> float:
    """Publish every frame as one raw batch; seconds it took."""
    bus = RedisBus(url)
    t0 = time.perf_counter()
    try:
        for f in frames:
            batch = RawBatch("web", "file", f, bytes=int(f["event.original"].str.len_bytes().sum()))
            if not bus.publish(batch, timeout=60):
                raise RuntimeError("the bench stream did not take a batch in 60 s")
    finally:
        bus.close()
    return time.perf_counter() - t0


def _settle(pids: list[int], timeout: float = 30.0) -> None:
    """Until the processors are idle (start-up work done): < 5 % CPU each over 0.5 s."""
    deadline = time.monotonic() + timeout
    before = {p: S.cpu(p) for p in pids}
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = {p: S.cpu(p) for p in pids}
        if all(now[p] - before[p] < 0.025 for p in pids):
            return
        before = now


def _warm_frames(frames: list[pl.DataFrame], n: int) -> list[pl.DataFrame]:
    """Small batches of other records (their own ids) that run each processor's first batch."""
    return [
        frames[i % len(frames)]
        .head(WARM_LINES)
        .with_columns((pl.lit(f"warm{i}-") + pl.col(OFFSET).cast(pl.Utf8)).alias("event.id"))
        for i in range(n)
    ]


def _warm_up(r: Any, url: str, stream: str, frames: list[pl.DataFrame]) -> str:  # noqa: ANN401
    """Publish the warm-up batches one at a time, each once the last was taken (so
    idle processors take one each), until all are acknowledged; the last one's id."""
    bus = RedisBus(url)
    try:
        for i, f in enumerate(frames, 1):
            bus.publish(RawBatch("web", "file", f), timeout=60)
            S.wait(lambda i=i: (S.group(r, stream).get("entries-read") or 0) >= i, 60, "a warm-up")
    finally:
        bus.close()

    def acked() -> bool:
        g = S.group(r, stream)
        return g.get("pending") == 0 and g.get("lag") == 0

    S.wait(acked, 120, "the warm-up batches to be stored")
    # The stream's last id, not its last entry: the processors trim acknowledged
    # entries, so the stream may already be empty here.
    last = r.xinfo_stream(stream)["last-generated-id"]
    return last.decode() if isinstance(last, bytes) else str(last)


def run_throughput(srv: Any, work: Path, frames: list[pl.DataFrame], k: int) -> dict[str, Any]:
    """k processors drain the pre-filled stream into a fresh database."""
    records = sum(f.height for f in frames)
    warm = _warm_frames(frames, 2 * k)
    stream = f"lightsoc:bench:k{k}:{uuid.uuid4().hex[:6]}"
    db = f"bench_k{k}_{uuid.uuid4().hex[:6]}"
    url = f"{srv.redis.url}?stream={stream}&maxlen={len(frames) + len(warm) + 10}"
    r = srv.redis.client()
    r.xgroup_create(stream, S.GROUP, id="$", mkstream=True)
    cfg = S.write_config(
        work / f"k{k}.yml",
        bus=url,
        events=f"clickhouse://127.0.0.1:{srv.ch_port}/{db}",
        state=srv.new_state_db(),
        sources={
            "web": {"type": "file", "paths": [str(work / "none.log")], "format": "nginx_combined"}
        },
    )
    procs = [S.RoleProcess("process", cfg, "--data-dir", work / f"k{k}-p{i}") for i in range(k)]
    try:
        # one at a time: processors started together on a new PostgreSQL state
        # database race on its migrations (CREATE TABLE schema_version)
        for p in procs:
            p.start().wait_for("processing batches", timeout=120)
        last_warm = _warm_up(r, url, stream, warm)
        # hold the group past any id, fill, then point it at the fill: no processor
        # reads (or trims) the stream while the bench writes it
        r.xgroup_setid(stream, S.GROUP, HOLD_ID)
        fill_s = fill(url, frames)
        pids = [p.pid for p in procs]
        _settle(pids)
        server_pids = srv.pids()
        cpu0 = {p: S.cpu(p) for p in pids}
        srv0 = {n: S.cpu(pid) for n, pid in server_pids.items()}
        me0 = S.cpu(os.getpid(), children=False)
        t_move = time.perf_counter()
        r.xgroup_setid(stream, S.GROUP, last_warm, entries_read=len(warm))
        while not (g := S.group(r, stream)).get("pending") and g.get("lag"):
            if time.perf_counter() - t_move > 10:
                raise RuntimeError(f"no processor read the stream in 10 s: {g}")
            time.sleep(START_POLL_S)
        t0 = time.perf_counter()
        deadline = t0 + DRAIN_TIMEOUT_S
        total = len(frames) + len(warm)
        while True:
            g = S.group(r, stream)
            if g["pending"] == 0 and g["lag"] == 0 and g["entries-read"] == total:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"k={k}: not drained in {DRAIN_TIMEOUT_S:.0f} s: {g}")
            for p in procs:
                if p.proc is not None and p.proc.poll() is not None:
                    raise RuntimeError(f"a processor exited early:\n{p.output()[-3000:]}")
            time.sleep(DRAIN_POLL_S)
        seconds = time.perf_counter() - t0
        cpu = [round(S.cpu(p) - cpu0[p], 2) for p in pids]
        srv_cpu = {n: round(S.cpu(pid) - srv0[n], 2) for n, pid in server_pids.items()}
        me = round(S.cpu(os.getpid(), children=False) - me0, 2)
    finally:
        outs = S.stop_all(procs)
    ch = Client("127.0.0.1", port=srv.ch_port)
    try:
        # the warm-up batches' events (ids "warm...") are not counted
        [(stored, distinct, raw)] = ch.execute(
            f"SELECT countIf(`event.id` NOT LIKE 'warm%'), "  # noqa: S608
            f"uniqExactIf(`event.id`, `event.id` NOT LIKE 'warm%'), "
            f"(SELECT count() FROM `{db}`.events WHERE `event.id` NOT LIKE 'warm%') "
            f"FROM `{db}`.events FINAL"
        )
        ch.execute(f"DROP DATABASE IF EXISTS `{db}`")  # the next k starts from an empty server
    finally:
        ch.disconnect()
    r.delete(stream)
    return {
        "processors": k,
        "batches": len(frames),
        "records": records,
        "warmup_records": sum(f.height for f in warm),
        "stored": stored,
        "distinct_ids": distinct,
        "stored_rows_without_final": raw,
        "seconds": round(seconds, 3),
        "events_per_s": round(records / seconds),
        "wake_seconds": round(t0 - t_move, 3),
        "fill_seconds": round(fill_s, 2),
        "processor_cpu_seconds": cpu,
        "server_cpu_seconds": srv_cpu,
        "bench_cpu_seconds": me,
        "stored_per_processor": [_stored_line(o) for o in outs],
    }


def _stored_line(output: str) -> int | None:
    """`stopped; N events stored in this run` of a processor's output."""
    for line in reversed(output.splitlines()):
        if "events stored in this run" in line:
            return int(line.split("stopped;")[1].split()[0])
    return None


def cost_probe(ch_port: int, frames: list[pl.DataFrame], work: Path) -> dict[str, float]:
    """Where a processor's CPU goes, in this process on the same batches: µs per event
    to parse, enrich, detect and conform (the default config's pipeline), and to
    append to ClickHouse (client CPU, and wall time including the server); the
    last of three batches, so one-off loading is left out."""
    from lightsoc.config import Config
    from lightsoc.detect.build import build_ruleset
    from lightsoc.pipeline import Processor, SourceSpec
    from lightsoc.runtime import build_enrichers, enrich_options
    from lightsoc.store.events_clickhouse import ClickHouseEventStore

    cfg = Config()
    spec = SourceSpec("web", "file", "nginx_combined")
    proc = Processor(
        {"web": spec}, build_enrichers(enrich_options(cfg)), [build_ruleset(cfg, work, None)]
    )
    db = f"bench_cost_{uuid.uuid4().hex[:6]}"
    store = ClickHouseEventStore(f"clickhouse://127.0.0.1:{ch_port}/{db}")
    try:
        for f in frames[:3]:
            c0 = time.process_time()
            done = proc.process(RawBatch("web", "file", f))
            c1, w1 = time.process_time(), time.perf_counter()
            store.append(done.events, [], [done.counters], batch_id=uuid.uuid4().hex)
            c2, w2 = time.process_time(), time.perf_counter()
        store.engine.execute(f"DROP DATABASE IF EXISTS `{db}`")
    finally:
        store.close()
    n = done.events.height
    return {
        "process_cpu_us": round((c1 - c0) / n * 1e6, 1),
        "append_client_cpu_us": round((c2 - c1) / n * 1e6, 1),
        "append_wall_us": round((w2 - w1) / n * 1e6, 1),
    }


# -- the case ----------------------------------------------------------------
def run(
    out: Path,
    batches: int = 100,
    batch_lines: int = 5000,
    processors: tuple[int, ...] = (1, 2, 4),
    messages: int = 300,
    rates: tuple[float, ...] = (20.0, 2.0),
    poll: float = 0.02,
    warmup: int = 5,
) -> dict[str, Any]:
    """Both measurements; also written to `<out>/scaleout.json`."""
    out.mkdir(parents=True, exist_ok=True)
    # a server not up yet is polled; its driver would print each refused connection
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    work = Path(tempfile.mkdtemp(prefix="lightsoc-scaleout-"))
    result: dict[str, Any] = {
        "cores": os.cpu_count(),
        "load_average_before": round(os.getloadavg()[0], 2),
        "batches": batches,
        "batch_lines": batch_lines,
        "throughput": [],
    }
    t_start = time.perf_counter()
    # a SIGTERM (timeout, CI) unwinds like Ctrl-C, so the servers and roles are stopped
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        frames = make_batches(work, batches, batch_lines) if processors else []
        with S.servers(work) as srv:
            if frames:
                result["per_event"] = cost_probe(srv.ch_port, frames, work)
            for k in processors:
                t = run_throughput(srv, work, frames, k)
                base = result["throughput"][0]["events_per_s"] if result["throughput"] else 0
                t["speedup"] = round(t["events_per_s"] / base, 2) if base else 1.0
                result["throughput"].append(t)
                print(_throughput_row(t), flush=True)
            if messages and rates:
                result["latency"] = L.run_latency(srv, work, messages, rates, poll, warmup)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, before)
        shutil.rmtree(work, ignore_errors=True)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    result["case_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "scaleout.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _throughput_row(t: dict[str, Any]) -> str:
    cpu = sum(t["processor_cpu_seconds"])
    srv = ", ".join(f"{k} {v}" for k, v in t["server_cpu_seconds"].items())
    return (
        f"  k={t['processors']}: {t['stored']:,}/{t['records']:,} stored in {t['seconds']} s = "
        f"{t['events_per_s']:,} events/s ({t['speedup']}x k=1); processors {cpu:.1f} CPU-s "
        f"{t['processor_cpu_seconds']} (= {cpu / t['seconds']:.2f} cores busy); "
        f"servers CPU-s: {srv}"
    )


def table(r: dict[str, Any]) -> str:
    """The figures as a readable table."""
    rows = [
        f"scale-out over Redis: {r['batches']} batches x {r['batch_lines']:,} access lines, "
        f"{r['cores']} cores, load average {r['load_average_before']} before, "
        f"{r['load_average_after']} after",
        f"{'k':>3} {'events':>10} {'seconds':>8} {'events/s':>10} {'speed-up':>8} "
        f"{'proc CPU-s':>10} {'cores busy':>10} {'redis':>6} {'clickh.':>7} {'pg':>6}",
    ]
    for t in r["throughput"]:
        cpu = sum(t["processor_cpu_seconds"])
        s = t["server_cpu_seconds"]
        rows.append(
            f"{t['processors']:>3} {t['stored']:>10,} {t['seconds']:>8} {t['events_per_s']:>10,} "
            f"{t['speedup']:>7}x {cpu:>10.1f} {cpu / t['seconds']:>10.2f} "
            f"{s.get('redis-server', 0):>6} {s.get('clickhouse-server', 0):>7} "
            f"{s.get('postgres', 0):>6}"
        )
    if pe := r.get("per_event"):
        rows.append(
            f"per event, one processor's work measured in-process: parse+enrich+detect "
            f"{pe['process_cpu_us']} µs CPU, ClickHouse append {pe['append_client_cpu_us']} µs "
            f"client CPU ({pe['append_wall_us']} µs wall with the server)"
        )
    if lat := r.get("latency"):
        res = lat["poll_resolution_ms"]
        rows.append(
            f"latency (polled every ~{res['events']} ms / {res['alerts']} ms; one ClickHouse "
            f"append of a small batch takes {lat['clickhouse_append_ms']} ms here):"
        )
        rows.append(
            f"{'rate/s':>7} {'msgs':>5} {'batches':>7}  {'-> taken p50/p99':>17}  "
            f"{'-> event p50/p99':>17}  {'-> alert p50/p99':>17}  {'event p50 1st/last q':>20}"
        )
        for ph in lat["runs"]:
            taken, ev, al = ph["to_processor_taking_batch"], ph["to_event"], ph["to_alert"]
            rows.append(
                f"{ph['rate_per_s']:>7} {ph['messages']:>5} {ph['bus_batches']:>7}  "
                f"{_pair(taken):>17}  {_pair(ev):>17}  {_pair(al):>17}  "
                f"{ph['to_event_p50_first_quarter_ms']:>9} / {ph['to_event_p50_last_quarter_ms']}"
                + (
                    f"  (seen {ph['events_seen']} events, {ph['alerts_seen']} alerts)"
                    if min(ph["events_seen"], ph["alerts_seen"]) < ph["messages"]
                    else ""
                )
            )
    return "\n".join(rows)


def _pair(d: dict[str, float]) -> str:
    return f"{d.get('p50_ms')}/{d.get('p99_ms')} ms" if d else "-"


def line(r: dict[str, Any]) -> str:
    """One summary line for `bench/run.py`."""
    tp = ", ".join(
        f"k={t['processors']} {t['events_per_s']:,}/s ({t['speedup']}x)" for t in r["throughput"]
    )
    lat = ", ".join(
        f"{ph['rate_per_s']}/s: ->event {_pair(ph['to_event'])}, ->alert {_pair(ph['to_alert'])}"
        for ph in (r.get("latency") or {}).get("runs", [])
    )
    return f"scaleout: {tp} on {r['cores']} cores; syslog latency p50/p99 {lat}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--batch-lines", type=int, default=5000)
    p.add_argument("--processors", type=int, nargs="*", default=[1, 2, 4])
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--rates", type=float, nargs="*", default=[20.0, 2.0])
    p.add_argument("--poll", type=float, default=0.02)
    p.add_argument("--out", type=Path, default=HERE / "out")
    a = p.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    r = run(
        a.out, a.batches, a.batch_lines, tuple(a.processors), a.messages, tuple(a.rates), a.poll
    )
    print(table(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
