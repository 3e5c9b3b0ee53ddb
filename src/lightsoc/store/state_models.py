"""Trained models shared through the state store, for split deployments.

The active scheduler retrains the stream models into its own data directory;
processors load models from theirs. So a model saved by retraining (or by
`lightsoc ml train`) is also published here, with a version number, and
every processor installs the newer ones into its data directory
(`sync_models`, every 30 s); its ML detector then reloads them as it
reloads any model file that changed. A few MB per model: fine for SQLite
and PostgreSQL alike.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import StateStore, metadata, migration, upsert

log = logging.getLogger(__name__)

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")

ml_models = sa.Table(
    "ml_models",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("arrays", sa.LargeBinary, nullable=False),
    sa.Column("meta", sa.LargeBinary, nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
)


@migration("ml_models_1")
def _ml_models_1(conn: Connection) -> None:
    ml_models.create(conn, checkfirst=True)


class SharedModels:
    """Publish and fetch model files by name."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def publish(self, name: str, directory: Path) -> int:
        """Store the model in `directory` as the next version of `name`; returns it."""
        from lightsoc.detect.ml.modelfile import files

        arrays, meta = files(directory)
        t = ml_models
        with self.engine.begin() as conn:
            values = {
                "name": name,
                "version": 1,
                "arrays": arrays,
                "meta": meta,
                "updated": datetime.now(UTC),
            }
            # one statement: two publishers never both write version 1
            upsert(
                conn,
                t,
                values,
                ["name"],
                {
                    "version": t.c.version + 1,
                    "arrays": arrays,
                    "meta": meta,
                    "updated": values["updated"],
                },
            )
            return int(conn.execute(sa.select(t.c.version).where(t.c.name == name)).scalar_one())

    def versions(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ml_models.c.name, ml_models.c.version))
            return {r.name: int(r.version) for r in rows}

    def fetch(self, name: str) -> tuple[int, bytes, bytes] | None:
        """(version, arrays, meta) of `name`, or None."""
        t = ml_models
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.version, t.c.arrays, t.c.meta).where(t.c.name == name)
            ).first()
        return None if row is None else (int(row.version), bytes(row.arrays), bytes(row.meta))


def sync_models(state: StateStore, data_dir: Path, have: dict[str, int]) -> list[str]:
    """Install into `data_dir` every shared model newer than `have` (updated in
    place); returns their names."""
    from lightsoc.detect.ml.modelfile import install, models_dir

    shared = SharedModels(state)
    installed = []
    for name, version in sorted(shared.versions().items()):
        if have.get(name, 0) >= version:
            continue
        if not _NAME.fullmatch(name):  # a directory name under models/, nothing else
            log.warning("ml: shared model name %r refused", name)
            continue
        got = shared.fetch(name)
        if got is None:
            continue
        version, arrays, meta = got
        install(models_dir(data_dir) / name, arrays, meta)
        have[name] = version
        installed.append(name)
        log.info("ml: installed shared model %s version %d", name, version)
    return installed
