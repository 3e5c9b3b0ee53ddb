"""Web section: the stream rules on CSIC 2010 and on real benign access logs.

CSIC 2010 holds raw HTTP requests (request line, headers, blank line, then
the body of a POST/PUT). Each request becomes one Apache combined-log line,
as the server would have logged it: the request target in origin form (path
and query; CSIC wrote it in absolute form, as a proxy sees it), status 200
(the dataset has no responses), the Referer and User-Agent headers. Access
logs do not hold bodies, so the requests are scored twice:

- **as logged**: the URL only;
- **body in query**: a POST/PUT body appended to the query string, which is
  how WAF/IDS evaluations of CSIC usually feed it.

A request is flagged when any stream rule flagged its event. Every request
gets its own timestamp (one second apart) so its log line is unique and
flagged events map back to requests by `event.original`.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eval.common import DATA, Env, confusion, pct, table
from lightsoc.detect.ml.web_data import Request, origin_form, read_requests

WEB = DATA / "web"
NORMAL = WEB / "normalTrafficTraining.txt.gz"
ANOMALOUS = WEB / "anomalousTrafficTest.txt.gz"
BENIGN = (WEB / "apache_logs_benign.log", WEB / "hackers-access.log")
START = datetime(2010, 11, 29, 0, 0, tzinfo=UTC)
#: client addresses cycle through this many, so per-source alerts stay few
CLIENTS = 250


def _escape(s: str) -> str:
    """Apache's escaping of logged strings: quote, backslash, control bytes."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif o < 32 or o > 126:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


def log_line(req: Request, i: int, with_body: bool = False) -> str:
    """The combined-log line of request number `i` (unique: its own second)."""
    target = origin_form(req.target)
    if with_body and req.body:
        target += ("&" if "?" in target else "?") + req.body
    ip = f"10.{20 + (i % CLIENTS) // 250}.{(i % CLIENTS) % 250}.{1 + i % 7}"
    ts = (START + timedelta(seconds=i)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    size = 1000 + len(target) % 500
    ref = req.headers.get("referer", "-")
    ua = req.headers.get("user-agent", "-")
    return (
        f'{ip} - - [{ts}] "{_escape(req.method)} {_escape(target)} {req.version}" 200 {size} '
        f'"{_escape(ref)}" "{_escape(ua)}"'
    )


def _score(requests: list[tuple[Request, bool]], with_body: bool) -> dict[str, Any]:
    """Ingest all requests; the confusion matrix and per-rule hits."""
    lines = [log_line(r, i, with_body) for i, (r, _) in enumerate(requests)]
    truth = [bad for _, bad in requests]
    if len(set(lines)) != len(lines):
        raise RuntimeError("CSIC log lines are not unique: flagged events would not map back")
    index = {line: i for i, line in enumerate(lines)}
    with Env() as env:
        summary = env.ingest_lines(lines)
        flagged = env.flagged().to_dicts()
    hit = [False] * len(lines)
    per_rule: dict[str, Counter[str]] = {}
    for row in flagged:
        i = index.get(row["event.original"])
        if i is None:
            continue
        hit[i] = True
        for name in row["rule.name"] or []:
            per_rule.setdefault(name, Counter())["anomalous" if truth[i] else "normal"] += 1
    cm = confusion(truth, hit)
    return {
        "requests": len(lines),
        "events": summary["events"],
        "parse_failures": summary["parse_failures"],
        "seconds": round(summary["seconds"], 1),
        **cm.as_dict(),
        "per_rule": {k: dict(v) for k, v in sorted(per_rule.items())},
    }


def _benign(path: Path) -> dict[str, Any]:
    """Flagged events and alerts, per rule, on a real (mostly benign) access log."""
    with Env() as env:
        summary = env.ingest_paths([path])
        flagged = env.flagged().to_dicts()
        alerts = env.alerts()
    per_rule: Counter[str] = Counter()
    for row in flagged:
        per_rule.update(row["rule.name"] or [])
    alerts_by_rule: Counter[str] = Counter(a.rule_name for a in alerts)
    return {
        "file": path.name,
        "lines": summary["received"],
        "events": summary["events"],
        "flagged_events": len(flagged),
        "alerts": len(alerts),
        "per_rule": dict(sorted(per_rule.items())),
        "alerts_per_rule": dict(sorted(alerts_by_rule.items())),
    }


def run(limit: int | None = None) -> dict[str, Any]:
    """The web section's figures (`limit`: requests per CSIC file, for quick runs)."""
    normal = list(read_requests(NORMAL))[:limit]
    anomalous = list(read_requests(ANOMALOUS))[:limit]
    requests = [(r, False) for r in normal] + [(r, True) for r in anomalous]
    out: dict[str, Any] = {
        "csic": {
            "normal": len(normal),
            "anomalous": len(anomalous),
            "with_body": sum(1 for r, _ in requests if r.body),
            "as_logged": _score(requests, with_body=False),
            "body_in_query": _score(requests, with_body=True),
        },
        "benign": [_benign(p) for p in BENIGN],
    }
    return out


def report(res: dict[str, Any]) -> str:
    """The web section as text."""
    c = res["csic"]
    out = [
        f"CSIC 2010: {c['normal']} normal + {c['anomalous']} anomalous requests "
        f"({c['with_body']} with a body); flagged = any stream rule flagged the request",
    ]
    rows = []
    for key, label in (("as_logged", "as logged (URL only)"), ("body_in_query", "body in query")):
        m = c[key]
        rows.append(
            [
                label,
                m["tp"],
                m["fp"],
                m["tn"],
                m["fn"],
                pct(m["precision"]),
                pct(m["recall"]),
                pct(m["fpr"]),
                pct(m["f1"]),
            ]
        )
    out.append(table(["input", "TP", "FP", "TN", "FN", "precision", "recall", "FPR", "F1"], rows))
    out.append(
        "Note: CSIC 'anomalous' includes non-attack anomalies (odd parameter values, e.g. a"
        " letter in a phone number); signature rules cannot flag those, so recall is bounded."
    )
    names = sorted(set(c["as_logged"]["per_rule"]) | set(c["body_in_query"]["per_rule"]))
    rule_rows = []
    for n in names:
        a = c["as_logged"]["per_rule"].get(n, {})
        b = c["body_in_query"]["per_rule"].get(n, {})
        rule_rows.append(
            [
                n,
                a.get("normal", 0),
                a.get("anomalous", 0),
                b.get("normal", 0),
                b.get("anomalous", 0),
            ]
        )
    out.append("")
    out.append("Per rule (requests flagged):")
    out.append(
        table(
            ["rule", "normal (URL)", "anom. (URL)", "normal (+body)", "anom. (+body)"],
            rule_rows or [["(no rule flagged anything)", 0, 0, 0, 0]],
        )
    )
    out.append("")
    out.append("Real benign logs (false alerts):")
    brows = []
    for b in res["benign"]:
        rules = set(b["per_rule"]) | set(b["alerts_per_rule"])
        if not rules:
            brows.append([b["file"], b["lines"], "(none)", 0, 0])
        for n in sorted(rules):
            brows.append(
                [
                    b["file"],
                    b["lines"],
                    n,
                    b["per_rule"].get(n, 0),
                    b["alerts_per_rule"].get(n, 0),
                ]
            )
    out.append(table(["file", "lines", "rule", "flagged events", "alerts"], brows))
    tot = [
        f"{b['file']}: {b['flagged_events']} flagged, {b['alerts']} alerts" for b in res["benign"]
    ]
    out.append("Totals: " + "; ".join(tot))
    return "\n".join(out)
