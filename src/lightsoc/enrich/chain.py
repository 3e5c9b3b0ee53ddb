"""Build and run the enricher chain from the `enrich:` config section.

`build_enrichers({"geoip": {...}, "networks": {...}})` returns the default
chain `[geoip, networks, domains]`, each built from its own sub-dict (a
missing key means default options). A key set to `False` leaves that
enricher out. Keys naming other registered enrichers (plugins, later
built-ins) are appended after the defaults, in config order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from lightsoc import registry
from lightsoc.enrich.base import EnrichConfigError, Enricher
from lightsoc.enrich.domains import DomainsEnricher
from lightsoc.enrich.geoip import GeoIPEnricher
from lightsoc.enrich.networks import NetworksEnricher

DEFAULT_CHAIN: dict[str, type[Enricher]] = {
    "geoip": GeoIPEnricher,
    "networks": NetworksEnricher,
    "domains": DomainsEnricher,
}


def build_enrichers(config: Mapping[str, Any] | None = None) -> list[Enricher]:
    """Instantiate the enricher chain from a plain `{name: options}` dict."""
    config = dict(config or {})
    names = list(DEFAULT_CHAIN) + [n for n in config if n not in DEFAULT_CHAIN]
    chain: list[Enricher] = []
    for name in names:
        options = config.get(name)
        if options is False:
            continue
        if options is None or options is True:
            options = {}
        if not isinstance(options, Mapping):
            raise EnrichConfigError(
                f"enrich.{name}: expected a mapping of options, got {options!r}"
            )
        cls = DEFAULT_CHAIN.get(name)
        if cls is None:
            try:
                cls = registry.get("enrichers", name)
            except KeyError as exc:
                raise EnrichConfigError(f"enrich.{name}: {exc.args[0]}") from None
        chain.append(cls(dict(options)))
    return chain


def apply(enrichers: Iterable[Enricher], df: pl.DataFrame) -> pl.DataFrame:
    """Run each enricher over the batch in order."""
    height = df.height
    for enricher in enrichers:
        df = enricher.enrich(df)
        if df.height != height:
            name = getattr(enricher, "component_name", type(enricher).__name__)
            raise RuntimeError(f"enricher {name!r} changed the row count ({height} -> {df.height})")
    return df
