"""The UI's pages, one module each, found by scanning this package.

A module defines ``router(ctx: WebContext) -> APIRouter`` and, to appear in
the navigation, ``NAV = NavItem(order, path, label, role)``. Adding a page
touches no shared file: its module, its templates, its strings in
``locales/zh-CN/<module>.json`` and its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def load() -> list[ModuleType]:
    return [
        importlib.import_module(f"{__name__}.{m.name}")
        for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
        if not m.name.startswith("_")
    ]
