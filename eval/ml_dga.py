"""ML section: DGA detection on unseen families, and DNS tunnelling on real captures.

DGA (../shared/data/dns/dga_labeled.csv, `lightsoc.detect.ml.dga_eval`):
a seeded 30% of the DGA families and 30% of the benign names are held out;
the model, its benign n-gram tables and its threshold (0.1% of held-back
benign training names) come from the rest. Reported: AUC on the unseen
families (target >= 0.98), detection at 0.1% false positives overall and per
held-out family, AUC over 5 family-wise folds (GroupKFold; mean, min), and
the held-out split's AUC for 12 other seeds: the settings were chosen on
seed 7's split and the folds, so the other seeds say how far that split's
figure carries.
The benign names with the highest scores are listed: the OpenDNS lists
carry machine-made names (`dpgcquf.info`, `ulmjklxf.biz`, ...), label noise
that bounds both AUC and the 0.1% figure.

Tunnelling (`lightsoc.detect.ml.tunnel`): the iodine and dnscat2 captures
must flag their tunnel domain, the normal DNS captures nothing; a synthetic
busy hour of benign DNS (real site names from the data set behind CDN
names: akamaiedge, edgekey, cloudfront, cloudflare, googlevideo) must stay
under the threshold, per client and as one forwarding resolver.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from eval.common import DATA, table, target
from lightsoc.detect.ml import dga, dga_eval, tunnel

AUC_TARGET = 0.98
OTHER_SEEDS = range(1, 14)  # seed 7 is the main split


def run_dga() -> dict[str, Any]:
    df = dga.read_labelled([DATA / "dns" / "dga_labeled.csv"])
    return dga_eval.evaluate(df, other_seeds=OTHER_SEEDS)


def run_tunnel() -> dict[str, Any]:
    res = tunnel.evaluate([])
    df = pl.read_csv(DATA / "dns" / "dga_labeled.csv")
    benign = df.filter(pl.col("label") == "benign")["domain"].to_list()
    busy = {}
    for clients in (30, 1):
        scored = tunnel.score_window(tunnel.busy_resolver_events(benign, clients=clients))
        busy[f"{clients}_clients"] = {
            "queries": 20000,
            "windows": scored.height,
            "flagged": int(scored["is_tunnel"].sum()),
            "max_score": round(float(scored["score"].max() or 0.0), 3),
            "top_domain": scored["domain"][0] if scored.height else None,
        }
    res["busy_resolver"] = busy
    return res


def run() -> dict[str, Any]:
    """DGA figures (the tunnelling figures are the `ml_tunnel` section)."""
    return run_dga()


def report(res: dict[str, Any]) -> str:
    return report_dga(res)


def report_dga(d: dict[str, Any]) -> str:
    h, k = d["held_out"], d["group_kfold"]
    out = [
        f"DGA, held-out families {', '.join(h['held_out_families'])} "
        f"({h['test_dga']} DGA + {h['test_benign']} benign test names; "
        f"trained on {len(h['train_families'])} families)",
        table(
            ["figure", "value", "target"],
            [
                ["AUC, unseen families", h["auc"], target((h["auc"] or 0) >= AUC_TARGET)],
                ["AUC, 5 family folds, mean", k["auc_mean"], target(k["auc_mean"] >= AUC_TARGET)],
                ["AUC, 5 family folds, min", k["auc_min"], "-"],
                *_other_seed_rows(d.get("other_splits")),
                [
                    "  (AUC w/o the top 1% benign: noise check)",
                    h["auc_without_top1pct_benign"],
                    "-",
                ],
                ["detected at 0.1% FPR (test benign)", h["tpr_at_0.1%_fpr"], "-"],
                ["detected at 0.1% FPR, fold mean", k["tpr_at_0.1%_fpr_mean"], "-"],
                ["threshold (0.1% of validation benign)", h["threshold"], "-"],
                ["  detected at that threshold", h["tpr_at_threshold"], "-"],
                ["  FPR on test benign at that threshold", h["fpr_at_threshold"], "-"],
            ],
        ),
        table(
            ["held-out family", "names", "AUC", "detected @0.1% FPR", "detected @threshold"],
            [
                [
                    f["family"],
                    f["names"],
                    f["auc"],
                    f["detected_at_0.1%_fpr"],
                    f["detected_at_threshold"],
                ]
                for f in h["per_family"]
            ],
        ),
        *_other_seed_table(d.get("other_splits")),
        table(
            ["fold", "families", "AUC", "detected @0.1% FPR"],
            [
                [f["fold"], " ".join(f["families"]), f["auc"], f["tpr_at_0.1%_fpr"]]
                for f in k["folds"]
            ],
        ),
        "Highest-scoring 'benign' test names (label noise in the OpenDNS lists): "
        + ", ".join(f"{n} ({s})" for n, s in h["top_benign"]),
    ]
    return "\n".join(out)


def _other_seed_table(o: dict[str, Any] | None) -> list[str]:
    if not o or not o["splits"]:
        return []
    rows = [
        [
            x["seed"],
            " ".join(x["held_out_families"]),
            x["auc"],
            x.get("auc_without_top1pct_benign", "-"),
            x["tpr_at_0.1%_fpr"],
        ]
        for x in o["splits"]
    ]
    head = ["seed", "held-out families", "AUC", "AUC w/o top 1% benign", "detected @0.1% FPR"]
    return [table(head, rows)]


def _other_seed_rows(o: dict[str, Any] | None) -> list[list[Any]]:
    if not o or not o["splits"]:
        return []
    n = len(o["splits"])
    return [
        [
            f"AUC, held-out split, {n} other seeds, mean",
            o["auc_mean"],
            target((o["auc_mean"] or 0) >= AUC_TARGET),
        ],
        [f"AUC, held-out split, {n} other seeds, min-max", f"{o['auc_min']}-{o['auc_max']}", "-"],
        [
            "  (mean w/o the top 1% benign: noise check)",
            o.get("auc_without_top1pct_benign_mean", "-"),
            "-",
        ],
    ]


def report_tunnel(t: dict[str, Any]) -> str:
    out = [
        f"DNS tunnelling (threshold {t['threshold']}, window {t['window_s']} s): "
        f"{t['tunnels_flagged']}/{t['tunnel_captures']} tunnel captures flagged "
        f"{target(t['tunnels_flagged'] == t['tunnel_captures'])}, "
        f"{t['false_positive_windows']} false-positive windows "
        f"{target(t['false_positive_windows'] == 0)}",
        table(
            ["capture", "kind", "events' windows", "flagged", "top domain (score)"],
            [
                [
                    c["capture"],
                    c["kind"],
                    c["windows"],
                    " ".join(c["flagged"]) or "-",
                    f"{c['top'][0]['domain']} ({c['top'][0]['score']})" if c["top"] else "-",
                ]
                for c in t["captures"]
            ],
        ),
        table(
            ["busy benign hour", "queries", "windows", "flagged", "max score", "top domain"],
            [
                [k2, v["queries"], v["windows"], v["flagged"], v["max_score"], v["top_domain"]]
                for k2, v in t["busy_resolver"].items()
            ],
        ),
        "Note: the normal captures hold 1-16 queries each; the busy benign hour is the "
        "meaningful false-positive check.",
    ]
    return "\n".join(out)
