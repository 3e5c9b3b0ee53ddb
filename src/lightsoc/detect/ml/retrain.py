"""Scheduled retraining of the stream models: the web request classifier and DGA.

`detect.ml.retrain.<kind>` (off by default) makes the ML scheduler (`jobs.MLJobs`)
retrain a model every `interval`; the run's time is the watermark
`ml:retrain-<kind>`. Each run:

1. gathers the deployment's labelled data of the last `lookback` (`retrain_data`):
   - web: the stored web events, labelled by the built-in web rules (the
     reference article's loop: rules label, the model generalises);
   - DGA: names analysts called benign (suspicious-connects ratings of 3, DNS
     allow-list pairs, intel allow-list domains) as negatives, and DNS names a
     threat-intel feed with "dga" in its name or provider flagged as positives;
2. with fewer than `min_events` of them, keeps the current model and says why
   (the watermark advances: a quiet week is not an error to retry every minute);
3. adds the shipped public training data (`public_sample` rows of it), so
   one-class or tiny local data never makes a one-class model;
4. splits everything 70/30 (stratified, seeded), trains a candidate on the 70%
   and scores the candidate and the current model on the same 30%; the local
   held-out rows decide when they hold both classes (at least `MIN_CLASS` each:
   what this deployment sees), else the whole held-out set. The shipped model
   was trained on all of the public data, so on public rows it has an edge: with
   little local data a new model must match it there within `margin`, which is
   the conservative side;
5. saves the candidate (`modelfile.save`: atomic, meta with fingerprint, date,
   params, metrics, `"trained_by": "schedule"`) only if no compared figure
   (`COMPARED`) is more than `margin` below the current model's; otherwise logs
   the comparison and keeps the current one.

The saved model is the candidate scored in step 4 (trained on 70%): its meta's
metrics are then true held-out figures. The stream detector (`stream.MLDetector`)
picks the new file up within `RELOAD_SECONDS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from lightsoc.detect.ml import modelfile
from lightsoc.detect.ml.modelfile import ModelError

# step 1, the training rows: in `retrain_data`; re-exported where callers use them
from lightsoc.detect.ml.retrain_data import (
    SEED,
    Labelled,
    _name,
    dga_local,
    public_dga,
    public_web,
    sample,
    web_from_store,
)

if TYPE_CHECKING:
    from lightsoc.config_ml import RetrainConfig
    from lightsoc.store.events_duckdb import DuckDBEventStore
    from lightsoc.store.state import StateStore

__all__ = [
    "COMPARED",
    "KINDS",
    "MIN_CLASS",
    "MIN_TRAIN_CLASS",
    "SEED",
    "TEST_FRACTION",
    "Labelled",
    "Outcome",
    "RetrainJob",
    "_name",  # tests check it as `retrain._name`
    "auc",
    "combine",
    "compare",
    "dga_local",
    "figures",
    "public_dga",
    "public_web",
    "sample",
    "split",
    "train_dga",
    "train_web",
    "web_from_store",
]

log = logging.getLogger(__name__)

KINDS = ("web", "dga")
TEST_FRACTION = 0.3
#: held-out local rows of each class needed to compare the models on local data alone
MIN_CLASS = 20
#: fewer training rows of a class than this (no public data, little stored): no retraining
MIN_TRAIN_CLASS = 10
#: the figures that must not drop by more than the margin
COMPARED = {"web": ("auc", "f1"), "dga": ("auc",)}


@dataclass
class Outcome:
    """What a retraining run did: `saved` a model, or kept the current one and why."""

    kind: str
    events: int = 0
    saved: bool = False
    reason: str = ""
    comparison: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


# -- shared pieces ------------------------------------------------------------------------
def split(y: np.ndarray, seed: int = SEED) -> np.ndarray:
    """A stratified test mask: `TEST_FRACTION` of each class, seeded."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test[idx[: round(len(idx) * TEST_FRACTION)]] = True
    return test


def auc(scores: np.ndarray, y: np.ndarray) -> float | None:
    """ROC AUC of `scores` against `y` (NaN scores as the lowest); None with one class."""
    if len(np.unique(y)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, np.nan_to_num(scores, nan=-1.0))), 4)


