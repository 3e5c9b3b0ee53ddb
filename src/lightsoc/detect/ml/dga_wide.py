"""The DGA model's second n-gram model and its benign word list (training side).

- *Second model*: a logistic regression of its own on the label's 4- and 5-grams
  (start markers included), hashed into `dga_ngrams.WIDE_SIZE` slots, each n-gram
  weighing 1/sqrt(2 * length). It is fitted apart from the binned model, with a weaker
  penalty, and added to its logit with weight `wide_weight` (logit averaging); both are
  linear, so the sum is one model: the scaled weights are stored as one array and the
  scaled intercept joins the binned model's.
- *Word list*: the bigram and trigram counts of a dictionary (Debian's `wamerican`,
  `/usr/share/dict/american-english`) join the benign names' counts in the benign
  tables, so that English-looking parts of a label read as benign even where the
  ~10k benign training names are too few to say. Only training reads the list; the
  tables it ends up in are model arrays. Without the file the tables are the benign
  names' alone (the model meta says how many words were used).
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lightsoc.detect.ml import dga_features as F
from lightsoc.detect.ml import dga_ngrams as N

log = logging.getLogger(__name__)

#: Debian package wamerican (the training machine needs it; scoring does not)
WORDS = Path("/usr/share/dict/american-english")


@functools.lru_cache(maxsize=4)
def word_counts(path: str) -> dict[int, np.ndarray] | None:
    """`dga_ngrams.word_counts` of the word list at `path` (one word a line; lower-cased,
    accents dropped, words of letters a-z only, at least 2 long), None if unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="ignore")
    except OSError as exc:
        # training still works, a little worse (held-out AUC 0.9802 -> 0.9796)
        log.warning("DGA training without a word list: %s (apt install wamerican)", exc)
        return None
    words = set()
    for line in text.splitlines():
        w = line.strip().lower().replace("ß", "ss")
        w = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
        if w.isascii() and w.isalpha() and len(w) >= 2:
            words.add(w)
    if not words:
        return None
    ordered = sorted(words)
    codes = F._CODES[np.frombuffer("".join(ordered).encode(), np.uint8)]
    lengths = np.array([len(w) for w in ordered], np.int64)
    return N.word_counts(codes, lengths)


def label_grams(names: pl.Series) -> tuple[np.ndarray, np.ndarray, Any, np.ndarray] | None:
    """(indices of the scorable names, every name's label length, `dga_ngrams.grams` of
    the scorable labels, the name index of each of their codes); None if none is scorable."""
    codes, lengths, _ = F.split_labels(names)
    ok = np.flatnonzero(lengths > 0)
    if ok.size == 0:
        return None
    lens = lengths[ok]
    starts = np.cumsum(lens) - lens
    return ok, lengths, N.grams(codes, starts, lens), np.repeat(ok, lens)


def wide_matrix(names: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, values) of the second model's hashed 4-/5-grams of each scorable
    name (duplicates to be summed), each weighing 1/sqrt(2 * the label's length)."""
    found = label_grams(names)
    if found is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    _, lengths, (g, _, _), code_row = found
    rows = np.concatenate([code_row, code_row])
    cols = np.concatenate(N.wide_index(g))
    return rows, cols, 1.0 / np.sqrt(2.0 * lengths[rows])


def fit_wide(
    names: pl.Series, y: np.ndarray, weight: np.ndarray, C: float
) -> tuple[np.ndarray, float]:
    """(weights, intercept) of the second model on scorable `names` labelled `y`."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    r, c, v = wide_matrix(names)
    m = sparse.csr_matrix((v, (r, c)), shape=(len(names), N.WIDE_SIZE))
    lr = LogisticRegression(C=C, max_iter=3000)
    lr.fit(m, y, sample_weight=weight)
    return lr.coef_[0], float(lr.intercept_[0])
