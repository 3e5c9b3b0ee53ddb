"""Rules in the stream -> alerts -> a webhook, through `lightsoc ingest` (real processes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.alerts.receivers import HttpReceiver, Reply
from tests.helpers import cli, write_config

NOW = datetime.now(UTC).replace(microsecond=0)
ATTACKER = "203.0.113.66"


def access_line(ip: str, target: str, seconds: int) -> str:
    ts = (NOW - timedelta(minutes=30) + timedelta(seconds=seconds)).strftime("%d/%b/%Y:%H:%M:%S")
    return f'{ip} - - [{ts} +0000] "GET {target} HTTP/1.1" 200 512 "-" "Mozilla/5.0"'


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    r = HttpReceiver(Reply(200, {"ok": True}))
    yield r
    r.close()


def test_ingest_raises_alerts_from_builtin_rules_and_notifies_once(tmp_path: Path, hook):
    log = tmp_path / "access.log"
    lines = [access_line("198.51.100.1", f"/products?page={i}", i) for i in range(20)]
    lines += [
        access_line(ATTACKER, "/search?q=1%27%20union%20select%20password%20from%20users", 30 + i)
        for i in range(3)
    ]
    log.write_text("\n".join(lines) + "\n")
    cfg = write_config(
        tmp_path / "lightsoc.yml",
        {},
        data_dir=tmp_path / "data",
        alerts={"outputs": {"hook": {"type": "webhook", "url": f"{hook.url}/alerts"}}},
    )
    res = cli("ingest", log, "--format", "nginx_combined", "--config", cfg)
    assert res.returncode == 0, res.stderr
    alerts = [
        json.loads(line)
        for line in cli(
            "alerts", "--since", "all", "--format", "json", "--config", cfg
        ).stdout.splitlines()
    ]
    sqli = [a for a in alerts if a["rule.name"] == "SQL Injection Keywords In Request"]
    assert len(sqli) == 1, alerts
    assert (sqli[0]["entity.type"], sqli[0]["entity.value"], sqli[0]["count"]) == (
        "ip",
        ATTACKER,
        3,
    )
    assert not [a for a in alerts if a["entity.value"] == "198.51.100.1"]
    # the webhook got the new alert once (ingest flushes outputs before it exits)
    [req] = hook.wait(1)
    sent = [a for a in req.json()["alerts"] if a["rule.name"] == sqli[0]["rule.name"]]
    assert [a["entity.value"] for a in sent] == [ATTACKER]
    # the flagged events are searchable by the rule that flagged them
    found = cli(
        "search", "_exists_:rule.name", "--since", "all", "--format", "json", "--config", cfg
    )
    assert {json.loads(x)["source.ip"] for x in found.stdout.splitlines()} == {ATTACKER}
