"""Fan alerts out to outputs without ever blocking the caller.

Each output has a worker thread and a bounded queue. `notify` filters by the
output's `min_severity` and enqueues (queue full -> the alerts are counted as
dropped). The worker sends one message per rate-limit slot (`rate_limit`
messages per minute): alerts that arrive while no slot is free are folded into
the next message, a digest, instead of being dropped. A failed send is retried
on network errors, 5xx and 429 with exponential backoff and jitter, bounded by
`max_attempts` and `retry_max_seconds`. Counters per output are in `stats()`.

Options every output accepts (defaults): `min_severity` (all), `rate_limit`
(the service's documented limit, e.g. 20 for WeCom/DingTalk), `max_attempts`
(5), `backoff_initial` (1 s), `backoff_max` (60 s), `retry_max_seconds` (300),
`queue_size` (1000 batches), `max_digest` (1000 alerts held for one message).

    d = Dispatcher.from_config(config.alerts)
    d.notify([alert.as_dict() for alert in new_alerts])  # returns at once
    d.stats()  # {"oncall": {"sent": 3, "failed": 0, ..., "last_error": None}}
    d.close()
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from lightsoc import registry
from lightsoc.alerts.outputs.base import Output, OutputError, severity_rank
from lightsoc.config import AlertsConfig, OutputConfig

log = logging.getLogger("lightsoc.alerts.outputs")

__all__ = ["Dispatcher", "build_output", "build_outputs"]


def build_output(output_id: str, config: OutputConfig) -> Output:
    """The output named by `config.type`; unknown type or bad options -> ValueError."""
    import lightsoc.alerts.outputs  # noqa: F401  (registers the built-in outputs)

    try:
        cls = registry.get("outputs", config.type)
    except KeyError as e:
        raise ValueError(f"output {output_id!r}: option 'type': {e.args[0]}") from None
    return cls(output_id, config)


def build_outputs(config: AlertsConfig) -> list[Output]:
    return [build_output(oid, cfg) for oid, cfg in config.outputs.items()]


class _Worker:
    """One output's queue, rate limiter, retry loop and counters."""

    def __init__(self, output: Output) -> None:
        self.output = output
        opt = output.option
        pos = {"check": lambda v: v > 0, "expect": "a positive number"}
        self.rate_limit = opt("rate_limit", int, output.default_rate_limit, **pos)
        # the window of `rate_limit` (a minute; shorter only to keep tests fast)
        self.rate_period = opt("rate_period", float, 60.0, **pos)
        self.max_attempts = opt("max_attempts", int, 5, **pos)
        self.backoff_initial = opt("backoff_initial", float, 1.0, **pos)
        self.backoff_max = opt("backoff_max", float, 60.0, **pos)
        self.retry_max_seconds = opt("retry_max_seconds", float, 300.0, **pos)
        self.max_digest = opt("max_digest", int, 1000, **pos)
        size = opt("queue_size", int, 1000, **pos)
        min_sev = output.config.min_severity
        self.min_rank = severity_rank(min_sev) if min_sev else 0
        self.queue: queue.Queue[list[dict[str, Any]]] = queue.Queue(maxsize=size)
        self.sent_times: deque[float] = deque()
        self.pending: list[dict[str, Any]] = []
        self.pending_batches = 0
        # batches accepted by `offer` and not yet sent, failed or dropped (for `flush`)
        self.outstanding = 0
        self.lock = threading.Lock()
        self.counters = {
            "sent": 0,  # alerts delivered
            "messages": 0,  # messages delivered (a digest is one)
            "digests": 0,  # messages that carried alerts held back by the rate limit
            "failed": 0,  # alerts given up on after retries
            "retried": 0,  # retry attempts
            "dropped": 0,  # alerts not queued (queue full, digest full, shutdown)
            "rate_limited": 0,  # alerts that waited for a slot and went out in a digest
        }
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"lightsoc-output-{output.id}", daemon=True
        )

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] += n

    def offer(self, alerts: list[dict[str, Any]]) -> None:
        wanted = [a for a in alerts if severity_rank(a.get("severity")) >= self.min_rank]
        if not wanted:
            return
        with self.lock:
            self.outstanding += 1
        try:
            self.queue.put_nowait(wanted)
        except queue.Full:
            with self.lock:
                self.outstanding -= 1
            self.count("dropped", len(wanted))
            log.warning("output %s: queue full, %d alert(s) dropped", self.output.id, len(wanted))

    # ---------------------------------------------------------------- worker

    def _slot_wait(self) -> float:
        """Seconds until the rate limit allows another message (0: now)."""
        now = time.monotonic()
        while self.sent_times and now - self.sent_times[0] >= self.rate_period:
            self.sent_times.popleft()
        if len(self.sent_times) < self.rate_limit:
            return 0.0
        return self.rate_period - (now - self.sent_times[0])

    def _take(self, timeout: float | None) -> bool:
        """Move queued alerts into `pending`; wait up to `timeout` for the first."""
        try:
            batch = self.queue.get(timeout=timeout) if timeout != 0 else self.queue.get_nowait()
        except queue.Empty:
            return False
        self._add(batch)
        while True:  # drain what else is queued: it goes out in the same message
            try:
                self._add(self.queue.get_nowait())
            except queue.Empty:
                return True

    def _add(self, batch: list[dict[str, Any]]) -> None:
        self.pending_batches += 1
        room = self.max_digest - len(self.pending)
        if room < len(batch):
            self.count("dropped", len(batch) - max(room, 0))
            batch = batch[: max(room, 0)]
        self.pending.extend(batch)

    def _run(self) -> None:
        held = 0  # alerts in `pending` that waited for a rate-limit slot
        while not self.stop.is_set():
            if not self.pending and not self._take(timeout=0.2):
                continue
            wait = self._slot_wait()
            if wait > 0:
                # No slot: everything pending (and arriving) waits for the next message.
                self.count("rate_limited", len(self.pending) - held)
                held = len(self.pending)
                self._take(timeout=min(wait, 0.2))
                continue
            self._take(timeout=0)
            alerts, self.pending = self.pending, []
            batches, self.pending_batches = self.pending_batches, 0
            digest, held = held > 0, 0
            self._deliver(alerts, digest)
            self._done(batches)
        self._drop_rest()

    def _deliver(self, alerts: list[dict[str, Any]], digest: bool) -> None:
        out = self.output
        started = time.monotonic()
        for attempt in range(1, self.max_attempts + 1):
            self.sent_times.append(time.monotonic())
            try:
                out.send(alerts)
            except Exception as e:  # an output bug must not kill the worker
                err = e if isinstance(e, OutputError) else OutputError(f"{type(e).__name__}: {e}")
                msg = out.redact(str(err))
                with self.lock:
                    self.last_error = msg
                    self.last_error_at = datetime.now(UTC).isoformat(timespec="seconds")
                delay = self._backoff(attempt, err.retry_after)
                elapsed = time.monotonic() - started
                if (
                    not err.retryable
                    or attempt >= self.max_attempts
                    or elapsed + delay > self.retry_max_seconds
                    or self.stop.is_set()
                ):
                    self.count("failed", len(alerts))
                    log.warning(
                        "output %s: %d alert(s) not sent after %d attempt(s): %s",
                        out.id,
                        len(alerts),
                        attempt,
                        msg,
                    )
                    return
                self.count("retried")
                log.info("output %s: attempt %d failed (%s), retrying", out.id, attempt, msg)
                if self.stop.wait(delay):
                    self.count("failed", len(alerts))
                    return
            else:
                with self.lock:
                    self.counters["sent"] += len(alerts)
                    self.counters["messages"] += 1
                    self.counters["digests"] += int(digest)
                return

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential, jittered to 50-100%, so many lightsoc instances do not retry in step."""
        base = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
        delay = random.uniform(base / 2, base)
        if retry_after is not None:  # the service said when: honour it (bounded)
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _done(self, batches: int) -> None:
        with self.lock:
            self.outstanding -= batches

    def _drop_rest(self) -> None:
        n, batches = len(self.pending), self.pending_batches
        self.pending, self.pending_batches = [], 0
        while True:
            try:
                n += len(self.queue.get_nowait())
                batches += 1
            except queue.Empty:
                break
        if n:
            self.count("dropped", n)
        self._done(batches)

    def idle(self) -> bool:
        with self.lock:
            return self.outstanding == 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "type": self.output.component_name,
                "target": self.output.target,
                **self.counters,
                "queued": self.queue.qsize(),
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }


class Dispatcher:
    """Sends alerts to every output in the background; `notify` never blocks."""

    def __init__(self, outputs: Iterable[Output]) -> None:
        self._workers = {o.id: _Worker(o) for o in outputs}
        for w in self._workers.values():
            w.thread.start()

    @classmethod
    def from_config(cls, config: AlertsConfig) -> Dispatcher:
        return cls(build_outputs(config))

    def notify(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Queue `alerts` for every output whose minimum severity they reach."""
        batch = list(alerts)
        if batch:
            for w in self._workers.values():
                w.offer(batch)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queue is empty and no send is in progress (False: timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(w.idle() for w in self._workers.values()):
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers; alerts still queued are counted as dropped."""
        for w in self._workers.values():
            w.stop.set()
        deadline = time.monotonic() + timeout
        for w in self._workers.values():
            w.thread.join(max(0.0, deadline - time.monotonic()))
            if not w.thread.is_alive():
                w.output.close()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Counters per output id, safe to print (no secrets)."""
        return {oid: w.stats() for oid, w in self._workers.items()}

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_once(
    config: AlertsConfig, changed: Sequence[Any], timeout: float = 30.0
) -> dict[str, Any]:
    """Send the new and escalated alerts of a one-shot run (ingest pass, `lightsoc detect`).

    Returns the outputs' counters; nothing is sent (and no output is built)
    when no output is configured or nothing is worth a notification.
    """
    to_send = [c.alert.as_dict() for c in changed if c.notify]
    if not config.outputs or not to_send:
        return {}
    with Dispatcher.from_config(config) as dispatcher:
        dispatcher.notify(to_send)
        dispatcher.flush(timeout)
        return dispatcher.stats()
