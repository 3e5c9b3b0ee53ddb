"""Auth section: failure detections against fail2ban's `# failJSON` annotations.

fail2ban's filter test logs annotate lines with the verdict of fail2ban's own
filter: `"match": true` and the offending `host`, or `"match": false`. Each
file is imported as a syslog file through the real pipeline; a line agrees
when

- `match: true`: a failure rule flagged its event and the event's source
  (`source.ip`, or `source.domain`/`source.address` for a host name) is the
  annotated host;
- `match: false`: no failure rule flagged it.

A *failure rule* is a detection rule of the pack (not a correlation) tagged
`attack.t1110*` or titled with "fail"/"reject", on a log source other than
firewall/web/proxy/DNS: the rules a brute-force correlation counts. Rules that only feed a correlation (Sigma `generate:
false`) do not flag events in the stream; they are evaluated here on the
stored events with lightsoc's own compiled rules, as the correlation pass does.

An annotation is a verdict *in a filter mode*: files are split in sections by
`# filterOptions:` (the modes the section is tested in: `{}` is the filter's
default, others are `ddos`, `aggressive`, `extra`, `auth`, `errors`, ...), and
a line's `constraint` (e.g. `opts.get('mode') != 'aggressive'`) narrows it
further; the same text is annotated "match" in one mode and "no match" in
another. lightsoc has one behaviour, so the target is measured against the
verdicts of fail2ban's default configuration (the lines a default install is
tested on); agreement with every annotation of every mode is printed beside it
with its ceiling (lines annotated both ways cap any per-line detector).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from eval.common import DATA, Env, pack_rules, pct, table, target
from lightsoc.detect.ruleset import RuleSet, builtin_dir
from lightsoc.detect.sigma.compiler import load_path

FAIL2BAN = DATA / "auth" / "fail2ban"
#: fail2ban test files of services lightsoc parses (sshd, dovecot, postfix, PAM, vsftpd)
FILES = ("sshd", "dovecot", "postfix", "pam-generic", "vsftpd")
TARGET = 0.95
SHOW = 8
_FAIL_TITLE = re.compile(r"fail|reject", re.I)
#: log sources that are not authentication logs (flow rules counting port-22 connections
#: are tagged T1110 too, but they never see a syslog line)
_NOT_AUTH = ("firewall", "webserver", "proxy", "dns")


#: fail2ban's conditions on a filter's name and options, as its test files write them
_CONDITION = re.compile(
    r"""^\s*(?:opts\.get\(['"](?P<opt>[\w.]+)['"]\)|(?P<name>name))\s*(?P<op>==|!=)\s*"""
    r"""['"](?P<value>[^'"]*)['"]\s*$"""
)


def holds(condition: str | None, filter_name: str, options: dict[str, Any]) -> bool:
    """Does fail2ban's `condition` hold for the filter `filter_name` with `options`?"""
    if not condition:
        return True
    m = _CONDITION.match(condition)
    if m is None:
        raise ValueError(f"fail2ban condition not understood: {condition!r}")
    actual = filter_name if m["name"] else options.get(m["opt"])
    return (actual == m["value"]) == (m["op"] == "==")


@dataclass
class Case:
    """One annotated line."""

    note: dict[str, Any]
    line: str
    #: the section's `filterOptions` (one dict per mode it is tested in; {} = default)
    options: tuple[dict[str, Any], ...] = ({},)

    @property
    def match(self) -> bool:
        return bool(self.note.get("match"))

    @property
    def host(self) -> str | None:
        h = self.note.get("host")
        return str(h) if h else None

    @property
    def modes(self) -> tuple[str, ...]:
        """The section's filter modes ("" = the filter's default)."""
        return tuple(str(o.get("mode", "")) for o in self.options)

    def applies(self, filter_name: str, mode: str = "") -> bool:
        """Is this verdict fail2ban's for `filter_name` in `mode` ("" = default)?"""
        return any(
            str(o.get("mode", "")) == mode
            and holds(o.get("test.condition"), filter_name, o)
            and holds(self.note.get("constraint"), filter_name, o)
            for o in self.options
        )


def _options(spec: str) -> tuple[dict[str, Any], ...]:
    """`# filterOptions: [{}, {"mode": "aggressive"}]` -> ({}, {"mode": "aggressive"})."""
    try:
        opts = json.loads(spec)
    except json.JSONDecodeError:
        return ({},)
    if isinstance(opts, dict):
        opts = [opts]
    return tuple(o if isinstance(o, dict) else {} for o in opts) or ({},)


def read_cases(path: Path) -> list[Case]:
    """The annotated lines of a fail2ban test log (note, then the line it describes)."""
    cases: list[Case] = []
    note: dict[str, Any] | None = None
    options: tuple[dict[str, Any], ...] = ({},)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#") and "filterOptions:" in line:
            options = _options(line.split(":", 1)[1])
        elif line.startswith("#") and "failJSON:" in line:
            note = json.loads(line.split(":", 1)[1])
        elif line.startswith("#") or not line.strip():
            continue
        elif note is not None:
            cases.append(Case(note, line, options))
            note = None
    return cases


def failure_titles() -> set[str]:
    """Titles of the pack's failure rules (see the module doc)."""
    return {
        r.title
        for r in pack_rules()
        if not r.correlation
        and r.category not in _NOT_AUTH
        and (
            any(t.lower().startswith("attack.t1110") for t in r.tags) or _FAIL_TITLE.search(r.title)
        )
    }


def _base_rules() -> RuleSet:
    """The pack's correlation-only detection rules, compiled by lightsoc."""
    base = builtin_dir()
    return RuleSet(load_path(base).correlation_bases if base else [])


def _rule_hits(df: pl.DataFrame, bases: RuleSet) -> list[list[str]]:
    """Per stored row: stream flags plus the correlation-only rules that match it."""
    stream = df.get_column("rule.name").to_list() if "rule.name" in df.columns else []
    stream = [list(s or []) for s in stream] or [[] for _ in range(df.height)]
    if not len(bases) or df.height == 0:
        return stream
    plain = df.drop([c for c in ("rule.name", "rule.id", "event.risk_score") if c in df.columns])
    more = bases.evaluate(plain)
    extra = more.get_column("rule.name").to_list() if "rule.name" in more.columns else []
    return [s + list(e or []) for s, e in zip(stream, extra or [[]] * df.height, strict=True)]


def _judge(case: Case, rows: list[dict[str, Any]], fail: set[str]) -> tuple[bool, str]:
    """Does lightsoc agree with the annotation? And what it did, for the listing."""
    failing = [r for r in rows if fail & set(r["hits"])]
    if not case.match:
        return not failing, "flagged " + ",".join(
            sorted(fail & set(failing[0]["hits"]))
        ) if failing else "not flagged"
    if not failing:
        got = "; ".join(f"dataset={r['event.dataset']} hits={r['hits']}" for r in rows[:1])
        return False, f"not flagged as failure ({got or 'no event'})"
    if case.host is None:
        return True, "flagged"
    for r in failing:
        if case.host in (r.get("source.ip"), r.get("source.domain"), r.get("source.address")):
            return True, "flagged"
    return False, f"flagged, but source.ip={failing[0].get('source.ip')}"


def evaluate_file(name: str, fail: set[str], bases: RuleSet) -> dict[str, Any]:
    """Agreement on one fail2ban file."""
    cases = read_cases(FAIL2BAN / name)
    with Env() as env:
        summary = env.ingest_lines([c.line for c in cases])
        df = env.events()
    hits = _rule_hits(df, bases)
    cols = [
        c
        for c in ("event.original", "event.dataset", "source.ip", "source.domain", "source.address")
        if c in df.columns
    ]
    by_line: dict[str, list[dict[str, Any]]] = {}
    for row, h in zip(df.select(cols).to_dicts(), hits, strict=True):
        row["hits"] = h
        by_line.setdefault(row["event.original"], []).append(row)
    # The same text annotated match in one filter mode and no match in another: whatever a
    # per-line detector does, one of them disagrees.
    verdicts: dict[str, set[bool]] = {}
    for c in cases:
        verdicts.setdefault(c.line, set()).add(c.match)
    both = {line for line, v in verdicts.items() if len(v) == 2}
    contradicted = sum(1 for c in cases if c.line in both) - len(both)
    agree = agree_default = default = 0
    wrong: list[dict[str, Any]] = []
    for c in cases:
        ok, why = _judge(c, by_line.get(c.line, []), fail)
        agree += ok
        if c.applies(name):
            default += 1
            agree_default += ok
        if not ok:
            wrong.append(
                {
                    "expected": "match" if c.match else "no match",
                    "host": c.host,
                    "modes": list(c.modes),
                    "default_mode": c.applies(name),
                    "line": c.line,
                    "got": why,
                }
            )
    return {
        "file": name,
        "lines": len(cases),
        "match_true": sum(c.match for c in cases),
        "events": summary["events"],
        "parse_failures": summary["parse_failures"],
        "agree": agree,
        "agreement": agree / len(cases) if cases else None,
        "default_mode_lines": default,
        "default_mode_agree": agree_default,
        "default_mode_agreement": agree_default / default if default else None,
        "contradicted": contradicted,
        "disagreements": wrong,
    }


def run() -> dict[str, Any]:
    """The auth section's figures."""
    fail = failure_titles()
    bases = _base_rules()
    files = [evaluate_file(f, fail, bases) for f in FILES if (FAIL2BAN / f).is_file()]
    lines = sum(f["lines"] for f in files)
    agree = sum(f["agree"] for f in files)
    default = sum(f["default_mode_lines"] for f in files)
    agree_d = sum(f["default_mode_agree"] for f in files)
    contradicted = sum(f["contradicted"] for f in files)
    return {
        "failure_rules": sorted(fail),
        "files": files,
        "lines": lines,
        "contradicted": contradicted,
        "ceiling": (lines - contradicted) / lines if lines else None,
        "agree": agree,
        "agreement": agree / lines if lines else None,
        "default_mode_lines": default,
        "default_mode_agree": agree_d,
        "default_mode_agreement": agree_d / default if default else None,
        "target": TARGET,
    }


def report(res: dict[str, Any]) -> str:
    """The auth section as text."""
    out = [
        "fail2ban failJSON agreement (failure rules: " + ", ".join(res["failure_rules"]) + ")",
    ]
    rows = [
        [
            f["file"],
            f["default_mode_lines"],
            f["default_mode_agree"],
            pct(f["default_mode_agreement"]),
            f["lines"],
            f["agree"],
            pct(f["agreement"]),
            f["parse_failures"],
        ]
        for f in res["files"]
    ]
    total = res["default_mode_agreement"]
    rows.append(
        [
            "overall",
            res["default_mode_lines"],
            res["default_mode_agree"],
            pct(total),
            res["lines"],
            res["agree"],
            pct(res["agreement"]),
            sum(f["parse_failures"] for f in res["files"]),
        ]
    )
    headers = [
        "file",
        "default-mode lines",
        "agree",
        "agreement",
        "all-mode lines",
        "agree",
        "agreement",
        "parse fail",
    ]
    out.append(table(headers, rows))
    out.append(
        "default mode: the verdicts of fail2ban's default filter configuration; all modes: every "
        "annotation of every mode (ddos, aggressive, extra, auth, ...) at once. Lines annotated "
        f"both match and no match across modes: {res['contradicted']}; ceiling for any per-line "
        f"detector over all modes: {pct(res['ceiling'])}"
    )
    ok = total is not None and total >= res["target"]
    out.append(f"Target default-mode agreement >= {pct(res['target'])}: {pct(total)} {target(ok)}")
    for f in res["files"]:
        wrong = sorted(f["disagreements"], key=lambda d: not d["default_mode"])
        if not wrong:
            continue
        n = sum(d["default_mode"] for d in wrong)
        out.append(f"Disagreements in {f['file']} ({n} default mode, {len(wrong)} all modes):")
        for d in wrong[:SHOW]:
            mode = ",".join(m or "default" for m in d["modes"])
            mark = "default" if d["default_mode"] else f"only {mode}"
            out.append(f"  [{mark}: {d['expected']}, host {d['host']}] {d['got']}")
            out.append(f"      {d['line'][:150]}")
    return "\n".join(out)
