"""Suspicious connects (Spot's LDA): where injected and real anomalies rank.

- **demo day**: `lightsoc demo`'s office network for a day (nfdump CSV through
  the nfdump parser) with its port scan, HTTPS beacon and SYN flood, plus an
  exfiltration host (three ~0.7 GB uploads to an external IP:8443 at night);
  once as is (1 office, ~29k flows) and once merged with 7 more offices
  (~175k flows, the extra offices without their injected patterns).
- **feedback**: an analyst rates the top 50 records that are none of the
  injected anomalies benign (3), the model is retrained with them replicated
  (x1000, Spot's factor); three rounds; where the anomalies rank after each.
- **stratosphere**: real scanner traffic (Zeek conn.log of an Nmap scan,
  Argus binetflow of a port scan) shifted into the demo day; where the
  scanner ranks. NjRAT (CTU-Malware-Capture-Botnet-230-1, first 1000 Zeek
  records, labelled) on its own: the malicious (C&C) records' best rank, C&C records in
  the top 50.
- **dns**: the demo resolver (6 h and a day): tunnelling, DGA and bad-domain hosts.

Ranks: *connection* = the anomaly's IP pair among the day's distinct
connections ranked by their lowest-scored record (what the daily job turns into
alert candidates, `lda_jobs.candidates`: a scan's thousands of probes are one
connection per target, not a page of the list); *record* = best rank of its
records in Spot's record list (lowest score first); *ip* = its IPs among IPs
ranked by mean log-probability of their words; *ip excess* = by the summed
surprise of their records beyond the day's median record. The target is each
anomaly among the top 50 connections; the IP lists are marked too.

Scoring: the model is fitted on the day it scores (Spot's daily job), so each
record is scored without its own connection's share of the topics
(`LdaModel.without_own_connection`): a beacon's hundreds of identical records
cannot vouch for themselves.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl

from eval.common import DATA, table, target
from lightsoc.detect.ml import lda_eval, lda_jobs

STRATO = DATA / "flows" / "stratosphere"
TOP = 50
ROUNDS = 3


def _shifted(events: pl.DataFrame, hour: float) -> pl.DataFrame:
    """`events` moved so they start `hour` hours into the demo day."""
    t0 = events["@timestamp"].min()
    start = pl.lit(int((lda_eval.START + hour * 3600) * 1_000_000)).cast(pl.Datetime("us", "UTC"))
    return events.with_columns((start + (pl.col("@timestamp") - t0)).alias("@timestamp"))


def feedback_rounds(rounds: int = ROUNDS, **kw: Any) -> dict[str, Any]:
    """Spot's loop: rate the top non-anomalous records benign, retrain, repeat."""
    records, truth, host = lda_eval.day(1)
    events = lda_eval.parse_flows(records)
    cases = lda_eval.anomalies(truth, host)
    bad = {ip for c in cases.values() for ip in c["ips"]}
    ratings: list[dict[str, Any]] = []
    out = []
    for r in range(rounds + 1):
        rated = pl.DataFrame(ratings) if ratings else None
        res = lda_eval.ranks(events, cases, ratings=rated, **kw)
        out.append(
            {
                "round": r,
                "benign_ratings": len(ratings),
                **{k: v["pair_rank"] for k, v in res["anomalies"].items()},
            }
        )
        if r == rounds:
            break
        top = lda_jobs.run_suspicious_connects(
            events, "flow", None, top_n=None, ratings=rated, **kw
        )
        fresh = top.filter(
            ~pl.col("source.ip").is_in(list(bad)) & ~pl.col("destination.ip").is_in(list(bad))
        ).head(TOP)  # records, as Spot's analyst rates them
        ratings += [
            {
                "rating": 3,
                "doc_a": x["lda.doc_a"],
                "word_a": x["lda.word_a"],
                "doc_b": x["lda.doc_b"],
                "word_b": x["lda.word_b"],
            }
            for x in fresh.iter_rows(named=True)
        ]
    return {"rounds": out}


