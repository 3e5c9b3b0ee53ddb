"""DGA model: registered-label extraction, features, bad input, unseen families,
persistence and the `lightsoc ml score dga` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from publicsuffixlist import PublicSuffixList

from lightsoc.detect.ml import dga, dga_eval, modelfile
from lightsoc.detect.ml import dga_features as F
from lightsoc.detect.ml.modelfile import ModelError
from tests.helpers import cli

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "dns" / "dga_labeled.csv"
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_?"


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return dga.read_labelled([DATA])


@pytest.fixture(scope="module")
def shipped() -> dga.DgaModel:
    return dga.load(None)


def labels_of(names: list[str | None]) -> list[str | None]:
    """The registered labels split_labels finds, decoded back to text (None: no label)."""
    codes, lengths, _ = F.split_labels(pl.Series(names, dtype=pl.Utf8))
    text = "".join(_CHARS[c - 1] for c in codes)
    starts = np.cumsum(lengths) - lengths
    return [text[s : s + n] if n else None for s, n in zip(starts, lengths, strict=True)]


# -- the registered label ---------------------------------------------------------------
def test_label_is_left_of_the_icann_suffix_with_wildcards_and_exceptions() -> None:
    names = ["www.google.com", "a.b.example.co.uk", "foo.city.kobe.jp", "x.foo.kobe.jp"]
    names += ["WWW.Example.COM.", " padded.org ", "host.corp.lan", "co.uk", "www.ck"]
    assert labels_of(names) == [
        "google", "example", "city", "x", "example", "padded", "corp", None, "www",
    ]  # fmt: skip


def test_cdn_subdomains_do_not_count_but_dynamic_dns_names_do() -> None:
    # cloudfront.net is in the PSL's private section: its random labels are not registrations
    assert labels_of(["d3kbx6ekzl2v0r.cloudfront.net", "e1234.dscb.akamaiedge.net"]) == [
        "cloudfront",
        "akamaiedge",
    ]
    # a FreeDNS / no-ip name is someone's registration: score it
    assert labels_of(["ibbwnhgh.mooo.com", "lkhylm0mhyfuhg.ddns.net"]) == [
        "ibbwnhgh",
        "lkhylm0mhyfuhg",
    ]


def test_labels_agree_with_the_public_suffix_list_on_the_data_set(data: pl.DataFrame) -> None:
    psl = PublicSuffixList(only_icann=True)
    names = data["domain"].to_list()
    ddns = tuple("." + d for d in F.DDNS_SUFFIXES)
    expected = []
    for n in names:
        reg = psl.privatesuffix(n.lower())
        label = reg.split(".")[0] if reg else None
        if label and label.startswith("xn--"):
            label = None  # punycode is reduced to its ASCII part, checked below
        expected.append(label)
    got = labels_of(names)
    checked = [
        (g, e)
        for n, g, e in zip(names, got, expected, strict=True)
        if e is not None and not n.lower().endswith(ddns)
    ]
    assert len(checked) > 40_000
    assert [g for g, _ in checked] == [e for _, e in checked]


def test_punycode_keeps_its_ascii_part_and_pure_idn_labels_have_none() -> None:
    assert labels_of(["xn--mnchen-3ya.de", "xn--ob0bz7i69i99fm8qgkfwlc.com"]) == ["mnchen", None]


# -- scores -----------------------------------------------------------------------------
def test_bad_input_scores_nan_or_a_number_never_raises(shipped: dga.DgaModel) -> None:
    long_name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57]) + ".com"  # 253 chars
    assert len(long_name) == 253
    cases = {
        "": False,
        None: False,
        "localhost": False,
        "1.2.3.4": False,
        "4.3.2.1.in-addr.arpa": False,
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa": False,
        "2001:db8::1": False,
        "co.uk": False,
        long_name + "x": False,  # 254 characters: not a DNS name
        "example.com.": True,
        "EXAMPLE.COM": True,
        "xn--mnchen-3ya.de": True,
        "münchen.de": True,
        "bücher.例え.jp": True,
        long_name: True,
        "a..b.com": True,
        "weird name!.com": True,
    }
    scores = shipped.score(list(cases))
    assert [not np.isnan(s) for s in scores] == list(cases.values())
    finite = scores[~np.isnan(scores)]
    assert ((finite >= 0) & (finite <= 1)).all()
    assert shipped.score([]).shape == (0,)
    assert shipped.score(pl.Series([None, "google.com"], dtype=pl.Utf8))[0] != 0.5


def test_case_trailing_dot_and_subdomains_do_not_change_the_score(shipped: dga.DgaModel) -> None:
    s = shipped.score(["xjwqkzpvbnmtrq.com", "WWW.XJWQKZPVBNMTRQ.COM.", "a.b.xjwqkzpvbnmtrq.com"])
    assert s[0] == pytest.approx(s[1]) == pytest.approx(s[2])


def test_shipped_model_separates_dga_from_benign(shipped: dga.DgaModel) -> None:
    benign = ["google.com", "wikipedia.org", "facebook.com", "www.bbc.co.uk", "github.com"]
    machine = ["giywswshrgxcvoqgvrkthmfa.ru", "bqkrtxgkmriwsiwcngtivpx.info", "8f6bacmw30xxv6sc.cn"]
    s = shipped.score(benign + machine)
    assert (s[: len(benign)] < shipped.threshold).all()
    assert s[len(benign) :].min() > 20 * s[: len(benign)].max()
    # the threshold sits at 0.1% of held-back benign names, high because the OpenDNS lists
    # hold DGA names: long random labels pass it
    assert (s[len(benign) : len(benign) + 2] > shipped.threshold).all()
    meta = shipped.meta
    assert meta["metrics"]["held_out_families"] and meta["training"]["fingerprint"]
    assert 0.9 < meta["threshold"] < 1.0


def test_unseen_family_is_ranked_above_benign_names(data: pl.DataFrame) -> None:
    # train without qakbot and tinba; they must still rank above held-out benign names
    rng = np.random.default_rng(3)
    benign = (data["label"] == "benign").to_numpy()
    test_benign = benign & (rng.random(data.height) < 0.3)
    held = data["family"].is_in(["qakbot", "tinba"]).to_numpy()
    train = data.filter(pl.Series(~held & ~test_benign))
    model = dga.fit(train["domain"], (train["label"] == "dga").to_numpy())
    s_benign = model.score(data.filter(pl.Series(test_benign))["domain"])
    s_held = model.score(data.filter(pl.Series(held))["domain"])
    auc = dga_eval._auc(s_benign, s_held)
    assert auc > 0.97


def test_training_is_deterministic_and_needs_both_classes(data: pl.DataFrame) -> None:
    part = data.sample(3000, seed=1)
    y = (part["label"] == "dga").to_numpy()
    a, b = dga.fit(part["domain"], y), dga.fit(part["domain"], y)
    assert np.array_equal(a.weights, b.weights) and a.intercept == b.intercept
    assert np.array_equal(a.ngram, b.ngram) and np.array_equal(a.pair_weights, b.pair_weights)
    with pytest.raises(ModelError, match="both"):
        dga.fit(part["domain"], np.ones(part.height, dtype=bool))
    with pytest.raises(ModelError, match="both"):
        dga.fit(["localhost", "1.2.3.4", "x.example.com"], np.array([True, False, True]))


def test_scoring_sums_the_ngram_weights_the_training_matrix_holds(
    data: pl.DataFrame, shipped: dga.DgaModel
) -> None:
    # the scorer's per-label gather must agree with the sparse design matrix of training
    from scipy import sparse

    names = data["domain"].sample(2000, seed=2)
    names = pl.concat([names, pl.Series(["", "1.2.3.4", "a.b.xjwqkz.co.uk", "x.com", "ab.io"])])
    x, z = F.features_ngram(names, shipped.tables, shipped.ngram)
    r, c, v = dga._ngram_matrix(names)
    m = sparse.csr_matrix((v, (r, c)), shape=(len(names), F.NGRAM_SIZE))
    assert np.allclose(z, m @ shipped.ngram)
    assert (z[np.isnan(x[:, 0])] == 0).all() and np.isnan(x[-5:-3, 0]).all()
    # every label has 3 * length + 2 n-grams, each weighing 1/sqrt(that count)
    _, lengths, _ = F.split_labels(names)
    ok = lengths > 0
    counts = np.bincount(r, minlength=len(names))
    assert np.array_equal(counts[ok], 3 * lengths[ok] + 2) and (counts[~ok] == 0).all()
    assert (c < F.NGRAM_SIZE).all() and (c >= 0).all()
    # the n-gram component and the pair bins carry weight in the shipped model
    assert np.abs(shipped.ngram).max() > 0.1 and np.abs(shipped.pair_weights).max() > 0.1


def test_threshold_flags_at_most_the_target_share() -> None:
    scores = np.linspace(0, 1, 10_001)
    t = dga.threshold_at(scores, 0.001)
    assert np.mean(scores > t) <= 0.001
    assert np.mean(scores >= t) > 0.001


# -- files ------------------------------------------------------------------------------
def test_model_file_round_trip_and_damage(tmp_path: Path, shipped: dga.DgaModel) -> None:
    target = modelfile.models_dir(tmp_path) / "dga"
    modelfile.save(target, shipped.to_file())
    loaded = dga.load(tmp_path)
    names = ["google.com", "giywswshrgxcvoqgvrkthmfa.ru", "", "xn--mnchen-3ya.de"]
    assert np.array_equal(loaded.score(names), shipped.score(names), equal_nan=True)
    assert loaded.threshold == shipped.threshold

    (target / "model.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="corrupt"):
        dga.load(tmp_path)
    mf = shipped.to_file()
    mf.arrays["weights"] = mf.arrays["weights"][:, :2]
    modelfile.save(target, mf)
    with pytest.raises(ModelError, match="shapes"):
        dga.load(tmp_path)
    for key, value in (
        ("ngram", np.zeros(10, np.float32)),
        ("ngram", np.full(F.NGRAM_SIZE, np.nan, np.float32)),
        ("pairs", np.array([[0, 99]])),
        ("pair_weights", np.zeros((2, 3, 3))),
    ):
        mf = shipped.to_file()
        mf.arrays[key] = value
        modelfile.save(target, mf)
        with pytest.raises(ModelError, match="shapes"):
            dga.load(tmp_path)
    mf = shipped.to_file()  # a model of the version before the n-gram component
    for key in ("ngram", "pairs", "pair_weights"):
        del mf.arrays[key]
    modelfile.save(target, mf)
    with pytest.raises(ModelError, match="no array"):
        dga.load(tmp_path)
    mf = shipped.to_file()
    mf.arrays["features"] = np.array(["length"])
    modelfile.save(target, mf)
    with pytest.raises(ModelError, match="other features"):
        dga.load(tmp_path)
    other = shipped.to_file()
    other.kind = "web"
    modelfile.save(target, other)
    with pytest.raises(ModelError, match="expected 'dga'"):
        dga.load(tmp_path)


def test_read_labelled_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("domain,label,family\nexample.com,maybe,x\n")
    with pytest.raises(ModelError, match="dga/benign"):
        dga.read_labelled([bad])
    with pytest.raises(ModelError, match="not a domain,label,family CSV"):
        dga.read_labelled([tmp_path / "missing.csv"])


# -- the command ------------------------------------------------------------------------
def test_cli_scores_one_json_per_line_in_order(tmp_path: Path, shipped: dga.DgaModel) -> None:
    lines = ["google.com", "giywswshrgxcvoqgvrkthmfa.ru", "", "4.3.2.1.in-addr.arpa"]
    lines += ["WIKIPEDIA.ORG.", "xn--mnchen-3ya.de", "bqkrtxgkmriwsiwcngtivpx.info"]
    f = tmp_path / "names.txt"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = cli("ml", "score", "dga", f, "--data-dir", tmp_path / "data")
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["value"] for o in out] == lines
    scores = [o["score"] for o in out]
    assert scores[2] is None and scores[3] is None
    t = shipped.threshold
    assert scores[0] < t and scores[4] < t and scores[1] > t and scores[6] > t
    assert isinstance(scores[5], float)


def test_undecodable_bytes_as_the_cli_reads_them_still_score(shipped: dga.DgaModel) -> None:
    # `ml score` reads files with errors="surrogateescape"
    name = b"bad\xff\xfename.com".decode("utf-8", "surrogateescape")
    s = shipped.score([name, "google.com"])
    assert 0.0 <= s[0] <= 1.0 and s[1] < shipped.threshold


# -- family weights ---------------------------------------------------------------------
def test_family_weights_balance_classes_and_shrink_big_families() -> None:
    y = np.array([True] * 100 + [True] * 4 + [False] * 50)
    groups = np.array(["big"] * 100 + ["small"] * 4 + ["benign"] * 50)
    w = dga._sample_weights(y, groups, {"family_power": 0.5})
    assert w[y].sum() == pytest.approx(w[~y].sum()) == pytest.approx(y.size / 2)
    big, small = w[:100].sum(), w[100:104].sum()
    assert big / small == pytest.approx((100 / 4) ** 0.5)
    same = dga._sample_weights(y, groups, {"family_power": 1.0})
    assert np.allclose(same[y], same[0])  # power 1: every DGA name alike, as without groups
    assert np.allclose(dga._sample_weights(y, None, {"family_power": 0.5}), same)


def test_training_with_families_is_deterministic_and_checks_lengths(data: pl.DataFrame) -> None:
    part = data.sample(3000, seed=4)
    y = (part["label"] == "dga").to_numpy()
    a = dga.fit(part["domain"], y, groups=part["family"])
    b = dga.fit(part["domain"], y, groups=part["family"].to_list())
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.ngram, b.ngram)
    plain = dga.fit(part["domain"], y)  # without families every DGA name weighs the same
    assert not np.allclose(a.weights, plain.weights)
    with pytest.raises(ValueError, match="groups"):
        dga.fit(part["domain"], y, groups=part["family"][:10])


def test_other_seeds_hold_out_other_families_and_repeat_the_split(data: pl.DataFrame) -> None:
    # a part of every family keeps this quick; the figures are those of held_out_split
    part = data.filter(pl.int_range(pl.len()).over("family") < 300)
    other = dga_eval.split_seeds(part, [1, 2])
    a, b = other["splits"]
    assert (a["seed"], b["seed"]) == (1, 2)
    assert a["held_out_families"] != b["held_out_families"]
    assert a["auc"] == dga_eval.held_out_split(part, 1)["auc"]
    assert other["auc_min"] == min(a["auc"], b["auc"]) < 1.0
    assert other["auc_max"] == max(a["auc"], b["auc"]) > 0.5
    assert other["auc_min"] <= other["auc_mean"] <= other["auc_max"]
