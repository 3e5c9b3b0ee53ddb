"""Slack incoming webhook: `text` (notification fallback) plus Block Kit `blocks`.

Documented format (api.slack.com/messaging/webhooks, .../reference/block-kit):
POST JSON `{"text": ..., "blocks": [...]}` to the webhook URL; success is HTTP
200 with body `ok`, failures are 4xx with `invalid_payload`, `no_service`, ...
and 429 when rate limited. At most 50 blocks, section text <= 3000 characters.
`&`, `<`, `>` must be escaped in mrkdwn (api.slack.com/reference/surfaces/formatting#escaping):
they are how links and mentions (`<!channel>`) are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from lightsoc.alerts.outputs import render
from lightsoc.alerts.outputs.base import HttpOutput, OutputError
from lightsoc.config import OutputConfig
from lightsoc.registry import register

MAX_ALERT_BLOCKS = 20  # 2 blocks per alert + header + footer stays under 50


@register("outputs", "slack")
class SlackOutput(HttpOutput):
    """Options: `url` (the webhook URL, secret)."""

    options: ClassVar[tuple[str, ...]] = HttpOutput.options
    default_rate_limit = 60  # Slack allows about one message per second per webhook

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        super().__init__(output_id, config)
        # the path of a Slack webhook URL is its credential (hooks.slack.com/services/T/B/X)
        path = urlsplit(self.url).path.strip("/")
        if path:
            self.add_secret(path)

    def payload(self, alerts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ordered = render.by_severity(alerts)
        title = render.plain(render.title(ordered), 150)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": False}}
        ]
        for a in ordered[:MAX_ALERT_BLOCKS]:
            sev = render.SEVERITY_LABEL.get(str(a.get("severity")), "ALERT")
            fields = [
                ("Severity", sev),
                ("Rule", render.slack(a.get("rule.name"), 200)),
                (
                    "Entity",
                    f"{render.slack(a.get('entity.type'), 32)} {render.slack(a.get('entity.value'))}",
                ),
                (
                    "Score / count",
                    f"{render.slack(a.get('score'), 16)} / {render.slack(a.get('count'), 16)}",
                ),
                (
                    "Seen",
                    f"{render.slack(a.get('first_seen'), 40)} .. {render.slack(a.get('last_seen'), 40)}",
                ),
                (
                    "Alert",
                    f"{render.slack(a.get('id'), 80)} ({render.slack(a.get('rule.id'), 80)})",
                ),
            ]
            blocks.append(
                {
                    "type": "section",
                    "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
                }
            )
            if a.get("description"):
                text = render.plain(a.get("description"), 2900)
                blocks.append({"type": "section", "text": {"type": "plain_text", "text": text}})
        if len(ordered) > MAX_ALERT_BLOCKS:
            more = f"… and {len(ordered) - MAX_ALERT_BLOCKS} more alerts"
            blocks.append({"type": "context", "elements": [{"type": "plain_text", "text": more}]})
        return {"text": render.slack(title, 300), "blocks": blocks}

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        resp = self.post_json(self.payload(alerts))
        if resp.text.strip() != "ok":
            raise OutputError(f"Slack answered {self.redact(resp.text[:200])!r}")
