"""Character n-grams of registered labels for the DGA model.

Three things are built on the n-grams of a label (codes as `dga_features.split_labels`
gives them, 0 marking the label boundary):

- *benign tables*, learned from benign names only: conditional log-probabilities
  log P(c | previous 1 or 2 codes) with additive smoothing, and bit sets of the 4- and
  5-grams seen in benign labels (`benign_tables`);
- the per-label statistics the binned features take from those tables: mean bigram
  and trigram log-likelihood, the share of rare bigrams, the share of 4-/5-grams seen
  (`ngram_columns`);
- the weight indices of the linear n-gram component (`ngram_index`) and of the second,
  separately fitted 4-/5-gram model (`wide_index`, see `dga_wide`).

The benign tables can also count the words of a word list (`word_counts`), weighing as
much in all as the benign names they are built from.

Everything is flat numpy over all codes of a chunk of labels; per-label figures come
from `np.add.reduceat` over the label starts.
"""

from __future__ import annotations

import numpy as np

#: character codes: 0 = label boundary, then a-z, 0-9, '-', '_', anything else
ALPHABET = 40
#: 4- and 5-grams of benign labels are kept as bit sets (`SEEN_SIZE` bits)
SEEN_ORDERS = (4, 5)
SEEN_BITS = 22
SEEN_SIZE = {4: ALPHABET**4, 5: 1 << SEEN_BITS}
#: the n-gram component: one weight per bigram and trigram (exact; the closing ones, with
#: the end marker, end in code 0, which no inner n-gram does) and per 4-gram hashed into
#: 2**NGRAM_BITS slots; `NGRAM_SIZE` weights in all
NGRAM_BITS = 16
NGRAM_SIZE = ALPHABET**2 + ALPHABET**3 + (1 << NGRAM_BITS)
#: the second n-gram model (`dga_wide`): 4- and 5-grams hashed into 2**WIDE_BITS weights
WIDE_BITS = 18
WIDE_SIZE = 1 << WIDE_BITS
#: the columns `ngram_columns` returns, in order
COLUMNS = ("bigram_ll", "trigram_ll", "rare_bigram_share", "seen4_share", "seen5_share")
_RARE = np.float32(np.log(0.005))  # a bigram rarer than this in benign names


def previous(codes: np.ndarray, starts: np.ndarray, back: int) -> list[np.ndarray]:
    """[codes, the code 1 before, ..., `back` before], 0 (the boundary) before a label."""
    out = [codes]
    for _ in range(back):
        prev = np.r_[0, out[-1][:-1]]
        prev[starts] = 0  # the one before is 0 at a label start, so later shifts stay 0
        out.append(prev)
    return out


def grams(
    codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], np.ndarray]:
    """(n-gram index ending at each code for n = 2..5, with the boundary code 0 before the
    label; the closing bigram/trigram of each label (boundary after it); each code's
    position in its label). A 5-gram index is below 40**5 < 2**31."""
    p = previous(codes, starts, 4)
    g = {2: p[1] * ALPHABET + codes}
    g[3] = p[2] * ALPHABET**2 + g[2]
    g[4] = p[3] * ALPHABET**3 + g[3]
    g[5] = p[4] * ALPHABET**4 + g[4]
    last = codes[starts + lengths - 1]
    before_last = np.where(lengths > 1, codes[np.maximum(starts + lengths - 2, 0)], 0)
    closing = {2: last * ALPHABET, 3: (before_last * ALPHABET + last) * ALPHABET}
    pos = np.arange(codes.size) - np.repeat(starts, lengths)
    return g, closing, pos


def seen_slot(gram: np.ndarray, order: int) -> np.ndarray:
    """Bit index of an n-gram in its seen-set: exact for 4-grams (40**4 bits), hashed
    to 2**SEEN_BITS for 5-grams (multiplicative hashing; int64 cannot overflow here)."""
    if order == 4:
        return gram
    return ((gram.astype(np.int64) * 2654435761) >> 7) & ((1 << SEEN_BITS) - 1)


def word_counts(codes: np.ndarray, lengths: np.ndarray) -> dict[int, np.ndarray]:
    """Bigram and trigram counts (boundaries included, as `benign_tables` counts them)
    of a word list's `codes` and `lengths`; key 0 holds the number of words."""
    lengths = lengths[lengths > 0]
    starts = np.cumsum(lengths) - lengths
    g, closing, _ = grams(codes, starts, lengths)
    out = {o: np.bincount(np.r_[g[o], closing[o]], minlength=ALPHABET**o) for o in (2, 3)}
    out[0] = np.array([lengths.size])
    return out


