"""Rules API: list the rules the server runs with their alert counts, test, save, switch.

Any role reads; analysts may test a Sigma rule against stored events (it
changes nothing); admins save rules, switch them on and off and manage the
simple state-store rules. Rule text is untrusted: it is compiled, never
executed, and comes back only as JSON data. Every change is audited.
"""

# No `from __future__ import annotations`: FastAPI must resolve the local
# `Reader`/`Tester`/`Admin` dependency aliases in the route signatures.
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import polars as pl
import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from lightsoc import schema
from lightsoc.alerts.model import utc
from lightsoc.detect.build import imported_dir
from lightsoc.detect.correlation import load_for_config
from lightsoc.detect.ruleset import RuleSet
from lightsoc.detect.sigma.compiler import CompiledRule, LoadResult, load_text
from lightsoc.detect.simple import load_simple
from lightsoc.output import event_rows
from lightsoc.store.base import TimeRange
from lightsoc.store.state_alerts import alerts
from lightsoc.store.state_rule_flags import RuleFlags
from lightsoc.store.state_rules import MATCH_KINDS, SEVERITIES, RulesStore, SimpleRule
from lightsoc.timeutil import parse_duration, since_range
from lightsoc.web.api import MAX_OFFSET
from lightsoc.web.security import Principal

if TYPE_CHECKING:
    from lightsoc.config import Config
    from lightsoc.web.context import WebContext

#: a rule test reads at most this many stored events (newest first) ...
TEST_MAX_EVENTS = 200_000
#: ... of at most this span
TEST_MAX_SPAN_DAYS = 7
#: matching events returned by a test
TEST_SAMPLE = 20
MAX_YAML = 200_000
MAX_LIST = 2000
#: subfolder of <data_dir>/rules where rules saved from the UI go
UI_DIR = "ui"
ML_PREFIX = "ml-"


class RuleText(BaseModel):
    yaml: str = Field(min_length=1, max_length=MAX_YAML)


class RuleTest(RuleText):
    since: str = Field(default="24h", max_length=20)


class RuleSave(RuleText):
    #: replace a file saved before under the same name
    overwrite: bool = False


class SimpleRuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    field: str = Field(min_length=1, max_length=200)
    kind: Literal["regex", "contains", "equals"]
    pattern: str = Field(min_length=1, max_length=5000)
    severity: Literal["informational", "low", "medium", "high", "critical"] = "medium"


def server_config(ctx: "WebContext") -> "Config":
    """The server's config if the context carries it; else the defaults over its data dir.

    The defaults load the built-in pack and `<data_dir>/rules` (what `lightsoc run`
    without `detect.rules` does).
    """
    cfg = ctx.config
    if cfg is not None:
        return cfg
    from lightsoc.config import parse_config

    data_dir = Path(getattr(ctx.events, "path", Path("events.duckdb"))).parent
    cfg = parse_config("", base_dir=data_dir)
    cfg.data_dir = data_dir
    return cfg


