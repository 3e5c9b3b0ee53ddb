"""DingTalk (钉钉) custom robot: markdown messages, optionally signed (加签).

Documented format (open.dingtalk.com/document/robots/custom-robot-access and
".../customize-robot-security-settings"): POST
`https://oapi.dingtalk.com/robot/send?access_token=TOKEN` with
`{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}, "at": {...}}`.
Signed robots add query parameters `timestamp` (ms) and
`sign = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")))`;
the answer is `{"errcode": 0, "errmsg": "ok"}`, errcode 130101 = sending too fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from lightsoc.alerts.outputs import render
from lightsoc.alerts.outputs.base import HttpOutput, OutputError
from lightsoc.config import OutputConfig
from lightsoc.registry import register

# DingTalk rejects request bodies over 20 KB; leave room for JSON escaping.
MAX_TEXT_BYTES = 16000
THROTTLED = {130101}


def sign(secret: str, timestamp_ms: int) -> str:
    """The documented signature, base64 (httpx URL-encodes it as a query parameter)."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


@register("outputs", "dingtalk")
class DingTalkOutput(HttpOutput):
    """Options: `access_token` (or in `url`), `secret` (SEC..., enables signing)."""

    options: ClassVar[tuple[str, ...]] = (*HttpOutput.options, "access_token", "secret")
    default_url = "https://oapi.dingtalk.com/robot/send"
    default_rate_limit = 20

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        super().__init__(output_id, config)
        self.access_token = self.option("access_token", str, None, secret=True)
        self.secret = self.option("secret", str, None, secret=True)
        if not self.access_token and "access_token=" not in self.url:
            raise self.error("access_token", "is required (or give a url with ?access_token=)")

    def payload(self, alerts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ordered = render.by_severity(alerts)
        title = render.plain(render.title(ordered), 100)
        blocks = [render.md_alert(a) for a in ordered]
        text = render.fit(f"### {render.md_title(ordered)}", blocks, MAX_TEXT_BYTES)
        # DingTalk needs two spaces before a newline for a line break inside a quote.
        text = text.replace("\n", "  \n")
        # title shows in the notification preview only (not markdown), still one line
        return {
            "msgtype": "markdown",
            "markdown": {"title": title.replace("@", "\uff20"), "text": text},
            "at": {"isAtAll": False, "atMobiles": [], "atUserIds": []},
        }

    def params(self, now_ms: int | None = None) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.access_token:
            params["access_token"] = self.access_token
        if self.secret:
            ts = now_ms if now_ms is not None else int(time.time() * 1000)
            params["timestamp"] = str(ts)
            params["sign"] = sign(self.secret, ts)
        return params

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        resp = self.post_json(self.payload(alerts), params=self.params() or None)
        body = self.json_response(resp)
        code = body.get("errcode")
        if code != 0:
            raise OutputError(
                f"DingTalk errcode {code}: {self.redact(str(body.get('errmsg', ''))[:200])}",
                retryable=code in THROTTLED,
            )
