"""GeoIP/ASN enricher against the packaged GeoLite2-City and a test-built ASN DB."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from lightsoc import registry
from lightsoc.enrich.base import EnrichConfigError
from lightsoc.enrich.geoip import GeoIPEnricher, default_city_database
from lightsoc.schema import polars_type


@pytest.fixture(scope="module")
def geo() -> GeoIPEnricher:
    return GeoIPEnricher()


@pytest.fixture(scope="module")
def asn_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(
        ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True, int_type="u32"
    )
    google = {"autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"}
    writer.insert_network(IPSet(["8.8.8.0/24", "2001:4860::/32"]), google)
    writer.insert_network(
        IPSet(["83.149.0.0/18"]),
        {"autonomous_system_number": 31213, "autonomous_system_organization": "PJSC MegaFon"},
    )
    path = tmp_path_factory.mktemp("mmdb") / "asn.mmdb"
    writer.to_db_file(str(path))
    return path


def test_registered() -> None:
    assert registry.get("enrichers", "geoip") is GeoIPEnricher


def test_default_database_is_packaged_file() -> None:
    path = default_city_database()
    assert path.name == "GeoLite2-City.mmdb"
    assert "site-packages" in str(path) and path.stat().st_size > 1_000_000


def test_well_known_ips(geo: GeoIPEnricher) -> None:
    df = pl.DataFrame(
        {
            "source.ip": ["8.8.8.8", "83.149.9.216", "66.249.73.135", "130.237.218.86", None],
            "destination.ip": ["46.105.14.53", "50.16.19.13", None, "10.0.0.1", "8.8.8.8"],
        }
    )
    out = geo.enrich(df)
    assert out.height == df.height
    assert out["source.ip"].to_list() == df["source.ip"].to_list()
    assert out["source.geo.country_iso_code"].to_list() == ["US", "RU", "US", "SE", None]
    assert out["source.geo.city_name"].to_list() == [
        None,
        "Moscow",
        "Mountain View",
        "Taby",
        None,
    ]
    assert out["destination.geo.country_iso_code"].to_list() == ["FR", "US", None, None, "US"]
    assert out["destination.geo.city_name"].to_list() == [None, "Ashburn", None, None, None]
    assert out.schema["source.geo.country_iso_code"] == polars_type("source.geo.country_iso_code")
    # no ASN database configured: no ASN columns written
    assert "source.as.number" not in out.columns


def test_private_loopback_invalid_ips_get_nothing(geo: GeoIPEnricher) -> None:
    ips = ["10.1.2.3", "192.168.0.1", "172.16.5.5", "127.0.0.1", "169.254.1.1", "100.64.0.1"]
    ips += ["::1", "fe80::1", "fd00::1", "not-an-ip", "", "999.1.1.1", "224.0.0.1"]
    out = geo.enrich(pl.DataFrame({"source.ip": ips}))
    assert out["source.geo.country_iso_code"].null_count() == len(ips)
    assert out["source.geo.city_name"].null_count() == len(ips)


def test_ipv6_and_mapped(geo: GeoIPEnricher) -> None:
    df = pl.DataFrame(
        {"source.ip": ["2001:4860:4860::8888", "2a00:1450:4001:800::200e", "::ffff:83.149.9.216"]}
    )
    out = geo.enrich(df)
    assert out["source.geo.country_iso_code"].to_list() == ["US", "DE", "RU"]
    assert out["source.geo.city_name"].to_list() == ["Mountain View", "Frankfurt am Main", "Moscow"]


def test_missing_columns_and_nulls(geo: GeoIPEnricher) -> None:
    df = pl.DataFrame({"message": ["x", "y"]})
    assert geo.enrich(df).equals(df)
    nulls = pl.DataFrame({"source.ip": pl.Series([None, None], dtype=pl.String)})
    out = geo.enrich(nulls)
    assert out["source.geo.country_iso_code"].to_list() == [None, None]
    null_typed = pl.DataFrame({"source.ip": [None, None]})
    assert geo.enrich(null_typed).height == 2
    empty = pl.DataFrame({"source.ip": pl.Series([], dtype=pl.String)})
    assert geo.enrich(empty).height == 0


def test_existing_values_kept_where_no_hit(geo: GeoIPEnricher) -> None:
    df = pl.DataFrame(
        {"source.ip": ["10.0.0.1", "8.8.8.8"], "source.geo.country_iso_code": ["CN", "CN"]}
    )
    assert geo.enrich(df)["source.geo.country_iso_code"].to_list() == ["CN", "US"]


def test_asn_database(asn_db: Path) -> None:
    geo = GeoIPEnricher({"asn_database": str(asn_db)})
    df = pl.DataFrame(
        {"source.ip": ["8.8.8.8", "83.149.9.216", "1.1.1.1", "2001:4860:4860::8888", "10.0.0.1"]}
    )
    out = geo.enrich(df)
    assert out["source.as.number"].to_list() == [15169, 31213, None, 15169, None]
    assert out["source.as.organization.name"].to_list() == [
        "GOOGLE",
        "PJSC MegaFon",
        None,
        "GOOGLE",
        None,
    ]
    assert out.schema["source.as.number"] == polars_type("source.as.number")
    assert out["source.geo.country_iso_code"].to_list() == ["US", "RU", "AU", "US", None]


def test_asn_only(asn_db: Path) -> None:
    geo = GeoIPEnricher({"city_database": False, "asn_database": asn_db})
    out = geo.enrich(pl.DataFrame({"destination.ip": ["8.8.8.8"]}))
    assert out["destination.as.number"].to_list() == [15169]
    assert "destination.geo.country_iso_code" not in out.columns


def test_bad_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mmdb"
    with pytest.raises(EnrichConfigError, match="nope.mmdb"):
        GeoIPEnricher({"city_database": str(missing)})
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"this is not a maxmind database" * 100)
    with pytest.raises(EnrichConfigError, match="corrupt.mmdb"):
        GeoIPEnricher({"asn_database": corrupt})
    with pytest.raises(ValueError):
        GeoIPEnricher({"city_database": str(tmp_path)})


def test_lookups_once_per_unique_value() -> None:
    rng = random.Random(7)
    ips = [
        f"{rng.randint(1, 200)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{i % 250 + 1}"
        for i in range(1000)
    ]
    assert len(set(ips)) == 1000
    df = pl.DataFrame({"source.ip": [ips[i % 1000] for i in range(100_000)]})
    geo = GeoIPEnricher()
    out = geo.enrich(df)
    assert out.height == 100_000
    assert geo.lookups == 1000
    geo.enrich(df)  # second batch: served from the cache
    assert geo.lookups == 1000
    assert out["source.ip"].to_list()[:5] == ips[:5]


def test_cache_is_bounded() -> None:
    geo = GeoIPEnricher({"cache_size": 10})
    df = pl.DataFrame({"source.ip": [f"8.8.{i}.8" for i in range(50)]})
    geo.enrich(df)
    assert len(geo._cache) == 10
    assert geo.lookups == 50
