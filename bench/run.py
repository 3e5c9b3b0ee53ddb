"""`make bench`: end-to-end ingest throughput against a naive baseline, and
a top-10 aggregation over 10M stored events. Figures, not pass/fail.

Cases (kept as data: generator + command + the figure to watch):
  ingest_1m   1M combined-format lines -> `lightsoc ingest` (read, parse,
              enrich, store in DuckDB): lines/s, MiB/s, peak RSS; the naive
              per-line regex + sqlite3 script on the same file; the ratio.
  top10_10m   10M events in the DuckDB store -> top-10 source.ip: seconds.
  syslog      UDP paced at 50k msg/s for 10 s and higher rates until loss
              (sent vs stored), TCP as fast as two senders go: msg/s stored
              (bench/syslog.py, into a real `lightsoc run`), without detection
              and with the default rules and models.
  netflow     a replayed NetFlow v9 export over UDP into source + pipeline +
              store: flow records/s, and the decoder alone (bench/netflow.py).
  pcap_dns    a 500k-packet DNS capture through `lightsoc ingest` and through
              tshark in the same run: packets/s and the ratio (bench/pcap_dns.py).
  ml_*        the models: web classifier requests/s (target >= 100,000), DGA
              names/s (>= 200,000), LDA training on 1M flows (<= 60 s) and
              scoring (>= 200,000 records/s), beacon scoring records/s; peak RSS
              of each (bench/ml_web.py, ml_dga.py, ml_lda.py, ml_beacon.py).
  rules       every loaded Sigma rule (built-in + SigmaHQ) on 1M parsed web
              events, and pySigma's SQLite backend on the same rules and events
              in an in-memory SQLite: events/s and the ratio (bench/rules.py).
  ui_api      --agg-events (10M) events in a store behind a real `lightsoc run`:
              dashboard, field searches and busy-IP timeline latency through the
              API vs the same SQL on DuckDB directly; PASS/MISS against the
              issue 6 targets (bench/ui_api.py).
  scaleout    1, 2 and 4 `--role process` processes draining one Redis stream of
              500k access lines into ClickHouse: events/s, speed-up, CPU per
              process; syslog -> stored event / -> alert latency p50/p99 through
              a collector and a processor (bench/scaleout.py, bench/out/scaleout.json).

    python bench/run.py [--lines N] [--agg-events N] [--only CASE ...] [--out bench/out]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIGHTSOC = Path(sys.executable).with_name("lightsoc")


def _load(name: str):  # noqa: ANN202 - bench modules are loaded by path (tests/bench shadows `bench`)
    # A unique module name, registered, so multiprocessing can pickle its functions
    # (a bare "syslog" would be the standard library's).
    qualified = f"lightsoc_bench_{name}"
    spec = importlib.util.spec_from_file_location(qualified, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[qualified] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def child_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


#: issue 2's scope (read, parse, enrich, store): the detection issue's rules and models off
NO_DETECTION = {"detect": {"rules": [], "ml": {"stream": []}}}


def bench_ingest(log: Path, work: Path, config: dict | None = None) -> dict:
    """`lightsoc ingest` of `log` in a new process; `config` (None: the defaults, with
    the built-in rules and stream models) is written next to the data directory."""
    data_dir = work / "ingest-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    cfg = work / "ingest-config.yml"
    cfg.write_text(json.dumps({"data_dir": str(data_dir), **(config or {})}))
    cpu0 = _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(LIGHTSOC), "ingest", str(log), "--format", "nginx_combined", "--json"]
        + ["--config", str(cfg)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu0
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    size_mib = log.stat().st_size / 2**20
    return {
        "lines": summary["received"],
        "events": summary["events"],
        "parse_failures": summary["parse_failures"],
        "pipeline_seconds": round(summary["seconds"], 2),
        "wall_seconds": round(wall, 2),
        "lines_per_s": round(summary["received"] / wall),
        "mib_per_s": round(size_mib / wall, 1),
        "peak_rss_mb": round(child_peak_rss_mb(), 1),
        # CPU time is steadier than wall time on a shared VM
        "cpu_seconds": round(cpu, 2),
    }


def bench_baseline(log: Path, work: Path) -> dict:
    naive = _load("naive_baseline")
    db = work / "naive.sqlite"
    db.unlink(missing_ok=True)
    cpu0 = _cpu(resource.RUSAGE_SELF)
    result = naive.run(log, db)
    result["cpu_seconds"] = round(_cpu(resource.RUSAGE_SELF) - cpu0, 2)
    return result


def bench_top10(events: int, work: Path) -> dict:
    """Fill a store with `events` synthetic events, then time top-10 source.ip."""
    import duckdb

    from lightsoc.store.events_duckdb import DuckDBEventStore

    data_dir = work / "agg-data"
    store = DuckDBEventStore(data_dir / "events.duckdb")
    fill = 0.0
    if store.count() != events:
        store.close()
        shutil.rmtree(data_dir)
        store = DuckDBEventStore(data_dir / "events.duckdb")
        gen = duckdb.connect()
        t0 = time.perf_counter()
        chunk = 1_000_000
        for start in range(0, events, chunk):
            # ~50k distinct IPs with a skewed distribution, one event per second.
            table = gen.sql(
                """SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i) AS "@timestamp",
                          'b-' || i::VARCHAR AS "event.id", 'nginx.access' AS "event.dataset",
                          '10.' || ((i * 7919) % 200)::VARCHAR || '.' ||
                              ((i * 104729) % (1 + (i % 250)))::VARCHAR || '.1' AS "source.ip",
                          (200 + (i % 5))::INTEGER AS "http.response.status_code",
                          '/p/' || (i % 1000)::VARCHAR AS "url.path"
                   FROM range(?, ?) t(i)""",
                params=[start, min(start + chunk, events)],
            ).to_arrow_table()
            store.append(table)
        fill = time.perf_counter() - t0
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        top = store.top("source.ip", n=10)
        runs.append(time.perf_counter() - t0)
    store.close()
    return {
        "events": events,
        "fill_seconds": round(fill, 1),
        "top10_seconds_median": round(statistics.median(runs), 3),
        "top10_seconds_min": round(min(runs), 3),
        "top1": top[0],
    }


def bench_file_ingest(lines: int, out: Path) -> dict:
    """`lightsoc ingest` of a generated combined log vs the naive baseline."""
    gen = _load("gen_access_log")
    log = out / f"access-{lines}.log"
    if not log.exists():
        print(f"generating {lines:,} lines -> {log}", flush=True)
        gen.write_combined_log(log, lines=lines)
    results: dict = {}
    results["ingest"] = ingest = bench_ingest(log, out, NO_DETECTION)
    _print_ingest("lightsoc ingest (no detection)", ingest)
    results["ingest_detection"] = detected = bench_ingest(log, out)
    _print_ingest("  with the default rules and models", detected)
    results["baseline"] = base = bench_baseline(log, out)
    ratio = ingest["lines_per_s"] / base["lines_per_s"]
    results["ratio"] = round(ratio, 1)
    print(
        f"naive baseline:  {base['lines']:,} lines in {base['seconds']:.1f} s = "
        f"{base['lines_per_s']:,.0f} lines/s, {base['cpu_seconds']} CPU-s",
        flush=True,
    )
    cpu_ratio = base["cpu_seconds"] / ingest["cpu_seconds"]
    results["cpu_ratio"] = round(cpu_ratio, 1)
    print(
        f"ratio: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU  "
        "(targets: >= 300,000 lines/s, >= 10x, peak RSS <= 500 MB)",
        flush=True,
    )
    return results


def _print_ingest(label: str, r: dict) -> None:
    print(
        f"{label}: {r['lines']:,} lines in {r['wall_seconds']} s = "
        f"{r['lines_per_s']:,} lines/s, {r['mib_per_s']} MiB/s, "
        f"peak RSS {r['peak_rss_mb']} MB, {r['cpu_seconds']} CPU-s",
        flush=True,
    )


def _syslog_line(r: dict) -> str:
    def one(x: dict) -> str:
        tcp = x["tcp"]
        return (
            f"UDP highest loss-free rate {x['udp']['highest_loss_free_rate']:,} msg/s, "
            f"TCP {tcp['stored_per_s']:,} msg/s stored ({tcp['stored']:,}/{tcp['sent']:,})"
        )

    return (
        f"syslog without detection: {one(r['no_detection'])}; with the default rules and "
        f"models: {one(r)} (targets: none lost at 50,000/s for 10 s, TCP >= 150,000); "
        f"net.core.rmem_max {r['rmem_max']}"
    )


def _netflow_line(r: dict) -> str:
    e2e = r["e2e_default_enrich"]
    return (
        f"netflow: {e2e['flows_per_s']:,} flows/s decoded and stored with the default "
        f"enrichers, {r['e2e_no_enrich']['flows_per_s']:,} without (target >= 100,000); "
        f"decoder alone {r['decoder_flows_per_s']:,} flows/s"
    )


def _pcap_line(r: dict) -> str:
    return (
        f"pcap dns: {r['no_detection_packets_per_s']:,} packets/s decoded and stored without "
        f"detection, {r['lightsoc_packets_per_s']:,} with the default rules and models "
        f"(target >= 200,000); tshark {r.get('tshark_packets_per_s', 0):,} packets/s; "
        f"ratio {r.get('speedup_vs_tshark', 0)}x"
    )


def _rules_line(r: dict) -> str:
    return (
        f"rules: {r['rules_loaded']} Sigma rules on {r['events']:,} web events: "
        f"{r['all_rules_events_per_s']:,} events/s (target >= 500,000); pySigma SQLite backend "
        f"{r['sqlite_events_per_s']:,} events/s on {r['sqlite_rules']} rules; ratio "
        f"{r['ratio_same_rules_vs_sqlite']}x same rules, {r['ratio_all_rules_vs_sqlite']}x all "
        f"(target >= 10x); {len(r['count_disagreements'])} rules with different counts"
    )


NETWORK_SUMMARY = {
    "syslog": _syslog_line,
    "netflow": _netflow_line,
    "pcap_dns": _pcap_line,
    "rules": _rules_line,
}
#: machine-learning cases: bench/<name>.py with run(out) -> dict and line(dict) -> str
ML_CASES = ("ml_web", "ml_dga", "ml_lda", "ml_beacon")
CASES = (
    "ingest",
    "top10",
    "syslog",
    "netflow",
    "pcap_dns",
    "rules",
    *ML_CASES,
    "ui_api",
    "scaleout",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--agg-events", type=int, default=10_000_000)
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--only", nargs="+", choices=CASES, default=list(CASES))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict = {}
    if "ingest" in args.only:
        results.update(bench_file_ingest(args.lines, args.out))
    if "top10" in args.only:
        results["top10"] = top = bench_top10(args.agg_events, args.out)
        print(
            f"top-10 source.ip over {top['events']:,} events: median "
            f"{top['top10_seconds_median']} s, min {top['top10_seconds_min']} s "
            f"(target <= 1 s; fill took {top['fill_seconds']} s)",
            flush=True,
        )
    for case in ("syslog", "netflow", "pcap_dns", "rules"):
        if case in args.only:
            results[case] = _load(case).run(args.out / case)
            print(NETWORK_SUMMARY[case](results[case]), flush=True)
    for case in ML_CASES:
        if case in args.only:
            mod = _load(case)
            results[case] = mod.run(args.out / case)
            print(mod.line(results[case]), flush=True)
    if "ui_api" in args.only:
        mod = _load("ui_api")
        results["ui_api"] = mod.run(args.out / "ui_api", args.agg_events)
        print(mod.line(results["ui_api"]), flush=True)
    if "scaleout" in args.only:
        mod = _load("scaleout")
        results["scaleout"] = mod.run(args.out)  # also bench/out/scaleout.json
        print(mod.table(results["scaleout"]), flush=True)
    results["load_average_after"] = os.getloadavg()[0]
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
