"""Models shared through the state store (split deployments), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from lightsoc.detect.ml.modelfile import SHIPPED_DIR, files, load, models_dir
from lightsoc.store.state import StateStore
from lightsoc.store.state_models import SharedModels, ml_models, sync_models


def test_a_published_model_is_installed_once_per_version(state_url: str, tmp_path: Path) -> None:
    state = StateStore(state_url)
    shared = SharedModels(state)
    assert shared.publish("dga", SHIPPED_DIR / "dga") == 1
    processor = tmp_path / "processor"
    have: dict[str, int] = {}
    assert sync_models(state, processor, have) == ["dga"]
    assert files(models_dir(processor) / "dga") == files(SHIPPED_DIR / "dga")
    assert load(models_dir(processor) / "dga", "dga").meta["kind"] == "dga"
    assert sync_models(state, processor, have) == []  # nothing newer
    assert shared.publish("dga", SHIPPED_DIR / "dga") == 2
    assert sync_models(state, processor, have) == ["dga"] and have == {"dga": 2}
    assert shared.versions() == {"dga": 2}
    state.close()


def test_a_name_that_is_not_a_plain_directory_name_is_refused(
    state_url: str, tmp_path: Path
) -> None:
    state = StateStore(state_url)
    arrays, meta = files(SHIPPED_DIR / "dga")
    with state.engine.begin() as conn:
        conn.execute(
            ml_models.insert().values(
                name="../escape", version=1, arrays=arrays, meta=meta, updated=sa_now()
            )
        )
    assert sync_models(state, tmp_path / "p", {}) == []
    assert not (tmp_path / "escape").exists() and not (tmp_path / "p").exists()
    state.close()


def sa_now():  # noqa: ANN201
    from datetime import UTC, datetime

    return datetime.now(UTC)