def figures(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUC and the confusion figures at `threshold` (`web.metrics`)."""
    from lightsoc.detect.ml.web import metrics

    return {"auc": auc(scores, y), **metrics(scores, y, threshold), "rows": int(len(y))}


def compare(
    current: dict[str, Any] | None, candidate: dict[str, Any], keys: tuple[str, ...], margin: float
) -> tuple[bool, str]:
    """(accept, why): the candidate is refused when a figure of `keys` is more than
    `margin` below the current model's; a figure the current model lacks is not compared."""
    if current is None:
        return True, "no current model could be loaded"
    worse = []
    for k in keys:
        old, new = current.get(k), candidate.get(k)
        if old is None:
            continue
        if new is None or new < old - margin:
            worse.append(f"{k} {new} < {old} - {margin}")
    if worse:
        return False, "worse than the current model: " + "; ".join(worse)
    shown = ", ".join(f"{k} {candidate.get(k)} vs {current.get(k)}" for k in keys)
    return True, f"held-out {shown} (margin {margin})"


def _evaluate(
    scorer_current: Any,  # noqa: ANN401 - a web or DGA scorer
    scorer_new: Any,  # noqa: ANN401
    values: list[str],
    y: np.ndarray,
    local: np.ndarray,
) -> tuple[dict[str, Any] | None, dict[str, Any], str]:
    """Both models' figures on the held-out rows; local rows alone when they hold both
    classes, at least `MIN_CLASS` each (what this deployment sees), else all of them."""
    n_local = [int(((y == c) & local).sum()) for c in (0, 1)]
    on = local if min(n_local) >= MIN_CLASS else np.ones(len(y), bool)
    where = "held-out stored rows" if on is local else "all held-out rows (stored + public)"
    vals = [v for v, keep in zip(values, on, strict=True) if keep]
    new = figures(np.asarray(scorer_new.score(vals), np.float64), y[on], scorer_new.threshold)
    old = None
    if scorer_current is not None:
        s = np.asarray(scorer_current.score(vals), np.float64)
        old = figures(s, y[on], scorer_current.threshold)
    return old, new, where


def _current(kind: str, data_dir: Path) -> Any:  # noqa: ANN401 - a scorer or None
    """The model the stream uses now (data directory's, else shipped); None if unloadable."""
    import importlib

    from lightsoc.detect.ml import KINDS as MODULES

    try:
        return importlib.import_module(MODULES[kind]).load(data_dir, None)
    except Exception as e:  # noqa: BLE001 - a broken current model is replaced, not fatal
        log.warning("ml retrain %s: the current model is not loadable (%s)", kind, e)
        return None


def _hash(values: list[str], y: np.ndarray) -> str:
    return modelfile.fingerprint("\n".join(values), np.asarray(y, np.int8).tobytes())


def combine(local: Labelled, public: Labelled) -> tuple[Labelled, np.ndarray, np.ndarray]:
    """Local then public rows, the stratified test mask (each part split on its own) and
    the mask of local rows."""
    rows = Labelled(local.values + public.values, np.r_[local.y, public.y].astype(np.int8), {})
    is_local = np.r_[np.ones(len(local.y), bool), np.zeros(len(public.y), bool)]
    return rows, np.r_[split(local.y), split(public.y)], is_local


# -- web -----------------------------------------------------------------------------------
def train_web(rows: Labelled, test: np.ndarray) -> Any:  # noqa: ANN401 - a LinearWebModel
    """A candidate fitted on the rows outside `test`."""
    from lightsoc.detect.ml import web

    train_vals = [v for v, t in zip(rows.values, test, strict=True) if not t]
    return web.fit(train_vals, rows.y[~test], "linear")


def _web_file(scorer: Any, meta: dict[str, Any]) -> modelfile.ModelFile:  # noqa: ANN401
    from lightsoc.detect.ml import web_features as wf
    from lightsoc.detect.ml.web import C

    meta["params"] = {"model": "linear", "C": C, "bits": wf.BITS, "ngrams": [1, wf.NMAX]} | meta[
        "params"
    ]
    meta["threshold"] = scorer.threshold
    return scorer.to_file(meta)


# -- DGA -----------------------------------------------------------------------------------
def train_dga(rows: Labelled, test: np.ndarray) -> Any:  # noqa: ANN401 - a DgaModel
    """A candidate fitted on the rows outside `test`, its threshold at the target
    false-positive rate of benign training names held out of the fit (as the shipped
    model's is)."""
    from lightsoc.detect.ml import dga

    train = np.flatnonzero(~test)
    rng = np.random.default_rng(SEED)
    val = train[(rows.y[train] == 0) & (rng.random(len(train)) < TEST_FRACTION)]
    fit_idx = np.setdiff1d(train, val)
    names = pl.Series("name", rows.values, dtype=pl.String)
    model = dga.fit(names.gather(fit_idx), rows.y[fit_idx].astype(bool), dict(dga.PARAMS))
    target = float(dga.PARAMS.get("target_fpr", 0.001))
    model.threshold = dga.threshold_at(model.score(names.gather(val)), target)
    return model


def _dga_file(model: Any, meta: dict[str, Any]) -> modelfile.ModelFile:  # noqa: ANN401
    from lightsoc.detect.ml import dga

    meta["params"] = dict(dga.PARAMS) | meta["params"]
    model.meta = meta
    return model.to_file()


# -- the job ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrainJob:
    """Retrains the stream model `kind` into `<data_dir>/models/<kind>/`."""

    kind: str
    data_dir: Path

    def run(
        self,
        events: DuckDBEventStore,
        state: StateStore,
        cfg: RetrainConfig,
        start: datetime,
        end: datetime,
    ) -> Outcome:
        """One retraining over [start, end); `ModelError` and the like propagate (retried)."""
        if self.kind == "web":
            local = web_from_store(events, start, end)
        elif self.kind == "dga":
            local = dga_local(events, state, start, end)
        else:
            raise ModelError(f"ml retrain: no retraining for {self.kind!r} (known: web, dga)")
        out = Outcome(self.kind, events=len(local.y))
        if len(local.y) < cfg.min_events:
            out.reason = (
                f"{len(local.y)} stored training row(s) in {start:%Y-%m-%d}..{end:%Y-%m-%d}, "
                f"min_events is {cfg.min_events}: kept the current model"
            )
            log.info("ml retrain %s: %s", self.kind, out.reason)
            return out
        if self.kind == "web":
            public = public_web(cfg.public_sample)
        else:
            public = public_dga(cfg.public_sample, set(local.values))
        rows, test, is_local = combine(local, public)
        if min(int((rows.y == c).sum()) for c in (0, 1)) < MIN_TRAIN_CLASS:
            out.reason = (
                f"{int(rows.y.sum())} malicious and {int((rows.y == 0).sum())} benign training "
                f"rows (public data: {public.description}): kept the current model"
            )
            log.warning("ml retrain %s: %s", self.kind, out.reason)
            return out
        model = train_web(rows, test) if self.kind == "web" else train_dga(rows, test)
        held = [v for v, t in zip(rows.values, test, strict=True) if t]
        current = _current(self.kind, self.data_dir)
        old, new, where = _evaluate(current, model, held, rows.y[test], is_local[test])
        accept, why = compare(old, new, COMPARED[self.kind], cfg.margin)
        out.comparison = {"current": old, "candidate": new, "compared_on": where, "why": why}
        if not accept:
            out.reason = f"new model refused ({where}): {why}"
            log.warning("ml retrain %s: %s", self.kind, out.reason)
            return out
        meta = self._meta(cfg, start, end, local, public, rows, test, new, out.comparison)
        mf = _web_file(model, meta) if self.kind == "web" else _dga_file(model, meta)
        out.path = modelfile.save(modelfile.models_dir(self.data_dir) / self.kind, mf)
        out.saved = True
        try:  # processors of a split deployment install it from the state store
            from lightsoc.store.state_models import SharedModels

            SharedModels(state).publish(self.kind, out.path)
        except Exception:  # saved here; the next retrain publishes again
            log.warning("ml retrain %s: not published to the state store", self.kind)
        out.reason = f"saved {out.path} ({why})"
        log.info("ml retrain %s: %s", self.kind, out.reason)
        return out

    def _meta(
        self,
        cfg: RetrainConfig,
        start: datetime,
        end: datetime,
        local: Labelled,
        public: Labelled,
        rows: Labelled,
        test: np.ndarray,
        held_out: dict[str, Any],
        comparison: dict[str, Any],
    ) -> dict[str, Any]:
        train_vals = [v for v, t in zip(rows.values, test, strict=True) if not t]
        return {
            "trained_by": "schedule",
            "params": {
                "retrain": {
                    "lookback": str(cfg.lookback),
                    "interval": str(cfg.interval),
                    "min_events": cfg.min_events,
                    "margin": cfg.margin,
                    "public_sample": cfg.public_sample,
                    "seed": SEED,
                    "test_fraction": TEST_FRACTION,
                }
            },
            "metrics": {
                **held_out,
                "split": f"stratified {1 - TEST_FRACTION:.0%}/"
                f"{TEST_FRACTION:.0%}, seed {SEED}; the saved model is the 70% one",
                "compared_on": comparison["compared_on"],
            },
            "comparison": comparison,
            "training": {
                "window": [start.isoformat(), end.isoformat()],
                "stored": {**local.description, "rows": len(local.y), "attack": int(local.y.sum())},
                "public": public.description,
                "train_rows": len(train_vals),
                "fingerprint": _hash(train_vals, rows.y[~test]),
            },
        }
