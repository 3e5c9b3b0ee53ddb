"""`lightsoc rules`: import, list and test detection rules; manage simple DB rules.

lightsoc rules import DIR_OR_FILE... [--json]   # valid Sigma rules -> <data_dir>/rules/
lightsoc rules list [--json]
lightsoc rules test RULE_OR_DIR (--events FILE [--format auto] | --since 24h) [--json]
lightsoc rules add --name N --field F (--regex R | --contains S | --equals V) --severity S
lightsoc rules enable|disable NAME
lightsoc rules except NAME --field F --value V
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "rules"
HELP = "import, list and test detection rules; simple rules in the state store"

SEVERITIES = ("informational", "low", "medium", "high", "critical")


def add_arguments(parser: argparse.ArgumentParser, common: Callable[..., None]) -> None:
    sub = parser.add_subparsers(dest="rules_command", required=True)

    imp = sub.add_parser("import", help="check Sigma rules and copy the valid ones in")
    imp.add_argument("paths", nargs="+", type=Path)
    imp.add_argument("--json", action="store_true", help="print one JSON summary")
    common(imp)

    ls = sub.add_parser("list", help="the rules the pipeline loads")
    ls.add_argument("--json", action="store_true", help="one JSON object per rule")
    common(ls)

    t = sub.add_parser("test", help="evaluate rules on a log file or on stored events")
    t.add_argument("rules", type=Path, help="a rule file or a directory of rules")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", type=Path, help="a log file (parsed with --format)")
    src.add_argument("--since", help="stored events of this time span (e.g. 24h)")
    t.add_argument("--format", default="auto", help="parser of --events (default auto)")
    t.add_argument("--limit", type=int, default=100_000, help="stored events to read at most")
    t.add_argument("--json", action="store_true", help="one JSON summary")
    common(t)

    add = sub.add_parser("add", help="add a simple rule (field matches -> name, severity)")
    add.add_argument("--name", required=True)
    add.add_argument("--field", required=True, help="ECS field, e.g. url.query")
    how = add.add_mutually_exclusive_group(required=True)
    how.add_argument("--regex")
    how.add_argument("--contains")
    how.add_argument("--equals")
    add.add_argument("--severity", choices=SEVERITIES, default="medium")
    common(add)

    for verb in ("enable", "disable"):
        p = sub.add_parser(verb, help=f"{verb} a simple rule")
        p.add_argument("name")
        common(p)

    ex = sub.add_parser("except", help="suppress a simple rule where FIELD equals VALUE")
    ex.add_argument("name")
    ex.add_argument("--field", required=True)
    ex.add_argument("--value", required=True)
    common(ex)


def run(args: argparse.Namespace) -> int:
    from lightsoc.cli import _config

    config = _config(args)
    handler = {
        "import": _import,
        "list": _list,
        "test": _test,
        "add": _add,
        "enable": _enable,
        "disable": _enable,
        "except": _except,
    }[args.rules_command]
    return handler(args, config)


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")


def _json(obj: Any) -> None:  # noqa: ANN401
    import orjson

    _print(orjson.dumps(obj).decode())


def _usage(message: str) -> Exception:
    from lightsoc.cli import UsageError

    return UsageError(message)


def _import(args: argparse.Namespace, config: Any) -> int:  # noqa: ANN401
    from lightsoc.detect.build import imported_dir
    from lightsoc.detect.sigma.compiler import load_text, rule_files

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise _usage(f"no such file or directory: {', '.join(missing)}")
    dest_root = imported_dir(config.data_dir)
    loaded = failed = files = correlations = 0
    failures: list[dict[str, str]] = []
    for root in args.paths:
        for path in rule_files(root):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                failed += 1
                failures.append({"rule": f"file {path}", "reason": f"unreadable: {exc}"})
                continue
            res = load_text(text, str(path))
            correlations += len(res.correlations)
            loaded += len(res.rules)
            failed += len(res.failures)
            failures.extend({"rule": f.rule, "reason": f.reason} for f in res.failures)
            if (res.rules or res.correlations) and not res.failures:  # only files that load whole
                rel = path.relative_to(root) if root.is_dir() else Path(path.name)
                dest = dest_root / (root.name if root.is_dir() else "") / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                files += 1
    if args.json:
        _json(
            {
                "loaded": loaded,
                "failed": failed,
                "correlations": correlations,
                "files_copied": files,
                "destination": str(dest_root),
                "failures": failures,
            }
        )
        return 0
    for f in failures:
        _print(f"failed: {_safe(f['rule'])}: {_safe(f['reason'])}")
    _print(
        f"{loaded} rule(s) loaded, {failed} failed"
        + (f", {correlations} correlation rule(s) for the scheduler" if correlations else "")
        + f"; {files} file(s) copied to {dest_root}"
    )
    return 0


def _safe(text: str) -> str:
    """Rule text is untrusted: no control characters reach the terminal."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _ruleset(config: Any, *, with_state: bool = True) -> Any:  # noqa: ANN401
    from lightsoc.detect.build import build_ruleset

    state = _state(config) if with_state else None
    try:
        return build_ruleset(config, config.data_dir, state)
    finally:
        if state is not None:
            state.close()


def _state(config: Any) -> Any:  # noqa: ANN401
    from lightsoc.store.state import StateStore

    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    return StateStore.for_data_dir(config.data_dir, config.store.state)