def stratosphere() -> dict[str, Any]:
    """Real scanners mixed into the demo day; NjRAT on its own."""
    records, _, _ = lda_eval.day(1)
    background = lda_eval.parse_flows(records)
    cases = {
        "002-zeek-scenario-port-scanning (Nmap, 4504 conns)": (
            STRATO / "002-zeek-scenario-port-scanning" / "conn.log",
            "172.16.1.11",
        ),
        "port-scans/vertical (50 conns)": (
            STRATO / "port-scans" / "vertical" / "conn.log",
            "192.168.1.9",
        ),
        "test11-portscan.binetflow (Argus)": (STRATO / "test11-portscan.binetflow", "10.8.0.69"),
    }
    out: dict[str, Any] = {}
    for name, (path, scanner) in cases.items():
        if not path.is_file():
            out[name] = {"error": f"missing {path}"}
            continue
        scan = lda_jobs.read_files([path])
        scan = scan.filter(pl.col("_parse_ok").fill_null(False)).drop("_parse_ok")
        mixed = pl.concat([background, _shifted(scan, 10.0)], how="diagonal_relaxed")
        spec = {"ips": [scanner], "any": [scanner]}
        res = lda_eval.ranks(mixed, {"scanner": spec})
        out[name] = {"scanner": scanner, "scan_records": scan.height, **res["anomalies"]["scanner"]}
    njrat = STRATO / "001-zeek-scenario-malicious"
    if (njrat / "labeled-conn.log").is_file():
        cc = set()
        for line in (njrat / "labeled-conn.log").read_text().splitlines():
            f = line.split("\t")
            if not line.startswith("#") and len(f) > 2 and f[-2] == "Malicious":
                cc.add(f[1])  # uid
        ev = lda_jobs.read_files([njrat / "conn.log"])
        ev = ev.filter(pl.col("_parse_ok").fill_null(False))
        ev = ev.with_columns(pl.col("event.original").str.extract(r'"uid":"([^"]+)"').alias("uid"))
        if ev["uid"].null_count() == ev.height:  # TSV: the uid is the second column
            ev = ev.with_columns(
                pl.col("event.original").str.split("\t").list.get(1, null_on_oob=True).alias("uid")
            )
        ranked = lda_jobs.run_suspicious_connects(ev, "flow", None, top_n=None)
        is_cc = ranked["uid"].is_in(list(cc))
        # connections (IP pairs by their lowest record) with any C&C record
        conns = (
            ranked.with_columns(is_cc.alias("cc"))
            .group_by(
                pl.min_horizontal("source.ip", "destination.ip").alias("x"),
                pl.max_horizontal("source.ip", "destination.ip").alias("y"),
            )
            .agg(pl.col("score").min(), pl.col("cc").any())
            .sort(["score", "x", "y"])
            .with_row_index("conn_rank", 1)
        )
        cc_conns = conns.filter(pl.col("cc"))
        out["NjRAT (001, 1000 records, labelled)"] = {
            "records": ev.height,
            "cc_records": int(is_cc.sum()),
            "cc_best_rank": int(ranked.filter(is_cc)["rank"].min() or 0) or None,
            "cc_in_top50": int(is_cc.head(TOP).sum()),
            "connections": conns.height,
            "cc_connections": cc_conns.height,
            "cc_best_connection_rank": int(cc_conns["conn_rank"].min() or 0) or None,
            "cc_connections_in_top50": int((cc_conns["conn_rank"] <= TOP).sum()),
        }
    return out


def run() -> dict[str, Any]:
    t0 = time.perf_counter()
    res = {
        "demo": lda_eval.evaluate(offices=(1, 8)),
        "feedback": feedback_rounds(),
        "stratosphere": stratosphere(),
        "dns": lda_eval.evaluate_dns(),
    }
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _mark(rank: int | None) -> str:
    if rank is None:
        return "-"
    return f"{rank} {target(rank <= TOP)}"


def report(res: dict[str, Any]) -> str:
    out = [
        f"Suspicious connects (Spot LDA, 20 topics); target: each anomaly among the top {TOP} "
        "distinct connections (IP pairs by their lowest-scored record)"
    ]
    rows = []
    for run_name, r in res["demo"]["runs"].items():
        for name, a in r["anomalies"].items():
            rows.append(
                [
                    f"demo {run_name} ({r['records']} flows)",
                    name,
                    a["records"],
                    _mark(a["pair_rank"]),
                    a["record_rank"],
                    _mark(a["ip_rank"]),
                    _mark(a["ip_excess_rank"]),
                ]
            )
    for name, a in res["stratosphere"].items():
        if "error" in a:
            rows.append([name, "scanner", "-", "-", "-", "-", f"ERROR {a['error']}"])
        elif "scanner" in a:
            rows.append(
                [
                    f"stratosphere {name} in demo day",
                    f"scanner {a['scanner']}",
                    a["records"],
                    _mark(a["pair_rank"]),
                    a["record_rank"],
                    _mark(a["ip_rank"]),
                    _mark(a["ip_excess_rank"]),
                ]
            )
    heads = [
        "data",
        "anomaly",
        "records",
        "connection rank",
        "record rank",
        "ip rank",
        "ip excess rank",
    ]
    out.append(table(heads, rows))
    for run_name, r in res["demo"]["runs"].items():
        m = r["model"]
        out.append(
            f"  demo {run_name}: {m['documents']} IPs, vocabulary {m['vocabulary']}, "
            f"{m['doc_word_pairs']} (IP, word) pairs; train {r['train_seconds']} s, "
            f"score {r['score_seconds']} s"
        )
    nj = res["stratosphere"].get("NjRAT (001, 1000 records, labelled)")
    if nj:
        out.append(
            f"  NjRAT alone: {nj['cc_records']} of {nj['records']} records are C&C; best C&C record "
            f"rank {nj['cc_best_rank']}, C&C records in the top {TOP}: {nj['cc_in_top50']}; "
            f"{nj['cc_connections']} of {nj['connections']} connections have C&C records, the "
            f"best ranks {nj['cc_best_connection_rank']}, {nj['cc_connections_in_top50']} in the "
            f"top {TOP}"
        )
    out.append("")
    out.append(
        "Analyst feedback rounds (top 50 non-anomalous records rated benign; x1000, "
        "at most 25% of the corpus):"
    )
    fr = res["feedback"]["rounds"]
    names = [k for k in fr[0] if k not in ("round", "benign_ratings")]
    out.append(
        table(
            ["round", "benign ratings", *[f"{n} connection rank" for n in names]],
            [[r["round"], r["benign_ratings"], *[r[n] for n in names]] for r in fr],
        )
    )
    out.append("")
    out.append("DNS (demo resolver):")
    drows = []
    for span, d in res["dns"].items():
        for name in ("tunnel", "dga", "bad_domain"):
            drows.append(
                [span, d["records"], name, _mark(d[name]["record_rank"]), d[name]["ip_rank"]]
            )
    out.append(table(["span", "queries", "host", "record rank", "ip rank"], drows))
    return "\n".join(out)


if __name__ == "__main__":
    import json
    import sys

    result = run()
    if "--json" in sys.argv:
        print(json.dumps(result, indent=2, default=str))
    print(report(result))
