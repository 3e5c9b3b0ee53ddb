"""Web request classifier: is a request target (path and query) an attack?

Two models, both trained on labelled targets:

- ``linear`` (the default, scored in the stream): every byte n-gram
  (n = 1..5) of the URL-decoded, lowercased target is hashed into 2**20
  slots (`web_features`); a logistic regression learns one weight per slot;
  the score is ``sigmoid(bias + sum of the weights of the target's n-grams /
  sqrt(n-gram count))``, computed for a whole column at once with numpy;
- ``knn``: the reference article's baseline (`web_knn`): stop-word tokens,
  TF-IDF, cosine 5-nearest neighbours. Slow; kept for the evaluation.

Training data: CSIC 2010 (raw requests, POST bodies appended to the query),
HttpParamsDataset values as query strings, synthetic targets of many shapes
(`web_data.synthetic`), or the web events of a data directory labelled by the
built-in web rules (the article's loop: rules label, the model learns, then
classifies new traffic, including attacks no rule names).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import polars as pl

from lightsoc.detect.ml import modelfile, web_data
from lightsoc.detect.ml import web_features as wf
from lightsoc.detect.ml.modelfile import ModelError, ModelFile

if TYPE_CHECKING:  # scikit-learn (~140 MB) is imported only to train: the stream scores without it
    from lightsoc.detect.ml.web_knn import KnnWebModel

DESCRIPTION = (
    "web request classifier on path?query: hashed byte n-grams + logistic regression "
    "(default) or the TF-IDF KNN baseline"
)
KIND = "web"
MODELS = ("linear", "knn")
C = 30.0
THRESHOLD = 0.5
SEED = 0
#: synthetic targets added to a CSIC training set (benign, carrying an attack payload)
SYNTH_BENIGN = 60_000
SYNTH_ATTACK = 15_000
HACKERS_LOG = "hackers-access.log"
#: real benign Apache log: never trained on, its false-positive rate is a figure
BENIGN_LOG = "apache_logs_benign.log"


class LinearWebModel:
    """Logistic regression over hashed byte n-grams; `score` is vectorised."""

    def __init__(self, weights: np.ndarray, bias: float, threshold: float = THRESHOLD) -> None:
        bits = int(np.log2(max(len(weights) - 1, 1)))
        if len(weights) != (1 << bits) + 1 or not np.isfinite(weights).all():
            raise ModelError(f"web model: {len(weights)} weights is not 2**bits + 1 finite floats")
        self.weights = weights.astype(np.float32)
        self.weights[-1] = 0.0  # the slot of n-grams cut off at a row's end
        self.bits = bits
        self.bias = float(bias)
        self.threshold = float(threshold)

    @classmethod
    def fit(cls, targets: list[str], y: np.ndarray, c: float = C) -> LinearWebModel:
        x = wf.hashed_matrix(targets)
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=c, solver="liblinear", max_iter=2000, random_state=SEED)
        lr.fit(x, y)
        w = np.zeros((1 << wf.BITS) + 1, np.float32)
        w[:-1] = lr.coef_[0]
        return cls(w, float(lr.intercept_[0]))

    def margin(self, values: list[str | None] | pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(bias + weighted n-gram sum, null mask) per value."""
        b = wf.normalise(values)
        return wf.hashed_dot(b, self.weights) + self.bias, b.null

    def score(self, values: list[str | None] | pl.Series) -> np.ndarray:
        """Attack probability in [0, 1] per value; NaN for nulls."""
        m, null = self.margin(values)
        out = 1.0 / (1.0 + np.exp(-np.clip(m, -50, 50)))
        out[null] = np.nan
        return out

    def to_file(self, meta: dict[str, Any]) -> ModelFile:
        # float16 halves the shipped file (4 MiB of float32 weights); the margin moves by
        # about 1e-3 of a weight, far below what moves a score across the threshold
        weights = self.weights.astype(np.float16)
        return ModelFile(KIND, {"weights": weights, "bias": np.float64(self.bias)}, meta)

    @classmethod
    def from_file(cls, mf: ModelFile) -> LinearWebModel:
        w, bias = mf.array("weights"), mf.array("bias")
        if w.ndim != 1 or w.dtype.kind != "f" or bias.size != 1:
            raise ModelError(f"{mf.path or KIND}: weights/bias arrays of the wrong shape")
        try:
            return cls(w, float(bias), float(mf.meta.get("threshold", THRESHOLD)))
        except ModelError as e:
            raise ModelError(f"{mf.path or KIND}: {e}") from None


