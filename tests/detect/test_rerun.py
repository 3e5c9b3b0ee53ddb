"""`lightsoc detect` reruns the stream rules over stored events, never counting a hit twice."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lightsoc.alerts.store import AlertStore
from lightsoc.config import load_config
from lightsoc.runtime import open_stores
from tests.alerts.receivers import HttpReceiver, Reply
from tests.cli_helpers import in_process
from tests.detect.test_correlation import BRUTE, CORR, at, ssh_fail, web_hit

SQLI = "/item.php?id=1%20union%20select%20user,password%20from%20users"
TRAVERSAL = "/download?file=../../../../etc/passwd"


def _setup(tmp_path: Path, rules: str) -> Path:
    cfg = tmp_path / "lightsoc.yml"
    # the rules alone: the stream's models would alert on these requests too
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\ndetect:\n  rules: [{rules}]\n  ml: {{stream: []}}\n"
    )
    return cfg


def _log(tmp_path: Path) -> Path:
    # two hours of attacks: 6 SQLi from one client, 4 traversals from another, benign noise
    lines = [web_hit(at(20 * i), "198.51.100.7", SQLI) for i in range(6)]
    lines += [web_hit(at(30 * i + 5), "203.0.113.9", TRAVERSAL) for i in range(4)]
    lines += [web_hit(at(i), "192.0.2.1", f"/page/{i}.html") for i in range(50)]
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    return log


def _alerts(cfg: Path) -> list[tuple[str, str, int]]:
    """(rule, entity, hits) summed over the entity's alerts (one per 1 h suppression window)."""
    config = load_config(cfg)
    stores = open_stores(config.data_dir, config)
    try:
        hits: Counter[tuple[str, str]] = Counter()
        for a in AlertStore(stores.state).find(limit=100):
            hits[(a.rule_name, a.entity_value)] += a.count
        return sorted((rule, entity, n) for (rule, entity), n in hits.items())
    finally:
        stores.close()


def _detect(capsys, cfg: Path, *extra: str) -> dict:
    code, out, err = in_process(capsys, "detect", "--config", cfg, "--format", "json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_rules_added_after_import_raise_once(tmp_path: Path, capsys) -> None:
    none = tmp_path / "no-rules"
    none.mkdir()
    plain = _setup(tmp_path, str(none))
    code, _, err = in_process(capsys, "ingest", _log(tmp_path), "--config", plain)
    assert code == 0, err
    assert _alerts(plain) == []
    cfg = _setup(tmp_path, "builtin")  # the rule pack arrives later
    until = ["--until", at(180).isoformat()]
    # first a part of the range (the first hour), then all of it, then all of it again
    first = _detect(capsys, cfg, "--since", "1h", "--until", at(60).isoformat())
    assert first["stream"]["hits"] > 0
    full = _detect(capsys, cfg, "--since", "4h", *until)
    expected = [
        ("Local Or Remote File Inclusion Attempt", "203.0.113.9", 4),
        ("Path Traversal Or Local File Inclusion Attempt", "203.0.113.9", 4),
        ("SQL Injection Keywords In Request", "198.51.100.7", 6),
    ]
    assert [a for a in _alerts(cfg) if a[1] != "192.0.2.1"] == expected
    assert full["stream"]["alerts_new"] + first["stream"]["alerts_new"] >= 2
    again = _detect(capsys, cfg, "--since", "4h", *until)
    assert (again["stream"]["alerts_new"], again["stream"]["alerts_updated"]) == (0, 0)
    assert [a for a in _alerts(cfg) if a[1] != "192.0.2.1"] == expected


def test_hits_the_stream_alerted_are_not_raised_again(tmp_path: Path, capsys) -> None:
    cfg = _setup(tmp_path, "builtin")
    code, _, err = in_process(capsys, "ingest", _log(tmp_path), "--config", cfg)
    assert code == 0, err
    live = _alerts(cfg)
    assert ("SQL Injection Keywords In Request", "198.51.100.7", 6) in live
    res = _detect(capsys, cfg, "--since", "4h", "--until", at(180).isoformat())
    assert res["stream"]["events"] == 60 and res["stream"]["hits"] == 0
    assert _alerts(cfg) == live


def test_new_alerts_of_an_import_and_a_rerun_go_to_the_outputs(tmp_path: Path, capsys) -> None:
    receiver = HttpReceiver(Reply(200, {"ok": True}))
    try:
        cfg = tmp_path / "lightsoc.yml"
        hook = f"alerts:\n  outputs:\n    hook: {{type: webhook, url: '{receiver.url}/in'}}\n"
        cfg.write_text(f"data_dir: {tmp_path / 'data'}\ndetect:\n  rules: [{CORR}]\n{hook}")
        burst = [ssh_fail(at(1 + i * 0.1), "203.0.113.5", port=4000 + i) for i in range(12)]
        log = tmp_path / "auth.log"
        log.write_text("\n".join(burst) + "\n")
        code, out, err = in_process(capsys, "ingest", log, "--config", cfg, "--json")
        assert code == 0, err
        assert json.loads(out)["correlation"]["outputs"] == {"hook": 1}
        sent = receiver.wait(1)[0].json()["alerts"]
        assert [(a["rule.id"], a["entity.value"]) for a in sent] == [(BRUTE, "203.0.113.5")]
        # a rerun with a fresh alert history: the same alert is new again and sent,
        # unless --no-outputs
        (tmp_path / "data" / "state.sqlite").unlink()
        until = ["--since", "3h", "--until", at(180).isoformat()]
        quiet = _detect(capsys, cfg, *until, "--no-outputs")
        assert quiet["alerts_new"] == 1 and quiet["outputs"] == {}
        (tmp_path / "data" / "state.sqlite").unlink()
        loud = _detect(capsys, cfg, *until)
        assert loud["outputs"] == {"hook": {"sent": 1, "failed": 0}}
        assert len(receiver.wait(2)) == 2
    finally:
        receiver.close()