def benign_tables(
    codes: np.ndarray,
    lengths: np.ndarray,
    alpha: float = 0.1,
    words: dict[int, np.ndarray] | None = None,
    word_weight: float = 1.0,
) -> dict:
    """What the features need to know of benign labels (`codes`, `lengths` as
    `split_labels` gives them): conditional log-probability tables log P(c | previous 1
    or 2 codes) with additive smoothing `alpha` (float32, ALPHABET**2 and **3 entries),
    and the 4- and 5-grams seen in them as bit sets (packed uint8). `words`
    (`word_counts`) add to the bigram and trigram counts, all words together weighing
    `word_weight` times the labels; the seen sets stay the labels' own."""
    lengths = lengths[lengths > 0]
    starts = np.cumsum(lengths) - lengths
    out = {}
    if codes.size:
        g, closing, pos = grams(codes, starts, lengths)
    else:
        g = {k: np.zeros(0, np.int64) for k in (2, 3, 4, 5)}
        closing, pos = {2: g[2], 3: g[3]}, g[2]
    for order in (2, 3):
        every = np.r_[g[order], closing[order]]
        counts = np.bincount(every, minlength=ALPHABET**order).astype(np.float64)
        if words is not None and int(words[0][0]) > 0:
            counts += word_weight * lengths.size / int(words[0][0]) * words[order]
        counts = counts.reshape(-1, ALPHABET)
        ctx = counts.sum(axis=1, keepdims=True)
        logp = np.log((counts + alpha) / (ctx + alpha * ALPHABET))
        out[f"logp{order}"] = logp.ravel().astype(np.float32)
    for order in SEEN_ORDERS:
        bits = np.zeros(SEEN_SIZE[order], dtype=bool)
        bits[seen_slot(g[order][pos >= order - 1], order)] = True
        out[f"seen{order}"] = np.packbits(bits)
    return out


def ngram_index(
    g: dict[int, np.ndarray], closing: dict[int, np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weight indices of the n-grams of labels (`grams` output): per code, its bigram,
    trigram and hashed 4-gram (start markers pad the first ones); per label, its closing
    bigram and trigram. Every label has 3 * length + 2 of them."""
    off3, off4 = ALPHABET**2, ALPHABET**2 + ALPHABET**3
    # bits 9.. of gram * 2654435761, in wrapping uint32 (see `wide_index`)
    h4 = np.asarray(g[4], np.int32).view(np.uint32) * np.uint32(2654435761)
    h4 >>= np.uint32(9)
    h4 &= np.uint32((1 << NGRAM_BITS) - 1)
    return [g[2], g[3] + off3, h4 + off4], [closing[2], closing[3] + off3]


def wide_index(g: dict[int, np.ndarray]) -> list[np.ndarray]:
    """Weight indices of the second n-gram model: each code's 4-gram and 5-gram (start
    markers pad the first ones), hashed into `WIDE_SIZE` slots; 2 * length per label."""
    # bits 7.. of (gram * 2654435761 + 97 * order): they depend on the low 32 bits of the
    # product only, so wrapping uint32 arithmetic gives them without an int64 copy
    out = []
    for o in (4, 5):
        h = np.asarray(g[o], np.int32).view(np.uint32) * np.uint32(2654435761)
        h += np.uint32(97 * o)
        h >>= np.uint32(7)
        h &= np.uint32(WIDE_SIZE - 1)
        out.append(h)
    return out


def ngram_columns(
    g: dict[int, np.ndarray],
    closing: dict[int, np.ndarray],
    pos: np.ndarray,
    starts: np.ndarray,
    lens: np.ndarray,
    tables: dict[str, np.ndarray],
) -> list[np.ndarray]:
    """The `COLUMNS` of each label (`grams` output, label `starts` and `lens`) against
    the benign `tables`, float64 each."""
    L = lens.astype(np.float64)

    def per_label(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts, dtype=np.float64)

    t2, t3 = tables["logp2"], tables["logp3"]
    lp2 = t2[g[2]]
    rare = per_label((lp2 < _RARE).view(np.int8)) / (L + 1)
    ll2 = (per_label(lp2) + t2[closing[2]]) / (L + 1)
    ll3 = (per_label(t3[g[3]]) + t3[closing[3]]) / (L + 1)
    cols = [ll2, ll3, rare]
    for order in SEEN_ORDERS:
        bits = tables[f"seen{order}"]  # packed: 8 n-grams a byte (0.9 MB, stays in cache)
        inside = pos >= order - 1  # a whole n-gram inside the label ends here
        slot = seen_slot(g[order], order)
        hit = ((bits[slot >> 3] >> (7 - (slot & 7))) & 1).astype(bool) & inside
        n = np.maximum(L - (order - 1), 0)  # whole n-grams inside the label
        share = per_label(hit.view(np.int8)) / np.maximum(n, 1)
        cols.append(np.where(n > 0, share, 1.0))  # too short to tell: like benign
    return cols
