"""Family-wise evaluation of the DGA model: test families are never seen in training.

- *Held-out split*: a seeded 30% of the DGA families plus a random 30% of the
  benign names are the test set; the model (benign n-gram tables included)
  is trained on the rest, with 30% of the training benign names kept out of
  the fit to set the threshold (0.1% of them flagged). Reported: AUC, the
  detection rate at exactly 0.1% false positives on the test benign names,
  the detection rate and false-positive rate at the validation threshold,
  and each held-out family's detection rate.
- *Group k-fold*: 5 folds over the DGA families (scikit-learn's
  GroupKFold), benign names spread over the folds at random; per fold AUC
  and detection at 0.1% false positives; mean and minimum, so the figure
  does not hang on one lucky split.
- *Other splits*: the held-out split's AUC again for other seeds (other families
  held out). The shipped settings were chosen on seed 7's split and the folds, so
  this is the spread to read that split's figure against (seeds 1-13: 0.939 to
  0.981, seed 7 among the best).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from lightsoc.detect.ml import dga

HOLDOUT_FRACTION = 0.3
VALIDATION_FRACTION = 0.3  # of the training benign names, held back to set the threshold
FOLDS = 5


def _r(x: float) -> float | None:
    return None if x != x else round(float(x), 4)


def _tpr_at_fpr(benign: np.ndarray, malicious: np.ndarray, fpr: float) -> float:
    t = dga.threshold_at(benign, fpr)
    return float(np.mean(malicious > t)) if malicious.size else float("nan")


def _auc(benign: np.ndarray, malicious: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(benign.size), np.ones(malicious.size)]
    s = np.r_[benign, malicious]
    ok = ~np.isnan(s)
    if len(set(y[ok])) < 2:
        return float("nan")
    return float(roc_auc_score(y[ok], s[ok]))


def _top(names: pl.Series, scores: np.ndarray, k: int = 12) -> list[tuple[str, float]]:
    """The `k` highest-scoring names (label noise shows up here)."""
    order = np.argsort(-np.nan_to_num(scores, nan=-1.0))[:k]
    return [(str(names[int(i)]), round(float(scores[i]), 4)) for i in order]


def fit_with_threshold(train: pl.DataFrame, seed: int, params: dict | None = None) -> dga.DgaModel:
    """Fit on `train` minus a validation share of its benign names, whose scores set the
    threshold at the target false-positive rate."""
    p = {**dga.PARAMS, **(params or {})}
    rng = np.random.default_rng(seed)
    benign = (train["label"] == "benign").to_numpy()
    val = benign & (rng.random(train.height) < VALIDATION_FRACTION)
    fit_df = train.filter(pl.Series(~val))
    model = dga.fit(
        fit_df["domain"], (fit_df["label"] == "dga").to_numpy(), p, groups=fit_df["family"]
    )
    val_scores = model.score(train.filter(pl.Series(val))["domain"])
    model.threshold = dga.threshold_at(val_scores, float(p["target_fpr"]))
    model.meta["validation_benign"] = int(val.sum())
    return model


def held_out_split(df: pl.DataFrame, seed: int = 7, params: dict | None = None) -> dict[str, Any]:
    """Figures of one family-wise split (see the module docstring)."""
    rng = np.random.default_rng(seed)
    families = sorted(df.filter(pl.col("label") == "dga")["family"].unique().to_list())
    k = max(1, round(HOLDOUT_FRACTION * len(families)))
    held = sorted(rng.choice(families, size=k, replace=False).tolist())
    is_benign = (df["label"] == "benign").to_numpy()
    test_mask = np.where(
        is_benign, rng.random(df.height) < HOLDOUT_FRACTION, df["family"].is_in(held).to_numpy()
    )
    train, test = df.filter(pl.Series(~test_mask)), df.filter(pl.Series(test_mask))
    model = fit_with_threshold(train, seed, params)
    scores = model.score(test["domain"])
    tb = (test["label"] == "benign").to_numpy()
    benign, malicious = scores[tb], scores[~tb]
    t_test = dga.threshold_at(benign, 0.001)
    per_family = []
    fam = test["family"].to_numpy()
    for f in held:
        s = scores[fam == f]
        per_family.append(
            {
                "family": f,
                "names": int(s.size),
                "unscorable": int(np.isnan(s).sum()),
                "detected_at_0.1%_fpr": _r(float(np.mean(s > t_test))),
                "detected_at_threshold": _r(float(np.mean(s > model.threshold))),
                "auc": _r(_auc(benign, s)),
            }
        )
    return {
        "seed": seed,
        "held_out_families": held,
        "train_families": [f for f in families if f not in held],
        "train_rows": train.height,
        "test_benign": int(tb.sum()),
        "test_dga": int((~tb).sum()),
        "auc": _r(_auc(benign, malicious)),
        # label-noise sensitivity, not a claim: the same AUC without the 1% highest-scoring
        # test benign names (the OpenDNS lists hold machine-made names, see top_benign)
        "auc_without_top1pct_benign": _r(
            _auc(
                np.sort(benign[~np.isnan(benign)])[: int(0.99 * (~np.isnan(benign)).sum())],
                malicious,
            )
        ),
        "tpr_at_0.1%_fpr": _r(_tpr_at_fpr(benign, malicious, 0.001)),
        "threshold": _r(model.threshold),
        "tpr_at_threshold": _r(float(np.mean(malicious > model.threshold))),
        "fpr_at_threshold": _r(float(np.mean(benign > model.threshold))),
        "per_family": per_family,
        "top_benign": _top(test.filter(pl.Series(tb))["domain"], benign),
    }


def group_folds(
    df: pl.DataFrame, seed: int = 7, folds: int = FOLDS, params: dict | None = None
) -> dict[str, Any]:
    """AUC and detection at 0.1% FPR over `folds` family-wise folds."""
    from sklearn.model_selection import GroupKFold

    rng = np.random.default_rng(seed)
    is_dga = (df["label"] == "dga").to_numpy()
    fold = np.empty(df.height, dtype=np.int64)
    dga_idx = np.flatnonzero(is_dga)
    groups = df["family"].to_numpy()[dga_idx]
    for i, (_, test_idx) in enumerate(GroupKFold(n_splits=folds).split(dga_idx, groups=groups)):
        fold[dga_idx[test_idx]] = i
    benign_idx = np.flatnonzero(~is_dga)
    fold[benign_idx] = rng.permutation(benign_idx.size) % folds
    out = []
    for i in range(folds):
        test = pl.Series(fold == i)
        train_df, test_df = df.filter(~test), df.filter(test)
        model = dga.fit(
            train_df["domain"],
            (train_df["label"] == "dga").to_numpy(),
            params,
            groups=train_df["family"],
        )
        s = model.score(test_df["domain"])
        tb = (test_df["label"] == "benign").to_numpy()
        out.append(
            {
                "fold": i,
                "families": sorted(set(test_df.filter(~pl.Series(tb))["family"].to_list())),
                "auc": _r(_auc(s[tb], s[~tb])),
                "tpr_at_0.1%_fpr": _r(_tpr_at_fpr(s[tb], s[~tb], 0.001)),
            }
        )
    aucs = np.array([f["auc"] for f in out], dtype=float)
    tprs = np.array([f["tpr_at_0.1%_fpr"] for f in out], dtype=float)
    return {
        "folds": out,
        "auc_mean": _r(float(np.nanmean(aucs))),
        "auc_min": _r(float(np.nanmin(aucs))),
        "tpr_at_0.1%_fpr_mean": _r(float(np.nanmean(tprs))),
        "tpr_at_0.1%_fpr_min": _r(float(np.nanmin(tprs))),
    }


def split_seeds(df: pl.DataFrame, seeds: Sequence[int]) -> dict[str, Any]:
    """The held-out split's AUC and detection at 0.1% FPR for each of `seeds`."""
    keys = ("held_out_families", "auc", "auc_without_top1pct_benign", "tpr_at_0.1%_fpr")
    splits = []
    for s in seeds:
        h = held_out_split(df, s)
        splits.append({"seed": s, **{k: h[k] for k in keys}})
    if not splits:
        return {"splits": [], "auc_mean": None, "auc_min": None, "auc_max": None}
    aucs = np.array([x["auc"] for x in splits], dtype=float)
    clean = np.array([x["auc_without_top1pct_benign"] for x in splits], dtype=float)
    return {
        "splits": splits,
        "auc_mean": _r(float(np.nanmean(aucs))),
        "auc_min": _r(float(np.nanmin(aucs))),
        "auc_max": _r(float(np.nanmax(aucs))),
        # label-noise sensitivity, as in held_out_split
        "auc_without_top1pct_benign_mean": _r(float(np.nanmean(clean))),
    }


