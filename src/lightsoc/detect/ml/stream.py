"""Per-event models in the stream: the web request classifier and DGA scoring.

`MLDetector` is a pipeline detector like a `RuleSet`: it scores the rows a
model applies to (web requests: a URL path; DNS: a query name), vectorised
over the batch, and flags those at or above the model's threshold by
appending the model's rule title/id to `rule.name`/`rule.id` and raising
`event.risk_score` (score x 100). Stream alerting then raises one alert per
(model, entity), tagged `ml`, like any rule.

A model that cannot be loaded (missing, corrupt, from another version) is
logged and left out: the pipeline runs on without it, never crashes.

Models follow their files without a restart (a scheduled retraining saves a
new one, `detect.ml.retrain`): every `reload_seconds` (default 30) a batch
first checks each model directory `modelfile.resolve` picks (its path and its
files' inode, size and mtime); a changed one is loaded and swapped in. A new
file that does not load is logged once and the model in use is kept.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lightsoc.detect.flags import append_flags
from lightsoc.detect.ml import KINDS
from lightsoc.enrich.allowlist import ALLOWED

log = logging.getLogger(__name__)

#: distinct values scored per model call
SCORE_SLICE = 4096
#: how often the model files are checked for a new model (seconds)
RELOAD_SECONDS = 30.0


def _web_targets(df: pl.DataFrame) -> pl.Series:
    """The request target as in an access log (what the web model is trained on)."""
    from lightsoc.detect.ml.web import event_targets

    return event_targets(df)


def _dns_names(df: pl.DataFrame) -> pl.Series:
    if "dns.question.name" not in df.columns:
        return pl.Series([None] * df.height, dtype=pl.String)
    return df.get_column("dns.question.name").cast(pl.String)


@dataclass(frozen=True)
class StreamModel:
    """How a per-event model shows up as a rule."""

    kind: str
    rule_id: str
    title: str
    level: str
    values: Callable[[pl.DataFrame], pl.Series]
    tags: tuple[str, ...] = ()


STREAM_MODELS: dict[str, StreamModel] = {
    "web": StreamModel(
        "web",
        "ml-web-request-classifier",
        "ML Web Attack Request",
        "medium",
        _web_targets,
        ("ml", "attack.initial-access", "attack.t1190"),
    ),
    "dga": StreamModel(
        "dga",
        "ml-dga-domain",
        "ML DGA Domain",
        "medium",
        _dns_names,
        ("ml", "attack.command-and-control", "attack.t1568.002"),
    ),
}


@dataclass
class _Loaded:
    model: StreamModel
    scorer: Any
    threshold: float


def model_stamp(kind: str, data_dir: Path | None) -> tuple[object, ...] | None:
    """What model `kind` is now: its directory and its files' inode, size and mtime."""
    from lightsoc.detect.ml.modelfile import ModelError, resolve

    try:
        path = resolve(kind, data_dir)
    except ModelError:
        return None
    out: list[object] = [str(path)]
    for name in ("meta.json", "model.npz"):
        try:
            st = (path / name).stat()
        except OSError:  # being replaced: the next check sees the new one
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass
class MLDetector:
    """Scores each batch with the loaded per-event models (see the module doc)."""

    loaded: list[_Loaded] = field(default_factory=list)
    errors: int = 0
    kinds: list[str] = field(default_factory=list)
    data_dir: Path | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    #: seconds between checks for new model files (0: never)
    reload_seconds: float = RELOAD_SECONDS
    #: models swapped in since start, and new model files that failed to load
    reloads: int = 0
    reload_errors: int = 0
    _stamps: dict[str, object] = field(default_factory=dict)
    _next_check: float = 0.0
    _check_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load(
        cls,
        kinds: Sequence[str],
        data_dir: Path | None,
        thresholds: Mapping[str, float] | None = None,
        reload_seconds: float = RELOAD_SECONDS,
    ) -> MLDetector:
        """The models `kinds` (data directory's, else shipped); unloadable ones are skipped."""
        out = cls(
            data_dir=data_dir, thresholds=dict(thresholds or {}), reload_seconds=reload_seconds
        )
        for kind in kinds:
            spec = STREAM_MODELS.get(kind)
            if spec is None:
                log.warning(
                    "ml: %r is not a per-event model (stream: %s)", kind, ", ".join(STREAM_MODELS)
                )
                continue
            out.kinds.append(kind)
            out._stamps[kind] = model_stamp(kind, data_dir)
            try:
                scorer = importlib.import_module(KINDS[kind]).load(data_dir, None)
            except Exception as e:  # noqa: BLE001 - any broken model: run without it
                log.warning("ml: %s model not loaded, stream scoring without it: %s", kind, e)
                continue
            out.loaded.append(_Loaded(spec, scorer, out._threshold(kind, scorer)))
        out._next_check = time.monotonic() + reload_seconds
        return out

    def _threshold(self, kind: str, scorer: Any) -> float:  # noqa: ANN401
        return float(self.thresholds.get(kind, scorer.threshold))

    def check(self) -> list[str]:
        """Load and swap in every model whose files changed; the kinds swapped.

        A new file that does not load (corrupt, another kind or version) is
        logged and the model in use kept; it is tried again when it changes.
        """
        swapped = []
        for kind in self.kinds:
            stamp = model_stamp(kind, self.data_dir)
            if stamp == self._stamps.get(kind) or stamp is None or None in stamp:
                continue
            try:
                scorer = importlib.import_module(KINDS[kind]).load(self.data_dir, None)
            except Exception as e:  # noqa: BLE001 - a broken new file: keep the old model
                self._stamps[kind] = stamp
                self.reload_errors += 1
                log.error(
                    "ml: new %s model at %s not loaded, keeping the one in use: %s",
                    kind,
                    stamp[0],
                    e,
                )
                continue
            if model_stamp(kind, self.data_dir) != stamp:
                continue  # replaced while loading: the next check loads the newest
            self._stamps[kind] = stamp
            fresh = _Loaded(STREAM_MODELS[kind], scorer, self._threshold(kind, scorer))
            # a new list, one assignment: a batch being scored keeps the list it started with
            models = [m for m in self.loaded if m.model.kind != kind] + [fresh]
            self.loaded = sorted(models, key=lambda m: self.kinds.index(m.model.kind))
            self.reloads += 1
            swapped.append(kind)
            log.info(
                "ml: %s model reloaded from %s (threshold %.4f)", kind, stamp[0], fresh.threshold
            )
        return swapped

    def _maybe_check(self) -> None:
        if not self.reload_seconds or time.monotonic() < self._next_check:
            return
        # batches may be scored by several processor threads: one checks, the others go on
        if not self._check_lock.acquire(blocking=False):
            return
        try:
            self._next_check = time.monotonic() + self.reload_seconds
            self.check()
        except Exception:  # a check must never cost a batch
            log.exception("ml: checking for new models failed; keeping the models in use")
            self.reload_errors += 1
        finally:
            self._check_lock.release()

    def __len__(self) -> int:
        return len(self.loaded)

    @property
    def levels(self) -> dict[str, str]:
        return {m.model.rule_id: m.model.level for m in self.loaded}

    @property
    def tags(self) -> dict[str, list[str]]:
        return {m.model.rule_id: list(m.model.tags) for m in self.loaded}

    def detect(self, df: pl.DataFrame) -> pl.DataFrame:
        self._maybe_check()
        for m in self.loaded:
            try:
                df = self._apply(df, m)
            except Exception:  # a model bug must not lose the batch's events
                log.exception("ml: %s scoring failed on a batch", m.model.kind)
                self.errors += 1
        return df

    @staticmethod
    def _apply(df: pl.DataFrame, m: _Loaded) -> pl.DataFrame:
        values = m.model.values(df)
        if ALLOWED in df.columns:  # the allow list trusts these rows: never scored or flagged
            trusted = df.get_column(ALLOWED).fill_null(False)
            values = pl.select(pl.when(trusted).then(None).otherwise(values)).to_series()
        if values.null_count() == len(values):
            return df
        # access logs repeat their URLs (assets, polling) and DNS its names: score each
        # distinct value of the batch once
        distinct = values.drop_nulls().unique()
        # in slices: a model's per-byte work arrays stay small beside the batch
        parts = [
            np.asarray(m.scorer.score(distinct.slice(i, SCORE_SLICE)), dtype=np.float64)
            for i in range(0, len(distinct), SCORE_SLICE)
        ]
        scored = pl.DataFrame({"v": distinct, "s": np.concatenate(parts)})
        scores = (
            pl.DataFrame({"v": values})
            .join(scored, on="v", how="left", maintain_order="left")
            .get_column("s")
            .fill_null(np.nan)
            .to_numpy()
        )
        hit = np.nan_to_num(scores, nan=-1.0) >= m.threshold
        if not hit.any():
            return df
        flagged = pl.lit(pl.Series(hit))
        return append_flags(
            df,
            pl.when(flagged).then(pl.lit(m.model.title)),
            pl.when(flagged).then(pl.lit(m.model.rule_id)),
            pl.Series(np.where(hit, scores * 100.0, np.nan), dtype=pl.Float64).fill_nan(None),
        )
