"""A process's heartbeat in the state store (`lightsoc status` lists them)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightsoc.store.state import StateStore

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0


def process_id(role: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{role}"


class Heartbeat:
    """Writes this process's heartbeat every few seconds (a state store outage is
    logged and counted, never fatal)."""

    def __init__(
        self,
        state: StateStore,
        role: str,
        stats: Callable[[], tuple[int, int | None, dict[str, Any]]],
        every: float = HEARTBEAT_SECONDS,
    ) -> None:
        from lightsoc.store.state_cluster import Heartbeats, ProcessBeat

        self.beats = Heartbeats(state)
        self.me = ProcessBeat(
            process_id(role), role, socket.gethostname(), os.getpid(), datetime.now(UTC)
        )
        self.stats = stats
        self.every = every
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._last: tuple[float, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        events, lag, detail = self.stats()
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            self.me.events_per_second = round((events - self._last[1]) / (now - self._last[0]), 1)
        self._last = (now, events)
        self.me.events, self.me.lag, self.me.detail = events, lag, detail
        self.beats.beat(self.me)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:
                self.errors += 1
                log.warning(
                    "heartbeat not written (state store unreachable?): %s", type(exc).__name__
                )
                log.debug("heartbeat failure", exc_info=True)
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            self.beats.remove(self.me.id)
        except Exception:
            log.warning("heartbeat row of %s not removed", self.me.id, exc_info=True)
