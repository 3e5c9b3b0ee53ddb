"""Correlation rules over a real DuckDB store filled by the real pipeline (`ingest`).

Log lines are generated sshd/nginx/dovecot lines with explicit timestamps, so
each test knows exactly which windows must fire. Windows are epoch-aligned
tumbling windows of the rule's timespan (see `correlation_eval`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lightsoc.alerts.store import AlertStore
from lightsoc.config import load_config
from lightsoc.detect.correlation import CorrelationRule, load_correlations
from lightsoc.detect.correlation_eval import evaluate, fetch, run_range, window_start
from lightsoc.ingest import ingest
from lightsoc.runtime import Stores, open_stores

REPO_RULES = Path(__file__).resolve().parents[2] / "rules"
CORR = REPO_RULES / "correlation"
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
BRUTE = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c11"
SPRAY = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c12"
AFTER = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c13"
IMAP = "6f1c2a70-3d5e-4b8a-9c1d-2e7f0a1b3c14"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def ssh_fail(t: datetime, ip: str, user: str = "root", port: int = 4000) -> str:
    return f"{_iso(t)} web1 sshd[100]: Failed password for {user} from {ip} port {port} ssh2"


def ssh_invalid(t: datetime, ip: str, user: str) -> list[str]:
    """An attempt for a user that does not exist: a notice, then the failure (counted once)."""
    return [
        f"{_iso(t)} web1 sshd[100]: Invalid user {user} from {ip} port 4100",
        f"{_iso(t)} web1 sshd[100]: Failed password for invalid user {user} from {ip} port 4100 ssh2",
    ]


def ssh_ok(t: datetime, ip: str, user: str = "bob") -> str:
    return f"{_iso(t)} web1 sshd[100]: Accepted password for {user} from {ip} port 4200 ssh2"


def imap_fail(t: datetime, ip: str, user: str = "alice") -> str:
    return (
        f"{_iso(t)} mail1 dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): "
        f"user=<{user}>, method=PLAIN, rip={ip}, lip=10.0.0.1, TLS, session=<x{t:%M%S}>"
    )


def web_hit(t: datetime, ip: str, path: str) -> str:
    stamp = t.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" 404 5 "-" "curl/8.0"'


class Env:
    """A data directory with stores and a config whose rules are `rules`."""

    def __init__(self, root: Path, rules: list[Path]) -> None:
        self.root = root
        cfg = root / "lightsoc.yml"
        listed = ", ".join(f'"{p}"' for p in rules)
        cfg.write_text(f"data_dir: {root / 'data'}\ndetect:\n  rules: [{listed}]\n")
        self.config = load_config(cfg)
        self.stores: Stores = open_stores(self.config.data_dir, self.config)
        self.files = 0

    def ingest(self, lines: list[str], name: str | None = None) -> dict:
        self.files += 1
        path = self.root / (name or f"in{self.files}.log")
        path.write_text("\n".join(lines) + "\n")
        return ingest(self.config, self.stores, [path]).as_dict()

    @property
    def alerts(self) -> AlertStore:
        return AlertStore(self.stores.state)

    def close(self) -> None:
        self.stores.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    empty = tmp_path / "no-rules"
    empty.mkdir()
    e = Env(tmp_path, [empty])  # no rules: the ingest hook stays out of these tests
    yield e
    e.close()


def rules_of(*paths: Path) -> dict[str, CorrelationRule]:
    loaded = load_correlations(paths)
    assert not loaded.failures, loaded.failures
    return {r.id: r for r in loaded.rules}


def fired(env: Env, rule: CorrelationRule, start: datetime, end: datetime) -> list[tuple]:
    """(entity, window start, count) of each window that fired."""
    events = fetch(env.stores.events, [rule], start, end)
    return [
        (c.entity_value, c.window[1], c.count)  # type: ignore[index]
        for c in evaluate(rule, events, start, end)
    ]


def test_builtin_rules_load() -> None:
    rules = rules_of(CORR)
    assert {r.type for r in rules.values()} == {"event_count", "value_count", "temporal_ordered"}
    brute = rules[BRUTE]
    assert brute.group_by == ["source.ip"] and brute.timespan == timedelta(minutes=5)
    assert (brute.op, brute.threshold, brute.level) == ("gte", 10, "high")


def test_event_count_fires_exactly_where_expected(env: Env) -> None:
    brute = rules_of(CORR)[BRUTE]
    lines = [ssh_fail(at(1 + i * 0.1), "203.0.113.5", port=4000 + i) for i in range(12)]
    lines += [ssh_fail(at(1 + i * 0.1), "203.0.113.9") for i in range(9)]  # one short
    # 10 failures straddling 10:05 (5 + 5): tumbling windows split them, nothing fires
    lines += [ssh_fail(at(4.5 + i * 0.1), "203.0.113.10") for i in range(10)]
    lines += [ssh_ok(at(2), "203.0.113.9")]  # successes are not counted
    # attempts for invalid users count once each (not the notice too): 10 at 10:20, 9 at 10:30
    lines += [x for i in range(10) for x in ssh_invalid(at(20 + i * 0.05), "198.51.100.3", f"u{i}")]
    lines += [x for i in range(9) for x in ssh_invalid(at(30 + i * 0.05), "198.51.100.4", f"u{i}")]
    env.ingest(lines)
    got = fired(env, brute, at(0), at(60))
    assert got == [
        ("203.0.113.5", at(0).isoformat(), 12),
        ("198.51.100.3", at(20).isoformat(), 10),
    ]


def test_value_count_distinct_users(env: Env) -> None:
    spray = rules_of(CORR)[SPRAY]
    lines = [ssh_fail(at(1 + i * 0.2), "192.0.2.1", user=f"user{i}") for i in range(5)]
    # many attempts, only 4 distinct users: not spraying
    lines += [ssh_fail(at(1 + i * 0.1), "192.0.2.2", user=f"user{i % 4}") for i in range(30)]
    env.ingest(lines)
    assert fired(env, spray, at(0), at(30)) == [("192.0.2.1", at(0).isoformat(), 5)]


def test_temporal_ordered_needs_the_order(env: Env) -> None:
    after = rules_of(CORR)[AFTER]
    lines = [
        ssh_fail(at(1), "192.0.2.10"),
        ssh_ok(at(3), "192.0.2.10"),  # failure then success: fires
        ssh_ok(at(1), "192.0.2.11"),
        ssh_fail(at(3), "192.0.2.11"),  # success then failure: does not
        ssh_ok(at(2), "192.0.2.12"),  # success alone: does not
        ssh_fail(at(8), "192.0.2.13"),
        ssh_ok(at(12), "192.0.2.13"),  # in the next 10m window: does not
    ]
    env.ingest(lines)
    assert fired(env, after, at(0), at(30)) == [("192.0.2.10", at(0).isoformat(), 2)]


CUSTOM = """
title: Sensitive File Probe
name: web_probe
id: 0b0b0b0b-0000-4000-8000-000000000001
logsource:
    category: webserver
