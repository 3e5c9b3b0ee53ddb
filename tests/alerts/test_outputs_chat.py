"""WeCom, DingTalk, Feishu and Slack robots against a local receiver that answers
like each service: payloads checked field by field, signatures recomputed,
service error codes, and attacker-controlled values that must stay inert."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lightsoc.alerts.outputs import OutputError, build_output
from lightsoc.config import OutputConfig
from tests.alerts.receivers import HttpReceiver, Reply
from tests.alerts.test_outputs_dispatch import alert

EVIL = (
    "[x](http://evil) @all <script>alert(1)</script> <@U123> <!channel>"
    ' <at user_id="all">x</at> *b* `c` | d\n# h'
)
KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DING_SECRET = "SEC5a3ecf88f2b3eb50db30ecfc00f53033ac909c99bf7f88fd612bda89d7f3a9dc"


@pytest.fixture
def server() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


def evil_alert() -> dict[str, Any]:
    return alert(7, "critical", **{"entity.value": EVIL, "rule.name": f"SQLi {EVIL}"})


def assert_inert(text: str) -> None:
    """No link, image, mention or tag survives."""
    for bad in ("](", "[x]", "@all", "<script", "<@", "<!channel", "http://evil"):
        assert bad not in text, (bad, text)


# ----------------------------------------------------------------------- WeCom


def test_wecom_markdown_payload(server: HttpReceiver) -> None:
    out = build_output(
        "w", OutputConfig(type="wecom", url=f"{server.url}/cgi-bin/webhook/send", key=KEY)
    )
    out.send([alert(1, "high", description="5 failed logins")])
    req = server.wait(1)[0]
    assert req.method == "POST" and req.path == "/cgi-bin/webhook/send"
    assert req.query == {"key": KEY}
    assert req.headers["content-type"] == "application/json"
    body = req.json()
    assert set(body) == {"msgtype", "markdown"}
    assert body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"content"}
    content = body["markdown"]["content"]
    for want in (
        "HIGH",
        "SSH brute force",
        "203.0.113.1",
        "ssh-brute-force",
        "alert-1",
        "5 failed logins",
    ):
        assert want in content
    assert '<font color="warning">' in content  # WeCom's documented colour tag


def test_wecom_content_stays_within_4096_bytes(server: HttpReceiver) -> None:
    out = build_output("w", OutputConfig(type="wecom", url=server.url, key=KEY))
    # multi-byte text: the limit is in bytes, not characters
    alerts = [alert(n, description="暴力破解" * 60) for n in range(200)]
    out.send(alerts)
    content = server.wait(1)[0].json()["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert "200 alerts" in content and "more" in content


def test_wecom_escapes_attacker_values(server: HttpReceiver) -> None:
    out = build_output("w", OutputConfig(type="wecom", url=server.url, key=KEY))
    out.send([evil_alert()])
    content = server.wait(1)[0].json()["markdown"]["content"]
    assert_inert(content)
    assert "<font" in content  # our own markup is still there
    assert "\n# h" not in content  # a value cannot start a heading line
    assert "&lt;script&gt;" in content and "\uff20all" in content


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        (Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"}), False),
        (Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"}), True),
        (Reply(200, "<html>not json</html>"), False),
        (Reply(404, "not found"), False),
        (Reply(500, "boom"), True),
        (Reply(429, "slow"), True),
    ],
)
def test_wecom_errors(server: HttpReceiver, reply: Reply, retryable: bool) -> None:
    server.default = reply
    out = build_output("w", OutputConfig(type="wecom", url=server.url, key=KEY))
    with pytest.raises(OutputError) as exc:
        out.send([alert()])
    assert exc.value.retryable is retryable
    assert KEY not in str(exc.value)


# -------------------------------------------------------------------- DingTalk


def test_dingtalk_signed_markdown(server: HttpReceiver) -> None:
    out = build_output(
        "d",
        OutputConfig(
            type="dingtalk",
            url=f"{server.url}/robot/send",
            access_token="tok123",
            secret=DING_SECRET,
        ),
    )
    before = int(time.time() * 1000)
    out.send([alert(1, "medium")])
    after = int(time.time() * 1000)
    req = server.wait(1)[0]
    assert req.path == "/robot/send"
    assert req.query["access_token"] == "tok123"
    ts = int(req.query["timestamp"])
    assert before <= ts <= after  # milliseconds
    # recompute exactly as DingTalk's documentation does
    string_to_sign = f"{ts}\n{DING_SECRET}".encode()
    expected = base64.b64encode(
        hmac.new(DING_SECRET.encode(), string_to_sign, hashlib.sha256).digest()
    ).decode()
    assert req.query["sign"] == expected  # parse_qs undid the URL encoding
    raw_sign = req.raw_query.split("sign=", 1)[1].split("&", 1)[0]
    assert "+" not in raw_sign and "/" not in raw_sign  # URL-encoded ('+' would read as ' ')
    body = req.json()
    assert body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"title", "text"}
    assert "SSH brute force" in body["markdown"]["title"]
    assert "203.0.113.1" in body["markdown"]["text"]
    assert body["at"]["isAtAll"] is False


def test_dingtalk_unsigned_token_in_url(server: HttpReceiver) -> None:
    out = build_output(
        "d", OutputConfig(type="dingtalk", url=f"{server.url}/robot/send?access_token=abc")
    )
    out.send([alert()])
    req = server.wait(1)[0]
    assert req.query == {"access_token": "abc"}


def test_dingtalk_escapes_and_checks_errcode(server: HttpReceiver) -> None:
    out = build_output("d", OutputConfig(type="dingtalk", url=server.url, access_token="t"))
    out.send([evil_alert()])
    body = server.wait(1)[0].json()
    assert_inert(body["markdown"]["text"])
    assert "@all" not in body["markdown"]["title"]
    server.default = Reply(200, {"errcode": 310000, "errmsg": "sign not match"})
    with pytest.raises(OutputError, match="310000") as exc:
        out.send([alert()])
    assert not exc.value.retryable
    server.default = Reply(200, {"errcode": 130101, "errmsg": "send too fast"})
    with pytest.raises(OutputError) as exc:
        out.send([alert()])
    assert exc.value.retryable


# ---------------------------------------------------------------------- Feishu


def test_feishu_signed_card(server: HttpReceiver) -> None:
    secret = "fs-secret-abc"
    server.default = Reply(200, {"code": 0, "msg": "success", "data": {}})
    out = build_output(
        "f",
        OutputConfig(
            type="feishu", url=f"{server.url}/open-apis/bot/v2/hook/TOKEN9", secret=secret
        ),
    )
    before = int(time.time())
    out.send([alert(1, "critical"), alert(2, "low")])
    after = int(time.time())
    req = server.wait(1)[0]
    assert req.path == "/open-apis/bot/v2/hook/TOKEN9"
    body = req.json()
    ts = int(body["timestamp"])
    assert isinstance(body["timestamp"], str) and before <= ts <= after  # seconds
    expected = base64.b64encode(
        hmac.new(f"{ts}\n{secret}".encode(), b"", hashlib.sha256).digest()
    ).decode()
    assert body["sign"] == expected
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"]["title"]["tag"] == "plain_text"
    assert "2 alerts" in card["header"]["title"]["content"]
    assert card["header"]["template"] == "red"
    texts = [e["text"]["content"] for e in card["elements"] if e["tag"] == "div"]
    assert all(e["text"]["tag"] == "plain_text" for e in card["elements"] if e["tag"] == "div")
    assert "[CRITICAL]" in texts[0] and "203.0.113.1" in texts[0]
    assert "203.0.113.2" in texts[1]


def test_feishu_text_and_errors(server: HttpReceiver) -> None:
    server.default = Reply(200, {"code": 0, "msg": "success"})
    out = build_output(
        "f", OutputConfig(type="feishu", url=f"{server.url}/hook/T", msg_type="text")
    )
    out.send([evil_alert()])
    body = server.wait(1)[0].json()
    assert set(body) == {"msg_type", "content"}  # no timestamp/sign without a secret
    assert body["msg_type"] == "text"
    text = body["content"]["text"]
    assert "SQLi" in text and "http://evil" not in text
    assert "<" not in text and ">" not in text  # `<at user_id="all">` would mention everyone
    assert "\n# h" not in text  # control characters flattened
    server.default = Reply(
        200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
    )
    with pytest.raises(OutputError, match="19021") as exc:
        out.send([alert()])
    assert not exc.value.retryable
    server.default = Reply(200, {"code": 11232, "msg": "frequency limited"})
    with pytest.raises(OutputError) as exc:
        out.send([alert()])
    assert exc.value.retryable


def test_feishu_card_values_are_plain_text(server: HttpReceiver) -> None:
    server.default = Reply(200, {"code": 0, "msg": "success"})
    out = build_output("f", OutputConfig(type="feishu", url=f"{server.url}/hook/T"))
    out.send([evil_alert()])
    card = server.wait(1)[0].json()["card"]
    tags = {json.dumps(e) for e in card["elements"]}
    assert not any('"lark_md"' in t or '"markdown"' in t for t in tags)


# ----------------------------------------------------------------------- Slack


def test_slack_blocks_and_ok_answer(server: HttpReceiver) -> None:
    server.default = Reply(200, "ok")
    out = build_output("s", OutputConfig(type="slack", url=f"{server.url}/services/T0/B0/XyZ"))
    out.send([alert(1, "high", description="details here")])
    body = server.wait(1)[0].json()
    assert set(body) == {"text", "blocks"}
    assert "SSH brute force" in body["text"]
    header, section, desc = body["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert section["type"] == "section"
    assert all(f["type"] == "mrkdwn" for f in section["fields"])
    assert len(section["fields"]) <= 10  # Block Kit limit
    joined = " ".join(f["text"] for f in section["fields"])
    assert "203.0.113.1" in joined and "HIGH" in joined
    assert desc["text"] == {"type": "plain_text", "text": "details here"}


def test_slack_escapes_and_errors(server: HttpReceiver) -> None:
    server.default = Reply(200, "ok")
    out = build_output("s", OutputConfig(type="slack", url=f"{server.url}/services/T0/B0/XyZ"))
    out.send([evil_alert()])
    body = server.wait(1)[0].json()
    mrkdwn = [
        f["text"] for b in body["blocks"] if b["type"] == "section" for f in b.get("fields", [])
    ]
    for text in [body["text"], *mrkdwn]:
        assert "<" not in text.replace("&lt;", "") and ">" not in text.replace("&gt;", "")
        assert "http://evil" not in text
    server.default = Reply(404, "no_service")
    with pytest.raises(OutputError, match="404") as exc:
        out.send([alert()])
    assert not exc.value.retryable and "XyZ" not in str(exc.value)
    server.default = Reply(200, "invalid_payload")
    with pytest.raises(OutputError, match="invalid_payload"):
        out.send([alert()])


def test_slack_digest_respects_block_limit(server: HttpReceiver) -> None:
    server.default = Reply(200, "ok")
    out = build_output("s", OutputConfig(type="slack", url=f"{server.url}/services/T/B/X"))
    out.send([alert(n) for n in range(60)])
    body = server.wait(1)[0].json()
    assert len(body["blocks"]) <= 50
    assert "40 more" in json.dumps(body["blocks"][-1])


def test_wecom_huge_values_are_capped_and_inert(server: HttpReceiver) -> None:
    out = build_output("w", OutputConfig(type="wecom", url=server.url, key=KEY))
    huge = "<@" * 2000  # escaping makes every character several bytes
    out.send([alert(1, **{"entity.value": huge, "rule.name": huge, "description": huge})])
    content = server.wait(1)[0].json()["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert "203.0.113" not in content  # the entity was replaced by the huge value
    assert "SSH" not in content and "&lt;" in content
    assert_inert(content)


def test_fit_cuts_a_block_that_alone_is_too_big() -> None:
    from lightsoc.alerts.outputs.render import fit

    text = fit("head", ["é" * 5000, "second"], 4096)
    assert len(text.encode()) <= 4096
    assert text.startswith("head\n\néé") and text.endswith("… and 1 more")
    assert fit("head", ["a", "b"], 4096) == "head\n\na\n\nb"
    many = fit("head", [f"alert {n} " + "x" * 100 for n in range(100)], 1000)
    assert len(many.encode()) <= 1000 and many.endswith("more")
    shown = many.count("alert ")
    assert many.endswith(f"… and {100 - shown} more")
