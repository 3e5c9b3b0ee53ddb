"""Durations like `15m`, `24h`, `7d`, `all` and the time ranges they give."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from lightsoc.store.base import TimeRange

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta | None:
    """`15m` -> 15 minutes; `all` -> None (no limit). ValueError otherwise."""
    if text.strip().lower() == "all":
        return None
    m = _DURATION.match(text.lower())
    if not m:
        raise ValueError(f"invalid duration {text!r}: use e.g. 15m, 24h, 7d, 3650d or all")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def since_range(since: str, *, now: datetime | None = None) -> TimeRange:
    span = parse_duration(since)
    if span is None:
        return TimeRange()
    now = now or datetime.now(UTC)
    return TimeRange(start=now - span, end=None)


def _config_duration(value: Any) -> Any:  # noqa: ANN401 - pydantic validates the result
    """`90s`, `15m`, `24h`, `7d` (also a number of seconds or an ISO 8601 duration)."""
    if isinstance(value, str) and value.strip() and value.strip()[0].isdigit():
        return parse_duration(value.strip())
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration such as 90s, 15m, 24h or 7d")
    return value


#: a config duration: `90s`, `15m`, `24h`, `7d`, seconds or ISO 8601; positive
Duration = Annotated[timedelta, BeforeValidator(_config_duration), AfterValidator(_positive)]
