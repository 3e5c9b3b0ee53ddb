"""Beacon scoring (RITA v5) over 1M flow records: records/s and peak RSS.

Input: a deterministic day of outbound flows (seed 1): 20,000 (source,
destination) pairs, a tenth of them periodic beacons with jitter, the rest
random arrivals; sizes vary per pair. Generation is not timed.

Baseline, in the same run: the per-pair Python loop (`beacon_eval.reference_scores`,
a literal transcription of RITA's Go) on a subsample of pairs, extrapolated to
records/s; both must give the same scores on that subsample.

    python bench/ml_beacon.py [--records 1000000] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

DAY0 = 1_793_491_200.0  # 2026-11-01 00:00 UTC
SUBSAMPLE = 400


def flows(records: int, pairs: int = 20_000, seed: int = 1) -> pl.DataFrame:
    """`records` flow events over one day, spread over `pairs` pairs."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, pairs) + 1
    counts = np.maximum(np.round(weights / weights.sum() * records).astype(np.int64), 1)
    counts[np.argmax(counts)] += records - counts.sum()  # exactly `records` rows
    pair = np.repeat(np.arange(pairs), counts)
    periodic = (np.arange(pairs) % 10 == 0)[pair]
    # beacons: the k-th connection near k * period (+- 15 %); others uniform over the day
    rank = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
    period = np.repeat(86_400 / counts, counts)
    beacon_t = (rank + rng.uniform(-0.15, 0.15, len(pair))) * period
    t = np.where(periodic, beacon_t, rng.uniform(0, 86_400, len(pair)))
    t = DAY0 + np.clip(t, 0, 86_399)
    base = rng.integers(60, 20_000, pairs)[pair]
    sizes = np.where(
        periodic, base + rng.integers(-8, 9, len(pair)), rng.integers(40, 60_000, len(pair))
    )
    src = np.array([f"10.{i // 250 % 250}.{i % 250}.{i % 7 + 1}" for i in range(pairs)])
    dst = np.array([f"198.{18 + i % 2}.{i // 250 % 250}.{i % 250}" for i in range(pairs)])
    return pl.DataFrame(
        {
            "@timestamp": pl.Series((t * 1e6).astype(np.int64)).cast(pl.Datetime("us", "UTC")),
            "source.ip": src[pair],
            "destination.ip": dst[pair],
            "destination.port": pl.Series(np.full(len(pair), 443), dtype=pl.Int32),
            "source.bytes": sizes.astype(np.int64),
            "network.direction": np.full(len(pair), "outbound"),
        }
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(out: Path, records: int = 1_000_000) -> dict[str, Any]:
    from lightsoc.detect.ml import beacon, beacon_eval

    events = flows(records)
    rss_before = _peak_rss_mb()
    window = {"window_start": DAY0, "window_end": DAY0 + 86_400}
    t0 = time.perf_counter()
    scored = beacon.score_beacons(events, "flow", **window)
    seconds = time.perf_counter() - t0
    # baseline: per-pair Python on a subsample of the scored pairs (every k-th)
    step = max(scored.height // SUBSAMPLE, 1)
    sample = scored.gather_every(step).head(SUBSAMPLE)
    keys = sample.select("source.ip", "destination.ip")
    sub = events.join(keys, on=["source.ip", "destination.ip"], how="semi")
    groups = sub.with_columns((pl.col("@timestamp").dt.epoch("us") / 1e6).alias("_t")).group_by(
        "source.ip", "destination.ip"
    ).agg("_t", "source.bytes")  # fmt: skip
    t0 = time.perf_counter()
    ref = {
        (s, d): beacon_eval.reference_scores(t, b, DAY0, DAY0 + 86_400)
        for s, d, t, b in groups.iter_rows()
    }
    base_s = time.perf_counter() - t0
    mismatches = sum(
        1
        for r in sample.iter_rows(named=True)
        for k in ("score", "ts_score", "ds_score", "hist_score", "dur_score")
        if abs(r[k] - ref[(r["source.ip"], r["destination.ip"])][k]) > 1e-12
    )
    res = {
        "records": events.height,
        "pairs_scored": scored.height,
        "alerts": beacon.alerts(scored).height,
        "seconds": round(seconds, 3),
        "records_per_s": round(events.height / seconds),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_scoring_mb": round(rss_before, 1),
        "baseline_records": sub.height,
        "baseline_pairs": len(ref),
        "baseline_seconds": round(base_s, 3),
        "baseline_records_per_s": round(sub.height / base_s) if base_s else None,
        "baseline_mismatches": mismatches,
    }
    res["speedup"] = (
        round(res["records_per_s"] / res["baseline_records_per_s"], 1)
        if res["baseline_records_per_s"]
        else None
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ml_beacon.json").write_text(json.dumps(res, indent=2))
    return res


def line(res: dict[str, Any]) -> str:
    return (
        f"ml_beacon: {res['records']:,} flows, {res['pairs_scored']:,} pairs in {res['seconds']} s "
        f"= {res['records_per_s']:,} records/s, peak RSS {res['peak_rss_mb']} MB; per-pair "
        f"Python {res['baseline_records_per_s']:,} records/s ({res['speedup']}x), "
        f"{res['baseline_mismatches']} score mismatches on {res['baseline_pairs']} pairs"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args(argv)
    res = run(args.out, args.records)
    print(line(res))
    return 0 if res["baseline_mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