def _list(args: argparse.Namespace, config: Any) -> int:  # noqa: ANN401
    rs = _ruleset(config)
    for r in rs.rules:
        row = {
            "id": r.id,
            "title": r.title,
            "level": r.level,
            "score": r.score,
            "logsource": r.logsource,
            "kind": r.kind,
            "origin": r.origin,
        }
        if args.json:
            _json(row)
        else:
            _print(f"{r.level:<13} {r.logsource:<12} {_safe(r.title)}  [{_safe(r.origin)}]")
    if not args.json:
        _print(f"{len(rs.rules)} rule(s) loaded, {len(rs.failures)} failed")
    return 0


def _test(args: argparse.Namespace, config: Any) -> int:  # noqa: ANN401
    from lightsoc.detect.ruleset import RuleSet

    if not args.rules.exists():
        raise _usage(f"no such rule file or directory: {args.rules}")
    rs = RuleSet.load([args.rules])
    for f in rs.failures:
        sys.stderr.write(f"failed: {_safe(str(f))}\n")
    if args.events is not None:
        df = _events_from_file(args.events, args.format)
    else:
        df = _events_stored(config, args.since, args.limit)
    ev = rs.evaluate_hits(df)
    per_rule = {r.title: len(rows) for r, rows in ev.hits}
    flagged = (
        int(ev.events["rule.name"].is_not_null().sum()) if "rule.name" in ev.events.columns else 0
    )
    summary = {
        "rules": len(rs.rules),
        "failed": len(rs.failures),
        "events": df.height,
        "flagged": flagged,
        "matches": per_rule,
    }
    if args.json:
        _json(summary)
        return 0
    for name, n in sorted(per_rule.items(), key=lambda kv: -kv[1]):
        _print(f"{n:>8}  {_safe(name)}")
    _print(
        f"{len(rs.rules)} rule(s), {df.height} event(s), {flagged} flagged"
        + (f", {len(rs.failures)} rule(s) failed to load" if rs.failures else "")
    )
    return 0


def _events_from_file(path: Path, fmt: str) -> Any:  # noqa: ANN401
    import polars as pl

    from lightsoc.parsers import get_parser, parse_records
    from lightsoc.runtime import check_format

    problem = check_format(fmt)
    if problem:
        raise _usage(f"--format: {problem}")
    if not path.is_file():
        raise FileNotFoundError(f"not a readable file: {path}")
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln]
    records = pl.DataFrame({"event.original": lines}, schema={"event.original": pl.Utf8})
    return parse_records(records, get_parser(fmt))


def _events_stored(config: Any, since: str, limit: int) -> Any:  # noqa: ANN401
    import polars as pl

    from lightsoc import schema
    from lightsoc.client import open_reader
    from lightsoc.timeutil import parse_duration

    try:
        parse_duration(since)
    except ValueError as exc:
        raise _usage(f"--since: {exc}") from None
    reader = open_reader(config.data_dir, config.store.events)
    try:
        rows = reader.search("", since, limit, None)
    finally:
        reader.close()
    cols = {n: [r.get(n) for r in rows] for n in schema.NAMES if n != "@timestamp"}
    return pl.DataFrame(cols, schema={n: schema.POLARS_SCHEMA[n] for n in cols}, strict=False)


def _add(args: argparse.Namespace, config: Any) -> int:  # noqa: ANN401
    from lightsoc import schema
    from lightsoc.detect.sigma.compiler import RuleError
    from lightsoc.detect.simple import compile_simple
    from lightsoc.store.state_rules import RulesStore, SimpleRule

    if args.field not in schema.POLARS_SCHEMA:
        raise _usage(f"--field: {args.field!r} is not an event field")
    kind, pattern = next(
        (k, v)
        for k, v in (("regex", args.regex), ("contains", args.contains), ("equals", args.equals))
        if v is not None
    )
    probe = SimpleRule(0, args.name, args.field, kind, pattern, args.severity, True)
    try:
        compile_simple(probe)  # reject what the stream could not evaluate, before storing
    except RuleError as exc:
        raise _usage(f"--{kind}: {exc.reason}") from None
    state = _state(config)
    try:
        rid = RulesStore(state).add(args.name, args.field, kind, pattern, args.severity)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    finally:
        state.close()
    _print(
        f"added simple rule {rid}: {_safe(args.name)} ({args.field} {kind} {_safe(pattern)}) -> {args.severity}"
    )
    return 0


def _enable(args: argparse.Namespace, config: Any) -> int:  # noqa: ANN401
    from lightsoc.store.state_rules import RulesStore

    state = _state(config)
    try:
        RulesStore(state).set_enabled(args.name, args.rules_command == "enable")
    except KeyError as exc:
        raise _usage(str(exc.args[0])) from None
    finally:
        state.close()
    _print(f"{args.rules_command}d {_safe(args.name)}")
    return 0


def _except(args: argparse.Namespace, config: Any) -> int:  # noqa: ANN401
    from lightsoc import schema
    from lightsoc.store.state_rules import RulesStore

    if args.field not in schema.POLARS_SCHEMA:
        raise _usage(f"--field: {args.field!r} is not an event field")
    state = _state(config)
    try:
        RulesStore(state).add_exception(args.name, args.field, args.value)
    except KeyError as exc:
        raise _usage(str(exc.args[0])) from None
    finally:
        state.close()
    _print(f"exception added to {_safe(args.name)}: {args.field} = {_safe(args.value)}")
    return 0
