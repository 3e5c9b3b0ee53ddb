"""Generic webhook: default JSON list, body templates, method and headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lightsoc.alerts.outputs import OutputError, build_output
from lightsoc.config import OutputConfig
from tests.alerts.receivers import HttpReceiver, Reply
from tests.alerts.test_outputs_dispatch import alert


@pytest.fixture
def server() -> Iterator[HttpReceiver]:
    r = HttpReceiver(Reply(200, {"accepted": True}))
    yield r
    r.close()


def test_default_body_is_the_alert_list(server: HttpReceiver) -> None:
    out = build_output("hook", OutputConfig(type="webhook", url=f"{server.url}/in"))
    alerts = [alert(1), alert(2, "low", tags=["attack.t1110"])]
    out.send(alerts)
    req = server.wait(1)[0]
    assert req.method == "POST" and req.path == "/in"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {"output": "hook", "count": 2, "alerts": alerts}


def test_template_per_alert_keeps_types_and_escapes_json(server: HttpReceiver) -> None:
    body = {
        "title": "[{{ alert.severity }}] {{alert.rule.name}} on {{ alert.entity.value }}",
        "score": "{{ alert.score }}",
        "events": "{{ alert.event_ids }}",
        "missing": "{{ alert.nope }}",
        "meta": {"source": "lightsoc/{{ output.id }}", "n": "{{ count }}"},
        "list": ["{{ alert.id }}", 1, True],
    }
    out = build_output(
        "tpl",
        OutputConfig(
            type="webhook",
            url=f"{server.url}/tpl",
            method="put",
            headers={"Authorization": "Bearer abc", "X-Team": "soc"},
            body=body,
        ),
    )
    evil = 'x", "admin": true, "y": "{{ alert.id }}\n'
    out.send([alert(1), alert(2, **{"entity.value": evil})])
    first, second = server.wait(2)
    assert first.method == "PUT"
    assert first.headers["authorization"] == "Bearer abc" and first.headers["x-team"] == "soc"
    assert first.json() == {
        "title": "[high] SSH brute force on 203.0.113.1",
        "score": 70,
        "events": ["ev-1-1", "ev-1-2"],
        "missing": None,
        "meta": {"source": "lightsoc/tpl", "n": 2},
        "list": ["alert-1", 1, True],
    }
    got = second.json()
    # the value stays a string inside "title": no new keys, no second substitution
    assert set(got) == set(body)
    assert got["title"] == f"[high] SSH brute force on {evil}"


def test_webhook_http_errors(server: HttpReceiver) -> None:
    out = build_output("hook", OutputConfig(type="webhook", url=f"{server.url}/in?token=s3cr3t"))
    server.default = Reply(401, "bad token s3cr3t")
    with pytest.raises(OutputError) as exc:
        out.send([alert()])
    assert not exc.value.retryable
    assert "401" in str(exc.value) and "s3cr3t" not in str(exc.value)
    server.default = Reply(503, "")
    with pytest.raises(OutputError) as exc:
        out.send([alert()])
    assert exc.value.retryable
