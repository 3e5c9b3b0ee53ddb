"""Allow lists keep trusted clients out of stream rules, correlations and their alerts.

Trusted events are still stored and searchable; no rule flags them and no
alert names them. Entries come from `detect.allow` in the config and from
the state store (`lightsoc intel allow`), which `lightsoc detect` honours too.
"""

from __future__ import annotations

from pathlib import Path

from lightsoc.alerts.store import AlertStore
from lightsoc.config import load_config
from lightsoc.ingest import ingest
from lightsoc.runtime import open_stores
from lightsoc.store.state_intel import IntelStore
from tests.cli_helpers import in_process
from tests.detect.test_correlation import BRUTE, at, ssh_fail, web_hit

SCANNER_PATH = "/index.php?id=1%20union%20select%201,2,3"


def _config(tmp_path: Path, allow: str = "") -> Path:
    cfg = tmp_path / "lightsoc.yml"
    text = f"data_dir: {tmp_path / 'data'}\ndetect:\n  rules: [builtin]\n"
    if allow:
        text += f"  allow:\n{allow}"
    cfg.write_text(text)
    return cfg


def _burst(ip: str, minute: int = 1) -> list[str]:
    return [ssh_fail(at(minute + i * 0.1), ip, port=4000 + i) for i in range(12)]


def test_allowed_clients_are_stored_but_never_flagged_or_alerted(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "    source.ip: [10.20.0.0/16]\n")
    config = load_config(cfg)
    lines = [
        web_hit(at(1), "10.20.3.4", SCANNER_PATH),
        web_hit(at(1), "198.51.100.9", SCANNER_PATH),
    ]
    lines += _burst("10.20.3.4") + _burst("203.0.113.5")
    log = tmp_path / "mixed.log"
    log.write_text("\n".join(lines) + "\n")
    stores = open_stores(config.data_dir, config)
    try:
        summary = ingest(config, stores, [log]).as_dict()
        assert summary["events"] == len(lines)
        assert stores.events.count("source.ip:10.20.3.4") == 13  # stored and searchable
        flagged = stores.events.search("_exists_:rule.name", fields=["source.ip"], limit=100)
        assert set(flagged.column("source.ip").to_pylist()) == {"198.51.100.9", "203.0.113.5"}
        named = {a.entity_value for a in AlertStore(stores.state).find(limit=100)}
        assert "10.20.3.4" not in named
        assert {"198.51.100.9", "203.0.113.5"} <= named
        brute = AlertStore(stores.state).find(rule_id=BRUTE)
        assert [a.entity_value for a in brute] == ["203.0.113.5"]
    finally:
        stores.close()


def test_detect_honours_allow_entries_in_the_state_store(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path)
    config = load_config(cfg)
    log = tmp_path / "auth.log"
    log.write_text("\n".join(_burst("192.0.2.44") + _burst("203.0.113.5", 20)) + "\n")
    stores = open_stores(config.data_dir, config)
    try:
        IntelStore(stores.state).add_allow("source.ip", "192.0.2.44", "our scanner")
        ingest(config, stores, [log])
        brute = AlertStore(stores.state).find(rule_id=BRUTE)
        assert [a.entity_value for a in brute] == ["203.0.113.5"]
    finally:
        stores.close()
    # a rerun over history with a fresh alert history honours the stored entry as well
    (config.data_dir / "state.sqlite").rename(tmp_path / "old-state.sqlite")
    stores = open_stores(config.data_dir, config)
    IntelStore(stores.state).add_allow("source.ip", "192.0.2.44")
    stores.close()
    argv = ["detect", "--config", cfg, "--since", "3h", "--until", "2026-11-29T11:00:00Z"]
    code, out, err = in_process(capsys, *argv, "--format", "json")
    assert code == 0, err
    stores = open_stores(config.data_dir, config)
    try:
        brute = AlertStore(stores.state).find(rule_id=BRUTE)
        assert [a.entity_value for a in brute] == ["203.0.113.5"]
    finally:
        stores.close()