Scorer: TypeAlias = "LinearWebModel | KnnWebModel"


# -- training ----------------------------------------------------------------------------
def check_labels(y: np.ndarray, what: str) -> None:
    """Refuse training data of one class (a classifier needs both)."""
    n_bad = int(np.sum(y == 1))
    if len(y) == 0:
        raise ModelError(f"{what}: no training data")
    if n_bad == 0:
        raise ModelError(f"{what}: only benign requests ({len(y)}), no attack to learn from")
    if n_bad == len(y):
        raise ModelError(f"{what}: only attacks ({len(y)}), no benign request to learn from")


def fit(targets: list[str], y: np.ndarray, model: str = "linear") -> Scorer:
    """Train a `model` ("linear" or "knn") on labelled targets."""
    y = np.asarray(y, np.int8)
    check_labels(y, "web training")
    if model == "linear":
        return LinearWebModel.fit(targets, y)
    if model == "knn":
        from lightsoc.detect.ml.web_knn import KnnWebModel

        return KnnWebModel.fit(targets, y)
    raise ModelError(f"unknown web model {model!r} (known: {', '.join(MODELS)})")


#: what `augment` adds: nothing, HttpParamsDataset, or that plus the bot log and synthetic
EXTRAS = ("none", "httpparams", "all")


