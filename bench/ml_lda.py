"""Suspicious connects (Spot LDA) on 1M flow records: training and scoring speed, peak RSS.

The generator is a mid-size network's day in numpy (no per-record Python):
3,000 clients and 40 internal servers, 30,000 external addresses picked with a
Zipf skew, services with their own port, size and packet distributions
(log-normal), a diurnal hour profile, each session a request and a reply flow.
Figures, measured in a child process each (so peak RSS is the stage's own):

  train     words + (IP, word) counts + online LDA (20 topics, 5 passes) +
            topic mix of every IP: records/s, seconds
  score     scoring all records with the trained model (`score_events`, the training
            window: each record without its own connection's share): records/s
  baseline  scikit-learn's LatentDirichletAllocation (online, same parameters) on
            the same document-term matrix: fit seconds (the per-document Python
            loop lightsoc's vectorised E-step replaces)

    python bench/ml_lda.py [--records N] [--no-baseline] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

RECORDS = 1_000_000
TARGET_TRAIN_S = 60.0
TARGET_SCORE_RPS = 200_000
# (port, transport, weight, request bytes median, reply bytes median, packets median)
SERVICES = (
    (443, "tcp", 40, 1_200, 40_000, 20),
    (80, "tcp", 8, 600, 15_000, 12),
    (53, "udp", 30, 70, 160, 1),
    (993, "tcp", 4, 900, 20_000, 15),
    (445, "tcp", 6, 2_000, 200_000, 60),
    (22, "tcp", 2, 3_000, 3_000, 30),
    (123, "udp", 3, 76, 76, 1),
    (3389, "tcp", 2, 50_000, 400_000, 300),
    (8080, "tcp", 5, 800, 10_000, 10),
)


def generate(n: int, seed: int = 1) -> pl.DataFrame:
    """`n` flow records (ECS columns) of a day; half requests, half replies."""
    rng = np.random.default_rng(seed)
    sessions = n // 2
    clients = np.array([f"10.{1 + i // 250}.{i % 250}.{10 + i % 7}" for i in range(3000)])
    internal = np.array([f"10.0.0.{i}" for i in range(10, 50)])
    external = np.array(
        [
            f"{rng.integers(1, 223)}.{rng.integers(0, 255)}.{rng.integers(0, 255)}.{i % 250 + 1}"
            for i in range(30_000)
        ]
    )
    w = np.array([s[2] for s in SERVICES], dtype=float)
    svc = rng.choice(len(SERVICES), sessions, p=w / w.sum())
    port = np.array([s[0] for s in SERVICES])[svc]
    proto = np.array([s[1] for s in SERVICES])[svc]
    cli = clients[np.minimum(rng.zipf(1.3, sessions) - 1, len(clients) - 1)]
    to_internal = rng.random(sessions) < 0.35
    ext = external[np.minimum(rng.zipf(1.2, sessions) - 1, len(external) - 1)]
    srv = np.where(to_internal, internal[rng.integers(0, len(internal), sessions)], ext)
    # office hours in UTC+8: busy 01:00-11:00 UTC
    hours = rng.choice(24, sessions, p=_diurnal())
    ts = (1_764_028_800 + hours * 3600 + rng.integers(0, 3600, sessions)) * 1_000_000
    req_b = np.array([s[3] for s in SERVICES])[svc] * rng.lognormal(0, 0.8, sessions)
    rep_b = np.array([s[4] for s in SERVICES])[svc] * rng.lognormal(0, 1.2, sessions)
    pk = np.maximum(1, np.array([s[5] for s in SERVICES])[svc] * rng.lognormal(0, 0.7, sessions))
    sport = rng.integers(32_768, 61_000, sessions)
    req = pl.DataFrame(
        {
            "@timestamp": ts,
            "source.ip": cli,
            "destination.ip": srv,
            "source.port": sport,
            "destination.port": port,
            "network.transport": proto,
            "network.bytes": req_b.astype(np.int64),
            "network.packets": pk.astype(np.int64),
        }
    )
    rep = req.select(
        pl.col("@timestamp") + 20_000,
        pl.col("destination.ip").alias("source.ip"),
        pl.col("source.ip").alias("destination.ip"),
        pl.col("destination.port").alias("source.port"),
        pl.col("source.port").alias("destination.port"),
        "network.transport",
        pl.Series("network.bytes", rep_b.astype(np.int64)),
        pl.Series("network.packets", (pk * rng.uniform(1, 4, sessions)).astype(np.int64)),
    )
    return (
        pl.concat([req, rep])
        .with_columns(
            pl.col("@timestamp").cast(pl.Datetime("us", "UTC")),
            pl.col("source.port").cast(pl.Int32),
            pl.col("destination.port").cast(pl.Int32),
        )
        .sort("@timestamp")
    )


def _diurnal() -> np.ndarray:
    p = np.array([1.0 if 1 <= h < 11 else 0.15 for h in range(24)])
    return p / p.sum()


def _child(stage: str, data: Path, model_dir: Path) -> dict[str, Any]:
    """One stage, in this (child) process, with the process's peak RSS."""
    res = _stage(stage, data, model_dir)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return res


