"""DGA scoring and DNS-tunnelling windows: names/s, events/s and peak RSS.

Input (generation not timed, seed 1): 1M query names built from the 43.6k
names of ../shared/data/dns/dga_labeled.csv (benign and DGA), each with a
random prefix (none, `www.`, `mail.`, `cdn<n>.`, `a.b.`) and random case,
a trailing dot on some, so most are distinct and the suffix work is real.

- dga: `dga.load(None).score(names)` with the shipped model, in one call
  (the model scores in chunks of 32k names internally).
- baseline, same run: a straightforward per-name Python scorer (the PSL
  package's `privatesuffix`, `collections.Counter` entropy, dict bigram
  look-ups) on a 20k subsample, extrapolated to names/s.
- tunnel: `tunnel.score_window` over 1M DNS events of a busy benign hour
  (`tunnel.busy_resolver_events`, 300 clients): events/s.

    python bench/ml_dga.py [--names 1000000] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dns" / "dga_labeled.csv"
BASELINE_NAMES = 20_000


def names(n: int, seed: int = 1) -> pl.Series:
    """`n` query names from the labelled data set with prefixes, case and trailing dots."""
    rng = np.random.default_rng(seed)
    base = pl.read_csv(DATA)["domain"]
    kind = pl.Series(rng.integers(0, 5, n))
    prefix = (
        pl.DataFrame({"k": kind, "c": pl.Series(rng.integers(0, 10_000, n))})
        .select(
            pl.when(pl.col("k") == 1)
            .then(pl.lit("www."))
            .when(pl.col("k") == 2)
            .then(pl.lit("mail."))
            .when(pl.col("k") == 3)
            .then(pl.lit("a.b."))
            .when(pl.col("k") == 4)
            .then(pl.lit("cdn") + pl.col("c").cast(pl.Utf8) + pl.lit("."))
            .otherwise(pl.lit(""))
        )
        .to_series()
    )
    frame = pl.DataFrame(
        {
            "p": prefix,
            "n": base.gather(rng.integers(0, base.len(), n)),
            "u": rng.random(n) < 0.1,
            "d": rng.random(n) < 0.1,
        }
    )
    name = pl.col("p") + pl.col("n")
    name = pl.when(pl.col("u")).then(name.str.to_uppercase()).otherwise(name)
    name = name + pl.when(pl.col("d")).then(pl.lit(".")).otherwise(pl.lit(""))
    return frame.select(name.alias("name")).to_series()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_scores(values: list[str], logp2: dict[str, float]) -> list[float]:
    """The per-name Python way: PSL split, Counter entropy, dict bigram look-ups."""
    from publicsuffixlist import PublicSuffixList

    psl = PublicSuffixList(only_icann=True)
    out = []
    for v in values:
        host = v.strip().lower().rstrip(".")
        reg = psl.privatesuffix(host)
        if not reg:
            out.append(math.nan)
            continue
        label = reg.split(".")[0]
        counts = Counter(label)
        n = len(label)
        ent = -sum(c / n * math.log2(c / n) for c in counts.values())
        padded = f"^{label}$"
        ll = sum(logp2.get(padded[i : i + 2], -12.0) for i in range(len(padded) - 1))
        z = 0.4 * n / 10 + ent - ll / (n + 1) / 4 - 3
        out.append(1.0 / (1.0 + math.exp(-z)))
    return out


def run(out: Path, n: int = 1_000_000) -> dict[str, Any]:
    from lightsoc.detect.ml import dga, tunnel

    out.mkdir(parents=True, exist_ok=True)
    series = names(n)
    model = dga.load(None)
    model.score(series.head(1000))  # PSL parse and first-call costs are not throughput
    rss0 = _peak_rss_mb()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    scores = model.score(series)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    dga_rss = _peak_rss_mb()
    flagged = int(np.sum(scores > model.threshold))
    # baseline: per-name Python on a subsample, with a benign bigram dict
    benign = pl.read_csv(DATA).filter(pl.col("label") == "benign")["domain"].to_list()
    pairs = Counter(f"^{b.split('.')[0]}$"[i : i + 2] for b in benign for i in range(12))
    total = sum(pairs.values())
    logp2 = {k: math.log(v / total) for k, v in pairs.items()}
    sample = series.head(BASELINE_NAMES).to_list()
    t1 = time.perf_counter()
    naive_scores(sample, logp2)
    naive_seconds = time.perf_counter() - t1
    # tunnelling windows over a busy benign hour
    events = tunnel.busy_resolver_events(benign, queries=n, clients=300)
    t2 = time.perf_counter()
    windows = tunnel.score_window(events)
    tunnel_seconds = time.perf_counter() - t2
    res = {
        "names": n,
        "dga_seconds": round(seconds, 2),
        "dga_cpu_seconds": round(cpu, 2),
        "dga_names_per_s": round(n / seconds),
        "dga_flagged": flagged,
        "dga_unscorable": int(np.isnan(scores).sum()),
        "baseline_names_per_s": round(len(sample) / naive_seconds),
        "speedup_vs_baseline": round((n / seconds) / (len(sample) / naive_seconds), 1),
        "tunnel_events": events.height,
        "tunnel_windows": windows.height,
        "tunnel_events_per_s": round(events.height / tunnel_seconds),
        "peak_rss_mb_before_scoring": round(rss0, 1),
        "peak_rss_mb_after_dga": round(dga_rss, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    (out / "ml_dga.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def line(res: dict[str, Any]) -> str:
    return (
        f"ml_dga: {res['dga_names_per_s']:,} names/s (per-name Python baseline "
        f"{res['baseline_names_per_s']:,}/s, x{res['speedup_vs_baseline']}); tunnel windows "
        f"{res['tunnel_events_per_s']:,} events/s; peak RSS {res['peak_rss_mb_after_dga']} MB "
        f"after DGA scoring, {res['peak_rss_mb']} MB with the tunnel case"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args(argv)
    res = run(args.out, args.names)
    print(json.dumps(res, indent=2))
    print(line(res))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    raise SystemExit(main())
