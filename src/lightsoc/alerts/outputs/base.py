"""Alert output base class: option checking, secret redaction, HTTP sending.

An output turns a list of alerts (plain dicts, see `ALERT_FIELDS`) into one
message and delivers it; `send` raises `OutputError` on failure, with
`retryable` telling the dispatcher whether trying again can help.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx

from lightsoc.alerts.model import ALERT_KEYS, SEVERITIES
from lightsoc.config import OutputConfig

__all__ = [
    "ALERT_FIELDS",
    "SEVERITIES",
    "HttpOutput",
    "Output",
    "OutputError",
    "severity_rank",
]

# One definition of an alert's shape: the model's (`Alert.as_dict()` keys).
ALERT_FIELDS = ALERT_KEYS
# Options every output accepts; the dispatcher reads them (see dispatcher.py).
COMMON_OPTIONS = (
    "rate_limit",
    "rate_period",
    "max_attempts",
    "backoff_initial",
    "backoff_max",
    "retry_max_seconds",
    "queue_size",
    "max_digest",
)
REDACTED = "***"
_MISSING = object()
T = TypeVar("T")


def severity_rank(severity: Any) -> int:
    """0 (informational) .. 4 (critical); unknown values rank as informational."""
    try:
        return SEVERITIES.index(str(severity).lower())
    except ValueError:
        return 0


class OutputError(Exception):
    """Delivery failed; `retryable` for network errors, 5xx, 429 and throttling codes."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Output:
    """Base of all outputs; subclasses register with `@register("outputs", NAME)`.

    Subclasses read their options in `__init__` with `option()` and list them in
    `options`; an option not in `options` or `COMMON_OPTIONS` is an error.
    """

    component_name: ClassVar[str] = "output"
    #: options this output understands (besides `type`, `min_severity` and COMMON_OPTIONS)
    options: ClassVar[tuple[str, ...]] = ()
    #: messages per minute when the config does not say (the service's documented limit)
    default_rate_limit: ClassVar[int] = 20

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        self.id = output_id
        self.config = config
        self._raw: dict[str, Any] = dict(config.model_extra or {})
        self._secrets: list[str] = []
        unknown = sorted(set(self._raw) - set(self.options) - set(COMMON_OPTIONS))
        if unknown:
            raise self.error(unknown[0], "unknown option")

    # ------------------------------------------------------------- options

    def error(self, option: str, problem: str) -> ValueError:
        return ValueError(
            f"output {self.id!r} ({self.component_name}): option {option!r}: {problem}"
        )

    def option(
        self,
        name: str,
        kind: type[T] | tuple[type, ...],
        default: Any = _MISSING,
        *,
        check: Callable[[Any], bool] | None = None,
        expect: str = "",
        secret: bool = False,
    ) -> Any:
        """Option `name` of type `kind`; missing without default or wrong -> ValueError."""
        value = self._raw.get(name, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        # YAML gives ints where floats are meant; bools are ints but never numbers here
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            want = expect or getattr(kind, "__name__", str(kind))
            raise self.error(name, f"expected {want}, got {type(value).__name__}")
        if check is not None and not check(value):
            raise self.error(name, f"expected {expect or 'a valid value'}")
        if secret and isinstance(value, str) and value:
            self.add_secret(value)
        return value

    def url_option(self, name: str = "url", default: Any = _MISSING) -> str:
        """An http(s) URL; its query string is treated as secret (webhook keys live there)."""
        value = self.option(name, str, default)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(name, "expected an http:// or https:// URL")
        if parts.query:
            self.add_secret(parts.query)
            for _, v in parse_qsl(parts.query):
                if len(v) >= 4:  # shorter values are flags like `v=1`, not keys
                    self.add_secret(v)
        return value

    def add_secret(self, value: str | None) -> None:
        if value:
            self._secrets.append(value)
            _LOG_FILTER.add(value)

    # --------------------------------------------------------------- secrets

    def redact(self, text: str) -> str:
        """`text` without this output's secrets and without URL query strings."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return _URL_QUERY.sub(rf"\1?{REDACTED}", text)

    @property
    def target(self) -> str:
        """Where this output sends to, safe to show (no secrets)."""
        return ""

    # ------------------------------------------------------------------ send

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Deliver `alerts` as one message; raise `OutputError` on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


_URL_QUERY = re.compile(r"(\bhttps?://[^\s?#'\"]+)\?[^\s#'\"]*")


class _SecretFilter(logging.Filter):
    """Redacts output secrets from httpx's own log lines.

    httpx logs every request URL at INFO, and webhook keys travel in the URL
    (`?key=`, `?access_token=`), so without this `-v` logging would leak them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        with self._lock:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        if not secrets:
            return True
        text = record.getMessage()
        clean = text
        for secret in secrets:
            clean = clean.replace(secret, REDACTED)
        if clean != text:
            record.msg, record.args = clean, ()
        return True


_LOG_FILTER = _SecretFilter()
logging.getLogger("httpx").addFilter(_LOG_FILTER)


class HttpOutput(Output):
    """An output that POSTs JSON to a webhook with httpx."""

    options: ClassVar[tuple[str, ...]] = ("url", "timeout", "verify")
    default_url: ClassVar[str | None] = None

    def __init__(self, output_id: str, config: OutputConfig) -> None:
        super().__init__(output_id, config)
        default = self.default_url if self.default_url is not None else _MISSING
        self.url = self.url_option("url", default)
        self.timeout = self.option(
            "timeout", float, 10.0, check=lambda v: v > 0, expect="a positive number"
        )
        verify = self.option("verify", (bool, str), True, expect="true, false or a CA file")
        self._client = httpx.Client(timeout=self.timeout, verify=verify, follow_redirects=False)

    @property
    def target(self) -> str:
        return self.redact(self.url)

    def post_json(
        self,
        payload: Any,
        *,
        url: str | None = None,
        params: dict[str, str] | None = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send `payload` as JSON; transport errors, 5xx and 429 raise retryable errors."""
        try:
            resp = self._client.request(
                method, url or self.url, json=payload, params=params, headers=headers
            )
        except httpx.HTTPError as e:
            # httpx messages may quote the URL (with its key): keep only the class and redact
            raise OutputError(
                f"{type(e).__name__}: {self.redact(str(e))}", retryable=True
            ) from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise OutputError(
                f"HTTP {resp.status_code}",
                retryable=True,
                retry_after=_retry_after(resp.headers.get("retry-after")),
            )
        if resp.status_code >= 400:
            raise OutputError(f"HTTP {resp.status_code}: {self.redact(resp.text[:200])}")
        return resp

    def json_response(self, resp: httpx.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            raise OutputError(f"response is not JSON: {self.redact(resp.text[:200])!r}") from None
        if not isinstance(body, dict):
            raise OutputError("response is not a JSON object")
        return body

    def close(self) -> None:
        self._client.close()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
