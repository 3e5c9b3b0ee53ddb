"""Interface languages: English (the message ids) and Simplified Chinese.

A catalog is every `locales/<locale>/*.json` file merged (one per page, so a
page adds its strings without touching another's file), mapping the English
text to the translation. A missing translation shows the English text; the
tests check every string the templates use is translated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

from fastapi import Request

from lightsoc.auth import LOCALES

LOCALE_DIR = Path(__file__).parent / "locales"
LANG_COOKIE = "lightsoc_lang"
NAMES = {"en": "English", "zh-CN": "简体中文"}


@cache
def catalog(locale: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for _path, table in catalog_files(locale):
        for key, value in table.items():
            merged.setdefault(key, value)  # base.json first; the tests flag conflicts
    return merged


def catalog_files(locale: str) -> list[tuple[Path, dict[str, str]]]:
    """The catalog files of `locale`, `base.json` first, then by name."""
    folder = LOCALE_DIR / locale
    paths = sorted(folder.glob("*.json"), key=lambda p: (p.name != "base.json", p.name))
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in paths]


def translator(locale: str) -> Callable[..., str]:
    """`_("Alerts")`, or with fields `_("{n} events", n=5)` (formatted after translation)."""
    table = catalog(locale) if locale != "en" else {}

    def gettext(message: str, **fields: object) -> str:
        text = table.get(message, message)
        return text.format(**fields) if fields else text

    return gettext


def request_locale(request: Request, user_locale: str | None = None) -> str:
    """The user's choice; before login the language cookie, then Accept-Language."""
    if user_locale in LOCALES:
        return user_locale
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LOCALES:
        return cookie
    accept = request.headers.get("accept-language", "").lower()
    first = accept.split(",")[0].strip()
    return "zh-CN" if first.startswith("zh") else "en"
