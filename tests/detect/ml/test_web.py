"""The web request classifier: features, models, persistence, the rule-labelled loop, CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lightsoc.demo_traffic import format_hit
from lightsoc.demo_web import benign
from lightsoc.demo_web_attacks import attacks, default_payload_dir, load_payloads
from lightsoc.detect.ml import modelfile, web, web_data
from lightsoc.detect.ml import web_features as wf
from lightsoc.detect.ml.modelfile import ModelError
from tests.helpers import cli

SQLI = "/tienda1/publico/anadir.jsp?id=2&cantidad=%27%3B+DROP+TABLE+usuarios%3B+SELECT+*+FROM+datos"
XSS = "/search.php?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"
TRAVERSAL = "/download.php?file=../../../../etc/passwd"
BENIGN = (
    # a whole CSIC normal request: CSIC's anomalous class holds requests with parameters
    # left out, so the same request cut after `cantidad=55` scores as an anomaly
    "/tienda1/publico/anadir.jsp?id=3&nombre=Vino+Rioja&precio=100&cantidad=55"
    "&B1=A%F1adir+al+carrito",
    "/presentations/logstash-monitorama-2013/images/kibana-search.png",
    "/images/products/1076_800.jpg",
    "/blog/tags/puppet?flav=rss20",
)


@pytest.fixture(scope="module")
def csic_small() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """2,000 + 2,000 CSIC train targets and 1,000 + 1,000 test targets of the real split."""
    s = web_data.csic_split()
    rng = np.random.default_rng(1)

    def pick(y: np.ndarray, n: int) -> np.ndarray:
        return np.sort(
            np.r_[
                rng.choice(np.flatnonzero(y == 0), n, replace=False),
                rng.choice(np.flatnonzero(y == 1), n, replace=False),
            ]
        )

    tr, te = pick(s.y_train, 2000), pick(s.y_test, 1000)
    return [s.train[i] for i in tr], s.y_train[tr], [s.test[i] for i in te], s.y_test[te]


@pytest.fixture(scope="module")
def shipped() -> web.Scorer:
    return web.load(None)


# -- features ----------------------------------------------------------------------------
def _decoded(values: list[str | None]) -> list[bytes | None]:
    b = wf.normalise(values)
    return [
        None if b.null[i] else bytes(b.data[b.starts[i] + 1 : b.starts[i] + b.lengths[i] - 1])
        for i in range(len(values))
    ]


def test_normalise_decodes_folds_and_frames() -> None:
    got = _decoded(["/A%27B+c", "%2527", "%zz%4", "ID=12345", "", None, "%%41"])
    assert got == [b"/a'b c", b"'", b"%zz%0", b"id=00000", b"", None, b"%a"]
    b = wf.normalise(["/x"])
    assert b.data.tolist() == [2, ord("/"), ord("x"), 3]  # start and end markers


def test_normalise_cuts_long_targets() -> None:
    b = wf.normalise(["/" + "a" * 100_000, "/b"])
    assert b.lengths.tolist() == [wf.WIDTH + 2, 4]


def test_training_and_scoring_features_are_identical() -> None:
    values = [SQLI, XSS, "/", "", "/é/ü?x=\u00e9", "/" + "%41" * 400, *BENIGN]
    w = np.random.default_rng(3).normal(size=(1 << wf.BITS) + 1).astype(np.float32)
    w[-1] = 0
    x = wf.hashed_matrix(values)
    expected = x @ w[:-1].astype(np.float64)
    got = wf.hashed_dot(wf.normalise(values), w)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_ngrams_stay_in_their_row() -> None:
    slots, rows = wf.slots(wf.normalise(["/ab", "/cd"]))
    one = wf.slots(wf.normalise(["/cd"]))[0]
    assert sorted(slots[rows == 1].tolist()) == sorted(one.tolist())
    # 5 bytes framed: 5 + 4 + 3 + 2 + 1 n-grams
    assert np.bincount(rows).tolist() == [15, 15]


# -- models ------------------------------------------------------------------------------
def test_linear_model_learns_csic_and_round_trips(
    csic_small: tuple[list[str], np.ndarray, list[str], np.ndarray], tmp_path: Path
) -> None:
    tr, ytr, te, yte = csic_small
    model = web.fit(tr, ytr, "linear")
    scores = model.score(te)
    m = web.metrics(scores, yte, model.threshold)
    assert m["f1"] >= 0.85, m
    path = modelfile.save(tmp_path / "web", model.to_file({"threshold": model.threshold}))
    again = web.from_file(modelfile.load(path, "web"))
    np.testing.assert_allclose(again.score(te), scores, atol=2e-3)  # float16 on disk


def test_knn_baseline_learns_csic_and_round_trips(
    csic_small: tuple[list[str], np.ndarray, list[str], np.ndarray], tmp_path: Path
) -> None:
    tr, ytr, te, yte = csic_small
    te, yte = te[::5], yte[::5]  # 200 normal + 200 anomalous
    model = web.fit(tr, ytr, "knn")
    scores = model.score([*te, None])
    assert np.isnan(scores[-1])
    m = web.metrics(scores[:-1], yte, model.threshold)
    assert m["f1"] >= 0.6, m
    mf = web._model_file(model, "knn", {"data": "test"}, m)
    assert mf.arrays["vocabulary"].dtype.kind == "U"
    assert "jsp" in mf.meta["params"]["stop_words"]
    modelfile.save(modelfile.models_dir(tmp_path) / "webknn", mf)
    again = web.load(tmp_path, "webknn")
    np.testing.assert_allclose(again.score(te), scores[:-1])


def test_training_on_labelled_input_files(tmp_path: Path) -> None:
    rows = [("c/ caridad s/n", "norm"), ("campello, el", "norm")] * 30
    rows += [("' or 1=1 --", "anom"), ("<script>alert(1)</script>", "anom")] * 30
    f = tmp_path / "params.csv"
    f.write_text(
        '"payload","length","attack_type","label"\n'
        + "".join(f'"{p}","{len(p)}","x","{lab}"\n' for p, lab in rows)
    )
    mf = web.train([f], None, from_store=False)
    assert mf.meta["training"] == {
        "data": [str(f)],
        "fingerprint": modelfile.fingerprint(f),
        "benign": 60,
        "attack": 60,
    }
    assert mf.meta["metrics"]["f1"] == 1.0 and mf.meta["params"]["model"] == "linear"
    with pytest.raises(ModelError, match="no such file"):
        web.train([tmp_path / "missing.csv"], None, from_store=False)


def test_one_class_training_is_refused() -> None:
    with pytest.raises(ModelError, match="only benign"):
        web.fit(list(BENIGN), np.zeros(len(BENIGN)), "linear")
    with pytest.raises(ModelError, match="only attacks"):
        web.fit([SQLI, XSS], np.ones(2), "knn")
    with pytest.raises(ModelError, match="unknown web model"):
        web.fit([SQLI, BENIGN[0]], np.array([1, 0]), "forest")


# -- the shipped model -------------------------------------------------------------------
def test_shipped_model_separates_attacks_from_benign(shipped: web.Scorer) -> None:
    scores = shipped.score([SQLI, XSS, TRAVERSAL, *BENIGN])
    assert (scores[:3] >= shipped.threshold).all(), scores
    assert (scores[3:] < shipped.threshold).all(), scores
    mf = modelfile.load(modelfile.resolve("web", None), "web")
    assert {"params", "metrics", "training", "threshold"} <= mf.meta.keys()
    assert mf.meta["metrics"]["f1"] >= 0.9


def test_bad_input_scores_without_crashing(shipped: web.Scorer) -> None:
    values = ["", "/" + "x" * 100_000, "/a\udcff\udc80b?q=1", None, "/\x00\x01", "/日本?q=é"]
    scores = shipped.score(values)
    assert scores.shape == (6,)
    assert np.isnan(scores[3]) and np.isfinite(np.delete(scores, 3)).all()
    assert ((scores[np.isfinite(scores)] >= 0) & (scores[np.isfinite(scores)] <= 1)).all()
    series = shipped.score(pl.Series("t", [SQLI, None], dtype=pl.String))
    assert series[0] >= shipped.threshold and np.isnan(series[1])
    assert shipped.score([]).shape == (0,)


def test_score_events_builds_targets_from_ecs_columns(shipped: web.Scorer) -> None:
    df = pl.DataFrame(
        {
            "url.original": [None, XSS, None, None],
            "url.path": ["/tienda1/publico/anadir.jsp", None, "/x", None],
            "url.query": ["id=2&cantidad=%27%3B+DROP+TABLE+usuarios", None, None, None],
        }
    )
    assert web.event_targets(df).to_list() == [
        "/tienda1/publico/anadir.jsp?id=2&cantidad=%27%3B+DROP+TABLE+usuarios",
        XSS,
        "/x",
        None,
    ]
    scores = web.score_events(df, shipped)
    assert scores[0] >= shipped.threshold and scores[1] >= shipped.threshold
    assert scores[2] < shipped.threshold and np.isnan(scores[3])
    assert np.isnan(web.score_events(pl.DataFrame({"source.ip": ["1.2.3.4"]}), shipped)).all()
    assert web.score_events(pl.DataFrame(), shipped).shape == (0,)


def test_corrupt_or_foreign_model_files_are_model_errors(tmp_path: Path) -> None:
    target = modelfile.models_dir(tmp_path) / "web"
    src = modelfile.resolve("web", None)
    modelfile.save(target, modelfile.load(src, "web"))
    (target / "model.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelError, match="corrupt"):
        web.load(tmp_path)
    meta = json.loads((src / "meta.json").read_text())
    (target / "meta.json").write_text(json.dumps({**meta, "kind": "dga"}))
    with pytest.raises(ModelError, match="'dga' model"):
        web.load(tmp_path)
    mf = modelfile.load(src, "web")
    bad = modelfile.ModelFile("web", {"weights": np.ones(7, np.float32), "bias": np.float64(0)})
    modelfile.save(target, bad)
    with pytest.raises(ModelError, match="2\\*\\*bits"):
        web.load(tmp_path)
    modelfile.save(target, modelfile.ModelFile("web", mf.arrays, {"params": {"model": "svm"}}))
    with pytest.raises(ModelError, match="unknown web model"):
        web.load(tmp_path)


# -- the article's loop: rules label stored events, the model learns ---------------------
def _access_log(path: Path, seed: int, hours: float) -> list[tuple[str, str | None]]:
    """A demo access log (benign shop/docs traffic plus attacks): (target, attack kind)."""
    rng = random.Random(seed)
    start = 1_764_000_000.0
    hits = benign(rng, start, start + hours * 3600)
    hits += attacks(rng, start, start + hours * 3600, load_payloads(rng, default_payload_dir()))
    hits.sort(key=lambda h: h.ts)
    path.write_bytes(b"".join(format_hit(h) for h in hits))
    return [(h.target, h.kind) for h in hits]


def test_rule_labelled_training_flags_unseen_attacks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen = _access_log(tmp_path / "access.log", seed=11, hours=6)
    res = cli("ingest", tmp_path / "access.log", "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    targets, y, desc = web_data.rule_labelled(data)
    assert desc["events"] == len(seen) and len(targets) == len(seen)
    assert 0 < y.sum() < len(y)
    mf = web.train([], data, from_store=True)
    assert mf.meta["training"]["attack"] == int(y.sum())
    assert mf.meta["metrics"]["f1"] >= 0.8, mf.meta["metrics"]
    modelfile.save(modelfile.models_dir(data) / "web", mf)
    model = web.load(data)
    assert modelfile.resolve("web", data).parent == modelfile.models_dir(data)
    # other traffic: attacks and benign requests of another seed, none stored before
    known = {t for t, _ in seen}
    new = [(t, k) for t, k in _access_log(tmp_path / "new.log", seed=12, hours=4) if t not in known]
    injections = [t for t, k in new if k in ("sqli", "xss", "path_traversal")]
    clean = [t for t, k in new if k is None]
    assert len(injections) >= 20 and len(clean) >= 100
    hit = model.score(injections) >= model.threshold
    assert hit.mean() >= 0.8, [t for t, h in zip(injections, hit, strict=True) if not h]
    assert (model.score(clean) >= model.threshold).mean() <= 0.02


def test_training_from_an_empty_or_benign_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no lightsoc data"):
        web.train([], tmp_path / "nothing", from_store=True)
    log = tmp_path / "benign.log"
    log.write_text(
        "".join(
            f'10.0.0.{i} - - [29/Nov/2026:10:00:{i:02d} +0000] "GET /page/{i}.html HTTP/1.1" '
            f'200 512 "-" "Mozilla/5.0"\n'
            for i in range(30)
        )
    )
    assert cli("ingest", log, "--data-dir", tmp_path / "d").returncode == 0
    with pytest.raises(ModelError, match="only benign"):
        web.train([], tmp_path / "d", from_store=True)


# -- the command -------------------------------------------------------------------------
def test_cli_scores_one_json_per_line_in_order(tmp_path: Path) -> None:
    lines = [SQLI, BENIGN[0], XSS, BENIGN[1], "", TRAVERSAL]
    f = tmp_path / "targets.txt"
    f.write_bytes(("\n".join(lines) + "\n").encode() + b"/raw\xff\xfe?bytes=1\n")
    res = cli("ml", "score", "web", f, "--data-dir", tmp_path / "data")
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["value"] for o in out[:6]] == lines and len(out) == 7
    threshold = web.load(None).threshold
    assert [o["score"] >= threshold for o in out[:4]] == [True, False, True, False]
    assert out[5]["score"] >= threshold
    assert all(isinstance(o["score"], float) for o in out)
