"""DGA detection: how machine-made a DNS name's registered label looks.

The model is an additive logistic model over binned features (a GAM in
spirit): each feature of `dga_features.FEATURES` (length, entropy, character
class ratios and runs, hex-ness, TLD class, mean bigram/trigram
log-likelihood and the share of 4-/5-grams seen, both against benign names)
is cut at its training quantiles, and each bin has a learned weight; the
score is sigmoid(intercept + the weights of the bins a name falls in). That
keeps non-linear shapes (very short and very long labels are both unusual),
stays linear to train (scikit-learn's LogisticRegression on one-hot bins),
scores with one `searchsorted` per feature, and persists as plain arrays:
bin edges, bin weights, the n-gram tables and bit sets. Gradient boosting
was within 0.005 AUC on unseen families and would need a tree export.

The benign n-gram knowledge is learned from the benign training names only,
and cross-fitted: a benign training name's features come from tables built
without its fold, as an unseen benign name's would.

The decision threshold is the 99.9th percentile of the scores of benign
names held back from training (0.1% false positives on them). The public
benign lists contain machine-made names (label noise, see `dga_eval`), so
the threshold sits high; on clean traffic it flags fewer than 0.1%.

`lightsoc ml score dga FILE` reads one name per line; `load(...).score(names)`
is the vectorised entry point (NaN for names without a registered label:
empty, IP literals, reverse `.arpa` names, single labels, bare suffixes,
punycode labels without ASCII letters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lightsoc.detect.ml import dga_features as F
from lightsoc.detect.ml.modelfile import ModelError, ModelFile, fingerprint, resolve
from lightsoc.detect.ml.modelfile import load as load_file

DESCRIPTION = "DGA domains: binned-feature logistic model on the registered label"
KIND = "dga"
DATA = Path(__file__).resolve().parents[5] / "shared" / "data" / "dns" / "dga_labeled.csv"
PARAMS: dict[str, Any] = {
    "bins": 8,  # quantile bins per feature (8 and C=0.1: best mean AUC of the group folds)
    "C": 0.1,  # inverse L2 strength of the logistic regression
    "ngram_alpha": 0.1,  # additive smoothing of the benign n-gram tables
    "target_fpr": 0.001,  # threshold: this share of held-out benign names flagged
    "seed": 7,
}


@dataclass
class DgaModel:
    """Arrays of a trained DGA model and the scoring function."""

    #: benign n-gram knowledge (`dga_features.benign_tables`): logp2, logp3, seen4, seen5
    tables: dict[str, np.ndarray]
    edges: np.ndarray  # float64 (n_features, bins - 1), +inf padded
    weights: np.ndarray  # float64 (n_features, bins)
    intercept: float
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Logit per feature row (NaN rows stay NaN)."""
        z = np.full(x.shape[0], self.intercept)
        for j, col in enumerate(np.ascontiguousarray(x.T)):
            # side="right": a value equal to an edge goes to the upper bin, as in
            # training; the +inf padding of the edges is never passed
            z += self.weights[j][np.searchsorted(self.edges[j], col, side="right")]
        z[np.isnan(x[:, 0])] = np.nan
        return z

    def score(self, values: Sequence[str | None] | pl.Series) -> np.ndarray:
        """Probability-like DGA score in [0, 1] per name; NaN where there is no label."""
        series = _series(values)
        out = np.empty(len(series))
        # chunk by chunk: the feature rows of a chunk stay in cache and memory stays flat
        for i in range(0, len(series), F.CHUNK):
            x = F.features(series.slice(i, F.CHUNK), self.tables)
            with np.errstate(over="ignore"):
                out[i : i + len(x)] = 1.0 / (1.0 + np.exp(-self.decision(x)))
        return out

    def to_file(self) -> ModelFile:
        arrays = {
            **self.tables,
            "edges": self.edges,
            "weights": self.weights,
            "intercept": np.array([self.intercept]),
            "features": np.array(F.FEATURES),
        }
        meta = {**self.meta, "threshold": self.threshold}
        return ModelFile(KIND, arrays, meta)

    @classmethod
    def from_file(cls, mf: ModelFile) -> DgaModel:
        """The model in `mf`, its arrays checked against this version's feature set."""
        where = mf.path or KIND
        names = [str(s) for s in mf.array("features")]
        if names != list(F.FEATURES):
            raise ModelError(f"{where}: trained on other features; retrain it")
        a = F.ALPHABET
        shapes = {"logp2": (a**2,), "logp3": (a**3,)}
        shapes.update({f"seen{k}": (F.SEEN_SIZE[k] // 8,) for k in F.SEEN_ORDERS})
        tables = {k: mf.array(k) for k in shapes}
        edges, weights = mf.array("edges"), mf.array("weights")
        intercept = mf.array("intercept")
        if (
            any(tables[k].shape != shape for k, shape in shapes.items())
            or edges.ndim != 2
            or weights.shape != (len(names), edges.shape[1] + 1)
            or edges.shape[0] != len(names)
            or intercept.shape != (1,)
        ):
            raise ModelError(f"{where}: model.npz arrays have unexpected shapes")
        threshold = mf.meta.get("threshold")
        if not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
            raise ModelError(f"{where}: meta.json has no threshold in [0, 1]")
        tables = {
            k: v.astype(np.uint8 if k.startswith("seen") else np.float32) for k, v in tables.items()
        }
        return cls(
            tables,
            edges.astype(np.float64),
            weights.astype(np.float64),
            float(intercept[0]),
            float(threshold),
            dict(mf.meta),
        )


def _series(values: Sequence[str | None] | pl.Series) -> pl.Series:
    if isinstance(values, pl.Series):
        return values
    values = list(values)
    try:
        return pl.Series("name", values, dtype=pl.Utf8, strict=False)
    except UnicodeEncodeError:
        # undecodable input bytes (the CLI reads with surrogateescape): keep the rest
        return pl.Series("name", [_clean(v) for v in values], dtype=pl.Utf8, strict=False)


def _clean(value: str | None) -> str | None:
    if not isinstance(value, str):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _bin_edges(col: np.ndarray, bins: int) -> np.ndarray:
    """Distinct inner quantile edges of one feature column."""
    qs = np.quantile(col, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def crossfit_features(
    series: pl.Series, is_dga: np.ndarray, alpha: float, folds: int = 5, seed: int = 7
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Training features and the benign tables learned from all benign names. A benign
    name's own features come from tables built without its fold: scored against tables
    that contain it, it would look more benign than any unseen benign name does."""
    benign = np.flatnonzero(~is_dga)
    codes, lengths, _ = F.split_labels(series.gather(benign))
    tables = F.benign_tables(codes, lengths, alpha)
    x = F.features(series, tables)
    fold = np.random.default_rng(seed).permutation(benign.size) % folds
    if benign.size >= 2 * folds:
        offsets = np.cumsum(lengths) - lengths
        for k in range(folds):
            keep = fold != k
            part = (
                np.concatenate(
                    [codes[o : o + n] for o, n in zip(offsets[keep], lengths[keep], strict=True)]
                )
                if keep.any()
                else np.zeros(0, np.int32)
            )
            t = F.benign_tables(part, lengths[keep], alpha)
            x[benign[~keep]] = F.features(series.gather(benign[~keep]), t)
    return x, tables


def fit(
    names: Sequence[str] | pl.Series,
    is_dga: np.ndarray,
    params: dict[str, Any] | None = None,
) -> DgaModel:
    """Train on `names` labelled `is_dga` (the n-gram tables from the benign ones only).
    Needs both classes among the scorable names, else `ModelError`."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    p = {**PARAMS, **(params or {})}
    series = _series(names)
    y = np.asarray(is_dga, dtype=bool)
    if len(series) != y.size:
        raise ValueError("names and labels differ in length")
    x, tables = crossfit_features(series, y, float(p["ngram_alpha"]), seed=int(p["seed"]))
    ok = ~np.isnan(x[:, 0])
    x, y = x[ok], y[ok]
    if y.all() or not y.any():
        raise ModelError("dga: training data needs both DGA and benign names with a label")
    bins = int(p["bins"])
    edge_list = [_bin_edges(x[:, j], bins) for j in range(x.shape[1])]
    width = max(len(e) for e in edge_list)
    edges = np.full((x.shape[1], width), np.inf)
    for j, e in enumerate(edge_list):
        edges[j, : len(e)] = e
    # one-hot of every feature's bin, columns laid out as (feature, bin)
    idx = np.column_stack(
        [np.searchsorted(edges[j], x[:, j], side="right") for j in range(x.shape[1])]
    )
    cols = idx + np.arange(x.shape[1]) * (width + 1)
    onehot = sparse.csr_matrix(
        (np.ones(cols.size), cols.ravel(), np.arange(0, cols.size + 1, x.shape[1])),
        shape=(x.shape[0], x.shape[1] * (width + 1)),
    )
    lr = LogisticRegression(C=float(p["C"]), max_iter=5000, class_weight="balanced")
    lr.fit(onehot, y)
    weights = lr.coef_.reshape(x.shape[1], width + 1)
    return DgaModel(tables, edges, weights, float(lr.intercept_[0]), 0.5)


def threshold_at(benign_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold that flags at most `fpr` of `benign_scores` (score > t)."""
    s = np.sort(benign_scores[~np.isnan(benign_scores)])
    if s.size == 0:
        return 0.5
    k = int(np.floor(fpr * s.size))  # this many benign names may score above t
    return float(s[s.size - 1 - k])


def read_labelled(paths: Sequence[Path]) -> pl.DataFrame:
    """`domain`, `label` (dga/benign), `family` rows of the CSV files, or `ModelError`."""
    frames = []
    for p in paths:
        try:
            df = pl.read_csv(p, columns=["domain", "label", "family"], schema_overrides={})
        except (OSError, pl.exceptions.PolarsError) as e:
            raise ModelError(f"{p}: not a domain,label,family CSV ({e})") from None
        frames.append(df.select(pl.col("domain", "label", "family").cast(pl.Utf8)))
    if not frames:
        raise ModelError("dga: no training data given")
    df = pl.concat(frames).drop_nulls(["domain", "label"])
    labels = set(df["label"].unique().to_list())
    if not labels <= {"dga", "benign"}:
        raise ModelError(f"dga: labels must be dga/benign, found {sorted(labels)}")
    return df.with_columns(pl.col("family").fill_null(pl.col("label")))


def train(inputs: list[Path], data_dir: Path | None, from_store: bool = False) -> ModelFile:
    """Train on labelled CSVs (default: the shared public data set)."""
    if from_store:
        raise ModelError("dga: training from stored events is not supported (no labels)")
    from lightsoc.detect.ml import dga_eval

    paths = [Path(p) for p in inputs] or [DATA]
    df = read_labelled(paths)
    model, figures = dga_eval.fit_shipped(df)
    model.meta.update(
        {
            "params": dict(PARAMS),
            "metrics": figures,
            "training": {
                "inputs": [str(p) for p in paths],
                "rows": df.height,
                "dga": int((df["label"] == "dga").sum()),
                "benign": int((df["label"] == "benign").sum()),
                "fingerprint": fingerprint(*paths),
            },
        }
    )
    return model.to_file()


def train_default() -> ModelFile:
    """The shipped default: trained on ../shared/data/dns/dga_labeled.csv."""
    return train([DATA], None)


def evaluate(inputs: list[Path], data_dir: Path | None) -> dict[str, Any]:
    """Family-wise evaluation figures (see `dga_eval.evaluate`)."""
    from lightsoc.detect.ml import dga_eval

    return dga_eval.evaluate(read_labelled([Path(p) for p in inputs] or [DATA]))


def load(data_dir: Path | None, name: str | None = None) -> DgaModel:
    """The trained model of `data_dir` (or the shipped default) as a scorer."""
    path = resolve(name or KIND, data_dir)
    return DgaModel.from_file(load_file(path, KIND))
