"""Beaconing section (RITA v5 scoring, `lightsoc.detect.ml.beacon`).

- **demo day**: the `lightsoc demo` NetFlow day (nfdump CSV through the
  nfdump parser and the networks enricher); the injected 300 s beacon must
  rank first and score >= the threshold; every benign pair, also with the
  outbound filter off (office clients to the office DNS, file and mail
  servers), is reported with its best score.
- **synthetic**: one day of outbound flows from a seeded generator: a 60 s
  beacon with +-20 % jitter, the same with 30 % of check-ins missing, a 300 s
  beacon with +-50 % jitter, a human browsing in office hours, an hourly
  update check with varying sizes, and a 2 connections/s strobe; DNS and web
  (proxy) kinds get a 120 s beacon to a domain among browsing noise.
- **stratosphere**: real captures (Zeek conn.log of NjRAT, Argus binetflow,
  Suricata eve.json), parsed by lightsoc's parsers; the NjRAT C2 pair named by
  the labels (192.168.1.115 -> 41.108.179.197:1177) must rank first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from eval.common import DATA, table, target
from lightsoc.detect.ml import beacon, beacon_eval

STRATO = DATA / "flows" / "stratosphere"
DAY0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
NJRAT = ("192.168.1.115", "41.108.179.197")
HOST = "10.20.4.40"


def _flows(
    ts: np.ndarray, src: str, dst: str, port: int, sizes: np.ndarray, **extra: Any
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "@timestamp": pl.Series((ts * 1e6).astype(np.int64)).cast(pl.Datetime("us", "UTC")),
            "source.ip": [src] * len(ts),
            "destination.ip": [dst] * len(ts),
            "destination.port": pl.Series([port] * len(ts), dtype=pl.Int32),
            "source.bytes": pl.Series(sizes.astype(np.int64)),
            "network.direction": ["outbound"] * len(ts),
            **{k: [v] * len(ts) for k, v in extra.items()},
        }
    )


def periodic(
    rng: np.random.Generator, period: float, jitter: float, miss: float = 0.0
) -> np.ndarray:
    """Check-in times over one day: `period` +- `jitter` (fraction), a share `miss` skipped."""
    n = int(86_400 / period) + 2
    t = DAY0 + rng.uniform(0, period) + np.cumsum(period * rng.uniform(1 - jitter, 1 + jitter, n))
    t = t[t < DAY0 + 86_400]
    return t[rng.random(len(t)) >= miss]


def browsing(rng: np.random.Generator) -> np.ndarray:
    """A person on one site: page loads in office hours (UTC+8), each a burst of requests."""
    pages = []
    for hour in range(1, 10):  # 09:00-18:00 local
        n = rng.poisson(6)
        pages.append(DAY0 + hour * 3600 + rng.uniform(0, 3600, n))
    starts = np.sort(np.concatenate(pages))
    burst = [s + np.cumsum(rng.exponential(0.8, rng.integers(3, 15))) for s in starts]
    return np.sort(np.concatenate(burst))


def synthetic_cases(seed: int = 11) -> dict[str, tuple[str, pl.DataFrame, bool]]:
    """name -> (kind, events of the case, is it a beacon)."""
    rng = np.random.default_rng(seed)

    def sizes(n: int, base: int = 620, spread: int = 6) -> np.ndarray:
        return base + rng.integers(-spread, spread + 1, n)

    cases: dict[str, tuple[str, pl.DataFrame, bool]] = {}
    for i, (name, period, jitter, miss) in enumerate(
        (
            ("beacon 60s +-20%", 60, 0.2, 0.0),
            ("beacon 60s +-20%, 30% missed", 60, 0.2, 0.3),
            ("beacon 300s +-50%", 300, 0.5, 0.0),
        )
    ):
        t = periodic(rng, period, jitter, miss)
        cases[name] = ("flow", _flows(t, HOST, f"203.0.113.{7 + i}", 443, sizes(len(t))), True)
    t = browsing(rng)
    sz = rng.lognormal(9, 1.2, len(t))
    cases["human browsing"] = ("flow", _flows(t, HOST, "198.51.100.20", 443, sz), False)
    t = periodic(rng, 3600, 0.002)
    sz = rng.integers(900, 40_000, len(t))  # an update check: sometimes a download
    cases["hourly update check"] = ("flow", _flows(t, HOST, "198.51.100.80", 443, sz), False)
    t = np.sort(DAY0 + rng.uniform(0, 86_400, 172_800))
    cases["strobe 2/s"] = (
        "flow",
        _flows(t, HOST, "198.51.100.99", 123, sizes(len(t), 76, 0)),
        False,
    )
    t = periodic(rng, 120, 0.1)
    dns = _flows(t, HOST, "10.20.0.53", 53, np.zeros(len(t))).with_columns(
        pl.lit("evil-c2.example").alias("dns.question.registered_domain"),
        pl.lit(None, dtype=pl.Int64).alias("source.bytes"),
    )
    cases["dns beacon 120s"] = ("dns", dns, True)
    t = periodic(rng, 120, 0.1)
    web = _flows(t, HOST, "10.20.0.8", 3128, sizes(len(t), 1400, 20)).with_columns(
        pl.lit("updates.evil-c2.example").alias("url.domain")
    )
    cases["web beacon 120s"] = ("web", web, True)
    t = browsing(rng)
    web_h = _flows(t, HOST, "10.20.0.8", 3128, rng.lognormal(9, 1.2, len(t))).with_columns(
        pl.lit("news.example").alias("url.domain")
    )
    cases["web human browsing"] = ("web", web_h, False)
    return cases


def _demo() -> dict[str, Any]:
    events, truth = beacon_eval.demo_day()
    out: dict[str, Any] = {
        "events": events.height,
        "pair": f"{truth.beacon_host} -> {truth.beacon_ip}",
    }
    for label, outbound in (("outbound", True), ("all", False)):
        s = beacon.score_beacons(events, "flow", outbound_only=outbound).with_row_index("rank", 1)
        is_b = (pl.col("source.ip") == truth.beacon_host) & (
            pl.col("destination.ip") == truth.beacon_ip
        )
        # the C2's replies (unidirectional NetFlow) are the same beacon seen backwards
        is_b = is_b | (
            (pl.col("source.ip") == truth.beacon_ip)
            & (pl.col("destination.ip") == truth.beacon_host)
        )
        hit = s.filter(is_b)
        benign = s.filter(~is_b)
        out[label] = {
            "pairs": s.height,
            "rank": int(hit["rank"][0]) if hit.height else None,
            "score": float(hit["score"][0]) if hit.height else None,
            "benign_max": float(benign["score"].max() or 0.0) if benign.height else None,
            "benign_over": int((benign["score"] >= beacon.THRESHOLD).sum()),
        }
    return out


def _synthetic() -> list[dict[str, Any]]:
    cases = synthetic_cases()
    rows = []
    for kind in beacon.KINDS:
        mine = {k: v for k, v in cases.items() if v[0] == kind}
        if not mine:
            continue
        # all the kind's cases together, one day window, as the scheduler would see them
        events = pl.concat([df for _, df, _ in mine.values()], how="diagonal_relaxed")
        s = beacon.score_beacons(
            events, kind, window_start=DAY0, window_end=DAY0 + 86_400
        ).with_row_index("rank", 1)
        dst = beacon.destination_field(kind)
        for name, (_, df, is_beacon) in mine.items():
            hit = s.filter(pl.col(dst) == df[dst if kind == "flow" else _dst_col(df)][0])
            r = hit.row(0, named=True) if hit.height else {}
            rows.append(
                {
                    "case": name,
                    "kind": kind,
                    "beacon": is_beacon,
                    "connections": df.height,
                    "rank": r.get("rank"),
                    "score": r.get("score"),
                    "ts": r.get("ts_score"),
                    "ds": r.get("ds_score"),
                    "hist": r.get("hist_score"),
                    "dur": r.get("dur_score"),
                    "strobe": r.get("is_strobe"),
                }
            )
    return rows


def _dst_col(df: pl.DataFrame) -> str:
    return "url.domain" if "url.domain" in df.columns else "dns.question.registered_domain"


def _stratosphere() -> list[dict[str, Any]]:
    out = []
    for rel, kind in (
        ("001-zeek-scenario-malicious/conn.log", "flow"),
        ("test2-malicious.binetflow", "flow"),
        ("test6-malicious.suricata.json", "flow"),
        ("test6-malicious.suricata.json", "dns"),
    ):
        path = STRATO / rel
        if not path.is_file():
            out.append({"file": rel, "kind": kind, "error": "missing data"})
            continue
        s = beacon.score_beacons(beacon_eval.events_from_files([path]), kind).with_row_index(
            "rank", 1
        )
        dst = beacon.destination_field(kind)
        top = [
            {k: r[k] for k in ("rank", "source.ip", "connections", "score", "is_strobe")}
            | {"destination": r[dst]}
            for r in s.head(3).iter_rows(named=True)
        ]
        entry: dict[str, Any] = {"file": rel, "kind": kind, "pairs": s.height, "top": top}
        if rel.startswith("001"):
            c2 = s.filter((pl.col("source.ip") == NJRAT[0]) & (pl.col(dst) == NJRAT[1]))
            entry["c2_rank"] = int(c2["rank"][0]) if c2.height else None
            entry["c2_score"] = float(c2["score"][0]) if c2.height else None
        out.append(entry)
    return out


def run() -> dict[str, Any]:
    return {
        "threshold": beacon.THRESHOLD,
        "demo": _demo(),
        "synthetic": _synthetic(),
        "stratosphere": _stratosphere(),
    }


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def report(res: dict[str, Any]) -> str:
    """The beaconing section as text."""
    th = res["threshold"]
    d = res["demo"]
    out = [f"Beaconing (RITA v5 scoring), alert threshold {th}", f"demo day: beacon {d['pair']}"]
    rows = [
        [
            k,
            d[k]["pairs"],
            _f(d[k]["rank"]),
            _f(d[k]["score"]),
            _f(d[k]["benign_max"]),
            d[k]["benign_over"],
        ]
        for k in ("outbound", "all")
    ]
    out.append(
        table(["pairs scored", "pairs", "beacon rank", "score", "benign max", "benign >= th"], rows)
    )
    ok = d["outbound"]["rank"] == 1 and (d["outbound"]["score"] or 0) >= th
    ok = ok and d["outbound"]["benign_over"] == 0
    out.append(f"Target demo beacon rank 1, score >= {th}, no benign pair over: {target(ok)}")
    rows = [
        [r["case"], r["kind"], r["connections"], _f(r["rank"]), _f(r["score"]), _f(r["ts"]),
         _f(r["ds"]), _f(r["hist"]), _f(r["dur"]), "yes" if r["strobe"] else "no"]
        for r in res["synthetic"]
    ]  # fmt: skip
    out.append(
        table(["case", "kind", "conns", "rank", "score", "ts", "ds", "hist", "dur", "strobe"], rows)
    )
    beacons_ok = all((r["score"] or 0) >= th for r in res["synthetic"] if r["beacon"])
    out.append(f"Target every synthetic beacon >= {th}: {target(beacons_ok)}")
    strobe_ok = any(r["strobe"] for r in res["synthetic"] if r["case"].startswith("strobe"))
    out.append(f"Target the 2/s pair flagged as a strobe: {target(strobe_ok)}")
    for e in res["stratosphere"]:
        if "error" in e:
            out.append(f"stratosphere {e['file']} ({e['kind']}): {e['error']}")
            continue
        tops = "; ".join(
            f"#{t['rank']} {t['source.ip']} -> {t['destination']} n={t['connections']} "
            f"score={_f(t['score'])}" + (" STROBE" if t["is_strobe"] else "")
            for t in e["top"]
        )
        out.append(f"stratosphere {e['file']} ({e['kind']}, {e['pairs']} pairs): {tops or 'none'}")
        if "c2_rank" in e:
            ok = e["c2_rank"] == 1 and (e["c2_score"] or 0) >= th
            out.append(
                f"Target NjRAT C2 {NJRAT[0]} -> {NJRAT[1]} rank 1: rank {_f(e['c2_rank'])} "
                f"score {_f(e['c2_score'])} {target(ok)}"
            )
    return "\n".join(out)


if __name__ == "__main__":
    print(report(run()))
