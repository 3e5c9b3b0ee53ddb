"""Suspicious connects (Apache Spot's method): LDA over IP documents, rarest records first.

Each record becomes a word in the document of each IP it involves
(`lda_words`). Online variational Bayes LDA learns topics from the
document-term counts; a record's score is ``sum_k P(topic k | IP) * P(word | topic k)`` — the
probability the model gives its word in its IP's document — and for a flow the
lower of its two endpoints' scores. The lowest scores are the suspicious
connects, shown to an analyst who rates them; records rated 3 (benign) are
replicated into the next training (`lda_feedback`) so that similar ones stop
surfacing, as Spot did.

Spot fits the model on the day it scores, so a connection's records vouch for
themselves: a beacon's hundreds of identical records make its word frequent in
both its IPs' documents (and give them a topic of their own). Scoring that
window (`own_window`, what the daily job does), each record is judged without
its own connection's share of the topics (`LdaModel.without_own_connection`);
a record nothing else supports ranks below every supported one, the rarest for
an average host first.

The cost of training is in the distinct ``(IP, word)`` pairs, not the records:
records are aggregated to counts first, then fitted as one sparse matrix. The
fit is scikit-learn's online algorithm (same updates, priors, learning rate and
mini-batches; `lda_vb.online_lda`) with the per-document E-step loop replaced by
sparse products over a whole mini-batch: on 1M flows (735k pairs, 18.7k IPs)
sklearn's ``fit`` alone takes ~27 s, the whole training here ~18 s (bench/ml_lda.py).

Scoring IPs the model never saw: their topic mix is inferred from their own
words in the scored data with the model's topics held fixed (the variational
E-step sklearn's ``transform`` runs, vectorised over all new IPs at once here),
so a new host is judged against the kind of host it resembles; an IP none of
whose words is in the vocabulary gets the corpus-average topic mix. A word the
model never saw gets a floor probability below that of any word seen once.

This module is the model (fit, score, persistence); `lda_jobs` is the job and
CLI side (train from files or the store, `run_suspicious_connects`, evaluate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from lightsoc.detect.ml import lda_words as lw
from lightsoc.detect.ml.lda_vb import infer_topics, online_lda
from lightsoc.detect.ml.modelfile import ModelError, ModelFile

KIND = "lda"
COUNT = "n"
PROB = "p"
DEFAULT_PARAMS: dict[str, Any] = {
    "n_components": 20,
    "max_iter": 5,
    "batch_size": 4096,
    "learning_offset": 10.0,
    "learning_decay": 0.7,
    "random_state": 0,
    "max_doc_update_iter": 100,
    # flow words seen fewer times in the window back off to a coarser word (`lda_words.back_off`)
    "min_count": 10,
}
#: Spot's replication of a record rated benign into the next training
FEEDBACK_DUPLICATION = 1000
#: ... but never more replicated tokens than this share of the corpus' own
FEEDBACK_MAX_SHARE = 0.25
#: quantile levels kept of the training scores: fine in the low tail, where alerts live
_LEVELS = np.unique(np.concatenate([np.linspace(0, 0.01, 1001), np.linspace(0.01, 1, 991)]))
#: suspicion (share of training records scoring higher) above which `score` flags a record
THRESHOLD = 0.995


_DH, _WH = "_dh", "_wh"
_BLOCK = 1 << 17
_SEED = 0x5EED
_MIX1 = pl.lit(0x9E3779B97F4A7C15, pl.UInt64)
_MIX2 = pl.lit(0xBF58476D1CE4E5B9, pl.UInt64)


def _hashed(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        pl.col(lw.DOC).hash(_SEED).alias(_DH), pl.col(lw.WORD).hash(_SEED).alias(_WH)
    )


def _ids(values: np.ndarray, name: str, hashed: str, index: str) -> pl.DataFrame:
    """Hash of each label -> its position (the labels are distinct)."""
    return pl.DataFrame({name: pl.Series(name, values, dtype=pl.Utf8)}).select(
        pl.col(name).hash(_SEED).alias(hashed),
        pl.int_range(0, pl.len(), dtype=pl.Int64).alias(index),
    )


@dataclass
class LdaModel:
    """Topics over a vocabulary of words and the topic mix of each training IP."""

    record_type: str
    vocab: np.ndarray  # words, '<U..'
    components: np.ndarray  # K x V, sklearn's components_ (variational lambda)
    docs: np.ndarray  # IPs, '<U..'
    theta: np.ndarray  # D x K, P(topic | IP)
    alpha: float
    popular: list[str] = field(default_factory=list)
    floor: float = 1e-9
    q_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    meta: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def phi(self) -> np.ndarray:
        """P(word | topic), K x V."""
        c = self.components.astype(np.float64)
        return c / c.sum(axis=1, keepdims=True)

    @cached_property
    def mean_theta(self) -> np.ndarray:
        return self.theta.mean(axis=0) if len(self.theta) else np.full(self.n_topics, 1.0)

    @property
    def eta(self) -> float:
        """The topic-word prior (sklearn's default 1/K for models that lack it)."""
        got = self.meta.get("params", {}).get("topic_word_prior")
        return float(got) if got else 1.0 / self.n_topics

    @property
    def n_topics(self) -> int:
        return int(self.components.shape[0])

    # -- scoring ---------------------------------------------------------
    # Documents and words are joined on 64-bit hashes of their text: joins and
    # group-bys on integers are several times faster than on strings.
    @cached_property
    def _vocab(self) -> pl.Series:
        return pl.Series(lw.WORD, self.vocab, dtype=pl.Utf8)

    @cached_property
    def _word_ids(self) -> pl.DataFrame:
        return _ids(self.vocab, lw.WORD, _WH, "wi")

    @cached_property
    def _doc_ids(self) -> pl.DataFrame:
        return _ids(self.docs, lw.DOC, _DH, "di")

    @cached_property
    def _phi_t(self) -> np.ndarray:
        """P(word | topic) as V x K float32: a word's row is contiguous for gathering."""
        return np.ascontiguousarray(self.phi.T, dtype=np.float32)

    @cached_property
    def _theta32(self) -> np.ndarray:
        return np.ascontiguousarray(self.theta, dtype=np.float32)

    @cached_property
    def _share_t(self) -> np.ndarray:
        """``P(word | topic) / topic mass`` as V x K float32 (`own_connection_share`)."""
        c = self.components.astype(np.float64)
        return np.ascontiguousarray((self.phi / c.sum(axis=1, keepdims=True)).T, dtype=np.float32)

    def _probs(
        self, h: pl.DataFrame, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(word | IP) per row of `h` (hashed ``_dh``, ``_wh``), and the rows' doc and word
        indices (-1: not in the model); `weights` count each row."""
        if h.height == 0:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
        ids = (
            h.select(_DH, _WH)
            .join(self._word_ids, on=_WH, how="left", maintain_order="left")
            .join(self._doc_ids, on=_DH, how="left", maintain_order="left")
        )
        wi = ids["wi"].fill_null(-1).to_numpy()
        di = ids["di"].fill_null(-1).to_numpy()
        known = wi >= 0
        seen = di >= 0
        out = np.full(h.height, self.floor)
        m = known & seen
        if m.all():  # the usual case (scoring the training window): no masking copies
            out = self._dot(di, wi)
        else:
            out[m] = self._dot(di[m], wi[m])
        if not seen.all():
            new = ~seen
            theta = self._new_doc_topics(ids[_DH].filter(pl.Series(new)), wi[new], weights[new])
            m = known[new]
            sub = out[new]
            sub[m] = np.einsum("ij,ij->i", theta[m].astype(np.float32), self._phi_t[wi[new][m]])
            out[new] = sub
        return np.maximum(out, self.floor), di, wi

    def _dot(self, di: np.ndarray, wi: np.ndarray, squared: bool = False) -> np.ndarray:
        """``theta[di] . phi[:, wi]`` row by row, in blocks (bounded memory).

        `squared`: ``theta[di]**2 . (phi / topic mass)[:, wi]`` instead (`own_connection_share`).
        """
        out = np.empty(len(di))
        words = self._share_t if squared else self._phi_t
        for lo in range(0, len(di), _BLOCK):
            d, w = di[lo : lo + _BLOCK], wi[lo : lo + _BLOCK]
            t = self._theta32[d]
            out[lo : lo + _BLOCK] = np.einsum("ij,ij->i", t * t if squared else t, words[w])
        return out

    def without_own_connection(
        self, h: pl.DataFrame, p: np.ndarray, di: np.ndarray, wi: np.ndarray
    ) -> np.ndarray:
        """`p` with the record's own connection's share of the topics taken out.

        The model is fitted on the window it scores, so a connection's records
        vouch for themselves: a beacon's hundreds of identical records make its
        word frequent in its own IPs' documents and give it a topic of its own.
        A record is therefore judged by what the *other* connections taught the
        model: ``n_dwk = n * theta_dk * phi_kw / p`` of word w's mass in topic k
        came from the `n` records of the same (IP, word, peer) — the E-step's
        responsibilities — and is removed from topic k's count of w, which gives
        ``p - n / p * sum_k theta_dk**2 * phi_kw / lambda_k`` (``lambda_k``: the
        topic's mass). A word many connections share hardly moves; a record only
        its connection supports falls below the floor (`_average_host`). Only
        for IPs and words of the model and rows with a peer (flows).
        """
        out = p.copy()
        ok = (di >= 0) & (wi >= 0) & h[lw.PEER].is_not_null().to_numpy()
        if not ok.any():
            return out
        # records of the same (IP, word, peer): one 64-bit key (a window over three
        # columns is slower); multiply-add wraps around, a collision is ~n**2 / 2**64
        key = (pl.col(_DH) * _MIX1 + pl.col(_WH)) * _MIX2 + pl.col(lw.PEER).hash(_SEED)
        n = h.select(key.alias("k")).select(pl.len().over("k"))["len"].to_numpy()
        share = self._dot(di[ok], wi[ok], squared=True)
        out[ok] = p[ok] - n[ok] * share / p[ok]
        alone = np.flatnonzero(out < self.floor)
        if len(alone):
            out[alone] = self.floor * self._average_host(di[alone], wi[alone], n[alone], p[alone])
        return out

    def _average_host(
        self, di: np.ndarray, wi: np.ndarray, n: np.ndarray, p: np.ndarray
    ) -> np.ndarray:
        """P(word) for the corpus-average topic mix, the connection's records taken out.

        For records nothing but their own connection supports in their IP's topics:
        without the connection such an IP is one the model never saw, which gets
        the average mix (`mean_theta`). Per topic, ``lambda_kw`` loses the
        connection's ``n * theta_dk * phi_kw / p`` but keeps the prior ``eta``.
        In (0, 1): scaled by the floor, these rank first, the rarest across the
        whole corpus first.
        """
        theta = self.theta[di].astype(np.float64)  # rows: few (the unsupported records)
        lam = self.components[:, wi].T.astype(np.float64)
        mass = self.components.sum(axis=1, dtype=np.float64)
        phi = lam / mass
        rest = np.maximum(lam - (n / p)[:, None] * theta * phi, self.eta)
        return np.clip((rest / mass) @ self.mean_theta, 0.0, 1.0)

    def pair_scores(self, pairs: pl.DataFrame) -> np.ndarray:
        """P(word | IP) for each ``(doc, word, n)`` row of `pairs`."""
        if pairs.height == 0:
            return np.zeros(0)
        pairs = lw.map_to_vocab(pairs, self.record_type, self._vocab)
        return self._probs(_hashed(pairs), pairs[COUNT].to_numpy().astype(np.float64))[0]

    def _new_doc_topics(self, docs: pl.Series, wi: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Topic mix of IPs outside the training set, one row per entry of `docs`."""
        codes = docs.rank("dense").cast(pl.Int64).to_numpy() - 1
        n_docs = int(codes.max()) + 1
        known = wi >= 0
        # duplicates of a (doc, word) add up: these are the IPs' word counts
        counts = sp.csr_matrix(
            (weights[known], (codes[known], wi[known])), shape=(n_docs, len(self.vocab))
        )
        mix = infer_topics(counts, self.components, self.alpha)
        has_words = np.asarray(counts.sum(axis=1)).ravel() > 0
        mix[~has_words] = self.mean_theta  # nothing to go on: an average host
        return mix[codes]

    def score_words(self, w: pl.DataFrame, own_window: bool = False) -> pl.DataFrame:
        """Add the score `p` to each ``(_row, side, doc, word)`` row.

        A word outside the vocabulary is first replaced by its first known coarser
        form (as training backed rare words off), so the result's words are the scored ones.
        `own_window`: `w` is the window the model was fitted on (Spot's daily job);
        each record is then scored without its own connection's share
        (`without_own_connection`).
        """
        w = lw.map_to_vocab(w, self.record_type, self._vocab)
        h = _hashed(w)
        probs, di, wi = self._probs(h, np.ones(w.height))
        if own_window and lw.PEER in w.columns:
            probs = self.without_own_connection(h, probs, di, wi)
        return w.with_columns(pl.Series(PROB, probs, dtype=pl.Float64))

    def score_events(self, events: pl.DataFrame, own_window: bool = False) -> pl.DataFrame:
        """Per record of `events` (same order): its score and the words of each side.

        `own_window`: `events` are the records the model was fitted on (`score_words`).

        Columns ``lda.score`` (NaN when the record has no IP to score), and
        ``lda.doc_a/word_a`` (source side, or the client), ``lda.doc_b/word_b``
        (destination side of a flow).
        """
        n = events.height
        words = lw.words(events, self.record_type, self.popular)
        scored = self.score_words(words, own_window)
        cols: dict[str, pl.Series] = {}
        probs = []
        for side in ("a", "b"):
            s = scored.filter(pl.col(lw.SIDE) == side)
            idx = s[lw.ROW]
            whole = s.height == n  # every record has this side: rows in order, no scatter
            for name, src in (("doc", lw.DOC), ("word", lw.WORD)):
                out = f"lda.{name}_{side}"
                if whole:
                    cols[out] = s[src].alias(out)
                    continue
                empty = pl.Series(out, [None] * n, dtype=pl.Utf8)
                cols[out] = empty.scatter(idx, s[src]) if len(idx) else empty
            p = s[PROB].to_numpy() if whole else np.full(n, np.nan)
            if not whole:
                p[idx.to_numpy()] = s[PROB].to_numpy()
            probs.append(p)
        with np.errstate(invalid="ignore"):
            score = np.fmin(probs[0], probs[1])  # a flow: the lower endpoint; NaN: no IP
        return pl.DataFrame({"lda.score": score, **cols})

    def suspicion(self, scores: np.ndarray) -> np.ndarray:
        """Share of training records that scored higher: in [0, 1], higher = rarer."""
        scores = np.asarray(scores, dtype=np.float64)
        if len(self.q_values) == 0:
            return np.full(len(scores), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log10(scores)
        out = 1.0 - np.interp(x, self.q_values, _LEVELS[: len(self.q_values)])
        out[np.isnan(scores)] = np.nan
        return out

    # -- persistence -----------------------------------------------------
    def to_file(self) -> ModelFile:
        arrays = {
            "components": self.components.astype(np.float32),
            "vocab": np.asarray(self.vocab, dtype=str),
            "docs": np.asarray(self.docs, dtype=str),
            "theta": self.theta.astype(np.float32),
            "popular": np.asarray(self.popular, dtype=str),
            "q_values": np.asarray(self.q_values, dtype=np.float64),
        }
        meta = {
            **self.meta,
            "record_type": self.record_type,
            "alpha": self.alpha,
            "floor": self.floor,
            "threshold": THRESHOLD,
        }
        return ModelFile(KIND, arrays, meta)

    @classmethod
    def from_file(cls, mf: ModelFile) -> LdaModel:
        if mf.kind != KIND:
            raise ModelError(f"{mf.path or mf.kind}: a {mf.kind!r} model, expected {KIND!r}")
        record_type = mf.meta.get("record_type")
        if record_type not in lw.KINDS:
            raise ModelError(f"{mf.path or KIND}: unknown record type {record_type!r}")
        comp, vocab = mf.array("components"), mf.array("vocab")
        docs, theta = mf.array("docs"), mf.array("theta")
        if comp.ndim != 2 or comp.shape[1] != len(vocab) or theta.shape != (len(docs), len(comp)):
            raise ModelError(f"{mf.path or KIND}: arrays of inconsistent shapes")
        try:
            alpha, floor = float(mf.meta["alpha"]), float(mf.meta["floor"])
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{mf.path or KIND}: meta.json lacks alpha/floor") from None
        return cls(
            record_type,
            vocab,
            comp,
            docs,
            theta,
            alpha,
            [str(x) for x in mf.array("popular")],
            floor,
            mf.array("q_values"),
            dict(mf.meta),
        )


def doc_term(pairs: pl.DataFrame) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The ``(doc, word, n)`` counts as a CSR matrix, with its doc and word labels (sorted)."""
    di = pairs[lw.DOC].rank("dense").cast(pl.Int64).to_numpy() - 1
    wi = pairs[lw.WORD].rank("dense").cast(pl.Int64).to_numpy() - 1
    docs = pairs[lw.DOC].unique().sort().to_numpy().astype(str)
    vocab = pairs[lw.WORD].unique().sort().to_numpy().astype(str)
    x = sp.csr_matrix(
        (pairs[COUNT].to_numpy().astype(np.float64), (di, wi)), shape=(len(docs), len(vocab))
    )
    return x, docs, vocab


def fit(
    w: pl.DataFrame,
    record_type: str,
    *,
    extra: pl.DataFrame | None = None,
    popular: list[str] | None = None,
    params: dict[str, Any] | None = None,
) -> LdaModel:
    """Fit topics to the words `w` (``doc, word`` rows) plus weighted `extra` ``(doc, word, n)``.

    `extra` carries the replicated feedback. Raises `ModelError` when there is
    nothing to train on.
    """
    prm = {**DEFAULT_PARAMS, **(params or {})}
    t0 = time.perf_counter()
    w = w.filter(pl.col(lw.DOC).is_not_null() & pl.col(lw.WORD).is_not_null())
    if w.height == 0:
        raise ModelError(f"nothing to train on: no {record_type} records with an IP")
    w = lw.back_off(w, record_type, int(prm["min_count"]))
    pairs = w.group_by(lw.DOC, lw.WORD).agg(pl.len().cast(pl.Float64).alias(COUNT))
    if extra is not None and extra.height:
        pairs = (
            pl.concat([pairs, extra.select(lw.DOC, lw.WORD, pl.col(COUNT).cast(pl.Float64))])
            .group_by(lw.DOC, lw.WORD)
            .agg(pl.col(COUNT).sum())
        )
    pairs = pairs.sort(lw.DOC, lw.WORD)
    x, docs, vocab = doc_term(pairs)
    components, alpha, eta = online_lda(x, prm)
    theta = infer_topics(x, components, alpha)
    tokens = float(x.sum())
    model = LdaModel(
        record_type,
        vocab,
        components.astype(np.float32),
        docs,
        theta.astype(np.float32),
        alpha,
        list(popular or []),
        # below the probability of a word seen once in the whole corpus
        0.1 / max(tokens, 1.0),
    )
    params = {**prm, "doc_topic_prior": alpha, "topic_word_prior": eta}
    model.meta = {"params": params}  # `eta` is read when scoring
    # the distribution of training records' scores, for `suspicion`
    scored = model.score_words(w, own_window=True)
    if record_type == "flow":
        rec = scored.group_by(lw.ROW).agg(pl.col(PROB).min())[PROB].to_numpy()
    else:
        rec = scored[PROB].to_numpy()
    model.q_values = np.quantile(np.log10(rec), _LEVELS)
    model.meta = {
        "params": params,
        "metrics": {
            "records": int(w[lw.ROW].n_unique()),
            "documents": len(docs),
            "vocabulary": len(vocab),
            "doc_word_pairs": int(x.nnz),
            "tokens": tokens,
            "train_seconds": round(time.perf_counter() - t0, 3),
            "median_log10_score": float(np.median(np.log10(rec))),
            "p01_log10_score": float(np.quantile(np.log10(rec), 0.01)),
        },
    }
    return model


# -- `lightsoc ml ... lda` entry points (implemented in lda_jobs / lda_eval) ----------
DESCRIPTION = (
    "suspicious connects (Apache Spot's LDA): flows, DNS or web records ranked by how "
    "improbable each is for its IP's topic mix; trained per site (no shipped default)"
)


def train(inputs: list[Path], data_dir: Path | None, from_store: bool) -> ModelFile:
    """A model of the records in `inputs` (flow/DNS/web files) or the store's last day."""
    from lightsoc.detect.ml import lda_jobs

    return lda_jobs.train(inputs, data_dir, from_store)


def evaluate(inputs: list[Path], data_dir: Path | None) -> dict[str, Any]:
    """Injected anomalies (port scan, exfiltration, beacon) in a day of flows: their ranks."""
    from lightsoc.detect.ml import lda_eval

    return lda_eval.evaluate(inputs, data_dir)


def load(data_dir: Path | None, name: str | None = None) -> Any:
    """A scorer of raw records (one a line): suspicion in [0, 1], higher = rarer."""
    from lightsoc.detect.ml import lda_jobs

    return lda_jobs.load_scorer(data_dir, name)
