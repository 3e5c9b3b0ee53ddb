"""Dispatcher against a real local webhook: severity filter, rate limit digests,
retries with backoff, a hanging receiver, counters, secrets and config errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lightsoc.alerts.outputs import Dispatcher, build_output, build_outputs
from lightsoc.config import EXAMPLE, AlertsConfig, OutputConfig, parse_config
from tests.alerts.receivers import HttpReceiver, Reply, wait_for

SECRET = "k3y-7c1d2a9e-very-secret"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


def alert(n: int = 1, severity: str = "high", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"alert-{n}",
        "rule.id": "ssh-brute-force",
        "rule.name": "SSH brute force",
        "severity": severity,
        "score": 70,
        "entity.type": "ip",
        "entity.value": f"203.0.113.{n}",
        "first_seen": "2024-05-01T10:00:00Z",
        "last_seen": "2024-05-01T10:05:00Z",
        "count": 12,
        "status": "open",
        "event_ids": [f"ev-{n}-1", f"ev-{n}-2"],
        **extra,
    }


@pytest.fixture
def server() -> Iterator[HttpReceiver]:
    r = HttpReceiver(Reply(200, {"errcode": 0, "errmsg": "ok"}))
    yield r
    r.close()


def wecom(server: HttpReceiver, **opts: Any) -> OutputConfig:
    return OutputConfig(type="wecom", url=f"{server.url}/cgi-bin/webhook/send", key=SECRET, **opts)


def test_min_severity_filters_per_output(server: HttpReceiver) -> None:
    low = build_output("all", wecom(server))
    high = build_output("high-only", wecom(server, min_severity="high"))
    with Dispatcher([low, high]) as d:
        d.notify([alert(1, "low"), alert(2, "critical"), alert(3, "medium")])
        assert d.flush(10)
        stats = d.stats()
    assert stats["all"]["sent"] == 3
    assert stats["high-only"]["sent"] == 1
    contents = [r.json()["markdown"]["content"] for r in server.requests]
    assert sorted(c.count("203.0.113.") for c in contents) == [1, 3]
    only_high = next(c for c in contents if c.count("203.0.113.") == 1)
    assert "203.0.113.2" in only_high


def test_rate_limit_folds_alerts_into_a_digest(server: HttpReceiver) -> None:
    out = build_output("w", wecom(server, rate_limit=1, rate_period=1.0))
    with Dispatcher([out]) as d:
        d.notify([alert(1)])
        server.wait(1)
        for n in range(2, 6):  # inside the window: held back, then one message
            d.notify([alert(n)])
        server.wait(2, timeout=10)
        assert d.flush(10)
        stats = d.stats()["w"]
    assert len(server.requests) == 2
    digest = server.requests[1].json()["markdown"]["content"]
    assert "4 alerts" in digest
    for n in range(2, 6):
        assert f"203.0.113.{n}" in digest
    assert stats["sent"] == 5
    assert stats["messages"] == 2
    assert stats["digests"] == 1
    assert stats["rate_limited"] == 4
    assert stats["dropped"] == 0


def test_retries_500_and_429_then_succeeds(server: HttpReceiver) -> None:
    server.respond(
        Reply(500, "oops"), Reply(429, "slow down", {"Retry-After": "0"}), Reply(503, "")
    )
    out = build_output("w", wecom(server, **FAST))
    with Dispatcher([out]) as d:
        d.notify([alert()])
        server.wait(4)
        assert d.flush(10)
        stats = d.stats()["w"]
    assert stats["retried"] == 3
    assert stats["sent"] == 1 and stats["failed"] == 0
    bodies = {r.body for r in server.requests}
    assert len(bodies) == 1  # the same message each time


def test_gives_up_after_max_attempts(server: HttpReceiver) -> None:
    server.default = Reply(502, "bad gateway")
    out = build_output("w", wecom(server, max_attempts=3, **FAST))
    with Dispatcher([out]) as d:
        d.notify([alert()])
        server.wait(3)
        assert d.flush(10)
        stats = d.stats()["w"]
    assert len(server.requests) == 3
    assert stats["failed"] == 1 and stats["retried"] == 2 and stats["sent"] == 0
    assert stats["last_error"] == "HTTP 502"


def test_service_error_code_is_not_retried(server: HttpReceiver) -> None:
    server.default = Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
    out = build_output("w", wecom(server, **FAST))
    with Dispatcher([out]) as d:
        d.notify([alert()])
        assert d.flush(10)
        stats = d.stats()["w"]
    assert len(server.requests) == 1
    assert stats["failed"] == 1 and stats["retried"] == 0
    assert "93000" in stats["last_error"]


def test_connection_refused_is_retried_and_counted() -> None:
    dead = HttpReceiver()
    url = dead.url
    dead.close()  # nothing listens there any more
    out = build_output("w", OutputConfig(type="wecom", url=url, key=SECRET, max_attempts=2, **FAST))
    with Dispatcher([out]) as d:
        d.notify([alert()])
        assert d.flush(10)
        stats = d.stats()["w"]
    assert stats["failed"] == 1 and stats["retried"] == 1
    assert stats["last_error"].startswith("ConnectError")


def test_hanging_webhook_never_blocks_notify(server: HttpReceiver) -> None:
    server.default = Reply(hang=True)
    out = build_output("w", wecom(server, timeout=30, queue_size=2))
    d = Dispatcher([out])
    try:
        d.notify([alert(0)])
        server.wait(1)  # the worker is now stuck in that request
        started = time.monotonic()
        for n in range(1, 11):
            d.notify([alert(n)])
        elapsed = time.monotonic() - started
        assert elapsed < 5  # generous: the point is that 10 calls did not wait 30 s each
        stats = wait_for(lambda: (s := d.stats()["w"])["dropped"] and s, what="drops")
        # two fit in the queue, the other eight are dropped and counted
        assert stats["dropped"] == 8
        assert stats["queued"] == 2
        assert stats["sent"] == 0
    finally:
        server.release.set()
        d.close(timeout=5)


def test_secrets_never_in_logs_errors_or_stats(
    server: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.default = Reply(500, f"upstream said key={SECRET}")
    dead = HttpReceiver()
    dead_url = dead.url
    dead.close()
    outs = [
        build_output("w", wecom(server, max_attempts=2, **FAST)),
        build_output(
            "d",
            OutputConfig(
                type="dingtalk",
                url=f"{dead_url}/robot/send?access_token={SECRET}",
                secret="SEC" + SECRET,
                max_attempts=2,
                **FAST,
            ),
        ),
        build_output(
            "h",
            OutputConfig(
                type="webhook",
                url=f"{server.url}/hook?token={SECRET}",
                headers={"Authorization": f"Bearer {SECRET}"},
                max_attempts=2,
                **FAST,
            ),
        ),
    ]
    with Dispatcher(outs) as d:
        d.notify([alert()])
        assert d.flush(15)
        stats = d.stats()
    assert all(s["failed"] == 1 for s in stats.values()), stats
    assert SECRET not in repr(stats)
    assert SECRET not in caplog.text
    assert "not sent after 2 attempt(s)" in caplog.text
    # the secret did reach the receiver where it belongs
    wecom_req = next(r for r in server.requests if r.path == "/cgi-bin/webhook/send")
    assert wecom_req.query["key"] == SECRET


def test_build_outputs_from_config_with_env_secret(
    server: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LSOC_TEST_WECOM_KEY", SECRET)
    text = f"""
