"""Feishu / Lark custom bot (自定义机器人): an interactive card or a text message.

Documented format (open.feishu.cn/document/client-docs/bot-v3/add-custom-bot):
POST `https://open.feishu.cn/open-apis/bot/v2/hook/TOKEN` with
`{"msg_type": "interactive", "card": {...}}` or
`{"msg_type": "text", "content": {"text": ...}}`. With signature verification
on, the body also carries `timestamp` (seconds, string) and
`sign = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))`. The answer
is `{"code": 0, "msg": "success"}`; 11232 is the bot's rate limit (100/min);
bodies are limited to 20 KB. Alert values go into `plain_text` elements, which
Feishu shows verbatim: no markdown links, no `<at>` mentions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from lightsoc.alerts.outputs import render
from lightsoc.alerts.outputs.base import HttpOutput, OutputError, severity_rank
from lightsoc.config import OutputConfig
from lightsoc.registry import register

THROTTLED = {11232}
MAX_ALERTS = 20  # keeps the card well under the 20 KB body limit
TEMPLATES = ["grey", "blue", "yellow", "orange", "red"]  # card header colour by severity


def sign(secret: str, timestamp: int) -> str:
    """The documented signature: the key is `timestamp\\nsecret`, the message empty."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def _text(value: Any, limit: int = render.MAX_VALUE_CHARS) -> str:
    """One line, URLs defanged (Feishu links bare URLs even in plain text)."""
    return render.defang(render.plain(value, limit))


@register("outputs", "feishu")
class FeishuOutput(HttpOutput):
    """Options: `url` (the hook URL, secret), `secret` (signing), `msg_type`."""

    options: ClassVar[tuple[str, ...]] = (*HttpOutput.options, "secret", "msg_type")
    default_rate_limit = 100

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        super().__init__(output_id, config)
        # the last path segment of the hook URL is its token
        self.add_secret(self.url.rstrip("/").rsplit("/", 1)[-1])
        self.secret = self.option("secret", str, None, secret=True)
        self.msg_type = self.option("msg_type", str, "interactive")
        if self.msg_type not in ("interactive", "text"):
            raise self.error("msg_type", "expected interactive or text")

    def _lines(self, a: dict[str, Any]) -> str:
        p = _text
        return "\n".join(
            [
                f"Entity: {p(a.get('entity.type'), 32)} {p(a.get('entity.value'))}",
                f"Score: {p(a.get('score'), 16)}  Count: {p(a.get('count'), 16)}"
                f"  Status: {p(a.get('status'), 32)}",
                f"Seen: {p(a.get('first_seen'), 40)} .. {p(a.get('last_seen'), 40)}",
                f"Rule: {p(a.get('rule.id'), 80)}  Alert: {p(a.get('id'), 80)}",
                *([p(a.get("description"), 500)] if a.get("description") else []),
            ]
        )

    def payload(self, alerts: Sequence[dict[str, Any]], now: int | None = None) -> dict[str, Any]:
        ordered = render.by_severity(alerts)
        shown = ordered[:MAX_ALERTS]
        more = len(ordered) - len(shown)
        title = render.plain(render.title(ordered), 150)
        body: dict[str, Any]
        if self.msg_type == "text":
            # text messages expand `<at user_id="all">`: no angle brackets from alert values
            parts = [
                title,
                *(f"{_text(a.get('rule.name'), 120)}\n{self._lines(a)}" for a in shown),
            ]
            if more:
                parts.append(f"… and {more} more alerts")
            text = "\n\n".join(parts).replace("<", "\uff1c").replace(">", "\uff1e")
            body = {"msg_type": "text", "content": {"text": text}}
        else:
            elements: list[dict[str, Any]] = []
            for a in shown:
                sev = render.SEVERITY_LABEL.get(str(a.get("severity")), "ALERT")
                text = f"[{sev}] {_text(a.get('rule.name'), 120)}\n{self._lines(a)}"
                elements.append({"tag": "div", "text": {"tag": "plain_text", "content": text}})
                elements.append({"tag": "hr"})
            if more:
                elements.append(
                    {
                        "tag": "note",
                        "elements": [{"tag": "plain_text", "content": f"… and {more} more alerts"}],
                    }
                )
            worst = max((severity_rank(a.get("severity")) for a in ordered), default=0)
            body = {
                "msg_type": "interactive",
                "card": {
                    "config": {"wide_screen_mode": True},
                    "header": {
                        "title": {"tag": "plain_text", "content": title},
                        "template": TEMPLATES[worst],
                    },
                    "elements": elements,
                },
            }
        if self.secret:
            ts = now if now is not None else int(time.time())
            body = {"timestamp": str(ts), "sign": sign(self.secret, ts), **body}
        return body

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        body = self.json_response(self.post_json(self.payload(alerts)))
        # current answers carry `code`; older deployments answer `StatusCode`
        code = body.get("code", body.get("StatusCode"))
        if code != 0:
            msg = body.get("msg", body.get("StatusMessage", ""))
            raise OutputError(
                f"Feishu code {code}: {self.redact(str(msg))[:200]}", retryable=code in THROTTLED
            )
