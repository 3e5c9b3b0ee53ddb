"""Scheduled window models over a real store: the demo day's NetFlow, ingested by the CLI."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lightsoc.alerts.store import AlertStore
from lightsoc.cli import main
from lightsoc.config import Config
from lightsoc.demo_flows import FlowTruth, flows_csv
from lightsoc.detect.ml import jobs
from lightsoc.runtime import open_stores

END = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def flow_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FlowTruth]:
    """A data directory holding the demo's day of NetFlow (nfdump CSV through `lightsoc ingest`)."""
    tmp = tmp_path_factory.mktemp("mljobs")
    lines, truth = flows_csv(
        random.Random("7:flows"), (END - timedelta(days=1)).timestamp(), END.timestamp()
    )
    csv = tmp / "flows.csv"
    csv.write_bytes(b"".join(lines))
    data = tmp / "data"
    assert main(["ingest", str(csv), "--data-dir", str(data)]) == 0
    return data, truth


def _runner(data: Path, **ml: object) -> tuple[jobs.MLJobs, AlertStore, object]:
    config = Config.model_validate({"data_dir": str(data), "detect": {"ml": ml}})
    stores = open_stores(data, config)
    runner = jobs.from_config(config, stores.events, stores.state)
    assert runner is not None
    return runner, AlertStore(stores.state), stores


def test_beacon_job_alerts_on_the_injected_beacon_once_per_day(flow_day) -> None:  # noqa: ANN001
    data, truth = flow_day
    runner, alerts, stores = _runner(
        data, jobs={"tunnel": {"enabled": False}, "lda": {"enabled": False}}
    )
    try:
        [run] = runner.run_due(now=END)
        assert run.kind == "beacon" and run.error is None and run.events > 10_000
        found = alerts.find(rule_id="ml-beaconing")
        assert [a.entity_value for a in found] == [truth.beacon_host]
        beacon = found[0]
        assert "ml" in beacon.tags and truth.beacon_ip in beacon.description
        assert beacon.score is not None and beacon.score >= 80
        # not due again before its interval (1 h by default) ...
        assert runner.run_due(now=END + timedelta(minutes=30)) == []
        # ... and a later run over the same day updates the alert without counting twice
        [again] = runner.run_due(now=END + timedelta(hours=1))
        assert again.error is None and again.new == 0
        after = alerts.find(rule_id="ml-beaconing")
        assert len(after) == 1 and after[0].count <= beacon.count
    finally:
        stores.close()


def test_lda_job_lists_the_days_rarest_connects_as_low_alerts(flow_day) -> None:  # noqa: ANN001
    data, truth = flow_day
    runner, alerts, stores = _runner(
        data, jobs={"beacon": {"enabled": False}, "tunnel": {"enabled": False}, "lda": {"top": 50}}
    )
    try:
        [run] = runner.run_due(now=END)
        assert run.kind == "lda" and run.error is None
        found = alerts.find(rule_id="ml-lda-flow", limit=500)
        # the day's 50 rarest distinct connections (IP pairs), merged per client IP
        assert 1 <= len(found) <= 50 and run.candidates == 50
        assert all(a.severity == "low" and "lda" in a.tags for a in found)
    finally:
        stores.close()


def test_the_last_run_survives_a_restart_and_jobs_can_be_turned_off(flow_day) -> None:  # noqa: ANN001
    data, _ = flow_day
    runner, _, stores = _runner(data)
    try:
        runs = runner.run_due(now=END + timedelta(days=2))
        assert {r.kind for r in runs} == {"beacon", "tunnel", "lda"}
        assert all(r.error is None for r in runs)
    finally:
        stores.close()
    restarted, _, stores = _runner(data)
    try:
        # 10 minutes later: only the tunnelling job (every 10 minutes) is due again
        later = restarted.run_due(now=END + timedelta(days=2, minutes=10))
        assert [r.kind for r in later] == ["tunnel"]
    finally:
        stores.close()
    config = Config.model_validate(
        {
            "data_dir": str(data),
            "detect": {
                "ml": {"jobs": {k: {"enabled": False} for k in ("beacon", "tunnel", "lda")}}
            },
        }
    )
    stores = open_stores(data, config)
    try:
        assert jobs.from_config(config, stores.events, stores.state) is None
    finally:
        stores.close()


def test_a_failing_job_is_reported_and_does_not_advance(flow_day, monkeypatch) -> None:  # noqa: ANN001
    data, _ = flow_day
    runner, _, stores = _runner(
        data, jobs={"tunnel": {"enabled": False}, "lda": {"enabled": False}}
    )

    def broken(*_a: object) -> list:
        raise RuntimeError("model exploded")

    try:
        job, cfg = runner.jobs[0]
        runner.jobs = [(jobs.WindowJob(job.kind, job.query, job.fields, broken), cfg)]
        far = END + timedelta(days=3)
        [run] = runner.run_due(now=far)
        assert run.error == "RuntimeError: model exploded"
        assert runner.run_due(now=far + timedelta(minutes=1))[0].error  # still due: retried
    finally:
        stores.close()


def test_beacon_candidates_on_nothing() -> None:
    import polars as pl

    assert jobs.beacon_candidates(pl.DataFrame(), END - timedelta(days=1), END, None) == []


def test_tunnel_job_names_the_iodine_client(tmp_path: Path) -> None:
    """iodine's capture through `lightsoc ingest`, then the scheduled tunnelling job."""
    from lightsoc.detect.ml import tunnel

    pcap = Path(__file__).resolve().parents[4] / "shared/data/dns/tunnel/iodine_elastic.pcap"
    data = tmp_path / "data"
    assert main(["ingest", str(pcap), "--data-dir", str(data)]) == 0
    expected = tunnel.score_window(tunnel.read_capture(pcap)).filter("is_tunnel")
    assert expected.height >= 1
    runner, alerts, stores = _runner(
        data, jobs={"beacon": {"enabled": False}, "lda": {"enabled": False}}
    )
    try:
        capture_end = datetime(2010, 8, 21, 2, 11, 5, tzinfo=UTC)
        runs = {r.kind: r for r in runner.run_due(now=capture_end + timedelta(minutes=5))}
        assert runs["tunnel"].error is None and runs["tunnel"].events == 222
        found = alerts.find(rule_id="ml-dns-tunnelling")
        assert {a.entity_value for a in found} == set(expected["source.ip"].to_list())
        assert all("pirate.sea" in a.description and "ml" in a.tags for a in found)
        # the next run 10 minutes later reads the same hour again: no new alert, no recount
        again = runner.run_due(now=capture_end + timedelta(minutes=15))
        assert [r.kind for r in again] == ["tunnel"] and again[0].new == 0
        assert [a.count for a in alerts.find(rule_id="ml-dns-tunnelling")] == [
            a.count for a in found
        ]
    finally:
        stores.close()
