"""Scheduled retraining of the stream models over real stores (`lightsoc ingest` of real logs)."""

from __future__ import annotations

import json
import logging
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lightsoc.cli import main
from lightsoc.config import Config
from lightsoc.detect.ml import jobs, modelfile, retrain
from lightsoc.detect.ml.modelfile import ModelFile, models_dir
from lightsoc.detect.ml.stream import MLDetector
from lightsoc.runtime import open_stores
from lightsoc.store.state_detect import WatermarkStore
from lightsoc.store.state_feedback import FeedbackStore
from tests.cli_helpers import in_process, one_line

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
ATTACKER = "203.0.113.66"
#: the benign Apache log ends on 2015-05-20; its attacks are appended right after
T0 = datetime(2015, 5, 21, 9, 0, tzinfo=UTC)
END = datetime(2015, 5, 22, tzinfo=UTC)
OFF = {"beacon": {"enabled": False}, "lda": {"enabled": False}}


def _access(ip: str, target: str, i: int) -> str:
    t = (T0 + timedelta(seconds=i)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{t}] "GET {target} HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64)"'


def _attack_targets() -> list[str]:
    """Real payloads (SQL injection, XSS, traversal, command injection) as a parameter of a
    shop page, spread over each list."""
    out = []
    for name, n in (
        ("SQL_Injection.txt", 40),
        ("XSS_Injection.txt", 150),
        ("Directory_Traversal.txt", 100),
        ("Command_Injection.txt", 50),
    ):
        text = (DATA / "web" / "payloads" / name).read_text(errors="replace")
        lines = [p for p in text.splitlines() if len(p) > 8 and " " not in p.strip()]
        lines = lines[:: max(1, len(lines) // n)][:n]
        out += [f"/shop/item.php?id={urllib.parse.quote(p, safe='')}" for p in lines]
    return out


@pytest.fixture(scope="module")
def web_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real benign Apache lines plus real attack payloads from one client, ingested."""
    tmp = tmp_path_factory.mktemp("retrain")
    benign = (DATA / "web" / "apache_logs_benign.log").read_text(errors="replace").splitlines()
    attacks = [_access(ATTACKER, t, i) for i, t in enumerate(_attack_targets())]
    log = tmp / "access.log"
    log.write_text("\n".join(benign[:4000] + attacks) + "\n")
    data = tmp / "data"
    assert main(["ingest", str(log), "--data-dir", str(data)]) == 0
    return data


def _runner(data: Path, **ml: object) -> tuple[jobs.MLJobs, object]:
    config = Config.model_validate({"data_dir": str(data), "detect": {"ml": ml}})
    stores = open_stores(data, config)
    runner = jobs.from_config(config, stores.events, stores.state)
    assert runner is not None
    return runner, stores


def _meta(data: Path, kind: str) -> dict:
    return json.loads((models_dir(data) / kind / "meta.json").read_text())


# -- web ----------------------------------------------------------------------------------
def test_web_retrain_runs_on_schedule_saves_meta_and_the_stream_reloads(web_store: Path) -> None:
    data = web_store
    det = MLDetector.load(["web"], data, reload_seconds=0)
    shipped = det.loaded[0].scorer
    assert det.check() == []  # nothing new yet
    cfg = {"enabled": True, "interval": "7d", "lookback": "30d", "min_events": 200}
    runner, stores = _runner(
        data, jobs=OFF, retrain={"web": cfg | {"public_sample": 3000, "margin": 0.05}}
    )
    try:
        runs = runner.run_due(now=END)
        # the same loop: the tunnelling window job (on by default) ran beside the retraining
        assert [r.kind for r in runs] == ["tunnel", "retrain-web"]
        run = runs[1]
        assert run.error is None, run.error
        assert run.note is not None and run.note.startswith("saved"), run.note
        assert run.events >= 500  # distinct stored targets
        assert WatermarkStore(stores.state).get_all()["ml:retrain-web"] == END
        # not due again before its interval (the tunnelling job, every 10 minutes, is)
        assert [r.kind for r in runner.run_due(now=END + timedelta(days=1))] == ["tunnel"]
    finally:
        stores.close()
    meta = _meta(data, "web")
    assert meta["trained_by"] == "schedule" and meta["kind"] == "web"
    assert meta["training"]["fingerprint"].startswith("sha256:")
    assert meta["training"]["stored"]["attack"] >= 20  # the attack targets a web rule flagged
    assert meta["created"] and meta["params"]["retrain"]["public_sample"] == 3000
    assert 0.0 < meta["metrics"]["auc"] <= 1.0 and meta["threshold"] == 0.5
    assert meta["comparison"]["compared_on"] == "held-out stored rows"
    assert meta["metrics"]["f1"] >= meta["comparison"]["current"]["f1"] - 0.05
    # the running stream detector swaps the new model in, without a restart
    assert det.check() == ["web"] and det.reloads == 1
    fresh = det.loaded[0].scorer
    assert fresh is not shipped and not np.array_equal(fresh.weights, shipped.weights)
    batch = pl.DataFrame(
        {"url.original": ["/shop/item.php?id=1%27%20OR%20%271%27%3D%271", "/index.html", None]}
    )
    out = det.detect(batch)
    assert out["rule.name"].to_list()[0] == ["ML Web Attack Request"]
    assert out["rule.name"].to_list()[1:] == [None, None]


def test_too_little_data_keeps_the_model_and_advances(web_store: Path, caplog) -> None:  # noqa: ANN001
    data = web_store
    before = sorted(p.name for p in models_dir(data).glob("*")) if models_dir(data).exists() else []
    cfg = {"enabled": True, "interval": "1d", "min_events": 10_000_000}
    runner, stores = _runner(
        data, jobs=OFF | {"tunnel": {"enabled": False}}, retrain={"web": cfg, "dga": cfg}
    )
    later = END + timedelta(days=30)
    try:
        with caplog.at_level(logging.INFO, logger="lightsoc.detect.ml.retrain"):
            runs = runner.run_due(now=later)
        assert [r.kind for r in runs] == ["retrain-web", "retrain-dga"]
        assert all(r.error is None and "kept the current model" in (r.note or "") for r in runs)
        assert runs[1].events == 0  # no analyst-rated or intel-flagged names in this store
        assert "min_events is 10000000" in caplog.text
        marks = WatermarkStore(stores.state).get_all()
        assert marks["ml:retrain-web"] == later and marks["ml:retrain-dga"] == later
        assert runner.run_due(now=later + timedelta(minutes=1)) == []  # no retry loop
    finally:
        stores.close()
    after = sorted(p.name for p in models_dir(data).glob("*")) if models_dir(data).exists() else []
    assert after == before


def test_a_failing_retrain_is_reported_and_retried(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner, stores = _runner(
        data,
        jobs={k: {"enabled": False} for k in ("beacon", "tunnel", "lda")},
        retrain={"dga": {"enabled": True}},
    )
    try:
        assert runner.jobs == [] and len(runner.retrain) == 1
        _, cfg = runner.retrain[0]
        runner.retrain = [(retrain.RetrainJob("nope", data), cfg)]
        [run] = runner.run_due(now=END)
        assert run.error is not None and "no retraining for 'nope'" in run.error
        assert "ml:retrain-nope" not in WatermarkStore(stores.state).get_all()
        assert runner.run_due(now=END + timedelta(minutes=1))[0].error  # still due: retried
    finally:
        stores.close()


def test_retraining_is_off_by_default(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = Config.model_validate(
        {"data_dir": str(data), "detect": {"ml": {"jobs": {k: {"enabled": False} for k in OFF}}}}
    )
    assert not config.detect.ml.retrain.web.enabled and not config.detect.ml.retrain.dga.enabled
    stores = open_stores(data, config)
    try:
        runner = jobs.from_config(config, stores.events, stores.state)
        assert runner is not None and runner.retrain == []  # the tunnelling job only
    finally:
        stores.close()


# -- DGA ----------------------------------------------------------------------------------
def _dns_events(path: Path, names: list[str], client: str) -> None:
    lines = []
    for i, name in enumerate(names):
        event = {
            "@timestamp": (T0 + timedelta(seconds=i)).isoformat(),
            "event": {"dataset": "dns", "category": ["network"]},
            "source": {"ip": client, "port": 40000 + i},
            "destination": {"ip": "10.1.0.53", "port": 53},
            "dns": {"question": {"name": name, "type": "A"}, "response_code": "NXDOMAIN"},
        }
        lines.append(json.dumps(event))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def dga_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """A DGA feed loaded as threat intel, DNS events naming its domains, analyst ratings."""
    tmp = tmp_path_factory.mktemp("retrain_dga")
    labelled = pl.read_csv(DATA / "dns" / "dga_labeled.csv")
    feed = labelled.filter(pl.col("family") == "murofet")["domain"].tail(40).to_list()
    # benign names of a (hypothetical) deployment an analyst marked benign
    rated = labelled.filter(pl.col("label") == "benign")["domain"].tail(30).to_list()
    data = tmp / "data"
    (tmp / "feed.txt").write_text("\n".join(feed) + "\n")
    assert (
        main(
            [
                "intel",
                "load",
                str(tmp / "feed.txt"),
                "--source",
                "bambenek-dga",
                "--data-dir",
                str(data),
            ]
        )
        == 0
    )
    _dns_events(tmp / "dns.ndjson", feed, "10.1.1.66")
    assert main(["ingest", str(tmp / "dns.ndjson"), "--data-dir", str(data)]) == 0
    assert (
        main(["intel", "allow", "add", "dns.question.name", rated[0], "--data-dir", str(data)]) == 0
    )
    stores = open_stores(data)
    try:
        fb = FeedbackStore(stores.state)
        for i, name in enumerate(rated[1:]):
            fb.rate("dns", 3, doc_a=f"10.1.2.{i}", word_a="w", domain=name + ".")
        fb.allow("10.1.2.1", "10.1.0.53", record_type="dns")  # an IP pair: no name to learn
    finally:
        stores.close()
    return data, feed, rated


def test_dga_retrain_learns_analyst_and_intel_names_and_reloads(dga_store) -> None:  # noqa: ANN001
    data, feed, rated = dga_store
    stores = open_stores(data)
    try:
        local = retrain.dga_local(stores.events, stores.state, END - timedelta(days=30), END)
    finally:
        stores.close()
    assert sorted(local.values[: len(rated)]) == sorted(rated)  # trailing dots stripped
    assert sorted(local.values[len(rated) :]) == sorted(n.lower() for n in feed)
    assert local.y.sum() == len(feed)
    det = MLDetector.load(["dga"], data, reload_seconds=0)
    cfg = {"enabled": True, "min_events": 50, "public_sample": 8000, "margin": 0.05}
    runner, stores = _runner(data, jobs=OFF | {"tunnel": {"enabled": False}}, retrain={"dga": cfg})
    try:
        [run] = runner.run_due(now=END)
    finally:
        stores.close()
    assert run.error is None and run.note and run.note.startswith("saved"), run.note
    assert run.events == len(feed) + len(rated)
    meta = _meta(data, "dga")
    assert meta["trained_by"] == "schedule" and meta["kind"] == "dga"
    assert meta["training"]["stored"]["intel_dga"] == len(feed)
    assert meta["training"]["stored"]["benign"] == {
        "ratings": len(rated) - 1,
        "allow_pairs": 0,
        "intel_allow": 1,
    }
    assert meta["metrics"]["auc"] > 0.9 and 0.0 < meta["threshold"] < 1.0
    assert meta["params"]["C"] > 0 and meta["training"]["fingerprint"].startswith("sha256:")
    assert det.check() == ["dga"]
    scores = det.loaded[0].scorer.score(feed[:10] + ["google.com"])
    assert np.isfinite(scores).all() and scores[:10].mean() > scores[10]


def test_a_worse_model_is_refused(dga_store, caplog) -> None:  # noqa: ANN001
    """A candidate from 300 public names cannot match the model trained on all of them."""
    data, _, _ = dga_store
    current = modelfile.resolve("dga", data)
    before = (current / "meta.json").read_bytes()
    cfg = {"enabled": True, "min_events": 50, "public_sample": 300, "margin": 0.0}
    runner, stores = _runner(data, jobs=OFF | {"tunnel": {"enabled": False}}, retrain={"dga": cfg})
    later = END + timedelta(days=8)
    try:
        with caplog.at_level(logging.INFO, logger="lightsoc.detect.ml.retrain"):
            [run] = runner.run_due(now=later)
        assert run.error is None and run.note and "refused" in run.note, run.note
        assert "auc" in run.note and "worse than the current model" in caplog.text
        assert WatermarkStore(stores.state).get_all()["ml:retrain-dga"] == later
    finally:
        stores.close()
    assert modelfile.resolve("dga", data) == current
    assert (current / "meta.json").read_bytes() == before


def test_one_class_data_without_the_public_set_keeps_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installation without ../shared/data and only analyst-benign names: no model with
    one class is made, the run says why and is not retried every minute."""
    from lightsoc.detect.ml import dga

    monkeypatch.setattr(dga, "DATA", tmp_path / "missing.csv")
    data = tmp_path / "data"
    cfg = {"enabled": True, "min_events": 5}
    runner, stores = _runner(data, jobs=OFF | {"tunnel": {"enabled": False}}, retrain={"dga": cfg})
    try:
        fb = FeedbackStore(stores.state)
        for i, name in enumerate(["example.com", "wikipedia.org", "lightsoc.dev"] * 4):
            fb.rate("dns", 3, doc_a=f"10.0.0.{i}", word_a="w", domain=f"{i}.{name}")
        [run] = runner.run_due(now=END)
        assert run.error is None and run.events == 12
        assert "0 malicious and 12 benign" in (run.note or "") and "missing.csv" in run.note
        assert runner.run_due(now=END + timedelta(minutes=1)) == []
    finally:
        stores.close()
    assert not (models_dir(data) / "dga").exists()


def test_compare_refuses_a_drop_beyond_the_margin() -> None:
    old = {"auc": 0.95, "f1": 0.90}
    assert retrain.compare(old, {"auc": 0.94, "f1": 0.89}, ("auc", "f1"), 0.02)[0]
    ok, why = retrain.compare(old, {"auc": 0.94, "f1": 0.80}, ("auc", "f1"), 0.02)
    assert not ok and "f1 0.8 < 0.9" in why
    assert not retrain.compare(old, {"auc": None, "f1": 0.95}, ("auc", "f1"), 0.5)[0]
    assert retrain.compare({"auc": None}, {"auc": 0.5}, ("auc",), 0.0)[0]
    assert retrain.compare(None, {"auc": 0.1}, ("auc",), 0.0) == (
        True,
        "no current model could be loaded",
    )


def test_split_and_sample_are_stratified_and_seeded() -> None:
    y = np.r_[np.zeros(100, np.int8), np.ones(10, np.int8)]
    test = retrain.split(y)
    assert (test & (y == 0)).sum() == 30 and (test & (y == 1)).sum() == 3
    assert np.array_equal(test, retrain.split(y))
    idx = retrain.sample(y, 55)
    assert len(idx) == 55 and y[idx].sum() == 5
    assert len(retrain.sample(y, None)) == 110 and len(retrain.split(np.zeros(0))) == 0
    assert retrain._name("Evil.Example.COM.") == "evil.example.com"
    assert [retrain._name(v) for v in ("10.0.0.1", "*", "::1", None, "local")] == [None] * 5


# -- the stream detector ---------------------------------------------------------------------
def test_a_corrupt_new_model_is_logged_and_the_old_one_kept(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    from lightsoc.detect.ml import web

    data = tmp_path / "data"
    det = MLDetector.load(["web"], data, reload_seconds=0)
    old = det.loaded[0].scorer
    target = models_dir(data) / "web"
    modelfile.save(target, ModelFile("web", {"weights": np.zeros(3, np.float32)}, {}))
    (target / "model.npz").write_bytes(b"garbage")
    assert det.check() == [] and det.reload_errors == 1
    assert det.loaded[0].scorer is old and len(det.loaded) == 1
    assert "new web model" in caplog.text and "keeping the one in use" in caplog.text
    assert det.check() == [] and det.reload_errors == 1  # logged once, not every check
    # a good model replaces the broken file: swapped in at the next check
    mf = web.LinearWebModel(old.weights.copy(), old.bias + 1.0).to_file({"params": {}})
    modelfile.save(target, mf)
    assert det.check() == ["web"]
    assert det.loaded[0].scorer.bias == pytest.approx(old.bias + 1.0) and len(det.loaded) == 1
    # an override of `detect.ml.thresholds` survives a reload
    det2 = MLDetector.load(["web"], data, {"web": 0.9}, reload_seconds=0)
    modelfile.save(target, web.LinearWebModel(old.weights.copy(), old.bias).to_file({}))
    assert det2.check() == ["web"] and det2.loaded[0].threshold == 0.9


def test_the_stream_checks_for_new_models_on_its_own(tmp_path: Path) -> None:
    from lightsoc.detect.ml import web

    data = tmp_path / "data"
    det = MLDetector.load(["web"], data, reload_seconds=0.001)
    old = det.loaded[0].scorer
    modelfile.save(models_dir(data) / "web", web.LinearWebModel(old.weights, -3.0).to_file({}))
    det._next_check = 0.0  # the check interval has passed
    det.detect(pl.DataFrame({"url.original": ["/a"]}))
    assert det.reloads == 1 and det.loaded[0].scorer.bias == -3.0


# -- config ------------------------------------------------------------------------------------
BAD = [
    ("interval: 0d", r"bad\.yml:7: detect\.ml\.retrain\.web\.interval: .*"),
    ("min_events: 0", r"bad\.yml:7: detect\.ml\.retrain\.web\.min_events: .*"),
    ("margin: 2", r"bad\.yml:7: detect\.ml\.retrain\.web\.margin: .*"),
    ("lookback: soon", r"bad\.yml:7: detect\.ml\.retrain\.web\.lookback: .*"),
    ("enable: true", r"bad\.yml:7: detect\.ml\.retrain\.web\.enable: .*"),
]


@pytest.mark.parametrize(("line", "message"), BAD, ids=[b[0].split(":")[0] for b in BAD])
def test_config_errors_exit_2_naming_file_line_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    line: str,
    message: str,  # noqa: ANN001
) -> None:
    monkeypatch.chdir(tmp_path)
    text = "detect:\n  ml:\n    retrain:\n      web:\n        enabled: true\n"
    text += "        public_sample: 5000\n        " + line + "\n"
    (tmp_path / "bad.yml").write_text(text)
    code, out, err = in_process(capsys, "stats", "--config", "bad.yml")
    assert (code, out) == (2, "")
    one_line(err, message)
