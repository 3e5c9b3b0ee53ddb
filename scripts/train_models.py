"""Train the models lightsoc ships (on public data in ../shared/data) into the package.

    python scripts/train_models.py [KIND ...]     # default: every kind with train_default

Each kind module of `lightsoc.detect.ml` that defines `train_default() -> ModelFile`
is trained here and saved to `src/lightsoc/detect/ml/shipped/<kind>/`, where
`modelfile.resolve` finds it when a data directory has no trained model. The
files are committed: nothing is downloaded or trained when lightsoc runs.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lightsoc.detect.ml import KINDS  # noqa: E402
from lightsoc.detect.ml.modelfile import SHIPPED_DIR, save  # noqa: E402


def main(argv: list[str]) -> int:
    kinds = argv or list(KINDS)
    for kind in kinds:
        try:
            mod = importlib.import_module(KINDS[kind])
        except ModuleNotFoundError:
            print(f"{kind}: no module yet, skipped")
            continue
        train = getattr(mod, "train_default", None)
        if train is None:
            continue
        t0 = time.perf_counter()
        model = train()
        path = save(SHIPPED_DIR / kind, model)
        size = sum(f.stat().st_size for f in path.iterdir()) / 1024
        print(f"{kind}: {path} ({size:.0f} KiB) in {time.perf_counter() - t0:.1f} s")
        print(f"  metrics: {model.meta.get('metrics')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
