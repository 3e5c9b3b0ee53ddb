"""Web request classifier throughput: the shipped model scoring request targets.

Workload: the request targets of the real benign Apache log (10,000) and of
CSIC 2010 (61,065, POST bodies in the query), shuffled with a fixed seed and
repeated to `N` targets. A child process (so its peak RSS is its own) loads
the shipped model and scores them in chunks of 65,536 as `lightsoc ml score`
does; best of 3 runs. Baseline in the same run: scikit-learn's
HashingVectorizer with a char 1..5-gram analyzer (pure Python per target) and
the same linear dot product, on a 20,000-target slice.

    python bench/ml_web.py [--n 300000] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

N = 300_000
BASELINE_N = 20_000
CHUNK = 65_536


def workload(n: int) -> list[str]:
    """`n` real request targets (benign log + CSIC), shuffled, repeated."""
    from lightsoc.detect.ml import web_data

    d = web_data.SHARED_WEB
    with (d / "apache_logs_benign.log").open(encoding="utf-8", errors="replace") as fh:
        targets = [t for t in web_data.access_log_targets(fh.read().splitlines()) if t]
    for name in (web_data.CSIC_NORMAL, web_data.CSIC_ANOMALOUS):
        targets += web_data.csic_targets(d / name)
    random.Random(0).shuffle(targets)
    return (targets * (n // len(targets) + 1))[:n]


def child(n: int) -> dict:
    """Score `n` targets with the shipped model in this process: figures."""
    from lightsoc.detect.ml import web

    targets = workload(n)
    scorer = web.load(None)
    best, cpu_best = float("inf"), float("inf")
    for _ in range(3):
        c0, t0 = time.process_time(), time.perf_counter()
        flagged = 0
        for i in range(0, n, CHUNK):
            flagged += int((scorer.score(targets[i : i + CHUNK]) >= scorer.threshold).sum())
        best = min(best, time.perf_counter() - t0)
        cpu_best = min(cpu_best, time.process_time() - c0)
    base = baseline(targets[:BASELINE_N], scorer)
    return {
        "targets": n,
        "mean_bytes": round(sum(map(len, targets)) / n, 1),
        "seconds": round(best, 3),
        "targets_per_s": round(n / best),
        "targets_per_cpu_s": round(n / cpu_best),
        "flagged": flagged,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "baseline": base,
    }


def baseline(targets: list[str], scorer) -> dict:  # noqa: ANN001 - a LinearWebModel
    """sklearn HashingVectorizer (char 1..5-grams, Python analyzer) + the same dot product."""
    from urllib.parse import unquote_plus

    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(
        analyzer="char",
        ngram_range=(1, 5),
        n_features=1 << scorer.bits,
        alternate_sign=False,
        norm="l2",
        preprocessor=lambda t: unquote_plus(t).lower(),
    )
    w = scorer.weights[:-1]
    t0 = time.perf_counter()
    x = vec.transform(targets)
    _ = x @ w + scorer.bias
    sec = time.perf_counter() - t0
    return {
        "what": "HashingVectorizer char 1-5 + dot",
        "targets": len(targets),
        "targets_per_s": round(len(targets) / sec),
    }


def run(out: Path, n: int = N) -> dict:
    """Run the child process; its figures plus the ratio to the baseline."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["ratio"] = round(res["targets_per_s"] / res["baseline"]["targets_per_s"], 1)
    res["target_met"] = res["targets_per_s"] >= 100_000
    (out / "ml_web.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def line(res: dict) -> str:
    """One-line summary."""
    return (
        f"ml_web: {res['targets_per_s']:,} targets/s wall ({res['targets_per_cpu_s']:,}/CPU-s), "
        f"{res['targets']:,} targets of {res['mean_bytes']} B, peak RSS {res['peak_rss_mb']} MB; "
        f"baseline {res['baseline']['targets_per_s']:,}/s (x{res['ratio']}); "
        f"target 100,000/s {'ok' if res['target_met'] else 'MISSED'}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    print(line(run(args.out, args.n)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
