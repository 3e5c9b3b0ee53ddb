"""The LDA job keeps its ranked rows for the web UI (`store.state_connects`), over a real store."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from lightsoc.alerts.store import AlertStore
from lightsoc.cli import main
from lightsoc.config import Config
from lightsoc.demo_flows import flows_csv
from lightsoc.detect.ml import jobs
from lightsoc.runtime import open_stores
from lightsoc.store.state_connects import KEEP, ConnectsStore, as_result_row
from lightsoc.store.state_feedback import FeedbackStore

END = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def flow_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding six hours of the demo's NetFlow, ingested by the CLI."""
    tmp = tmp_path_factory.mktemp("connects")
    lines, _truth = flows_csv(
        random.Random("7:flows"), (END - timedelta(hours=6)).timestamp(), END.timestamp()
    )
    csv = tmp / "flows.csv"
    csv.write_bytes(b"".join(lines))
    data = tmp / "data"
    assert main(["ingest", str(csv), "--data-dir", str(data)]) == 0
    return data


def _lda_only(data: Path) -> tuple[jobs.MLJobs, object]:
    off = {"enabled": False}
    config = Config.model_validate(
        {"data_dir": str(data), "detect": {"ml": {"jobs": {"beacon": off, "tunnel": off}}}}
    )
    stores = open_stores(data, config)
    runner = jobs.from_config(config, stores.events, stores.state)
    assert runner is not None and [j.kind for j, _ in runner.jobs] == ["lda"]
    return runner, stores


def test_a_run_keeps_its_top_rows_with_their_words_and_window(flow_hours: Path) -> None:
    runner, stores = _lda_only(flow_hours)
    try:
        job, cfg = runner.jobs[0]
        run = runner.run_job(job, cfg, END)
        assert run.error is None and run.events > 1000
        store = ConnectsStore(stores.state)  # type: ignore[attr-defined]
        runs = store.runs()
        assert set(runs) == {"flow", "dns", "web"}
        flow = runs["flow"]
        assert flow.events == run.events and flow.ranked == run.events  # no allow list yet
        assert flow.window_end == END and flow.window_start == END - timedelta(hours=24)
        assert runs["dns"].events == 0 and store.count("dns") == 0  # no DNS in this store
        assert store.count("flow") == KEEP
        rows = store.rows("flow", limit=500)
        assert [r["rank"] for r in rows] == list(range(1, KEEP + 1))
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores) and 0.9 < rows[0]["suspicion"] <= 1.0
        top = rows[0]
        assert top["word_a"] and top["word_b"] and top["doc_a"] and top["doc_b"]
        assert {top["doc_a"], top["doc_b"]} == {top["source_ip"], top["destination_ip"]}
        assert top["ts"] is not None and top["transport"] and top["destination_port"] is not None
        assert top["detail"]["network.bytes"] >= 0
        # the alerts are still raised as before
        assert AlertStore(stores.state).find(rule_id="ml-lda-flow")  # type: ignore[attr-defined]

        # a stored row rated as `rate_row` takes it: the rating keeps its words
        feedback = FeedbackStore(stores.state)  # type: ignore[attr-defined]
        rid = feedback.rate_row("flow", as_result_row(top), 3, "ana")
        got = feedback.ratings("flow").filter(pl.col("id") == rid).to_dicts()[0]
        assert (got["doc_a"], got["word_a"], got["doc_b"], got["word_b"]) == (
            top["doc_a"],
            top["word_a"],
            top["doc_b"],
            top["word_b"],
        )
        assert got["hour"] == top["ts"].hour and got["destination_port"] == top["destination_port"]
        assert store.ratings_for("flow", rows)[top["id"]]["rating"] == 3
        # an allowed pair is marked on the rows it covers
        feedback.allow(top["source_ip"], top["destination_ip"], record_type="flow")
        assert top["id"] in store.allowed_for("flow", rows)

        # the next run replaces the stored one: the allowed pair is gone from it
        job, cfg = runner.jobs[0]
        again = runner.run_job(job, cfg, END)
        assert again.error is None
        pair = {top["source_ip"], top["destination_ip"]}
        rows2 = store.rows("flow", limit=500)
        assert store.count("flow") == len(rows2) <= KEEP
        assert all({r["source_ip"], r["destination_ip"]} != pair for r in rows2)
        assert store.runs()["flow"].ranked < run.events
    finally:
        stores.close()  # type: ignore[attr-defined]


def test_keeping_the_rows_failing_does_not_stop_the_alerts(
    flow_hours: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: object, **_k: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ConnectsStore, "save_run", broken)
    runner, stores = _lda_only(flow_hours)
    try:
        job, cfg = runner.jobs[0]
        run = runner.run_job(job, cfg, END)
        assert run.error is None and run.candidates > 0
    finally:
        stores.close()  # type: ignore[attr-defined]
