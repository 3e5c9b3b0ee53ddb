"""The source interface and the per-source metrics every source reports."""

from __future__ import annotations

import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from lightsoc.bus.base import RawBatch
from lightsoc.store.base import Checkpoint

Publish = Callable[[RawBatch], None]
#: <asm-generic/socket.h>; Python's `socket` module does not export it
SO_RCVBUFFORCE = 33


def set_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a `size`-byte receive buffer, past net.core.rmem_max when privileged.

    SO_RCVBUFFORCE (CAP_NET_ADMIN) is what rsyslog's imudp and nfcapd use: the
    default rmem_max (4 MiB here) holds well under a second of a busy sender.
    Without the privilege (or off Linux) the kernel caps SO_RCVBUF at rmem_max.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


@dataclass
class SourceMetrics:
    """Live counters of one source (cumulative since the process started)."""

    received: int = 0
    bytes: int = 0
    dropped: int = 0
    skipped_empty: int = 0
    truncated: int = 0
    errors: int = 0
    lag_bytes: int = 0
    last_seen: datetime | None = None
    last_error: str | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["last_seen"] = self.last_seen.isoformat() if self.last_seen else None
        return d


class Source(ABC):
    """A source reads records and publishes raw batches until stopped."""

    type: str = ""
    #: how long a partly filled batch of a streaming source waits for more records
    #: (`pipeline.batch_max_ms`; set by the runtime): latency against per-batch cost
    flush_seconds: float = 0.2

    def __init__(self, source_id: str, config: Any, *, checkpoints: dict[str, Checkpoint]) -> None:
        self.id = source_id
        self.config = config
        self.committed = checkpoints
        self.metrics = SourceMetrics()
        self.stop_event = threading.Event()

    @abstractmethod
    def run(self, publish: Publish) -> None:
        """Read and publish until `stop_event` is set (or input ends, for one-shot sources)."""

    def stop(self) -> None:
        self.stop_event.set()


def all_one_shot(sources: list[Any]) -> bool:
    """True for a one-shot import (`ingest`): sources, all reading to an end.

    No sources (`demo` serving) or any tailing source (`run`) is long-running:
    rules reload and intel feeds refresh only there.
    """
    return bool(sources) and all(getattr(s, "one_shot", False) for s in sources)
