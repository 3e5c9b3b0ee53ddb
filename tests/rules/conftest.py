"""The `rule_env` fixture: a data directory that loads the built-in rule pack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rules.helpers import RuleEnv


@pytest.fixture
def rule_env(tmp_path: Path) -> Iterator[RuleEnv]:
    e = RuleEnv(tmp_path)
    yield e
    e.close()
