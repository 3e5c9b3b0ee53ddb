"""Every interface string has its Simplified Chinese translation."""

from __future__ import annotations

import json
import re

from lightsoc.web import routes
from lightsoc.web.context import TEMPLATE_DIR
from lightsoc.web.i18n import LOCALE_DIR, catalog, catalog_files, translator

# `_("text")` / `_('text')` with a literal, possibly followed by format fields
LITERAL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
# strings that are names, not words
UNTRANSLATED = {"lightsoc", "ASN", "IP", "URL", "CSV", "NDJSON", "JSON", "API", "YAML", "Sigma"}


def template_strings() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in TEMPLATE_DIR.rglob("*.html"):
        for m in LITERAL.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(m.group(1) if m.group(1) is not None else m.group(2), path.name)
    return found


def test_every_template_string_and_nav_label_is_translated() -> None:
    zh = catalog("zh-CN")
    wanted = template_strings()
    for module in routes.load():
        if hasattr(module, "NAV"):
            wanted.setdefault(module.NAV.label, module.__name__)
    missing = {s: where for s, where in wanted.items() if s not in zh and s not in UNTRANSLATED}
    assert missing == {}
    assert len(wanted) > 20


def test_catalog_files_are_valid_and_keep_format_fields() -> None:
    for path in (LOCALE_DIR / "zh-CN").glob("*.json"):
        for key, value in json.loads(path.read_text(encoding="utf-8")).items():
            assert isinstance(value, str) and value.strip(), (path.name, key)
            assert set(re.findall(r"{(\w+)}", key)) == set(re.findall(r"{(\w+)}", value)), key


def test_no_string_is_translated_two_ways() -> None:
    seen: dict[str, tuple[str, str]] = {}
    conflicts = []
    for path, table in catalog_files("zh-CN"):
        for key, value in table.items():
            if key in seen and seen[key][1] != value:
                conflicts.append(f"{key!r}: {seen[key][0]} {seen[key][1]!r}, {path.name} {value!r}")
            seen.setdefault(key, (path.name, value))
    assert conflicts == []


def test_translator_formats_after_translating_and_falls_back_to_english() -> None:
    zh = translator("zh-CN")
    assert zh("Log in") == "登录"
    assert zh("a string nobody translated") == "a string nobody translated"
    assert translator("en")("Log in") == "Log in"
