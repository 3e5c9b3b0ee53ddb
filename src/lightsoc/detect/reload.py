"""Stream rules that follow the Rules page without a restart.

`build_pipeline` builds the rule set once; a long-running pipeline (`run`,
`demo`) gets a `ReloadingRuleSet` instead, which the processor calls like a
`RuleSet`. A daemon thread checks, every `reload_seconds` (default 10), what
the rules are made of:

- the state store's rule-flags version (`state_rule_flags`: Sigma rules
  switched on/off, rule files saved from the UI) and simple-rules version
  (`state_rules`: added, switched, deleted);
- the rule files under `detect.rules` (`builtin`, files, directories) and
  `<data_dir>/rules/`: their names, sizes and mtimes.

When any of it changed it calls `build_ruleset` in that thread, so batches
keep being flagged with the old set meanwhile, then swaps the reference (one
assignment: a batch is evaluated by one set from start to end). Like intel's
reload, a failed rebuild keeps the old set and is retried at the next check;
a rebuild that fails to load a rule the current set loads (a rule file saved
broken) is not swapped in either, and says which rule to fix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from lightsoc.detect.build import build_ruleset, imported_dir
from lightsoc.detect.ruleset import Evaluation, RuleSet, builtin_dir
from lightsoc.detect.sigma.compiler import CompiledRule, RuleError, rule_files
from lightsoc.sources.base import all_one_shot

if TYPE_CHECKING:
    from lightsoc.config import Config
    from lightsoc.store.state import StateStore

log = logging.getLogger(__name__)

#: how often the rule sources are checked for changes (seconds)
RELOAD_SECONDS = 10.0


class ReloadingRuleSet:
    """A `RuleSet` rebuilt in the background when rules change; the processor's detector."""

    component_name = "sigma"

    def __init__(
        self,
        config: Config,
        data_dir: Path,
        state: StateStore,
        *,
        reload_seconds: float = RELOAD_SECONDS,
        background: bool = True,
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.state = state
        self.reload_seconds = reload_seconds
        #: swaps so far, and failed or refused rebuilds (metrics, tests)
        self.reloads = 0
        self.errors = 0
        self._followers: list[Callable[[RuleSet], None]] = []
        self._stamp = self.stamp()
        # the first build is waited for, as `build_ruleset` is at start-up
        self.current: RuleSet = build_ruleset(config, self.data_dir, state)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._poll, name="rules-reload", daemon=True)
            self._thread.start()

    # -- the RuleSet interface -------------------------------------------------
    @property
    def rules(self) -> list[CompiledRule]:
        return self.current.rules

    @property
    def failures(self) -> list[RuleError]:
        return self.current.failures

    @property
    def fields(self) -> set[str]:
        return self.current.fields

    def __len__(self) -> int:
        return len(self.current)

    def evaluate_hits(self, df: pl.DataFrame) -> Evaluation:
        return self.current.evaluate_hits(df)

    def evaluate(self, df: pl.DataFrame) -> pl.DataFrame:
        return self.current.evaluate(df)

    def detect(self, df: pl.DataFrame) -> pl.DataFrame:
        return self.current.evaluate(df)  # one set for the whole batch, even mid-swap

    def __repr__(self) -> str:
        return f"ReloadingRuleSet({len(self.current)} rules, {self.reloads} reloads)"

    # -- reloading ---------------------------------------------------------------
    def follow(
        self,
        levels: MutableMapping[str, str],
        tags: MutableMapping[str, list[str]],
    ) -> None:
        """Keep the alerter's per-rule `levels`/`tags` maps in step with every swap.

        Entries are added or updated, never removed: events a removed rule
        flagged just before the swap still get its severity when alerted.
        """

        def update(rs: RuleSet) -> None:
            levels.update({r.id: r.level for r in rs.rules})
            tags.update({r.id: list(r.tags) for r in rs.rules})

        self._followers.append(update)

    def paths(self) -> list[Path]:
        """The rule files and directories `build_ruleset` reads."""
        out: list[Path] = []
        for p in self.config.detect.rules:
            if str(p) == "builtin":
                d = builtin_dir()
                if d is not None:
                    out.append(d)
            else:
                out.append(Path(p))
        out.append(imported_dir(self.data_dir))
        return out

    def stamp(self) -> Hashable:
        """What the rules are made of: store versions, rule files with size and mtime."""
        from lightsoc.store.state_rule_flags import RuleFlags
        from lightsoc.store.state_rules import RulesStore

        files: list[tuple[str, int, int]] = []
        for path in self.paths():
            for f in rule_files(path) if path.exists() else ():
                try:
                    st = f.stat()
                except OSError:  # deleted between listing and stat: the next check sees it
                    continue
                files.append((str(f), st.st_mtime_ns, st.st_size))
        return (RuleFlags(self.state).version(), RulesStore(self.state).version(), tuple(files))

    def check(self) -> bool:
        """Rebuild and swap if the rules changed; True if a new set is in use."""
        try:
            stamp = self.stamp()
        except Exception as exc:  # a locked/closed store: keep the rules, look again later
            log.warning("rules: checking for changes failed (%s); retrying", exc)
            self.errors += 1
            return False
        if stamp == self._stamp:
            return False
        try:
            fresh = build_ruleset(self.config, self.data_dir, self.state)
        except Exception:
            log.exception("rules: rebuilding failed; keeping the %d rules loaded", len(self))
            self.errors += 1
            return False  # the stamp stays old: retried at the next check
        # the stamp was taken before the build: a change made meanwhile is seen next time
        self._stamp = stamp
        broken = _new_failures(self.current, fresh)
        if broken:
            for f in broken:
                log.error("rules: not reloaded, %s; fix it and the rules reload", f)
            log.error("rules: keeping the %d rules loaded", len(self))
            self.errors += 1
            return False
        self._swap(fresh)
        return True

    def _swap(self, fresh: RuleSet) -> None:
        for follow in self._followers:  # severities first: a new rule's first alert has its own
            follow(fresh)
        self.current = fresh  # one assignment: atomic for the processor thread
        self.reloads += 1
        log.info("rules: reloaded, %d stream rules in use", len(fresh))

    def _poll(self) -> None:
        while not self._stop.wait(self.reload_seconds):
            self.check()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background checks (the thread is a daemon: optional at exit)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _new_failures(old: RuleSet, new: RuleSet) -> list[RuleError]:
    """Failures of `new` that `old` did not have (compared by their one-line text)."""
    known = {str(f) for f in old.failures}
    return [f for f in new.failures if str(f) not in known]


def live_ruleset(
    config: Config,
    stores: Any,  # noqa: ANN401 - runtime.Stores
    sources: list[Any],
) -> ReloadingRuleSet | None:
    """A `ReloadingRuleSet` for a long-running pipeline, None for a one-shot `ingest`.

    Long-running is what intel's stream options call it: no sources (`demo`
    serving) or any source that is not a one-shot import (`run`).
    """
    if all_one_shot(sources):
        return None
    return ReloadingRuleSet(config, stores.data_dir, stores.state)
