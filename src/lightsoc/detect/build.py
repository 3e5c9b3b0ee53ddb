"""The stream detectors of a configured lightsoc: rules from config, data dir and state store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lightsoc.detect.ruleset import RuleSet

if TYPE_CHECKING:
    from lightsoc.config import Config
    from lightsoc.store.state import StateStore

log = logging.getLogger(__name__)

#: where `lightsoc rules import` puts rules (always loaded)
IMPORTED_DIR = "rules"


def imported_dir(data_dir: Path) -> Path:
    return Path(data_dir) / IMPORTED_DIR


def build_ruleset(
    config: Config, data_dir: Path | None = None, state: StateStore | None = None
) -> RuleSet:
    """`detect.rules` (builtin, files, dirs), `<data_dir>/rules/` and enabled simple rules.

    With a state store, Sigma rules switched off there (`state_rule_flags`) are left out.
    """
    paths: list[str | Path] = list(config.detect.rules)
    if data_dir is not None and imported_dir(data_dir).is_dir():
        paths.append(imported_dir(data_dir))
    rs = RuleSet.load(paths)
    if state is not None:
        # here, not at the top: the Sigma compiler imports pySigma (start-up time)
        from lightsoc.detect.sigma.compiler import LoadResult
        from lightsoc.detect.simple import load_simple
        from lightsoc.store.state_rule_flags import RuleFlags
        from lightsoc.store.state_rules import RulesStore

        simple = load_simple(RulesStore(state).list(enabled_only=True))
        for f in simple.failures:
            log.warning("rule not loaded: %s", f)
        off = RuleFlags(state).disabled()
        sigma = [r for r in rs.rules if r.id not in off]
        merged = LoadResult(sigma + simple.rules, rs.failures + simple.failures)
        rs = RuleSet.from_result(merged)
    return rs
