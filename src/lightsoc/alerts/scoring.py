"""Per-entity triage score (Metron's threat triage / a risk score).

Each alert is evidence that the entity is bad with probability score/100,
fading with age (exponential decay, configurable half-life). The entity's
score is the chance that at least one piece of evidence is right:

    score = 100 * (1 - prod(1 - s_i/100 * 0.5 ** (age_i / half_life)))

so many weak alerts add up, one critical alert dominates, nothing exceeds
100, and an entity that stops misbehaving sinks back to 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

DEFAULT_HALF_LIFE = timedelta(hours=24)
#: Alerts older than this many half-lives weigh less than 0.1 %: not read at all.
LOOKBACK_HALF_LIVES = 10


def decay(age: timedelta, half_life: timedelta) -> float:
    """Weight of evidence `age` old: 1 now, 0.5 after one half-life. Future times weigh 1."""
    if half_life <= timedelta(0):
        raise ValueError("half-life must be positive")
    seconds = max(age.total_seconds(), 0.0)
    return 0.5 ** (seconds / half_life.total_seconds())


def entity_score(
    alerts: Iterable[tuple[float, datetime]],
    now: datetime,
    half_life: timedelta = DEFAULT_HALF_LIFE,
) -> float:
    """Combined score 0..100 of (score, last_seen) pairs, at time `now`."""
    remaining = 1.0
    for score, seen in alerts:
        p = min(max(score, 0.0), 100.0) / 100.0 * decay(now - seen, half_life)
        remaining *= 1.0 - p
    return 100.0 * (1.0 - remaining)
