"""Model files: arrays in an `.npz` plus a `meta.json`, never a pickle.

A model is a directory ``<name>/`` holding ``model.npz`` (numpy arrays, loaded
with ``allow_pickle=False``) and ``meta.json`` (kind, format version, lightsoc
version, creation time, training-data fingerprint, parameters, metrics).
Pickles are avoided on purpose: a model file in a data directory must not be
able to run code, and a scikit-learn pickle breaks when scikit-learn is
upgraded; arrays and JSON outlive both.

Trained models live in ``<data_dir>/models/<name>/``; the defaults shipped
with lightsoc (trained on public data by ``scripts/train_models.py``) live in
this package's ``shipped/<name>/``. `resolve` prefers the data directory.
Saving is atomic (a temporary directory renamed into place), so a crash while
saving leaves the previous model intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

#: bump when the layout of model.npz/meta.json changes incompatibly
FORMAT_VERSION = 1
MODELS_DIR = "models"
SHIPPED_DIR = Path(__file__).with_name("shipped")
_ARRAYS = "model.npz"
_META = "meta.json"


class ModelError(RuntimeError):
    """A model is missing, corrupt, of another kind or from an incompatible version."""


@dataclass
class ModelFile:
    """A model's arrays and metadata, as stored."""

    kind: str
    arrays: dict[str, np.ndarray]
    #: free-form JSON: params, metrics, training fingerprint, ...
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.meta.get("params") or {})

    def array(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise ModelError(f"{self.path or self.kind}: model.npz has no array {name!r}") from None


def models_dir(data_dir: Path) -> Path:
    return Path(data_dir) / MODELS_DIR


def fingerprint(*parts: bytes | str | Path) -> str:
    """sha256 over training inputs (file contents for paths, UTF-8 for text)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def save(target: Path, model: ModelFile) -> Path:
    """Write `model` to the directory `target` atomically; returns `target`."""
    from lightsoc import __version__

    meta = {
        **model.meta,
        "kind": model.kind,
        "format_version": FORMAT_VERSION,
        "lightsoc_version": __version__,
        "created": model.meta.get("created") or datetime.now(UTC).isoformat(timespec="seconds"),
        "arrays": sorted(model.arrays),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **model.arrays)
    text = json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n"
    return install(target, buf.getvalue(), text.encode("utf-8"))


def files(source: Path) -> tuple[bytes, bytes]:
    """The (arrays, meta) bytes of a saved model directory, to copy it elsewhere."""
    return (Path(source) / _ARRAYS).read_bytes(), (Path(source) / _META).read_bytes()


def install(target: Path, arrays: bytes, meta: bytes) -> Path:
    """Put a model's files in the directory `target` atomically (a loader sees the old
    model or the new one, never a mix); returns `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shipped model from other users
        (tmp / _ARRAYS).write_bytes(arrays)
        (tmp / _META).write_bytes(meta)
        for f in (tmp / _ARRAYS, tmp / _META):
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load(source: Path, kind: str) -> ModelFile:
    """Read the model directory `source`, checking it is a `kind` model of this format."""
    source = Path(source)
    try:
        meta = json.loads((source / _META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{source}: no {_META} (not a model directory)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{source / _META}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{source / _META}: not a JSON object")
    if meta.get("kind") != kind:
        raise ModelError(f"{source}: a {meta.get('kind')!r} model, expected {kind!r}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{source}: model format {version!r}, this lightsoc reads {FORMAT_VERSION}; "
            f"retrain it with `lightsoc ml train {kind}`"
        )
    try:
        with np.load(source / _ARRAYS, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise ModelError(f"{source}: no {_ARRAYS}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"{source / _ARRAYS}: corrupt ({e})") from None
    return ModelFile(kind, arrays, meta, source)


def resolve(name: str, data_dir: Path | None) -> Path:
    """The directory of model `name`: the data directory's if trained, else the shipped one."""
    candidates = []
    if data_dir is not None:
        candidates.append(models_dir(data_dir) / name)
    candidates.append(SHIPPED_DIR / name)
    for c in candidates:
        if (c / _META).is_file():
            return c
    where = " or ".join(str(c) for c in candidates)
    raise ModelError(f"no model {name!r} in {where}; train one with `lightsoc ml train {name}`")


def listing(data_dir: Path | None) -> list[dict[str, Any]]:
    """Every model found (data directory first, then shipped), with its metadata."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    roots = ([("data", models_dir(data_dir))] if data_dir is not None else []) + [
        ("shipped", SHIPPED_DIR)
    ]
    for origin, root in roots:
        if not root.is_dir():
            continue
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                meta = json.loads((d / _META).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {"error": "unreadable meta.json"}
            out.append(
                {
                    "name": d.name,
                    "origin": origin,
                    "active": d.name not in seen,
                    "path": str(d),
                    **(meta if isinstance(meta, dict) else {}),
                }
            )
            seen.add(d.name)
    return out
