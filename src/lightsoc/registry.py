"""Component registry: sources, parsers, enrichers and outputs by name.

Built-in components register through the same mechanism as third-party ones:
the built-in packages are scanned, then the `lightsoc.<kind>` entry points.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

KINDS = ("sources", "parsers", "enrichers", "outputs")
_REGISTRY: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
_loaded = False

T = TypeVar("T")

# Packages whose modules register built-in components when imported.
_BUILTIN_PACKAGES = {
    "sources": "lightsoc.sources",
    "parsers": "lightsoc.parsers",
    "enrichers": "lightsoc.enrich",
}


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class/function decorator: `@register("parsers", "nginx_combined")`."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown component kind {kind!r}; one of {', '.join(KINDS)}")

    def deco(obj: T) -> T:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing is not obj:
            raise ValueError(f"{kind[:-1]} {name!r} registered twice")
        _REGISTRY[kind][name] = obj
        setattr(obj, "component_name", name)  # noqa: B010
        return obj

    return deco


def load_all() -> None:
    """Import built-in component modules and entry-point plugins once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for pkg_name in _BUILTIN_PACKAGES.values():
        pkg = importlib.import_module(pkg_name)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{mod.name}")
    for kind in KINDS:
        for ep in entry_points(group=f"lightsoc.{kind}"):
            register(kind, ep.name)(ep.load())


def get(kind: str, name: str) -> Any:
    load_all()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY[kind]))
        raise KeyError(f"no {kind[:-1]} named {name!r} (known: {known})") from None


def names(kind: str) -> list[str]:
    load_all()
    return sorted(_REGISTRY[kind])


def all_of(kind: str) -> dict[str, Any]:
    load_all()
    return dict(_REGISTRY[kind])
