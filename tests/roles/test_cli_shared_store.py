"""The CLI on a shared event store (`store.events: chdb://DIR`, ClickHouse in-process):
`ingest`, `search`, `stats` and `detect` read and write it, not the data directory."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_helpers import sshd_events_of
from tests.helpers import SSH_LOG, cli, cli_json, cli_ndjson

RULES = Path(__file__).resolve().parents[2] / "rules"


def test_ingest_search_stats_and_detect_use_the_configured_store(tmp_path: Path) -> None:
    cfg = tmp_path / "lightsoc.yml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"store:\n  events: chdb://{tmp_path / 'ch'}\n  retention_days: null\n"
        f"detect:\n  rules: [{RULES / 'correlation'}, {RULES / 'linux'}]\n"
    )
    res = cli("ingest", "--config", cfg, "--format", "syslog", SSH_LOG)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "data" / "events.duckdb").exists()  # the events went to ClickHouse
    assert any((tmp_path / "ch").iterdir())

    lines = SSH_LOG.read_text().splitlines()
    ip = "183.62.140.253"
    res = cli(
        "search",
        "--config",
        cfg,
        f"source.ip:{ip}",
        "--since",
        "all",
        "--limit",
        "10000",
        "--format",
        "json",
    )
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows and all(r["source.ip"] == ip for r in rows)
    assert len(rows) == sshd_events_of(SSH_LOG, ip)

    stats = cli_json("stats", "--config", cfg, "--format", "json")
    assert stats["events_total"] == len(lines)

    res = cli("detect", "--config", cfg, "--since", "all")
    assert res.returncode == 0, res.stderr
    assert "correlation: 18 rule(s)" in res.stdout
    alerts = cli_ndjson("alerts", "--config", cfg, "--since", "3650d", "--format", "json")
    assert any(a["entity.value"] == ip for a in alerts)
