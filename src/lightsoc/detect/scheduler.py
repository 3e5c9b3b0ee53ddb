"""The correlation scheduler: every rule, every `interval`, over the last `lookback`.

Each run evaluates [until - lookback, until) (lookback >= interval, default
2 x interval + the longest rule timespan, so a window is seen whole at least
once after it ends and late events within the lookback still count). Runs
overlap on purpose; windows are epoch-aligned (`correlation_eval`) and the
alert store makes re-raising a (rule, group key, window) idempotent, so an
overlap never double-alerts.

Per-rule watermarks in the state store (`state_detect`) record how far each
rule has run. After a restart a rule resumes from its watermark instead of
`until - lookback`, catching up in bounded steps (each step's events are
read and evaluated on their own; the watermark advances after each), and
never further back than `max_catchup`.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightsoc.detect.correlation import CorrelationRule, load_for_config
from lightsoc.detect.correlation_eval import AllowFilter, RunResult, run_rules

if TYPE_CHECKING:
    from lightsoc.alerts.store import AlertStore
    from lightsoc.config import Config
    from lightsoc.runtime import Stores
    from lightsoc.store.events_duckdb import DuckDBEventStore
    from lightsoc.store.state import StateStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = timedelta(minutes=1)
DEFAULT_STEP = timedelta(hours=1)
DEFAULT_MAX_CATCHUP = timedelta(days=7)


def _now() -> datetime:
    return datetime.now(UTC)


class CorrelationScheduler:
    """Runs correlation rules over the event store; `run_once(until)` is one tick."""

    def __init__(
        self,
        events: DuckDBEventStore,
        state: StateStore,
        rules: Sequence[CorrelationRule],
        *,
        interval: timedelta = DEFAULT_INTERVAL,
        lookback: timedelta | None = None,
        step: timedelta = DEFAULT_STEP,
        max_catchup: timedelta = DEFAULT_MAX_CATCHUP,
        alerts: AlertStore | None = None,
        notify: Callable[[list[dict[str, Any]]], None] | None = None,
        allow: AllowFilter | None = None,
    ) -> None:
        from lightsoc.alerts.store import AlertStore
        from lightsoc.store.state_detect import WatermarkStore

        longest = max((r.timespan for r in rules), default=timedelta(0))
        self.lookback = lookback if lookback is not None else 2 * interval + longest
        if interval <= timedelta(0) or self.lookback < interval:
            raise ValueError("the interval must be positive and the lookback at least as long")
        self.events = events
        self.rules = list(rules)
        self.interval = interval
        self.step = max(step, self.lookback)
        self.max_catchup = max(max_catchup, self.lookback)
        self.alerts = alerts or AlertStore(state)
        self.watermarks = WatermarkStore(state)
        self.notify = notify
        self.allow = allow
        self.runs = 0
        self.last: RunResult | None = None

    def run_once(self, until: datetime | None = None) -> RunResult:
        """Evaluate every rule up to `until` (default now) and advance the watermarks."""
        until = (until or _now()).astimezone(UTC)
        marks = self.watermarks.get_all()
        default_start = until - self.lookback
        oldest = until - self.max_catchup
        # rules that start at the same point share one read of the store per step
        by_start: dict[datetime, list[CorrelationRule]] = defaultdict(list)
        for rule in self.rules:
            wm = marks.get(rule.id)
            start = default_start if wm is None else max(oldest, min(wm, default_start))
            by_start[start].append(rule)
        total = RunResult(rules=len(self.rules))
        for start, rules in sorted(by_start.items()):
            a = start
            while a < until:
                b = min(until, a + self.step)
                res = run_rules(self.events, self.alerts, rules, a, b, self.allow)
                total.add(res)
                self.watermarks.set_many([r.id for r in rules if r.id not in res.failed], b)
                a = b
        self.runs += 1
        self.last = total
        if self.notify is not None:
            to_send = [c.alert.as_dict() for c in total.changed if c.notify]
            if to_send:
                self.notify(to_send)
        total.changed = []  # do not keep alert objects around between runs
        return total

    def tick(self) -> None:
        """One run up to now; a failing run is logged, never raised."""
        try:
            res = self.run_once()
            if res.new or res.updated:
                log.info(
                    "correlation: %d new, %d updated alert(s) from %d window(s)",
                    res.new,
                    res.updated,
                    res.windows,
                )
        except Exception:
            log.exception("correlation run failed")

    def loop(self, stop: threading.Event) -> None:
        """Run now, then every `interval` until `stop` is set."""
        while True:
            self.tick()
            if stop.wait(self.interval.total_seconds()):
                return


def from_config(
    config: Config, data_dir: Path, stores: Stores, **kw: Any
) -> CorrelationScheduler | None:
    """A scheduler for the configured correlation rules (None if there are none)."""
    loaded = load_for_config(config.detect.rules, data_dir)
    if not loaded.rules:
        return None
    from lightsoc.alerts.store import AlertStore

    kw.setdefault("allow", AllowFilter.for_config(config, stores.state))
    kw.setdefault("alerts", AlertStore.for_config(stores.state, config))
    kw.setdefault("interval", config.detect.interval)
    kw.setdefault("lookback", config.detect.lookback)
    return CorrelationScheduler(stores.events, stores.state, loaded.rules, **kw)


def start_background(
    config: Config, data_dir: Path, stores: Stores, stop: threading.Event
) -> threading.Thread:
    """Start the scheduler thread of `lightsoc run` (it uses the server's open stores).

    One thread runs the correlation rules and the ML window jobs in turn, so the
    server's join before it closes the stores waits for both.
    """

    def main() -> None:
        from lightsoc.alerts.outputs.dispatcher import Dispatcher
        from lightsoc.detect.ml import jobs

        dispatcher = None
        try:
            if config.alerts.outputs:  # new and escalated alerts go to the outputs
                dispatcher = Dispatcher.from_config(config.alerts)
            notify = dispatcher.notify if dispatcher is not None else None
        except Exception:
            log.exception("alert outputs could not be set up; scheduled alerts are not sent")
            notify = None
        try:
            sched = from_config(config, data_dir, stores, notify=notify)
        except Exception:
            log.exception("correlation rules could not be loaded; the scheduler is off")
            sched = None
        try:
            ml = jobs.from_config(config, stores.events, stores.state, notify=notify)
        except Exception:
            log.exception("ml jobs could not be set up; they are off")
            ml = None
        try:
            if sched is not None:
                log.info(
                    "correlation scheduler: %d rule(s) every %s", len(sched.rules), sched.interval
                )
            if ml is not None:
                kinds = [j.kind for j, _ in ml.jobs] + [f"retrain-{r.kind}" for r, _ in ml.retrain]
                log.info("ml jobs: %s", ", ".join(kinds))
            _loop(sched, ml, stop)
        finally:
            if dispatcher is not None:
                dispatcher.flush(10)
                dispatcher.close()

    thread = threading.Thread(target=main, name="scheduler", daemon=True)
    thread.start()
    return thread


def _loop(sched: CorrelationScheduler | None, ml: Any, stop: threading.Event) -> None:  # noqa: ANN401
    """Correlation rules, then the ML jobs that are due, every tick until `stop`."""
    from lightsoc.detect.ml.jobs import TICK

    if sched is None and ml is None:
        return
    tick = min(sched.interval, TICK) if sched is not None else TICK
    while True:
        if sched is not None:
            sched.tick()
        if ml is not None:
            ml.tick(stop)
        if stop.wait(tick.total_seconds()):
            return