detection:
    selection:
        cs-uri-query|contains: /etc/passwd
    condition: selection
level: low
---
title: SSH Failure
name: ssh_fail
id: 0b0b0b0b-0000-4000-8000-000000000002
logsource:
    product: linux
    service: sshd
detection:
    selection:
        event.outcome: failure
    condition: selection
level: low
---
title: IMAP Failure
name: imap_fail
id: 0b0b0b0b-0000-4000-8000-000000000003
logsource:
    product: linux
detection:
    selection:
        event.dataset: dovecot
        event.outcome: failure
    condition: selection
level: low
---
title: Web Probe And SSH Attempts From One Address
id: 0b0b0b0b-0000-4000-8000-000000000011
correlation:
    type: temporal
    rules: [web_probe, ssh_fail]
    group-by: [attacker]
    aliases:
        attacker:
            web_probe: c-ip
            ssh_fail: source.ip
    timespan: 15m
level: critical
---
title: SSH Failures Per Source And User
id: 0b0b0b0b-0000-4000-8000-000000000012
correlation:
    type: event_count
    rules: ssh_fail
    group-by: [source.ip, user.name]
    timespan: 5m
    condition: {gte: 3}
level: medium
---
title: Quiet Window
id: 0b0b0b0b-0000-4000-8000-000000000013
correlation:
    type: event_count
    rules: ssh_fail
    group-by: [source.ip]
    timespan: 5m
    condition: {lt: 2}
