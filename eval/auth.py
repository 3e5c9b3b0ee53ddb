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

Files are grouped in sections by `# filterOptions:` (fail2ban's filter
modes); lines of sections that exist only for the `ddos`/`aggressive`/
`extra` modes are what fail2ban matches only in that stricter mode, so
agreement is also reported over the normal-mode lines alone.
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


@dataclass
class Case:
    """One annotated line."""

    note: dict[str, Any]
    line: str
    #: fail2ban filter modes of the section ("" = the normal mode)
    modes: tuple[str, ...] = ("",)

    @property
    def match(self) -> bool:
        return bool(self.note.get("match"))

    @property
    def host(self) -> str | None:
        h = self.note.get("host")
        return str(h) if h else None


def _modes(spec: str) -> tuple[str, ...]:
    """`# filterOptions: [{}, {"mode": "aggressive"}]` -> ("", "aggressive")."""
    try:
        opts = json.loads(spec)
    except json.JSONDecodeError:
        return ("",)
    if isinstance(opts, dict):
        opts = [opts]
    return tuple(str(o.get("mode", "")) if isinstance(o, dict) else "" for o in opts) or ("",)


def read_cases(path: Path) -> list[Case]:
    """The annotated lines of a fail2ban test log (note, then the line it describes)."""
    cases: list[Case] = []
    note: dict[str, Any] | None = None
    modes: tuple[str, ...] = ("",)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#") and "filterOptions:" in line:
            modes = _modes(line.split(":", 1)[1])
        elif line.startswith("#") and "failJSON:" in line:
            note = json.loads(line.split(":", 1)[1])
        elif line.startswith("#") or not line.strip():
            continue
        elif note is not None:
            cases.append(Case(note, line, modes))
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
    agree = agree_normal = normal = 0
    wrong: list[dict[str, Any]] = []
    for c in cases:
        ok, why = _judge(c, by_line.get(c.line, []), fail)
        agree += ok
        if "" in c.modes:
            normal += 1
            agree_normal += ok
        if not ok:
            wrong.append(
                {
                    "expected": "match" if c.match else "no match",
                    "host": c.host,
                    "modes": list(c.modes),
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
        "normal_mode_lines": normal,
        "normal_mode_agree": agree_normal,
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
    normal = sum(f["normal_mode_lines"] for f in files)
    agree_n = sum(f["normal_mode_agree"] for f in files)
    contradicted = sum(f["contradicted"] for f in files)
    return {
        "failure_rules": sorted(fail),
        "files": files,
        "lines": lines,
        "contradicted": contradicted,
        "ceiling": (lines - contradicted) / lines if lines else None,
        "agree": agree,
        "agreement": agree / lines if lines else None,
        "normal_mode_agreement": agree_n / normal if normal else None,
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
            f["lines"],
            f["match_true"],
            f["parse_failures"],
            f["agree"],
            pct(f["agreement"]),
            f"{f['normal_mode_agree']}/{f['normal_mode_lines']}",
        ]
        for f in res["files"]
    ]
    total = res["agreement"]
    rows.append(
        [
            "overall",
            res["lines"],
            sum(f["match_true"] for f in res["files"]),
            sum(f["parse_failures"] for f in res["files"]),
            res["agree"],
            pct(total),
            pct(res["normal_mode_agreement"]),
        ]
    )
    out.append(
        table(
            ["file", "lines", "match:true", "parse fail", "agree", "agreement", "normal mode"], rows
        )
    )
    out.append(
        f"Lines whose identical text is annotated both match and no match (modes differ): "
        f"{res['contradicted']}; ceiling for any per-line detector: {pct(res['ceiling'])}"
    )
    ok = total is not None and total >= res["target"]
    out.append(f"Target overall agreement >= {pct(res['target'])}: {pct(total)} {target(ok)}")
    for f in res["files"]:
        if not f["disagreements"]:
            continue
        out.append(f"Disagreements in {f['file']} ({len(f['disagreements'])}, first {SHOW}):")
        for d in f["disagreements"][:SHOW]:
            mode = ",".join(m or "normal" for m in d["modes"])
            out.append(f"  [{d['expected']}, host {d['host']}, mode {mode}] {d['got']}")
            out.append(f"      {d['line'][:150]}")
    return "\n".join(out)
