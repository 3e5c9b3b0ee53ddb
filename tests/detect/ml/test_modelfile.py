"""Model files: arrays + JSON, atomic saves, clear errors for anything else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightsoc.detect.ml import modelfile
from lightsoc.detect.ml.modelfile import ModelError, ModelFile, fingerprint, load, resolve, save

LIGHTSOC = Path(sys.executable).with_name("lightsoc")


def _model() -> ModelFile:
    return ModelFile(
        "web",
        {"coef": np.arange(5, dtype=np.float32), "vocab": np.array(["sel", "ect", "<sc"])},
        {"params": {"ngram": 4}, "metrics": {"f1": 0.99}, "threshold": 0.5},
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = save(tmp_path / "models" / "web", _model())
    got = load(path, "web")
    assert got.array("coef").tolist() == [0, 1, 2, 3, 4]
    assert got.array("vocab").tolist() == ["sel", "ect", "<sc"]
    assert got.params == {"ngram": 4}
    meta = json.loads((path / "meta.json").read_text())
    assert meta["kind"] == "web" and meta["format_version"] == modelfile.FORMAT_VERSION
    assert meta["metrics"] == {"f1": 0.99} and meta["created"]
    assert path.stat().st_mode & 0o777 == 0o755  # readable by the users lightsoc runs as
    with pytest.raises(ModelError, match="no array 'missing'"):
        got.array("missing")


def test_save_replaces_atomically_and_leaves_no_temporaries(tmp_path: Path) -> None:
    save(tmp_path / "web", _model())
    second = _model()
    second.arrays["coef"] = np.ones(3)
    save(tmp_path / "web", second)
    assert load(tmp_path / "web", "web").array("coef").tolist() == [1, 1, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web"]


def test_objects_are_never_unpickled(tmp_path: Path) -> None:
    bad = ModelFile("web", {"obj": np.array([{"a": 1}], dtype=object)}, {})
    path = save(tmp_path / "web", bad)
    with pytest.raises(ModelError, match="corrupt"):
        load(path, "web")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "model.npz").write_bytes(b"PK\x03\x04 not a zip"), "corrupt"),
        (lambda p: (p / "model.npz").unlink(), "no model.npz"),
        (lambda p: (p / "meta.json").write_text("{"), "unreadable"),
        (lambda p: (p / "meta.json").write_text("[1]"), "not a JSON object"),
        (lambda p: (p / "meta.json").unlink(), "not a model directory"),
        (
            lambda p: (p / "meta.json").write_text(
                json.dumps({"kind": "dga", "format_version": 1})
            ),
            "a 'dga' model, expected 'web'",
        ),
        (
            lambda p: (p / "meta.json").write_text(
                json.dumps({"kind": "web", "format_version": 0})
            ),
            "retrain it",
        ),
    ],
)
def test_damaged_models_raise_model_error(tmp_path: Path, damage, message: str) -> None:  # noqa: ANN001
    path = save(tmp_path / "web", _model())
    damage(path)
    with pytest.raises(ModelError, match=message):
        load(path, "web")


def test_resolve_prefers_the_data_directory(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(modelfile, "SHIPPED_DIR", shipped)
    data = tmp_path / "data"
    with pytest.raises(ModelError, match="lightsoc ml train web"):
        resolve("web", data)
    save(shipped / "web", _model())
    assert resolve("web", data) == shipped / "web"
    save(modelfile.models_dir(data) / "web", _model())
    assert resolve("web", data) == data / "models" / "web"
    names = [(m["name"], m["origin"], m["active"]) for m in modelfile.listing(data)]
    assert names == [("web", "data", True), ("web", "shipped", False)]


def test_fingerprint_covers_contents_and_order(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("x\n")
    assert fingerprint(a, "p") == fingerprint(a, "p")
    assert fingerprint(a, "p") != fingerprint("p", a)
    first = fingerprint(a)
    a.write_text("y\n")
    assert fingerprint(a) != first


def test_cli_list_and_usage_errors(tmp_path: Path) -> None:
    def ml(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LIGHTSOC), "ml", *args, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = ml("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    unknown = ml("score", "nosuch", "x")
    assert unknown.returncode == 2 and "unknown model kind 'nosuch'" in unknown.stderr
    missing = ml("score", "dga")
    assert missing.returncode == 2 and "name the input file" in missing.stderr
    no_model_type = ml("train", "dga", "--model", "knn")
    assert no_model_type.returncode == 2 and "--model does not apply" in no_model_type.stderr
    no_scorer = ml("score", "beacon", "x")
    assert no_scorer.returncode == 2 and "does not apply to 'beacon'" in no_scorer.stderr
