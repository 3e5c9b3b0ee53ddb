"""Fixtures for file-source tests (helpers live in `tailing.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lightsoc.enrich.chain import build_enrichers

from .tailing import Tail


@pytest.fixture(scope="session")
def enrichers() -> list:
    return build_enrichers({})


@pytest.fixture
def tails(tmp_path: Path, enrichers: list):
    """Factory of `Tail`s (one data directory each); all are closed at the end."""
    made: list[Tail] = []

    def make(paths: list[str], *, data_dir: str = "data", **kw: Any) -> Tail:
        t = Tail(tmp_path / data_dir, enrichers, paths, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()
