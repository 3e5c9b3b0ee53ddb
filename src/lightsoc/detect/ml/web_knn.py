"""The reference article's baseline: stop-word tokens, TF-IDF, cosine k-nearest neighbours.

A target is split on non-alphanumerics (after URL decoding and lowercasing),
tokens in `STOP_WORDS` are dropped, the rest weighted by TF-IDF (L2
normalised) and the `k` nearest training requests by cosine similarity vote:
the score is the fraction of them that are attacks. It is slow (a sparse
product against every training request) and kept as the evaluation's
baseline. Persisted as arrays: vocabulary (str), idf, the training matrix
(data/indices/indptr) and labels.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from lightsoc.detect.ml.modelfile import ModelError, ModelFile
from lightsoc.detect.ml.web_features import as_series

#: common path and parameter words of any site: they say nothing about an attack
STOP_WORDS = frozenset(
    "http https www com org net html htm php jsp asp aspx index default get post id the and".split()
)
K = 5
_TOKEN = re.compile(r"[a-z0-9]+")
_CHUNK = 2048


def tokens(text: str) -> list[str]:
    """Lowercase alphanumeric runs of the URL-decoded `text`, minus stop words."""
    from urllib.parse import unquote_plus

    return [t for t in _TOKEN.findall(unquote_plus(text).lower()) if t not in STOP_WORDS]


class KnnWebModel:
    """TF-IDF + cosine KNN over request targets (score = attack share of the k neighbours)."""

    def __init__(
        self,
        vocabulary: np.ndarray,
        idf: np.ndarray,
        matrix: sp.csr_matrix,
        labels: np.ndarray,
        k: int = K,
        threshold: float = 0.5,
    ) -> None:
        self.vocabulary = vocabulary
        self.idf = idf
        self.matrix = matrix
        self.labels = labels.astype(np.float64)
        self.k = min(k, matrix.shape[0])
        self.threshold = threshold
        self._vec = TfidfVectorizer(
            tokenizer=tokens, lowercase=False, token_pattern=None, norm="l2"
        )
        self._vec.vocabulary_ = {str(t): i for i, t in enumerate(vocabulary)}
        self._vec.idf_ = idf

    @classmethod
    def fit(cls, targets: list[str], y: np.ndarray, k: int = K) -> KnnWebModel:
        vec = TfidfVectorizer(tokenizer=tokens, lowercase=False, token_pattern=None, norm="l2")
        m = vec.fit_transform(targets).tocsr().astype(np.float32)
        vocab = np.asarray(vec.get_feature_names_out(), dtype=str)
        return cls(vocab, vec.idf_.astype(np.float64), m, np.asarray(y), k)

    def score(self, values: list[str | None] | pl.Series) -> np.ndarray:
        """Attack share of the k most similar training requests; NaN for nulls."""
        s = as_series(values)
        null = s.is_null().to_numpy()
        texts = s.fill_null("").to_list()
        out = np.full(len(texts), np.nan)
        for i in range(0, len(texts), _CHUNK):
            q = self._vec.transform(texts[i : i + _CHUNK]).astype(np.float32)
            sim = (q @ self.matrix.T).toarray()
            top = np.argpartition(-sim, self.k - 1, axis=1)[:, : self.k]
            out[i : i + len(top)] = self.labels[top].mean(axis=1)
        out[null] = np.nan
        return out

    def to_file(self, meta: dict[str, Any]) -> ModelFile:
        arrays = {
            "vocabulary": self.vocabulary,
            "idf": self.idf,
            "data": self.matrix.data,
            "indices": self.matrix.indices,
            "indptr": self.matrix.indptr,
            "labels": self.labels.astype(np.int8),
        }
        return ModelFile("web", arrays, meta)

    @classmethod
    def from_file(cls, mf: ModelFile) -> KnnWebModel:
        vocab, idf = mf.array("vocabulary"), mf.array("idf")
        data, indices, indptr = mf.array("data"), mf.array("indices"), mf.array("indptr")
        labels = mf.array("labels")
        try:
            matrix = sp.csr_matrix(
                (data.astype(np.float32), indices, indptr), shape=(len(labels), len(vocab))
            )
            if vocab.dtype.kind != "U" or len(idf) != len(vocab) or not len(labels):
                raise ValueError("vocabulary/idf/labels do not fit")
        except (ValueError, TypeError) as e:
            raise ModelError(f"{mf.path or 'web'}: inconsistent KNN arrays ({e})") from None
        params = mf.params
        return cls(
            vocab,
            idf.astype(np.float64),
            matrix,
            labels,
            int(params.get("k", K)),
            float(mf.meta.get("threshold", 0.5)),
        )
