"""`lightsoc run --role schedule`: one active scheduler, standbys take over.

Two scheduler processes share a PostgreSQL state store (the lease and the
alerts) and a data directory (the embedded event store, opened only by the
active one). The active one is killed with SIGKILL: the standby must take
over within the lease, and the brute-force alert both of them evaluate must
exist once.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lightsoc import roles
from lightsoc.alerts.store import AlertStore
from lightsoc.store.state import StateStore
from lightsoc.store.state_cluster import Leases
from lightsoc.store.state_detect import WatermarkStore
from tests.detect.test_correlation import BRUTE, CORR, ssh_fail
from tests.helpers import cli, wait_until
from tests.roles.procs import RoleProcess

ATTACKER = "203.0.113.9"


def _config(path: Path, data_dir: Path, state_url: str, rules: list[Path]) -> Path:
    listed = ", ".join(f'"{p}"' for p in rules)
    path.write_text(
        f"data_dir: {data_dir}\n"
        f"detect:\n  rules: [{listed}]\n  interval: 2s\n"
        f"store:\n  state: {json.dumps(state_url)}\n"
    )
    return path


def _status(config: Path) -> list[dict]:
    res = cli("status", "--config", config, "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_the_standby_takes_over_within_the_lease_and_alerts_once(
    tmp_path: Path, pg_url: str
) -> None:
    data_dir = tmp_path / "data"
    no_rules = tmp_path / "no-rules"
    no_rules.mkdir()
    # 12 failed logins from one address a few minutes ago, stored without rules
    # (so the ingest itself raises nothing)
    now = datetime.now(UTC).replace(microsecond=0)
    log = tmp_path / "auth.log"
    log.write_text(
        "\n".join(ssh_fail(now - timedelta(minutes=3, seconds=-i), ATTACKER) for i in range(12))
        + "\n"
    )
    ingest_cfg = _config(tmp_path / "ingest.yml", data_dir, pg_url, [no_rules])
    res = cli("ingest", "--config", ingest_cfg, "--format", "syslog", log)
    assert res.returncode == 0, res.stderr
    cfg = _config(tmp_path / "lightsoc.yml", data_dir, pg_url, [CORR])

    state = StateStore(pg_url)
    alerts = AlertStore(state)
    first = RoleProcess("schedule", cfg).start()
    second = RoleProcess("schedule", cfg)
    try:
        first.wait_for(": active")
        second.start().wait_for("waiting for the 'scheduler' lease")

        def brute_alerts() -> list:
            return [a for a in alerts.find(limit=100) if a.rule_id == BRUTE]

        got = wait_until(brute_alerts, 60, "the brute-force alert")
        assert [a.entity_value for a in got] == [ATTACKER]
        states = {(r["pid"], r["state"]) for r in _status(cfg) if r["role"] == "schedule"}
        assert states == {(first.pid, "active"), (second.pid, "standby")}

        first.kill()
        killed = time.monotonic()
        second.wait_for(": active", timeout=roles.LEASE_SECONDS + 15)
        took = time.monotonic() - killed
        assert took <= roles.LEASE_SECONDS + roles.LEASE_SECONDS / 3 + 5, took
        assert (
            Leases(state).holder(roles.SCHEDULER_LEASE)
            == f"{socket.gethostname()}:{second.pid}:schedule"
        )

        # the new scheduler evaluates the same window again; the alert is not raised twice
        taken_over = datetime.now(UTC)
        wait_until(
            lambda: WatermarkStore(state).get_all().get(BRUTE, taken_over) > taken_over,
            60,
            "the standby to run the brute-force rule",
        )
        again = brute_alerts()
        assert [a.entity_value for a in again] == [ATTACKER]
        assert again[0].id == got[0].id

        rows = {r["pid"]: r["state"] for r in _status(cfg) if r["role"] == "schedule"}
        assert rows[second.pid] == "active"
        wait_until(
            lambda: {r["pid"]: r["state"] for r in _status(cfg)}.get(first.pid) == "down",
            3 * roles.HEARTBEAT_SECONDS + 10,
            "the killed scheduler to show as down",
        )
        assert second.stop() == 0
        assert Leases(state).holder(roles.SCHEDULER_LEASE) is None  # released on stop
        assert second.pid not in {r["pid"] for r in _status(cfg)}
    finally:
        first.ensure_stopped()
        second.ensure_stopped()
        state.close()