def augment(
    targets: list[str],
    y: np.ndarray,
    extras: str = "all",
    web_dir: Path = web_data.SHARED_WEB,
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """`targets` plus HttpParamsDataset values and (extras="all") the benign-bot log and
    synthetic targets of many shapes built from the training words."""
    y = np.asarray(y, np.int8)
    if extras == "none":
        return list(targets), y, {}
    hp, hy = web_data.httpparams(web_dir / web_data.HTTPPARAMS)
    desc: dict[str, Any] = {"httpparams": {"benign": int((hy == 0).sum()), "attack": int(hy.sum())}}
    if extras == "httpparams":
        return list(targets) + hp, np.r_[y, hy], desc
    hackers = _log_targets(web_dir / HACKERS_LOG)
    words = web_data.vocabulary(
        [t for t, bad in zip(targets, y, strict=True) if not bad]
        + [v for v, bad in zip(hp, hy, strict=True) if not bad]
        + hackers
    )
    payloads = [v[len("?p=") :] for v, bad in zip(hp, hy, strict=True) if bad]
    syn, sy = web_data.synthetic(words, payloads, SYNTH_BENIGN, SYNTH_ATTACK)
    desc[HACKERS_LOG] = {"benign": len(hackers)}
    desc["synthetic"] = {
        "benign": SYNTH_BENIGN,
        "attack": SYNTH_ATTACK,
        "note": "random word paths/params; attacks carry HttpParams attack payloads",
    }
    out = list(targets) + hp + hackers + syn
    return out, np.r_[y, hy, np.zeros(len(hackers), np.int8), sy], desc


def _log_targets(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", errors="replace") as fh:
        return [t for t in web_data.access_log_targets(fh.read().splitlines()) if t]


def metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """Confusion figures of `scores >= threshold` against labels `y` (1 = attack)."""
    flag = np.nan_to_num(scores, nan=0.0) >= threshold
    y = np.asarray(y).astype(bool)
    tp, fp = int((flag & y).sum()), int((flag & ~y).sum())
    fn, tn = int((~flag & y).sum()), int((~flag & ~y).sum())
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * p * r / (p + r) if p + r else float("nan")
    fpr = fp / (fp + tn) if fp + tn else float("nan")
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        **{
            k: None if v != v else round(v, 4)  # NaN (an empty denominator): JSON null
            for k, v in (("precision", p), ("recall", r), ("f1", f1), ("fpr", fpr))
        },
    }


def _model_file(
    scorer: Scorer, model: str, training: dict[str, Any], figures: dict[str, Any]
) -> ModelFile:
    params: dict[str, Any] = {"model": model}
    if model == "linear":
        params |= {
            "C": C,
            "bits": wf.BITS,
            "ngrams": [1, wf.NMAX],
            "width": wf.WIDTH,
            "normalise": "%XX decoded (twice if that made a %), + as space, ASCII lowercase, "
            "digits -> 0, first 256 bytes",
        }
    else:
        from lightsoc.detect.ml.web_knn import STOP_WORDS

        params |= {"k": scorer.k, "stop_words": sorted(STOP_WORDS)}
    meta = {"params": params, "metrics": figures, "training": training}
    meta["threshold"] = scorer.threshold
    return scorer.to_file(meta)


def csic_recipe(
    model: str = "linear", extras: str = "all", split: web_data.Split | None = None
) -> tuple[Scorer, dict[str, Any]]:
    """The model trained on the CSIC train split (+ `extras`), and its test-split figures."""
    split = split or web_data.csic_split()
    targets, y, extra = augment(split.train, split.y_train, extras)
    scorer = fit(targets, y, model)
    t0 = time.perf_counter()
    scores = scorer.score(split.test)
    seconds = time.perf_counter() - t0
    figures = metrics(scores, split.y_test, scorer.threshold)
    figures["events_per_s"] = round(len(split.test) / seconds) if seconds > 0 else None
    return scorer, {**figures, "split": split.description, "extras": extra}


def train_default() -> ModelFile:
    """The shipped default: linear, on all of CSIC plus the extras (`augment`)."""
    _, held_out = csic_recipe("linear", "all")
    normal = web_data.csic_targets(web_data.SHARED_WEB / web_data.CSIC_NORMAL)
    anomalous = web_data.csic_targets(web_data.SHARED_WEB / web_data.CSIC_ANOMALOUS)
    y = np.r_[np.zeros(len(normal), np.int8), np.ones(len(anomalous), np.int8)]
    targets, y, extra = augment(normal + anomalous, y, "all")
    scorer = fit(targets, y, "linear")
    parts = [web_data.SHARED_WEB / n for n in (web_data.CSIC_NORMAL, web_data.CSIC_ANOMALOUS)]
    parts += [web_data.SHARED_WEB / web_data.HTTPPARAMS, web_data.SHARED_WEB / HACKERS_LOG]
    training = {
        "data": "CSIC 2010 (all 36,000 normal + 25,065 anomalous, POST bodies in the query)",
        "extras": extra,
        "fingerprint": modelfile.fingerprint(*[p for p in parts if p.is_file()]),
        "metrics_from": "the same recipe trained on the CSIC train split, scored on its test split",
    }
    figures = {k: held_out[k] for k in ("precision", "recall", "f1", "fpr")}
    figures["split"] = held_out["split"]["split"]
    benign = _log_targets(web_data.SHARED_WEB / BENIGN_LOG)
    if benign:  # never trained on: real traffic of another site
        flagged = scorer.score(benign) >= scorer.threshold
        figures["benign_log_fpr"] = round(float(flagged.mean()), 4)
    return _model_file(scorer, "linear", training, figures)


def labelled_inputs(inputs: list[Path]) -> tuple[list[str], np.ndarray]:
    """Targets and labels of input files: CSIC raw requests (a file name with "anomal"
    holds attacks) or HttpParamsDataset-style CSV (payload, label)."""
    targets: list[str] = []
    labels: list[np.ndarray] = []
    for p in inputs:
        if not Path(p).is_file():
            raise ModelError(f"{p}: no such file")
        if str(p).endswith(".csv"):
            t, y = web_data.httpparams(Path(p))
        else:
            t = web_data.csic_targets(Path(p))
            y = np.full(len(t), int("anomal" in Path(p).name.lower()), np.int8)
        targets += t
        labels.append(y)
    return targets, np.concatenate(labels) if labels else np.zeros(0, np.int8)


def train(
    inputs: list[Path], data_dir: Path | None, from_store: bool, model: str = "linear"
) -> ModelFile:
    """Train on `inputs`, on the data directory's rule-labelled web events, or (neither)
    the shipped recipe; figures come from a stratified 70/30 split of the same data."""
    if not inputs and not from_store:
        if model == "linear":
            return train_default()
        scorer, held_out = csic_recipe(model, "none")
        return _model_file(scorer, model, {"data": held_out.pop("split")}, held_out)
    if from_store:
        if data_dir is None:
            raise ModelError("--from-store needs a data directory")
        targets, y, training = web_data.rule_labelled(data_dir)
    else:
        targets, y = labelled_inputs(inputs)
        training = {
            "data": [str(p) for p in inputs],
            "fingerprint": modelfile.fingerprint(*inputs),
        }
    y = np.asarray(y, np.int8)
    check_labels(y, "web training data")
    rng = np.random.default_rng(SEED)
    test = np.zeros(len(y), bool)
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test[idx[: len(idx) * 3 // 10]] = True
    figures: dict[str, Any] = {"split": "stratified 70/30, seed 0; the saved model uses all"}
    if from_store:
        figures["truth"] = "the rule labels (agreement with the rules on held-out events)"
    if len(np.unique(y[~test])) == 2 and test.any():
        probe = fit([t for t, te in zip(targets, test, strict=True) if not te], y[~test], model)
        figures |= metrics(
            probe.score([t for t, te in zip(targets, test, strict=True) if te]),
            y[test],
            probe.threshold,
        )
    training |= {"benign": int((y == 0).sum()), "attack": int(y.sum())}
    return _model_file(fit(targets, y, model), model, training, figures)


# -- scoring -----------------------------------------------------------------------------
def from_file(mf: ModelFile) -> Scorer:
    """The scorer of a loaded web model file (linear or KNN)."""
    model = mf.params.get("model", "linear")
    if model == "linear":
        return LinearWebModel.from_file(mf)
    if model == "knn":
        from lightsoc.detect.ml.web_knn import KnnWebModel

        return KnnWebModel.from_file(mf)
    raise ModelError(f"{mf.path or KIND}: unknown web model {model!r}")


def load(data_dir: Path | None, name: str | None = None) -> Scorer:
    """The data directory's trained model `name` (default "web"), else the shipped one."""
    return from_file(modelfile.load(modelfile.resolve(name or KIND, data_dir), KIND))


def event_targets(df: pl.DataFrame) -> pl.Series:
    """`url.original`, else `url.path` + `?url.query`, of each event (null if neither)."""
    n = df.height
    cols = set(df.columns)
    original = df["url.original"].cast(pl.String) if "url.original" in cols else None
    if "url.path" in cols:
        path = df["url.path"].cast(pl.String)
        query = df["url.query"].cast(pl.String) if "url.query" in cols else None
        joined = (
            path
            if query is None
            else pl.select(
                pl.when(query.is_null())
                .then(path)
                .otherwise(pl.concat_str([path, pl.lit("?"), query]))
            ).to_series()
        )
        return joined if original is None else original.fill_null(joined)
    return original if original is not None else pl.Series([None] * n, dtype=pl.String)


def score_events(df: pl.DataFrame, scorer: Scorer) -> np.ndarray:
    """The score of each event of `df` (NaN where it has no URL)."""
    if df.height == 0:
        return np.zeros(0, np.float64)
    return scorer.score(event_targets(df))


def evaluate(inputs: list[Path], data_dir: Path | None) -> dict[str, Any]:
    """CSIC split figures of the linear model (with and without the extras) and the KNN."""
    split = web_data.csic_split()
    out: dict[str, Any] = {}
    for label, model, extras in (
        ("linear", "linear", "all"),
        ("linear_csic_only", "linear", "none"),
        ("knn", "knn", "none"),
    ):
        _, out[label] = csic_recipe(model, extras, split)
    return out