def evaluate(df: pl.DataFrame, seed: int = 7, other_seeds: Sequence[int] = ()) -> dict[str, Any]:
    """Held-out split and group k-fold figures (and the split for `other_seeds`)."""
    split = held_out_split(df, seed)
    folds = group_folds(df, seed)
    out = {
        "auc_unseen_families": split["auc"],
        "tpr_at_0.1%_fpr": split["tpr_at_0.1%_fpr"],
        "auc_folds_mean": folds["auc_mean"],
        "auc_folds_min": folds["auc_min"],
        "held_out": split,
        "group_kfold": folds,
    }
    if other_seeds:
        out["other_splits"] = split_seeds(df, [s for s in other_seeds if s != seed])
    return out


def fit_shipped(df: pl.DataFrame, seed: int = 7) -> tuple[dga.DgaModel, dict[str, Any]]:
    """The model to ship (every family; threshold from held-back benign names) and the
    family-wise figures that describe it."""
    figures = evaluate(df, seed)
    model = fit_with_threshold(df, seed)
    brief = {k: v for k, v in figures.items() if not isinstance(v, dict)}
    brief["held_out_families"] = figures["held_out"]["held_out_families"]
    brief["per_family_detection"] = {
        f["family"]: f["detected_at_0.1%_fpr"] for f in figures["held_out"]["per_family"]
    }
    brief["validation_benign"] = model.meta.get("validation_benign")
    return model, brief
