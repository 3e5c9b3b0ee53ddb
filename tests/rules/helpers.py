"""Run the built-in rule pack on log lines through the real pipeline.

Each test writes raw lines (as a sender would produce them) to a file in a
fresh data directory whose config loads only `builtin`, imports it with
`lightsoc.ingest.ingest` (real parsers, stream rules, correlation pass over
the imported span) and then asks the event store which events a rule flagged
and the alert store which alerts were raised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from lightsoc.alerts.model import Alert
from lightsoc.alerts.store import AlertStore
from lightsoc.config import load_config
from lightsoc.detect.ruleset import builtin_dir
from lightsoc.ingest import ingest
from lightsoc.runtime import Stores, open_stores

RULES = builtin_dir()
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


class RuleEnv:
    """A data directory whose config loads the built-in rule pack only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        cfg = root / "lightsoc.yml"
        cfg.write_text(f"data_dir: {root / 'data'}\ndetect:\n  rules: [builtin]\n")
        self.config = load_config(cfg)
        self.stores: Stores = open_stores(self.config.data_dir, self.config)
        self.files = 0

    def ingest(self, lines: list[str], suffix: str = ".log") -> dict:
        """Import `lines` as one file; returns the ingest summary."""
        self.files += 1
        path = self.root / f"in{self.files}{suffix}"
        path.write_text("\n".join(lines) + "\n")
        return ingest(self.config, self.stores, [path]).as_dict()

    def flagged(self, rule_name: str) -> list[str]:
        """`event.original` of every stored event whose `rule.name` lists `rule_name`."""
        table = self.stores.events.search(
            "_exists_:rule.name", fields=["event.original", "rule.name"], limit=100_000
        )
        rows = table.to_pylist()
        return [r["event.original"] for r in rows if rule_name in (r["rule.name"] or [])]

    def alerts(self, rule_id: str | None = None) -> list[Alert]:
        return AlertStore(self.stores.state).find(rule_id=rule_id, limit=10_000)

    def close(self) -> None:
        self.stores.close()
