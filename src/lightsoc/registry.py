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
_loaded: set[str] = set()

T = TypeVar("T")

# Packages whose modules register built-in components when imported.
_BUILTIN_PACKAGES = {
    "sources": "lightsoc.sources",
    "parsers": "lightsoc.parsers",
    "enrichers": "lightsoc.enrich",
    "outputs": "lightsoc.alerts.outputs",
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


def load_all(kind: str | None = None) -> None:
    """Import the built-in modules and entry-point plugins of `kind` (all kinds: None), once.

    Per kind, because a CLI command that needs parsers should not pay for
    importing every alert output's HTTP and SMTP clients.
    """
    for k in KINDS if kind is None else (kind,):
        if k in _loaded:
            continue
        _loaded.add(k)
        pkg_name = _BUILTIN_PACKAGES[k]
        pkg = importlib.import_module(pkg_name)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{mod.name}")
        for ep in entry_points(group=f"lightsoc.{k}"):
            register(k, ep.name)(ep.load())


def get(kind: str, name: str) -> Any:
    load_all(kind)
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY[kind]))
        raise KeyError(f"no {kind[:-1]} named {name!r} (known: {known})") from None


def names(kind: str) -> list[str]:
    load_all(kind)
    return sorted(_REGISTRY[kind])


def all_of(kind: str) -> dict[str, Any]:
    load_all(kind)
    return dict(_REGISTRY[kind])
