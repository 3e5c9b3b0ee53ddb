"""IOC loaders for the JSON feed formats: STIX 2.1 bundles and MISP event JSON.

They live apart from `intel_formats` (the indicator model, `classify`, the line
formats and the format dispatch) because they read a parsed document rather
than lines, and STIX pulls in `stix2patterns`. `intel_formats.load_text_as`
imports them when a file is one of these formats (lazily, as it does
`intel_ecs`: this module needs `intel_formats.LoadResult`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from lightsoc.enrich.intel_formats import IntelFormatError, LoadResult


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


_STIX_PATHS = {
    ("ipv4-addr", ("value",)),
    ("ipv6-addr", ("value",)),
    ("domain-name", ("value",)),
    ("url", ("value",)),
}
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")


def load_stix(doc: dict[str, Any], path: str = "") -> LoadResult:
    """STIX 2.1 bundle: `indicator` objects with `stix` patterns (ORs of `=` comparisons).

    Patterns combining observations with AND / FOLLOWEDBY (a single value
    cannot satisfy them) and other object paths are counted as skipped.
    """
    from stix2patterns.pattern import ParseException, Pattern

    res = LoadResult(path, "stix")
    objects = doc.get("objects") if isinstance(doc, dict) else None
    if not isinstance(objects, list):
        raise IntelFormatError(f"{path}: not a STIX bundle (no 'objects' list)")
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("type") != "indicator":
            continue
        pattern = obj.get("pattern")
        if obj.get("pattern_type", "stix") != "stix" or not isinstance(pattern, str):
            res.skipped += 1
            continue
        try:
            data = Pattern(pattern).inspect()
        except (ParseException, Exception):  # stix2patterns raises assorted errors
            res.bad(pattern)
            continue
        # inspect() flattens AND and OR alike; an AND needs every part, so skip it
        if re.search(r"\b(AND|FOLLOWEDBY)\b", _STRING.sub("''", pattern)):
            res.skipped += 1
            continue
        label = obj.get("name") or None
        expires = _parse_time(obj.get("valid_until"))
        for otype, comparisons in data.comparisons.items():
            for obj_path, op, raw in comparisons:
                value = raw[1:-1].replace("\\'", "'") if raw.startswith("'") else raw
                if op != "=":
                    res.skipped += 1
                elif (otype, tuple(obj_path)) in _STIX_PATHS or (
                    otype == "file" and obj_path and obj_path[0] == "hashes"
                ):
                    res.add(value, label, expires)
                else:
                    res.skipped += 1
    return res


_MISP_TYPES = {
    "ip-src",
    "ip-dst",
    "domain",
    "hostname",
    "url",
    "uri",
    "md5",
    "sha1",
    "sha256",
    "sha512",
}


def _misp_events(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, list):
        for item in doc:
            yield from _misp_events(item)
    elif isinstance(doc, dict):
        if "response" in doc:
            yield from _misp_events(doc["response"])
        elif isinstance(doc.get("Event"), dict):
            yield doc["Event"]
        elif "Attribute" in doc or "Object" in doc:
            yield doc


def _misp_attributes(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from event.get("Attribute") or []
    for obj in event.get("Object") or []:
        yield from obj.get("Attribute") or []


def load_misp(doc: Any, path: str = "", to_ids_only: bool = True) -> LoadResult:
    """MISP event JSON (one event, a list, or a `response`); attributes and object attributes.

    Network and hash types are loaded (`ip-src|port`, `filename|md5`,
    `domain|ip` split into their indicator parts); attributes without
    `to_ids` are skipped unless `to_ids_only` is False.
    """
    res = LoadResult(path, "misp")
    events = list(_misp_events(doc))
    if not events:
        raise IntelFormatError(f"{path}: not a MISP event (no Event/Attribute)")
    for event in events:
        label = event.get("info") or None
        for attr in _misp_attributes(event):
            atype = str(attr.get("type", ""))
            value = str(attr.get("value", ""))
            to_ids = attr.get("to_ids") in (True, 1, "1", "true", "True")
            parts = atype.split("|")
            values = value.split("|")
            wanted = [(t, v) for t, v in zip(parts, values, strict=False) if t in _MISP_TYPES]
            if not wanted or (to_ids_only and not to_ids):
                res.skipped += 1
                continue
            for _t, v in wanted:
                res.add(v, label)
    return res