@dataclass
class Loaded:
    """Every Sigma rule found (disabled ones too) and what failed, for one rule-file state."""

    stream: list[CompiledRule] = field(default_factory=list)
    correlations: list[Any] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class RuleCatalog:
    """The configured Sigma rules, compiled once per change of the rule files."""

    def __init__(self, config: "Config") -> None:
        self.config = config
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._loaded = Loaded()

    def _signature(self) -> tuple[Any, ...]:
        """Names and mtimes of the imported rule files (`rules import` or the UI add some)."""
        root = imported_dir(self.config.data_dir)
        if not root.is_dir():
            return ()
        return tuple((str(p), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file())

    def load(self) -> Loaded:
        key = self._signature()
        with self._lock:
            if key != self._key:
                paths: list[str | Path] = list(self.config.detect.rules)
                root = imported_dir(self.config.data_dir)
                if root.is_dir():
                    paths.append(root)
                rs = RuleSet.load(paths)
                corr = load_for_config(self.config.detect.rules, self.config.data_dir)
                self._loaded = Loaded(
                    rs.rules,
                    list(corr.rules),
                    [str(f) for f in rs.failures] + [str(f) for f in corr.failures],
                )
                self._key = key
            return self._loaded


def hit_counts(ctx: "WebContext", since: str) -> dict[str, dict[str, Any]]:
    """Per rule id: alerts whose last hit is within `since`, their hits, the latest hit."""
    start = since_range(since).start
    q = sa.select(
        alerts.c.rule_id,
        sa.func.count().label("alerts"),
        sa.func.sum(alerts.c.count).label("hits"),
        sa.func.max(alerts.c.last_seen).label("last"),
    ).group_by(alerts.c.rule_id)
    if start is not None:
        q = q.where(alerts.c.last_seen >= utc(start))
    with ctx.state.engine.connect() as conn:
        rows = conn.execute(q).all()
    return {
        r.rule_id: {
            "alerts": int(r.alerts),
            "hits": int(r.hits or 0),
            "last_hit": utc(r.last).isoformat().replace("+00:00", "Z") if r.last else None,
        }
        for r in rows
    }


def check_since(since: str, name: str = "since") -> None:
    try:
        parse_duration(since)
    except ValueError as exc:
        raise HTTPException(400, f"{name}: {exc}") from None


def compile_yaml(text: str) -> LoadResult:
    """The rules of a YAML text; 400 with every problem (one per line) if any fails."""
    res = load_text(text, "editor")
    problems = [f"{f.rule}: {f.reason}" for f in res.failures]
    if not problems and not res.rules and not res.correlations:
        problems = ["no detection rule in this text"]
    if problems:
        raise HTTPException(400, "\n".join(problems))
    return res


def _rule_summary(r: CompiledRule) -> dict[str, Any]:
    return {"id": r.id, "title": r.title, "level": r.level, "logsource": r.logsource}


def file_name(res: LoadResult, text: str) -> str:
    """A safe file name for a saved rule: its `name:`/`id:`, else its title."""
    first = res.rules[0].id if res.rules else ""
    m = re.search(r"^name:\s*['\"]?([^'\"\n]+)", text, re.M)
    base = (m.group(1) if m else "") or first or (res.rules[0].title if res.rules else "rule")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._")[:100]
    return f"{slug or 'rule'}.yml"


def create_rules_router(ctx: "WebContext") -> APIRouter:
    """/api/v1/rules: list with alert counts, test, save, enable/disable, simple rules."""
    Reader = Annotated[Principal, Depends(ctx.security.require("viewer"))]
    Tester = Annotated[Principal, Depends(ctx.security.require("analyst"))]
    Admin = Annotated[Principal, Depends(ctx.security.require("admin"))]
    router = APIRouter(prefix="/api/v1")
    config = server_config(ctx)
    catalog = RuleCatalog(config)
    flags = RuleFlags(ctx.state)
    simple_store = RulesStore(ctx.state)

    def listing(since: str) -> dict[str, Any]:
        loaded = catalog.load()
        off = flags.disabled()
        counts = hit_counts(ctx, since)
        none = {"alerts": 0, "hits": 0, "last_hit": None}
        out: list[dict[str, Any]] = []
        for r in loaded.stream:
            out.append(
                {
                    **_rule_summary(r),
                    "kind": "stream",
                    "origin": _origin(r.origin, config),
                    "enabled": r.id not in off,
                    "switchable": True,
                    **counts.get(r.id, none),
                }
            )
        for c in loaded.correlations:
            out.append(
                {
                    "id": c.id,
                    "title": c.title,
                    "level": c.level,
                    "logsource": c.type,
                    "kind": "correlation",
                    "origin": _origin(c.origin, config),
                    "enabled": True,
                    "switchable": False,
                    **counts.get(c.id, none),
                }
            )
        for s in simple_store.list():
            rid = f"db:{s.id}"
            out.append(
                {
                    "id": rid,
                    "title": s.name,
                    "level": s.severity,
                    "logsource": "lightsoc",
                    "kind": "simple",
                    "origin": "state store",
                    "enabled": s.enabled,
                    "switchable": True,
                    **counts.get(rid, none),
                }
            )
        known = {r["id"] for r in out}
        for rid in sorted(k for k in counts if k not in known and k.startswith(ML_PREFIX)):
            out.append(
                {
                    "id": rid,
                    "title": rid,
                    "level": "",
                    "logsource": "",
                    "kind": "ml",
                    "origin": "detect.ml",
                    "enabled": True,
                    "switchable": False,
                    **counts[rid],
                }
            )
        return {"since": since, "rules": out, "failures": loaded.failures}

    router.listing = listing  # type: ignore[attr-defined] # the page renders the same data

    @router.get("/rules")
    def list_rules(
        _auth: Reader,
        since: str = "7d",
        kind: Literal["stream", "correlation", "simple", "ml"] | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 500,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Every rule with its kind, state and alert counts within `since`."""
        check_since(since)
        data = listing(since)
        rules = [r for r in data["rules"] if kind is None or r["kind"] == kind]
        return {**data, "total": len(rules), "rules": rules[offset : offset + limit]}

    @router.post("/rules/validate")
    def validate_rule(body: RuleText, _auth: Tester) -> dict[str, Any]:
        """Parse and compile Sigma YAML: `valid` and the problems (a 200 either way)."""
        try:
            res = compile_yaml(body.yaml)
        except HTTPException as exc:
            return {"valid": False, "errors": str(exc.detail).split("\n"), "rules": []}
        return {
            "valid": True,
            "errors": [],
            "rules": [_rule_summary(r) for r in res.rules],
            "correlations": res.correlations,
        }

    @router.post("/rules/test")
    def test_rule(body: RuleTest, _auth: Tester) -> dict[str, Any]:
        """Run Sigma YAML over the stored events of `since` (capped); stores nothing."""
        check_since(body.since)
        span = parse_duration(body.since)
        if span is None or span.days > TEST_MAX_SPAN_DAYS:
            raise HTTPException(400, f"since: at most {TEST_MAX_SPAN_DAYS}d")
        res = compile_yaml(body.yaml)
        if not res.rules:
            raise HTTPException(
                400, "correlation rules run in the scheduler; test their base rules"
            )
        started = time.monotonic()
        rs = RuleSet(res.rules)
        cols = sorted(rs.fields | {"@timestamp", "event.id"})
        table = ctx.events.search(
            "", since_range(body.since), cols, limit=TEST_MAX_EVENTS, order="desc"
        )
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        ev = rs.evaluate_hits(df)
        matched: set[int] = set()
        for _, rows in ev.hits:
            matched.update(rows)
        first = sorted(matched)[:TEST_SAMPLE]  # newest first, as read
        ids = [i for i in df["event.id"].gather(first).to_list() if i] if first else []
        sample = event_rows(ctx.events.events_by_id(ids, TimeRange(since_range(body.since).start)))
        sample.sort(key=lambda e: e.get("@timestamp", ""), reverse=True)
        return {
            "since": body.since,
            "events_scanned": df.height,
            "capped": df.height >= TEST_MAX_EVENTS,
            "matches": len(matched),
            "per_rule": [{**_rule_summary(r), "matches": len(rows)} for r, rows in ev.hits],
            "rules": [_rule_summary(r) for r in res.rules],
            "events": sample,
            "took_ms": round((time.monotonic() - started) * 1000),
        }

    @router.post("/rules", status_code=201)
    def save_rule(body: RuleSave, who: Admin) -> dict[str, Any]:
        """Save Sigma YAML into `<data_dir>/rules/ui/` (as `rules import` would copy it)."""
        res = compile_yaml(body.yaml)
        existing = {r.id for r in catalog.load().stream} | {
            c.id for c in catalog.load().correlations
        }
        dest_dir = imported_dir(config.data_dir) / UI_DIR
        dest = dest_dir / file_name(res, body.yaml)
        clash = [r.id for r in res.rules if r.id in existing]
        if dest.exists() and not body.overwrite:
            raise HTTPException(409, f"a rule file named {dest.name} exists already")
        if clash and not dest.exists():
            raise HTTPException(409, f"a rule with id {clash[0]} is loaded already")
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        tmp.write_text(body.yaml, encoding="utf-8")
        tmp.replace(dest)  # the pipeline never reads half a file
        flags.bump()
        ids = [r.id for r in res.rules]
        ctx.audit.record(who.actor, "rule_save", dest.name, rules=ids, overwrite=body.overwrite)
        return {
            "file": dest.name,
            "rules": [_rule_summary(r) for r in res.rules],
            "correlations": res.correlations,
        }

    def switch(rule_id: str, enabled: bool, who: Principal) -> dict[str, Any]:
        if rule_id.startswith("db:"):
            rule = _simple(rule_id.removeprefix("db:"))
            simple_store.set_enabled(rule.name, enabled)
            flags.bump()
        else:
            loaded = catalog.load()
            if rule_id not in {r.id for r in loaded.stream}:
                if rule_id in {c.id for c in loaded.correlations}:
                    raise HTTPException(400, "correlation rules are switched in their files")
                raise HTTPException(404, f"no stream rule {rule_id!r}")
            flags.set_enabled(rule_id, enabled, who.actor)
        action = "rule_enable" if enabled else "rule_disable"
        ctx.audit.record(who.actor, action, rule_id)
        return {"id": rule_id, "enabled": enabled, "version": flags.version()}

    @router.post("/rules/{rule_id}/enable")
    def enable_rule(rule_id: str, who: Admin) -> dict[str, Any]:
        return switch(rule_id, True, who)

    @router.post("/rules/{rule_id}/disable")
    def disable_rule(rule_id: str, who: Admin) -> dict[str, Any]:
        return switch(rule_id, False, who)

    def _simple(key: str) -> SimpleRule:
        rule = next((s for s in simple_store.list() if str(s.id) == key), None)
        if rule is None:
            raise HTTPException(404, f"no simple rule {key!r}")
        return rule

    def simple_dict(s: SimpleRule) -> dict[str, Any]:
        return {
            "id": s.id,
            "rule_id": f"db:{s.id}",
            "name": s.name,
            "field": s.field,
            "kind": s.kind,
            "pattern": s.pattern,
            "severity": s.severity,
            "enabled": s.enabled,
            "exceptions": [{"field": f, "value": v} for f, v in s.exceptions],
        }

    @router.get("/rules/simple")
    def list_simple(_auth: Reader) -> dict[str, Any]:
        """The simple "field matches -> severity" rules of the state store."""
        rules = simple_store.list()
        return {
            "total": len(rules),
            "rules": [simple_dict(s) for s in rules],
            "kinds": list(MATCH_KINDS),
            "severities": list(SEVERITIES),
        }

    @router.post("/rules/simple", status_code=201)
    def add_simple(body: SimpleRuleIn, who: Admin) -> dict[str, Any]:
        """Add a simple rule (checked by compiling it first, as `rules add` does)."""
        if body.field not in schema.POLARS_SCHEMA:
            raise HTTPException(400, f"field: {body.field!r} is not an event field")
        probe = SimpleRule(0, body.name, body.field, body.kind, body.pattern, body.severity, True)
        bad = load_simple([probe]).failures
        if bad:
            raise HTTPException(400, f"{body.kind}: {bad[0].reason}")
        try:
            rid = simple_store.add(body.name, body.field, body.kind, body.pattern, body.severity)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        flags.bump()
        ctx.audit.record(
            who.actor, "simple_rule_add", f"db:{rid}", name=body.name, field=body.field
        )
        return simple_dict(_simple(str(rid)))

    @router.post("/rules/simple/{rule_id}/{verb}")
    def switch_simple(
        rule_id: int, verb: Literal["enable", "disable"], who: Admin
    ) -> dict[str, Any]:
        return switch(f"db:{rule_id}", verb == "enable", who)

    @router.delete("/rules/simple/{rule_id}")
    def delete_simple(rule_id: int, who: Admin) -> dict[str, Any]:
        rule = _simple(str(rule_id))
        simple_store.remove(rule.name)
        flags.bump()
        ctx.audit.record(who.actor, "simple_rule_delete", f"db:{rule_id}", name=rule.name)
        return {"deleted": rule_id}

    return router


def _origin(origin: str, config: "Config") -> str:
    """Where a rule came from, short: `builtin:web/x.yml`, `imported:ui/x.yml` or the path."""
    from lightsoc.detect.ruleset import builtin_dir

    p = Path(origin)
    for label, root in (("builtin", builtin_dir()), ("imported", imported_dir(config.data_dir))):
        if root is not None:
            try:
                return f"{label}:{p.resolve().relative_to(root.resolve())}"
            except ValueError:
                continue
    return origin
