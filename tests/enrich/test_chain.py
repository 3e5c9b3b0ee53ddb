"""The default enricher chain built from the `enrich:` config dict."""

from __future__ import annotations

import polars as pl
import pytest

from lightsoc.enrich.base import EnrichConfigError
from lightsoc.enrich.chain import apply, build_enrichers
from lightsoc.enrich.domains import DomainsEnricher
from lightsoc.enrich.geoip import GeoIPEnricher
from lightsoc.enrich.networks import NetworksEnricher
from lightsoc.schema import conform


def test_default_chain_from_config() -> None:
    chain = build_enrichers(
        {
            "geoip": {"city_database": None, "asn_database": None},
            "networks": {"office": ["10.0.0.0/8"], "dmz": ["192.168.10.0/24"]},
        }
    )
    assert [type(e) for e in chain] == [GeoIPEnricher, NetworksEnricher, DomainsEnricher]
    df = pl.DataFrame(
        {
            "source.ip": ["83.149.9.216", "10.1.2.3", "192.168.10.5"],
            "destination.ip": ["10.0.0.1", "8.8.8.8", "10.0.0.2"],
            "url.domain": ["www.example.co.uk", None, "intranet"],
        }
    )
    out = apply(chain, df)
    assert out["source.geo.country_iso_code"].to_list() == ["RU", None, None]
    assert out["destination.geo.country_iso_code"].to_list() == [None, "US", None]
    assert out["source.zone"].to_list() == [None, "office", "dmz"]
    assert out["network.direction"].to_list() == ["inbound", "outbound", "internal"]
    assert out["url.registered_domain"].to_list() == ["example.co.uk", None, None]
    conform(out)  # all output columns conform to the schema


def test_empty_config_and_disable() -> None:
    assert len(build_enrichers({})) == 3
    assert len(build_enrichers(None)) == 3
    chain = build_enrichers({"geoip": False})
    assert [type(e) for e in chain] == [NetworksEnricher, DomainsEnricher]


def test_bad_config() -> None:
    with pytest.raises(EnrichConfigError, match="no_such_enricher"):
        build_enrichers({"no_such_enricher": {}})
    with pytest.raises(EnrichConfigError, match="networks"):
        build_enrichers({"networks": ["10.0.0.0/8"]})
    with pytest.raises(EnrichConfigError, match="missing.mmdb"):
        build_enrichers({"geoip": {"city_database": "/nonexistent/missing.mmdb"}})
