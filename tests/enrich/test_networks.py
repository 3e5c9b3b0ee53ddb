"""Internal networks: zones, most-specific match, ECS network.direction."""

from __future__ import annotations

import polars as pl
import pytest

from lightsoc import registry
from lightsoc.enrich.base import EnrichConfigError
from lightsoc.enrich.networks import NetworksEnricher
from lightsoc.schema import polars_type

ZONES = {
    "office": ["10.0.0.0/8", "2001:db8::/32"],
    "servers": ["10.20.0.0/16"],
    "dmz": ["10.20.30.0/24", "2001:db8:dead::/48"],
    "vpn": "172.16.0.0/12",
}


@pytest.fixture()
def nets() -> NetworksEnricher:
    return NetworksEnricher(ZONES)


def test_registered() -> None:
    assert registry.get("enrichers", "networks") is NetworksEnricher


def test_zones_most_specific_wins(nets: NetworksEnricher) -> None:
    ips = ["10.1.1.1", "10.20.1.1", "10.20.30.40", "172.20.0.1", "8.8.8.8", "192.168.1.1"]
    out = nets.enrich(pl.DataFrame({"source.ip": ips}))
    assert out["source.zone"].to_list() == ["office", "servers", "dmz", "vpn", None, None]
    assert out.schema["source.zone"] == polars_type("source.zone")


def test_ipv6(nets: NetworksEnricher) -> None:
    ips = ["2001:db8::1", "2001:db8:dead:beef::1", "2001:4860:4860::8888", "::ffff:10.20.30.1"]
    out = nets.enrich(pl.DataFrame({"destination.ip": ips}))
    assert out["destination.zone"].to_list() == ["office", "dmz", None, "dmz"]


def test_all_four_directions(nets: NetworksEnricher) -> None:
    df = pl.DataFrame(
        {
            "source.ip": ["10.1.1.1", "10.1.1.1", "8.8.8.8", "8.8.8.8", "2001:db8::5"],
            "destination.ip": ["10.20.30.1", "1.1.1.1", "10.1.1.1", "1.1.1.1", "2001:4860::1"],
        }
    )
    out = nets.enrich(df)
    assert out["network.direction"].to_list() == [
        "internal",
        "outbound",
        "inbound",
        "external",
        "outbound",
    ]
    assert out["source.zone"].to_list() == ["office", "office", None, None, "office"]
    assert out["destination.zone"].to_list() == ["dmz", None, "office", None, None]
    assert out.schema["network.direction"] == polars_type("network.direction")


def test_direction_needs_both_ends(nets: NetworksEnricher) -> None:
    df = pl.DataFrame(
        {
            "source.ip": ["10.1.1.1", None, "bogus", "10.1.1.1", None],
            "destination.ip": [None, "10.1.1.1", "10.1.1.1", "", None],
        }
    )
    out = nets.enrich(df)
    assert out["network.direction"].to_list() == [None] * 5
    assert out["source.zone"].to_list() == ["office", None, None, "office", None]
    # only source.ip known (web access logs): zone yes, direction column untouched
    web = nets.enrich(pl.DataFrame({"source.ip": ["10.1.1.1", "8.8.8.8"]}))
    assert web["source.zone"].to_list() == ["office", None]
    assert "network.direction" not in web.columns


def test_existing_direction_kept_where_unknown(nets: NetworksEnricher) -> None:
    df = pl.DataFrame(
        {
            "source.ip": ["10.1.1.1", None],
            "destination.ip": ["8.8.8.8", "8.8.8.8"],
            "network.direction": ["ingress", "egress"],
        }
    )
    assert nets.enrich(df)["network.direction"].to_list() == ["outbound", "egress"]


def test_missing_columns_and_nulls(nets: NetworksEnricher) -> None:
    df = pl.DataFrame({"message": ["a"]})
    assert nets.enrich(df).equals(df)
    nulls = pl.DataFrame(
        {
            "source.ip": pl.Series([None, None], dtype=pl.String),
            "destination.ip": pl.Series([None, None], dtype=pl.String),
        }
    )
    out = nets.enrich(nulls)
    assert out["source.zone"].to_list() == [None, None]
    assert out["network.direction"].to_list() == [None, None]


def test_default_zone_without_config() -> None:
    nets = NetworksEnricher()
    df = pl.DataFrame(
        {
            "source.ip": ["10.0.0.1", "172.31.255.1", "192.168.1.1", "127.0.0.1", "169.254.9.9"],
            "destination.ip": ["::1", "fe80::1", "fd12:3456::1", "8.8.8.8", "172.32.0.1"],
        }
    )
    out = nets.enrich(df)
    assert out["source.zone"].to_list() == ["internal"] * 5
    assert out["destination.zone"].to_list() == ["internal", "internal", "internal", None, None]
    assert out["network.direction"].to_list() == [
        "internal",
        "internal",
        "internal",
        "outbound",
        "outbound",
    ]
    assert NetworksEnricher({}).zones.keys() == {"internal"}


def test_bad_config() -> None:
    with pytest.raises(EnrichConfigError, match="office"):
        NetworksEnricher({"office": ["10.0.0.0/33"]})
    with pytest.raises(EnrichConfigError, match="not-a-cidr"):
        NetworksEnricher({"dmz": ["not-a-cidr"]})
    with pytest.raises(EnrichConfigError):
        NetworksEnricher({"dmz": 42})


def test_lookups_once_per_unique_value(nets: NetworksEnricher) -> None:
    ips = [f"10.{i // 256}.{i % 256}.1" for i in range(1000)]
    df = pl.DataFrame({"source.ip": [ips[i % 1000] for i in range(100_000)]})
    out = nets.enrich(df)
    assert nets.lookups == 1000
    assert out["source.zone"].null_count() == 0
