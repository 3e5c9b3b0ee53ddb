"""Generic webhook: the alert list as JSON, or a JSON body template per alert.

Without `body`, one request carries `{"alerts": [...], "count": N, "output": ID}`.
With `body` (a YAML/JSON structure), one request per alert carries that
structure with `{{ alert.FIELD }}` placeholders filled in: a string that is
just one placeholder takes the value as is (number, list), otherwise the value
is inserted as text. Values are placed into the parsed structure and encoded
by `json.dumps`, never pasted into JSON text, so no value can break out of it.
Placeholders: `alert.<field>` (e.g. `alert.rule.name`), `output.id`, `count`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from lightsoc.alerts.outputs.base import HttpOutput
from lightsoc.config import OutputConfig
from lightsoc.registry import register

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.@-]+)\s*\}\}")
METHODS = ("POST", "PUT", "PATCH")


def _names(template: Any) -> list[str]:
    if isinstance(template, str):
        return PLACEHOLDER.findall(template)
    if isinstance(template, dict):
        return [n for k, v in template.items() for n in _names(k) + _names(v)]
    if isinstance(template, list):
        return [n for v in template for n in _names(v)]
    return []


def fill(template: Any, values: dict[str, Any]) -> Any:
    """`template` with placeholders replaced from `values` (a missing field is null / '')."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template.strip())
        if whole:
            return values.get(whole.group(1))
        return PLACEHOLDER.sub(lambda m: _text(values.get(m.group(1))), template)
    if isinstance(template, dict):
        return {fill(k, values): fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Alerts use dotted keys (`rule.id`); nested dicts are accepted too."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


@register("outputs", "webhook")
class WebhookOutput(HttpOutput):
    """Options: `url`, `method`, `headers` (values are secret), `body` (template)."""

    options: ClassVar[tuple[str, ...]] = (*HttpOutput.options, "method", "headers", "body")
    default_rate_limit = 60

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        super().__init__(output_id, config)
        method = self.option("method", str, "POST").upper()
        if method not in METHODS:
            raise self.error("method", f"expected one of {', '.join(METHODS)}")
        self.method = method
        headers = self.option("headers", dict, {}, expect="a mapping of header: value")
        for k, v in headers.items():
            if not isinstance(k, str) or not isinstance(v, str | int):
                raise self.error("headers", f"header {k!r} must have a string value")
            self.add_secret(str(v))  # Authorization / API keys: never in logs
        self.headers = {str(k): str(v) for k, v in headers.items()}
        self.body = self.option("body", (dict, list, str), None, expect="a JSON structure")
        for name in _names(self.body):
            if not (name.startswith("alert.") or name in ("output.id", "count")):
                raise self.error("body", f"unknown placeholder {{{{ {name} }}}}")

    def requests(self, alerts: Sequence[dict[str, Any]]) -> list[Any]:
        """The JSON bodies `send` posts."""
        if self.body is None:
            return [{"output": self.id, "count": len(alerts), "alerts": list(alerts)}]
        bodies = []
        for a in alerts:
            values: dict[str, Any] = {"output.id": self.id, "count": len(alerts)}
            _flatten("alert", a, values)
            bodies.append(fill(self.body, values))
        return bodies

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        # At-least-once: a retry after a partial failure re-sends the earlier alerts.
        for body in self.requests(alerts):
            self.post_json(body, method=self.method, headers=self.headers)
