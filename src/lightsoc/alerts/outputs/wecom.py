"""WeCom (企业微信) group robot: one markdown message per batch of alerts.

Documented format (developer.work.weixin.qq.com/document/path/91770, "群机器人配置说明"):
POST `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY` with
`{"msgtype": "markdown", "markdown": {"content": "..."}}`; `content` is UTF-8,
at most 4096 bytes; the answer is `{"errcode": 0, "errmsg": "ok"}`, errcode
45009 means the robot's limit of 20 messages per minute was hit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from lightsoc.alerts.outputs import render
from lightsoc.alerts.outputs.base import HttpOutput, OutputError
from lightsoc.config import OutputConfig
from lightsoc.registry import register

MAX_CONTENT_BYTES = 4096
#: "api freq out of limit": worth retrying later
THROTTLED = {45009}


@register("outputs", "wecom")
class WeComOutput(HttpOutput):
    """Options: `key` (the webhook key, secret) or a `url` that carries `?key=`."""

    options: ClassVar[tuple[str, ...]] = (*HttpOutput.options, "key")
    default_url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    default_rate_limit = 20

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        super().__init__(output_id, config)
        self.key = self.option("key", str, None, secret=True)
        if not self.key and "key=" not in self.url:
            raise self.error("key", "is required (or give a url with ?key=...)")

    def payload(self, alerts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ordered = render.by_severity(alerts)
        head = f"### {render.md_title(ordered)}"
        blocks = [render.md_alert(a, wecom_colors=True) for a in ordered]
        content = render.fit(head, blocks, MAX_CONTENT_BYTES)
        return {"msgtype": "markdown", "markdown": {"content": content}}

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        params = {"key": self.key} if self.key else None
        body = self.json_response(self.post_json(self.payload(alerts), params=params))
        code = body.get("errcode")
        if code != 0:
            raise OutputError(
                f"WeCom errcode {code}: {self.redact(str(body.get('errmsg', ''))[:200])}",
                retryable=code in THROTTLED,
            )
