"""The Kafka bus's URL and settings, and the per-partition offset bookkeeping
that decides how far a consumer group may commit (`bus.kafka`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("lightsoc.bus.kafka")

DEFAULT_TOPIC = "lightsoc.raw"
DEFAULT_GROUP = "lightsoc-processors"


@dataclass
class PartitionOffsets:
    """Consumed and acked offsets of one assigned partition.

    The commit point is the first consumed offset not acked yet, or the offset
    after the last consumed one when everything is acked.
    """

    pending: set[int] = field(default_factory=set)
    first: int = -1  # first offset consumed since the assignment
    next: int = -1

    def consumed(self, offset: int) -> None:
        if self.first < 0:
            self.first = offset
        self.pending.add(offset)
        self.next = max(self.next, offset + 1)

    def acked(self, offset: int) -> None:
        self.pending.discard(offset)  # unknown: consumed before a rebalance, ignored

    def unacked(self) -> int:
        """The first offset not acked yet (-1: nothing consumed)."""
        return min(self.pending) if self.pending else self.next

    def point(self) -> int:
        """Offset to commit; -1 while nothing consumed here is acked (nothing to commit)."""
        point = self.unacked()
        return point if point > self.first else -1


def parse_url(url: str) -> tuple[str, str, str]:
    """(bootstrap servers, topic, group) of a `kafka://` URL; ValueError names the fix."""
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ValueError(f"bus {url!r}: expected kafka://host:port[,host:port]?topic=...&group=...")
    query = parse_qs(parts.query, keep_blank_values=True)
    # dotted names are librdkafka settings (`url_settings`): TLS/SASL of a real cluster
    unknown = {k for k in query if "." not in k} - {"topic", "group"}
    if unknown:
        raise ValueError(f"bus {url!r}: unknown parameter(s) {sorted(unknown)}; use topic, group")
    topic = query.get("topic", [DEFAULT_TOPIC])[-1]
    group = query.get("group", [DEFAULT_GROUP])[-1]
    if not topic or not group:
        raise ValueError(f"bus {url!r}: topic and group must not be empty")
    return parts.netloc, topic, group


def url_settings(url: str) -> dict[str, str]:
    """The librdkafka settings in a `kafka://` URL's query (names with a dot, e.g.
    `security.protocol=SASL_SSL&sasl.mechanism=SCRAM-SHA-512&sasl.password=${PW}`),
    for both the producer and the consumer."""
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    return {k: v[-1] for k, v in query.items() if "." in k}


def _forced(conf: dict[str, Any], key: str, value: Any, role: str) -> None:
    """Set a setting the semantics rely on; a different user value is ignored, loudly."""
    old = conf.get(key)
    if old is not None and str(old).lower() != str(value).lower():
        log.warning("kafka bus: %s %s=%r is ignored (always %r)", role, key, old, value)
    conf[key] = value
