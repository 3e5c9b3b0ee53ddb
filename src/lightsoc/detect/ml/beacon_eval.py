"""Beaconing: evaluation inputs and the per-pair cross-check of `beacon`.

`events_from_lines`/`events_from_files` turn flow, DNS and web log lines into
enriched events as the pipeline stores them; `demo_day` is `lightsoc demo`'s
day of NetFlow with its injected beacon; `reference_scores` is a literal
per-pair transcription of RITA's Go, kept to check the vectorised scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from lightsoc.detect.ml.beacon import (
    DEMO_END,
    DUR_IDEAL_HOURS,
    DUR_MIN_HOURS,
    HIST_BIMODAL_MIN_HOURS,
    HIST_BIMODAL_OUTLIER_REMOVAL,
    HIST_BINS,
    HIST_MODE_SENSITIVITY,
    KINDS,
    SKEW_MIN_IQR,
    THRESHOLD,
    _weights,
    alerts,
    destination_field,
    score_beacons,
)


def events_from_lines(lines: Sequence[str]) -> pl.DataFrame:
    """Raw flow/DNS/web log lines as the pipeline stores them: parsed (`auto`) and
    enriched with internal networks (private ranges: `network.direction`)."""
    from lightsoc import registry
    from lightsoc.enrich.networks import NetworksEnricher
    from lightsoc.parsers import get_parser

    registry.load_all("parsers")
    lines = [line for line in lines if line.strip()]
    if not lines:
        return pl.DataFrame()
    parsed = get_parser("auto").parse(pl.Series("event.original", lines, dtype=pl.String))
    return NetworksEnricher().enrich(parsed.filter(pl.col("_ok").fill_null(False)))


def events_from_files(paths: Sequence[Path]) -> pl.DataFrame:
    """`events_from_lines` over whole files (binary nfdump files are not text: 0 events)."""
    frames = []
    for p in paths:
        with open(p, encoding="utf-8", errors="replace", newline="") as fh:
            frames.append(events_from_lines([line.rstrip("\r\n") for line in fh]))
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def demo_day(seed: int = 7, end: datetime = DEMO_END) -> tuple[pl.DataFrame, Any]:
    """The `lightsoc demo` day of NetFlow records (nfdump CSV, parsed) and its truth."""
    import random
    from datetime import timedelta

    from lightsoc.demo_flows import flows_csv

    t0 = (end - timedelta(days=1)).timestamp()
    lines, truth = flows_csv(random.Random(f"{seed}:flows"), t0, end.timestamp())
    return events_from_lines([b.decode().rstrip("\n") for b in lines]), truth


def evaluate(inputs: list[Path], data_dir: Path | None) -> dict[str, Any]:
    """Top pairs of the given files (every kind), or of the demo day when none is given."""
    if inputs:
        events, truth = events_from_files([Path(p) for p in inputs]), None
    else:
        events, truth = demo_day()
    out: dict[str, Any] = {"events": events.height, "threshold": THRESHOLD}
    for kind in KINDS:
        scored = score_beacons(events, kind)
        dst = destination_field(kind)
        top = scored.head(10).select("source.ip", dst, "connections", "score", "is_strobe")
        out[kind] = {
            "pairs": scored.height,
            "alerts": alerts(scored).height,
            "top": [{**r, "destination": r.pop(dst)} for r in top.to_dicts()],
        }
    if truth is not None:
        flows = score_beacons(events, "flow")
        ranks = flows.with_row_index("rank", 1).filter(
            (pl.col("source.ip") == truth.beacon_host)
            & (pl.col("destination.ip") == truth.beacon_ip)
        )
        out["demo_beacon"] = {
            "pair": f"{truth.beacon_host} -> {truth.beacon_ip}",
            "rank": int(ranks["rank"][0]) if ranks.height else None,
            "score": float(ranks["score"][0]) if ranks.height else None,
        }
    return out


def reference_scores(
    ts: Sequence[float],
    sizes: Sequence[float | None],
    window_start: float,
    window_end: float,
    weights: Mapping[str, float] | None = None,
) -> dict[str, float | None]:
    """One pair scored by a per-pair transcription of RITA's Go (the cross-check).

    Plain Python lists and loops, as ``analysis/beacons.go`` reads; slow on
    purpose. `ts` are epoch seconds (floored here), `window_*` integral seconds.
    """
    w = _weights(weights)
    r3 = lambda x: math.floor(x * 1000 + 0.5) / 1000  # noqa: E731
    c3 = lambda x: math.ceil(x * 1000) / 1000  # noqa: E731

    def median(v: list[float]) -> float:
        v, n = sorted(v), len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

    def stat(v: list[float], default_mad: float) -> float:
        v = sorted(v)
        n = len(v)
        c1, c2 = (n // 2, n // 2) if n % 2 == 0 else ((n - 1) // 2, (n - 1) // 2 + 1)
        q1, q2, q3 = median(v[:c1]), median(v), median(v[c2:])
        skew = 0.0
        if q3 - q1 >= SKEW_MIN_IQR and q2 != q1 and q2 != q3:
            skew = (q1 + q3 - 2 * q2) / (q3 - q1)
        mad = median([abs(x - q2) for x in v])
        mad_score = (q2 - mad) / q2 if q2 >= 1 else default_mad
        mad_score = 0.0 if mad_score < 0 or math.isnan(mad_score) else mad_score
        return r3(((1 - abs(skew)) + mad_score) / 2)

    t = sorted(math.floor(x) for x in ts)
    deltas = sorted(b - a for a, b in zip(t, t[1:], strict=False) if b - a > 0)
    ts_score = stat([float(d) for d in deltas], 1.0)
    byts = [float(b) for b in sizes if b is not None]
    ds_score = stat(byts, 0.0) if len(byts) >= 3 else None
    step = (window_end - window_start) / HIST_BINS
    edges = [window_start + i * step for i in range(HIST_BINS)] + [window_end]
    hist = [0] * HIST_BINS
    cur = 0
    for x in t:  # createHistogram
        while cur < HIST_BINS - 1 and x >= edges[cur + 1]:
            cur += 1
        hist[cur] += 1
    bars, largest = sum(1 for h in hist if h), max(hist)
    mean = sum(hist) / HIST_BINS
    cv = math.sqrt(sum((h - mean) ** 2 for h in hist) / HIST_BINS) / mean
    cv_score = 0.0 if cv > 1 else min(r3(1 - cv), 1.0)
    size = math.ceil(largest * HIST_MODE_SENSITIVITY)
    freq: dict[int, int] = {}
    for h in hist:
        if h:
            key = int(math.floor(h / size) * size)
            freq[key] = freq.get(key, 0) + 1
    top = sorted(freq.values())[-2:]
    fit = sum(top) / max(bars - HIST_BIMODAL_OUTLIER_REMOVAL, 1)
    bimodal = min(r3(fit), 1.0) if bars >= HIST_BIMODAL_MIN_HOURS else 0.0
    hist_score = max(cv_score, bimodal)
    longest = run = 0
    for i in range(2 * HIST_BINS):
        run = run + 1 if hist[i % HIST_BINS] else 0
        longest = max(longest, run)
    longest = min(longest, HIST_BINS)
    dur = 0.0
    if bars >= DUR_MIN_HOURS:
        coverage = min(c3((t[-1] - t[0]) / (window_end - window_start)), 1.0)
        dur = max(coverage, min(c3(longest / DUR_IDEAL_HOURS), 1.0))
    wd = w["datasize"] if ds_score is not None else 0.0
    num = w["timestamp"] * ts_score + wd * (ds_score or 0.0)
    num = num + w["duration"] * dur
    num = num + w["histogram"] * hist_score
    total = num / (w["timestamp"] + wd + w["duration"] + w["histogram"])
    return {
        "score": r3(total),
        "ts_score": ts_score,
        "ds_score": ds_score,
        "hist_score": hist_score,
        "dur_score": dur,
    }