alerts:
  outputs:
    ops-wecom:
      type: wecom
      url: {server.url}/cgi-bin/webhook/send
      key: ${{LSOC_TEST_WECOM_KEY}}
      min_severity: medium
"""
    config = parse_config(text)
    outputs = build_outputs(config.alerts)
    assert [o.id for o in outputs] == ["ops-wecom"]
    with Dispatcher(outputs) as d:
        d.notify([alert(1, "low"), alert(2, "high")])
        assert d.flush(10)
    assert server.requests[0].query == {"key": SECRET}
    assert "203.0.113.1" not in server.requests[0].json()["markdown"]["content"]


@pytest.mark.parametrize(
    ("cfg", "option"),
    [
        ({"type": "nosuch"}, "type"),
        ({"type": "wecom"}, "key"),
        ({"type": "wecom", "key": "k", "url": "ftp://x"}, "url"),
        ({"type": "wecom", "key": "k", "colour": "red"}, "colour"),
        ({"type": "wecom", "key": 5}, "key"),
        ({"type": "dingtalk"}, "access_token"),
        ({"type": "webhook"}, "url"),
        ({"type": "webhook", "url": "http://127.0.0.1/", "method": "GET"}, "method"),
        ({"type": "webhook", "url": "http://h/", "body": {"x": "{{ secret }}"}}, "body"),
        ({"type": "email", "from": "a@b", "to": "c@d"}, "host"),
        ({"type": "email", "host": "h", "from": "a@b", "to": ["nobody"]}, "to"),
        ({"type": "email", "host": "h", "from": "a@b", "to": "c@d", "security": "tls"}, "security"),
        ({"type": "email", "host": "h", "from": "a@b", "to": "c@d", "password": "p"}, "username"),
        ({"type": "wecom", "key": "k", "rate_limit": 0}, "rate_limit"),
        ({"type": "wecom", "key": "k", "max_attempts": "many"}, "max_attempts"),
    ],
)
def test_config_errors_name_output_and_option(cfg: dict[str, Any], option: str) -> None:
    config = AlertsConfig(outputs={"my-out": OutputConfig(**cfg)})
    with pytest.raises(ValueError) as exc:
        Dispatcher.from_config(config).close()
    message = str(exc.value)
    assert "'my-out'" in message
    assert f"'{option}'" in message


def test_the_documented_example_output_works(server: HttpReceiver) -> None:
    """DESIGN's example: `oncall: {type: wecom, url: "${WECOM_WEBHOOK}", min_severity: high}`."""
    hook = f"{server.url}/cgi-bin/webhook/send?key={SECRET}"
    config = parse_config(EXAMPLE, env={"WECOM_WEBHOOK": hook})
    with Dispatcher.from_config(config.alerts) as d:
        d.notify([alert(1, "medium"), alert(2, "critical")])
        assert d.flush(10)
        stats = d.stats()["oncall"]
    req = server.wait(1)[0]
    assert req.query == {"key": SECRET}
    assert "203.0.113.2" in req.json()["markdown"]["content"]
    assert "203.0.113.1" not in req.json()["markdown"]["content"]
    assert stats["sent"] == 1 and stats["type"] == "wecom"
    assert SECRET not in stats["target"] and "/cgi-bin/webhook/send" in stats["target"]


