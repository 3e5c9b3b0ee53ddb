"""The correlation scheduler, the ingest hook and `lightsoc detect`, end to end.

Times are always passed explicitly (`run_once(until)`); nothing waits on the clock.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lightsoc.alerts.store import AlertStore
from lightsoc.config import load_config
from lightsoc.detect.correlation import load_correlations
from lightsoc.detect.correlation_eval import evaluate, fetch, window_start
from lightsoc.detect.scheduler import CorrelationScheduler, from_config, start_background
from lightsoc.store.state import StateStore
from lightsoc.store.state_detect import WatermarkStore
from tests.alerts.receivers import HttpReceiver, Reply
from tests.cli_helpers import in_process
from tests.detect.test_correlation import (
    BRUTE,
    CORR,
    IMAP,
    SPRAY,
    Env,
    at,
    imap_fail,
    ssh_fail,
)

LOGHUB_SSH = Path("/work/shared/data/auth/loghub/OpenSSH_2k.log")
# every correlation rule in the built-in pack's correlation directory
N_CORR = len(load_correlations([CORR]).rules)


@pytest.fixture
def env(tmp_path: Path):
    empty = tmp_path / "no-rules"
    empty.mkdir()
    e = Env(tmp_path, [empty])
    yield e
    e.close()


def scheduler(env: Env, **kw) -> CorrelationScheduler:
    rules = load_correlations([CORR]).rules
    return CorrelationScheduler(env.stores.events, env.stores.state, rules, **kw)


def alert_counts(env: Env) -> list[tuple[str, str, int]]:
    return sorted((a.rule_id, a.entity_value, a.count) for a in env.alerts.find(limit=100))


def test_default_lookback_and_validation(env: Env) -> None:
    s = scheduler(env)
    assert s.interval == timedelta(minutes=1)
    assert s.lookback == timedelta(minutes=12)  # 2 x 1m + the longest timespan (10m)
    with pytest.raises(ValueError):
        scheduler(env, interval=timedelta(minutes=5), lookback=timedelta(minutes=1))


def test_interval_lookback_and_suppression_come_from_the_config(env: Env) -> None:
    cfg = env.root / "tuned.yml"
    cfg.write_text(
        f"data_dir: {env.config.data_dir}\ndetect:\n  rules: [{CORR}]\n"
        "  interval: 5m\n  lookback: 1h\nalerts:\n  suppression: 15m\n"
    )
    s = from_config(load_config(cfg), env.config.data_dir, env.stores)
    assert s is not None and len(s.rules) == N_CORR
    assert (s.interval, s.lookback) == (timedelta(minutes=5), timedelta(hours=1))
    assert s.alerts.suppression == timedelta(minutes=15)


def test_overlapping_runs_never_double_alert(env: Env) -> None:
    s = scheduler(env)
    # the burst arrives in two parts while the scheduler ticks every minute
    env.ingest([ssh_fail(at(1 + i * 0.1), "203.0.113.5", port=4000 + i) for i in range(6)])
    for minute in (1, 2, 3):
        res = s.run_once(at(minute))
        assert (res.new, res.updated) == (0, 0)
    env.ingest([ssh_fail(at(3 + i * 0.1), "203.0.113.5", port=5000 + i) for i in range(6)])
    res = s.run_once(at(4))
    assert (res.new, res.updated) == (1, 0)
    for minute in range(5, 20):  # every later run still sees the window: nothing changes
        res = s.run_once(at(minute))
        assert (res.new, res.updated) == (0, 0)
    assert alert_counts(env) == [(BRUTE, "203.0.113.5", 12)]
    marks = WatermarkStore(env.stores.state).get_all()
    assert set(marks.values()) == {at(19)} and len(marks) == N_CORR


def test_restart_resumes_from_the_watermark(env: Env) -> None:
    first = scheduler(env)
    first.run_once(at(0))
    # while "down" from 10:00 to 13:00, a burst happened at 10:30 (older than the lookback)
    env.ingest([imap_fail(at(30 + i * 0.1), "192.0.2.77") for i in range(10)])
    (env.root / "other").mkdir()
    fresh_state = StateStore.for_data_dir(env.root / "other")
    try:  # a scheduler without a watermark only looks back 12 minutes: it misses it
        blind = CorrelationScheduler(env.stores.events, fresh_state, first.rules)
        assert blind.run_once(at(180)).new == 0
    finally:
        fresh_state.close()
    restarted = scheduler(env, step=timedelta(minutes=20))  # catches up in 20-minute steps
    res = restarted.run_once(at(180))
    assert res.new == 1 and not res.errors
    assert alert_counts(env) == [(IMAP, "192.0.2.77", 10)]
    assert set(WatermarkStore(env.stores.state).get_all().values()) == {at(180)}
    assert restarted.run_once(at(181)).new == 0


def test_background_thread_uses_the_given_stores(env: Env) -> None:
    # a burst in a whole 5-minute window that ended within the default lookback (12m)
    now = datetime.now(UTC)
    ws = window_start(now - timedelta(minutes=6), timedelta(minutes=5))
    env.ingest([ssh_fail(ws + timedelta(seconds=i), "198.51.100.99", port=i) for i in range(10)])
    assert env.alerts.count() == 0  # this env's ingest has no rules
    cfg = env.root / "with-rules.yml"
    receiver = HttpReceiver(Reply(200, {"ok": True}))
    try:
        cfg.write_text(
            f"data_dir: {env.config.data_dir}\ndetect:\n  rules: [{CORR}]\n"
            f"alerts:\n  outputs:\n    hook: {{type: webhook, url: '{receiver.url}/in'}}\n"
        )
        stop = threading.Event()
        stop.set()  # one run, then the loop ends
        thread = start_background(load_config(cfg), env.config.data_dir, env.stores, stop)
        thread.join(60)
        assert not thread.is_alive()
        marks = WatermarkStore(env.stores.state).get_all()
        # the ML window jobs keep their last runs beside the rules' ("ml:beacon", ...)
        marks = {k: m for k, m in marks.items() if not k.startswith("ml:")}
        assert len(marks) == N_CORR and all(m >= now for m in marks.values())
        assert [a.entity_value for a in env.alerts.find(rule_id=BRUTE)] == ["198.51.100.99"]
        sent = receiver.wait(1)[0].json()["alerts"]
        assert [(a["rule.id"], a["entity.value"], a["count"]) for a in sent] == [
            (BRUTE, "198.51.100.99", 10)
        ]
    finally:
        receiver.close()


def test_ingest_hook_raises_alerts_for_the_imported_span(tmp_path: Path) -> None:
    env = Env(tmp_path, [CORR])
    try:
        lines = [ssh_fail(at(1 + i * 0.1), "203.0.113.5", user=f"u{i}") for i in range(12)]
        summary = env.ingest(lines, "auth.log")
        assert summary["correlation"]["alerts_new"] == 2  # brute force and spraying
        assert alert_counts(env) == [(BRUTE, "203.0.113.5", 12), (SPRAY, "203.0.113.5", 12)]
        again = env.ingest(lines, "auth.log")  # the same file again: stored nothing, raised nothing
        assert again["events"] == 0 and again["correlation"] == {}
    finally:
        env.close()


def test_clean_import_creates_no_state_store(tmp_path: Path) -> None:
    env = Env(tmp_path, [CORR])
    try:
        summary = env.ingest([ssh_fail(at(1), "203.0.113.5")])
        assert summary["correlation"]["windows"] == 0
        assert not (env.config.data_dir / "state.sqlite").exists()
    finally:
        env.close()


def _expected_loghub_windows(lines: list[str]) -> set[tuple[str, str]]:
    """Independently of lightsoc: (ip, 'Mon dd HH:MM' window start) with >= 10 failures."""
    pat = re.compile(
        r"^(\w{3} +\d+) (\d\d):(\d\d):\d\d \S+ sshd\[\d+\]: Failed \S+ for .* from (\S+)"
    )
    n: Counter[tuple[str, str]] = Counter()
    for line in lines:
        m = pat.match(line)
        if m:
            day, hh, mm, ip = m.groups()
            n[(ip, f"{' '.join(day.split())} {hh}:{int(mm) // 5 * 5:02d}")] += 1
    return {k for k, c in n.items() if c >= 10}


def test_real_openssh_log_brute_force_windows(env: Env) -> None:
    lines = LOGHUB_SSH.read_text().splitlines()
    env.ingest(lines, "OpenSSH_2k.log")
    rule = {r.id: r for r in load_correlations([CORR]).rules}[BRUTE]
    first = env.stores.events.search("", None, ["@timestamp"], 1, "asc").column(0)[0].as_py()
    last = env.stores.events.search("", None, ["@timestamp"], 1, "desc").column(0)[0].as_py()
    events = fetch(env.stores.events, [rule], first, last + timedelta(minutes=5))
    cands = evaluate(rule, events, first, last + timedelta(minutes=5))
    got = {
        (
            c.entity_value,
            f"{datetime.fromisoformat(c.window[1]):%b} "  # type: ignore[index]
            f"{datetime.fromisoformat(c.window[1]).day} {datetime.fromisoformat(c.window[1]):%H:%M}",
        )
        for c in cands
    }
    expected = _expected_loghub_windows(lines)
    assert len(expected) >= 3 and got == expected


def test_cli_detect_reruns_without_duplicates(tmp_path: Path, capsys) -> None:
    env = Env(tmp_path, [CORR])
    cfg = tmp_path / "lightsoc.yml"
    lines = [ssh_fail(at(1 + i * 0.1), "203.0.113.5", port=4000 + i) for i in range(12)]
    lines += [imap_fail(at(30 + i * 0.1), "192.0.2.77") for i in range(10)]
    (tmp_path / "auth.log").write_text("\n".join(lines) + "\n")
    env.close()
    code, out, err = in_process(capsys, "ingest", tmp_path / "auth.log", "--config", cfg, "--json")
    assert code == 0, err
    assert json.loads(out)["correlation"]["alerts_new"] == 2
    argv = ["detect", "--config", cfg, "--since", "2h", "--until", "2026-11-29T11:00:00Z"]
    code, out, err = in_process(capsys, *argv, "--format", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["rules"], summary["windows"], summary["alerts_new"]) == (N_CORR, 2, 0)
    assert summary["alerts_updated"] == 0
    code, out, err = in_process(capsys, *argv)
    assert code == 0 and f"{N_CORR} rule(s)" in out and "0 new alert(s), 0 updated" in out
    code, out, err = in_process(
        capsys, "alerts", "--config", cfg, "--since", "all", "--format", "json"
    )
    rows = [json.loads(x) for x in out.splitlines()]
    assert sorted((r["rule.id"], r["entity.value"], r["count"]) for r in rows) == [
        (BRUTE, "203.0.113.5", 12),
        (IMAP, "192.0.2.77", 10),
    ]
    # --rules: only these rules; a bad --until is a usage error
    code, out, err = in_process(capsys, *argv, "--rules", CORR / "lnx_auth_bruteforce.yml")
    assert code == 0 and "0 new alert(s)" in out
    code, out, err = in_process(capsys, "detect", "--config", cfg, "--until", "yesterday")
    assert code == 2 and "--until" in err


def test_cli_detect_on_an_empty_data_dir_is_an_error(tmp_path: Path, capsys) -> None:
    code, _, err = in_process(capsys, "detect", "--data-dir", tmp_path / "none")
    assert code == 1 and "no lightsoc data" in err


def test_alert_store_is_shared_not_copied(env: Env) -> None:
    s = scheduler(env, alerts=AlertStore(env.stores.state))
    env.ingest([ssh_fail(at(1 + i * 0.1), "203.0.113.5", port=4000 + i) for i in range(10)])
    assert s.run_once(at(6)).new == 1 and s.alerts.count() == 1