def _stage(stage: str, data: Path, model_dir: Path) -> dict[str, Any]:
    from lightsoc.detect.ml import lda, lda_jobs
    from lightsoc.detect.ml import lda_words as lw
    from lightsoc.detect.ml.modelfile import load, save

    events = pl.read_parquet(data)
    if stage == "train":
        t0 = time.perf_counter()
        model = lda_jobs.train_events(events, "flow")
        secs = time.perf_counter() - t0
        save(model_dir, model.to_file())
        m = model.meta["metrics"]
        return {
            "records": events.height,
            "seconds": round(secs, 2),
            "records_per_s": round(events.height / secs),
            "lda_seconds": m["train_seconds"],
            "documents": m["documents"],
            "vocabulary": m["vocabulary"],
            "doc_word_pairs": m["doc_word_pairs"],
        }
    if stage == "score":
        model = lda.LdaModel.from_file(load(model_dir, "lda"))
        t0 = time.perf_counter()
        # the daily job's path: the window the model was fitted on, each record without
        # its own connection's share (the heavier of the two scoring paths)
        scores = model.score_events(events, own_window=True)["lda.score"]
        secs = time.perf_counter() - t0
        return {
            "records": events.height,
            "seconds": round(secs, 2),
            "records_per_s": round(events.height / secs),
            "scored": int(scores.is_finite().sum()),
        }
    # baseline: sklearn on the same matrix and parameters
    from sklearn.decomposition import LatentDirichletAllocation

    w = lw.words(events, "flow")
    pairs = w.group_by(lw.DOC, lw.WORD).agg(pl.len().cast(pl.Float64).alias("n"))
    x, _, _ = lda.doc_term(pairs.sort(lw.DOC, lw.WORD))
    p = lda.DEFAULT_PARAMS
    est = LatentDirichletAllocation(
        n_components=p["n_components"],
        learning_method="online",
        batch_size=p["batch_size"],
        max_iter=p["max_iter"],
        learning_offset=p["learning_offset"],
        random_state=p["random_state"],
        total_samples=x.shape[0],
        evaluate_every=-1,
        n_jobs=1,
    )
    t0 = time.perf_counter()
    est.fit(x)
    return {"fit_seconds": round(time.perf_counter() - t0, 2), "doc_word_pairs": int(x.nnz)}


def _run_child(stage: str, data: Path, model_dir: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", stage, str(data), str(model_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(out: Path, records: int = RECORDS, baseline: bool = True) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lda-bench-", dir=out) as tmp:
        data = Path(tmp) / "flows.parquet"
        t0 = time.perf_counter()
        generate(records).write_parquet(data)
        gen_s = time.perf_counter() - t0
        model_dir = Path(tmp) / "lda"
        res: dict[str, Any] = {"records": records, "generate_seconds": round(gen_s, 1)}
        res["train"] = _run_child("train", data, model_dir)
        res["score"] = _run_child("score", data, model_dir)
        if baseline:
            res["sklearn_baseline"] = _run_child("baseline", data, model_dir)
    res["train_target_met"] = res["train"]["seconds"] <= TARGET_TRAIN_S
    res["score_target_met"] = res["score"]["records_per_s"] >= TARGET_SCORE_RPS
    return res


def line(res: dict[str, Any]) -> str:
    t, s = res["train"], res["score"]
    base = res.get("sklearn_baseline")
    extra = f"; sklearn LDA fit alone {base['fit_seconds']} s" if base else ""
    return (
        f"lda: train {res['records']:,} flows in {t['seconds']} s ({t['records_per_s']:,}/s, "
        f"{'ok' if res['train_target_met'] else 'MISSED'} <= {TARGET_TRAIN_S:.0f} s, "
        f"{t['doc_word_pairs']:,} (IP, word) pairs, peak RSS {t['peak_rss_mb']} MB); "
        f"score {s['records_per_s']:,}/s ({'ok' if res['score_target_met'] else 'MISSED'} "
        f">= {TARGET_SCORE_RPS:,}/s, peak RSS {s['peak_rss_mb']} MB){extra}"
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        stage, data, model_dir = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        print(json.dumps(_child(stage, data, model_dir)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=RECORDS)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args()
    res = run(args.out, args.records, baseline=not args.no_baseline)
    print(json.dumps(res, indent=2))
    print(line(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