def test_total_retry_time_is_bounded(server: HttpReceiver) -> None:
    server.default = Reply(500, "down")
    out = build_output(
        "w",
        wecom(
            server, max_attempts=50, backoff_initial=0.05, backoff_max=0.2, retry_max_seconds=0.3
        ),
    )
    with Dispatcher([out]) as d:
        d.notify([alert()])
        assert d.flush(10)
        stats = d.stats()["w"]
    assert stats["failed"] == 1
    assert 2 <= len(server.requests) < 50  # stopped by retry_max_seconds, not max_attempts


def test_backoff_grows_with_jitter_and_honours_retry_after(server: HttpReceiver) -> None:
    out = build_output("w", wecom(server, backoff_initial=1, backoff_max=8))
    d = Dispatcher([out])
    try:
        worker = d._workers["w"]
        for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
            delays = {worker._backoff(attempt, None) for _ in range(50)}
            assert all(base / 2 <= x <= base for x in delays)
            assert len(delays) > 1  # jittered
        assert worker._backoff(1, 5.0) >= 5.0  # Retry-After: 5
        assert worker._backoff(1, 3600.0) <= 8  # ... but never beyond backoff_max
    finally:
        d.close()


def test_alerts_of_the_alert_model_go_out(server: HttpReceiver) -> None:
    """The contract with `lightsoc.alerts.model`: `Alert.as_dict()` is what outputs get."""
    from datetime import UTC, datetime

    from lightsoc.alerts.model import Alert
    from lightsoc.alerts.outputs.syslog_cef import cef

    stored = Alert(
        id=42,
        rule_id="web-sqli",
        rule_name="SQL injection",
        severity="critical",
        score=93.5,
        entity_type="ip",
        entity_value="198.51.100.7",
        first_seen=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        last_seen=datetime(2024, 5, 1, 10, 2, tzinfo=UTC),
        count=3,
        event_ids=["e1", "e2"],
    ).as_dict()
    with Dispatcher([build_output("w", wecom(server, min_severity="high"))]) as d:
        d.notify([stored])
        assert d.flush(10)
    content = server.wait(1)[0].json()["markdown"]["content"]
    assert "SQL injection" in content and "198.51.100.7" in content and "93.5" in content
    record = cef(stored)
    assert "|web-sqli|SQL injection|10|" in record and "externalId=42" in record
