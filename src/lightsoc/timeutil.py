"""Durations like `15m`, `24h`, `7d`, `all` and the time ranges they give."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

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