level: low
---
title: SSH Without IMAP
id: 0b0b0b0b-0000-4000-8000-000000000014
correlation:
    type: temporal
    rules: [ssh_fail, imap_fail]
    group-by: [source.ip]
    timespan: 10m
    condition: ssh_fail and not imap_fail
level: low
---
title: Port Sum
id: 0b0b0b0b-0000-4000-8000-000000000015
correlation:
    type: value_sum
    rules: ssh_fail
    group-by: [source.ip]
    timespan: 5m
    condition: {gt: 9000, field: source.port}
level: low
"""


@pytest.fixture
def custom(tmp_path: Path) -> dict[str, CorrelationRule]:
    d = tmp_path / "custom"
    d.mkdir()
    (d / "custom.yml").write_text(CUSTOM)
    return {r.title: r for r in rules_of(d).values()}


def test_temporal_with_aliases_across_log_sources(env: Env, custom: dict) -> None:
    rule = custom["Web Probe And SSH Attempts From One Address"]
    assert [r.group for r in rule.refs] == [{"attacker": "source.ip"}, {"attacker": "source.ip"}]
    lines = [
        web_hit(at(2), "203.0.113.50", "/../../etc/passwd"),
        web_hit(at(2), "203.0.113.51", "/../../etc/passwd"),  # no ssh from .51
        web_hit(at(3), "203.0.113.52", "/index.html"),  # not a probe
    ]
    env.ingest(lines, "access.log")
    env.ingest([ssh_fail(at(5), "203.0.113.50"), ssh_fail(at(5), "203.0.113.52")], "auth.log")
    assert fired(env, rule, at(0), at(30)) == [("203.0.113.50", at(0).isoformat(), 2)]


def test_group_by_two_fields(env: Env, custom: dict) -> None:
    rule = custom["SSH Failures Per Source And User"]
    lines = [ssh_fail(at(1 + i * 0.1), "192.0.2.30", user="root") for i in range(3)]
    lines += [ssh_fail(at(1 + i * 0.1), "192.0.2.30", user=f"x{i}") for i in range(3)]
    env.ingest(lines)
    events = fetch(env.stores.events, [rule], at(0), at(10))
    cands = evaluate(rule, events, at(0), at(10))
    assert [(c.entity_type, c.entity_value, c.count) for c in cands] == [("ip", "192.0.2.30", 3)]
    assert cands[0].window[0] == "source.ip=192.0.2.30,user.name=root"  # type: ignore[index]


def test_non_monotone_condition_waits_for_the_window_to_end(env: Env, custom: dict) -> None:
    quiet = custom["Quiet Window"]
    assert not quiet.monotone
    env.ingest(
        [
            ssh_fail(at(1), "192.0.2.40"),
            ssh_fail(at(1), "192.0.2.41"),
            ssh_fail(at(2), "192.0.2.41"),
        ]
    )
    assert fired(env, quiet, at(0), at(3)) == []  # the 10:00-10:05 window is still open
    assert fired(env, quiet, at(0), at(5)) == [("192.0.2.40", at(0).isoformat(), 1)]


def test_extended_temporal_condition_and_value_sum(env: Env, custom: dict) -> None:
    env.ingest(
        [
            ssh_fail(at(1), "192.0.2.60", port=5000),
            ssh_fail(at(1), "192.0.2.60", port=5001),  # port sum 10001 > 9000
            ssh_fail(at(1), "192.0.2.61", port=4000),
            imap_fail(at(2), "192.0.2.61"),
        ]
    )
    without = custom["SSH Without IMAP"]
    assert [e for e, _, _ in fired(env, without, at(0), at(10))] == ["192.0.2.60"]
    assert [e for e, _, _ in fired(env, custom["Port Sum"], at(0), at(10))] == ["192.0.2.60"]


def test_rerun_never_duplicates(env: Env) -> None:
    rules = list(rules_of(CORR).values())
    lines = [ssh_fail(at(1 + i * 0.1), "203.0.113.5", port=4000 + i) for i in range(12)]
    lines += [imap_fail(at(30 + i * 0.1), "192.0.2.77") for i in range(10)]
    env.ingest(lines)
    first = run_range(env.stores.events, env.alerts, rules, at(0), at(60))
    assert (first.windows, first.new, first.updated) == (2, 2, 0)
    before = [(a.rule_id, a.entity_value, a.count) for a in env.alerts.find(limit=50)]
    assert sorted(before) == [(BRUTE, "203.0.113.5", 12), (IMAP, "192.0.2.77", 10)]
    # a wider rerun, a narrower one, one cut into small steps: nothing new
    for start, end, step in (
        (at(-60), at(120), timedelta(hours=6)),
        (at(0), at(3), timedelta(hours=1)),
        (at(0), at(60), timedelta(minutes=7)),
    ):
        again = run_range(env.stores.events, env.alerts, rules, start, end, step)
        assert (again.new, again.updated) == (0, 0)
    after = [(a.rule_id, a.entity_value, a.count) for a in env.alerts.find(limit=50)]
    assert sorted(after) == sorted(before) and env.alerts.count() == 2


def test_busy_steps_are_split_with_the_same_result(env: Env, monkeypatch) -> None:
    import lightsoc.detect.correlation_eval as ce

    rules = list(rules_of(CORR).values())
    lines = [ssh_fail(at(1 + i * 0.1), "203.0.113.5", port=4000 + i) for i in range(12)]
    lines += [imap_fail(at(30 + i * 0.1), "192.0.2.77") for i in range(10)]
    env.ingest(lines)
    reads: list[int] = []
    fetch = ce.fetch

    def counted(*args, **kw):  # noqa: ANN002, ANN003
        events = fetch(*args, **kw)
        reads.append(events.height)
        return events

    # at most 4 events per step: the 1 h step is halved down to 1 minute (never below), so
    # the two busy minutes of sshd failures and the IMAP minute are read one by one
    monkeypatch.setattr(ce, "MAX_STEP_EVENTS", 4)
    monkeypatch.setattr(ce, "MIN_STEP", timedelta(minutes=1))
    monkeypatch.setattr(ce, "fetch", counted)
    res = run_range(env.stores.events, env.alerts, rules, at(0), at(60), timedelta(hours=1))
    # a window cut by a step is raised from its first part, then completed by the next step
    assert res.new == 2 and len(reads) == 3
    found = sorted((a.rule_id, a.entity_value, a.count) for a in env.alerts.find(limit=50))
    assert found == [(BRUTE, "203.0.113.5", 12), (IMAP, "192.0.2.77", 10)]


def test_open_window_grows_into_the_same_alert(env: Env) -> None:
    brute = rules_of(CORR)[BRUTE]
    env.ingest([ssh_fail(at(1 + i * 0.1), "203.0.113.5", port=4000 + i) for i in range(10)])
    res = run_range(env.stores.events, env.alerts, [brute], at(0), at(2.5))
    assert res.new == 1
    env.ingest([ssh_fail(at(3 + i * 0.1), "203.0.113.5", port=5000 + i) for i in range(5)])
    res = run_range(env.stores.events, env.alerts, [brute], at(0), at(10))
    assert (res.new, res.updated) == (0, 1)
    (alert,) = env.alerts.find()
    assert alert.count == 15 and alert.first_seen == at(1) and alert.last_seen == at(3.4)


def test_window_start_is_epoch_aligned() -> None:
    span = timedelta(minutes=5)
    assert window_start(datetime(2026, 11, 29, 10, 4, 59, tzinfo=UTC), span) == at(0)
    assert window_start(at(5), span) == at(5)
    assert window_start(datetime(2026, 11, 29, 10, 7, tzinfo=UTC), timedelta(hours=1)) == at(0)


def test_bad_correlation_rules_fail_with_the_rule_named(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        CUSTOM.split("---")[1]  # ssh_fail only
        + "---\ntitle: Missing Ref\ncorrelation:\n  type: event_count\n  rules: nope\n"
        "  timespan: 5m\n  condition: {gte: 2}\n"
        + "---\ntitle: Bad Field\ncorrelation:\n  type: value_count\n  rules: ssh_fail\n"
        "  timespan: 5m\n  group-by: [no_such_field]\n  condition: {gte: 2, field: user.name}\n"
    )
    loaded = load_correlations([tmp_path])
    assert not loaded.rules
    msgs = sorted(str(f) for f in loaded.failures)
    assert "Bad Field" in msgs[0] and "no_such_field" in msgs[0]
    assert "Missing Ref" in msgs[1] and "nope" in msgs[1]
