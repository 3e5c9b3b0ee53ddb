"""IOCs from Elastic detection-rule exports (NDJSON, KQL queries over ECS fields).

Advisories ship IOC lists as Elastic rules (e.g. ACSC 2020-008): each line is
a rule whose `query` is `field: "value" or field: value ...`. The values of
IP, domain, URL and hash fields become indicators labelled with the rule
name; other fields (e-mail, user agent, file path) are counted as skipped.
"""

from __future__ import annotations

import json
import re

from lightsoc.enrich.intel_formats import LoadResult

# field: "quoted value" | field: bare-value (KQL)
_PAIR = re.compile(r'([\w.@]+)\s*:\s*(?:"((?:[^"\\]|\\.)*)"|([^\s()"]+))')
_IOC_FIELD = re.compile(r"(^|\.)(ip|domain|hash\.(md5|sha1|sha256|sha512)|original|full)$")


def load_ecs_rules(text: str, path: str = "") -> LoadResult:
    """Indicators from the KQL queries of an Elastic rule export, one rule per line."""
    res = LoadResult(path, "ecs")
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rule = json.loads(line)
        except ValueError:
            res.bad(line)
            continue
        query = rule.get("query") if isinstance(rule, dict) else None
        if isinstance(rule, dict) and "exported_count" in rule:  # the export's summary line
            res.skipped += 1
            continue
        if not isinstance(query, str):
            res.bad(line)
            continue
        label = rule.get("name") or None
        for field, quoted, bare in _PAIR.findall(query):
            value = quoted if quoted else bare
            if field.startswith(
                ("url.", "source.", "destination.", "process.", "file.", "dns.")
            ) and (_IOC_FIELD.search(field)):
                res.add(value.replace('\\"', '"'), label)
            else:
                res.skipped += 1
    return res


def looks_like_ecs_rules(head: str) -> bool:
    """True if the first line is an Elastic rule with a KQL/Lucene query."""
    first = head.lstrip().split("\n", 1)[0]
    try:
        doc = json.loads(first)
    except ValueError:
        return False
    return isinstance(doc, dict) and "query" in doc and "rule_id" in doc
