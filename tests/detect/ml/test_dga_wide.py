"""DGA model's second n-gram model (hashed 4-/5-grams) and benign word list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from lightsoc.detect.ml import dga, modelfile
from lightsoc.detect.ml import dga_features as F
from lightsoc.detect.ml import dga_ngrams as N
from lightsoc.detect.ml import dga_wide as W
from lightsoc.detect.ml.modelfile import ModelError

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "dns" / "dga_labeled.csv"


@pytest.fixture(scope="module")
def shipped() -> dga.DgaModel:
    return dga.load(None)


def test_scoring_sums_the_wide_weights_the_training_matrix_holds(shipped: dga.DgaModel) -> None:
    names = pl.read_csv(DATA)["domain"].sample(2000, seed=3)
    names = pl.concat([names, pl.Series(["", "1.2.3.4", "a.b.xjwqkz.co.uk", "x.com", "ab.io"])])
    x, z_both = F.features_ngram(names, shipped.tables, shipped.ngram, shipped.wide)
    _, z_ngram = F.features_ngram(names, shipped.tables, shipped.ngram)
    r, c, v = W.wide_matrix(names)
    m = sparse.csr_matrix((v, (r, c)), shape=(len(names), N.WIDE_SIZE))
    assert np.allclose(z_both - z_ngram, m @ shipped.wide.astype(np.float64), atol=1e-5)
    assert (z_both[np.isnan(x[:, 0])] == 0).all()
    # every label has 2 * length hashed 4-/5-grams, each weighing 1/sqrt(that count)
    _, lengths, _ = F.split_labels(names)
    ok = lengths > 0
    counts = np.bincount(r, minlength=len(names))
    assert np.array_equal(counts[ok], 2 * lengths[ok]) and (counts[~ok] == 0).all()
    assert (c >= 0).all() and (c < N.WIDE_SIZE).all()
    assert np.abs(shipped.wide).max() > 0.1  # the second model carries weight


def test_wide_hash_is_the_int64_formula_in_uint32() -> None:
    rng = np.random.default_rng(5)
    g = {o: rng.integers(0, N.ALPHABET**o, 50_000).astype(np.int32) for o in (4, 5)}
    want = [
        ((g[o].astype(np.int64) * 2654435761 + 97 * o) >> 7) & (N.WIDE_SIZE - 1) for o in (4, 5)
    ]
    assert all(np.array_equal(a, b) for a, b in zip(N.wide_index(g), want, strict=True))
    h4 = N.ngram_index(g | {2: g[4], 3: g[4]}, {2: g[4][:1], 3: g[4][:1]})[0][2]
    off4 = N.ALPHABET**2 + N.ALPHABET**3
    assert np.array_equal(h4 - off4, ((g[4].astype(np.int64) * 2654435761) >> 9) & 0xFFFF)


def test_word_list_joins_the_bigram_tables_not_the_seen_sets(tmp_path: Path) -> None:
    path = tmp_path / "words"
    path.write_text("Café\nzebra\nzebras\naaron's\nx\nzygote\n", encoding="utf-8")
    W.word_counts.cache_clear()
    counts = W.word_counts(str(path))
    assert counts is not None and int(counts[0][0]) == 4  # cafe, zebra, zebras, zygote
    assert W.word_counts(str(tmp_path / "missing")) is None
    codes, lengths, _ = F.split_labels(pl.Series(["google.com", "example.org", "bank.de"]))
    plain = N.benign_tables(codes, lengths)
    both = N.benign_tables(codes, lengths, words=counts, word_weight=1.0)
    zy = F._CODES[ord("z")] * N.ALPHABET + F._CODES[ord("y")]
    assert both["logp2"][zy] > plain["logp2"][zy]  # 'zy' is only in the words
    assert np.array_equal(both["seen4"], plain["seen4"])
    assert np.array_equal(both["seen5"], plain["seen5"])


def test_fit_uses_the_word_list_when_there_is_one(tmp_path: Path) -> None:
    df = pl.read_csv(DATA).sample(2000, seed=6)
    y = (df["label"] == "dga").to_numpy()
    path = tmp_path / "words"
    path.write_text("\n".join(["zebra", "quiet", "window", "garden", "yellow"]), encoding="utf-8")
    with_words = dga.fit(df["domain"], y, {"benign_words": str(path)})
    without = dga.fit(df["domain"], y, {"benign_words": ""})
    assert with_words.meta["benign_words"] == 5 and without.meta["benign_words"] == 0
    assert not np.array_equal(with_words.tables["logp3"], without.tables["logp3"])
    assert np.abs(with_words.wide).max() > 0.0


def test_model_file_checks_the_wide_array(tmp_path: Path, shipped: dga.DgaModel) -> None:
    target = modelfile.models_dir(tmp_path) / "dga"
    for value in (np.zeros(10, np.float16), np.full(N.WIDE_SIZE, np.inf, np.float16)):
        mf = shipped.to_file()
        mf.arrays["wide"] = value
        modelfile.save(target, mf)
        with pytest.raises(ModelError, match="shapes"):
            dga.load(tmp_path)
    mf = shipped.to_file()  # a model of the version before the second model: retrain
    del mf.arrays["wide"]
    modelfile.save(target, mf)
    with pytest.raises(ModelError, match="no array"):
        dga.load(tmp_path)
