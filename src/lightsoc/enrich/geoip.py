"""GeoIP and ASN enrichment from MaxMind-format (`.mmdb`) databases.

Fills, for each side present in the batch (`source`, `destination`):

- `<side>.geo.country_iso_code`, `<side>.geo.city_name` (English name) from a
  City database. Default: the GeoLite2-City snapshot that ships inside the
  `maxminddb-geolite2` PyPI package (built 2018; coarse but free, offline).
  Set `city_database` to another path (e.g. a current GeoLite2-City or
  DB-IP City Lite) or to `False` to disable city lookups.
- `<side>.as.number`, `<side>.as.organization.name` from an optional ASN
  database in GeoLite2-ASN layout (`autonomous_system_number`,
  `autonomous_system_organization`). No ASN database ships with any PyPI
  package we depend on, so ASN fields stay null unless `asn_database` is set.

Options: `city_database` (path, None = packaged default, False = off),
`asn_database` (path or None), `cache_size`.

Addresses that are not globally routable (RFC 1918, loopback, link-local,
ULA, CGNAT, ...) and strings that are not IP addresses get no geo data and
raise no error. IPv4-mapped IPv6 addresses are looked up as IPv4.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import maxminddb
import polars as pl

from lightsoc.enrich.base import EnrichConfigError, Enricher, Row, ecs_types, merge, parse_ip
from lightsoc.registry import register

SIDES = ("source", "destination")
_SUFFIXES = ("geo.country_iso_code", "geo.city_name", "as.number", "as.organization.name")

_DEFAULT_PACKAGE = "_maxminddb_geolite2"  # installed by the maxminddb-geolite2 distribution
_DEFAULT_FILE = "GeoLite2-City.mmdb"


def default_city_database() -> Path:
    """Path of the GeoLite2-City database shipped in `maxminddb-geolite2`.

    Only locates the file inside site-packages; nothing is downloaded.
    """
    try:
        resource = importlib.resources.files(_DEFAULT_PACKAGE) / _DEFAULT_FILE
    except ModuleNotFoundError:
        raise EnrichConfigError(
            "geoip: no default city database: the 'maxminddb-geolite2' package is not "
            "installed; install it or set enrich.geoip.city_database to an .mmdb path"
        ) from None
    path = Path(str(resource))
    if not path.is_file():
        raise EnrichConfigError(f"geoip: packaged city database not found at {path}")
    return path


def open_database(path: str | Path, option: str) -> maxminddb.Reader:
    """Open an .mmdb file or raise `EnrichConfigError` naming the path."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise EnrichConfigError(f"geoip: {option} {str(p)!r} does not exist or is not a file")
    try:
        return maxminddb.open_database(str(p), maxminddb.MODE_AUTO)
    except (maxminddb.InvalidDatabaseError, OSError, ValueError) as exc:
        raise EnrichConfigError(
            f"geoip: {option} {str(p)!r} is not a readable MaxMind DB file ({exc})"
        ) from None


def _name(record: dict[str, Any], key: str) -> str | None:
    part = record.get(key)
    if not isinstance(part, dict):
        return None
    names = part.get("names")
    if isinstance(names, dict):
        name = names.get("en")
        if isinstance(name, str):
            return name
    return None


@register("enrichers", "geoip")
class GeoIPEnricher(Enricher):
    """Country, city and ASN for `source.ip` / `destination.ip`."""

    outputs = tuple(f"{side}.{suffix}" for side in SIDES for suffix in _SUFFIXES)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        city = self.options.get("city_database")
        if city is None:
            city = default_city_database()
        self._city: maxminddb.Reader | None = (
            None if city is False else open_database(city, "city_database")
        )
        asn = self.options.get("asn_database")
        self._asn: maxminddb.Reader | None = open_database(asn, "asn_database") if asn else None

    @staticmethod
    def _names(side: str) -> list[str]:
        return [f"{side}.{suffix}" for suffix in _SUFFIXES]

    def close(self) -> None:
        """Release the database readers."""
        for reader in (self._city, self._asn):
            if reader is not None:
                reader.close()

    def lookup(self, text: str) -> Row:
        """(country, city, asn, org) for one IP string, or None."""
        ip = parse_ip(text)
        if ip is None or not ip.is_global or ip.is_multicast:
            return None
        key = str(ip)
        country = city = org = None
        asn: int | None = None
        if self._city is not None:
            rec = self._get(self._city, key)
            if rec is not None:
                country_part = rec.get("country")
                if isinstance(country_part, dict):
                    iso = country_part.get("iso_code")
                    country = iso if isinstance(iso, str) else None
                city = _name(rec, "city")
        if self._asn is not None:
            rec = self._get(self._asn, key)
            if rec is not None:
                num = rec.get("autonomous_system_number")
                asn = num if isinstance(num, int) else None
                name = rec.get("autonomous_system_organization")
                org = name if isinstance(name, str) else None
        if country is None and city is None and asn is None and org is None:
            return None
        return (country, city, asn, org)

    @staticmethod
    def _get(reader: maxminddb.Reader, key: str) -> dict[str, Any] | None:
        try:
            rec = reader.get(key)
        except ValueError:  # e.g. an IPv6 address against an IPv4-only database
            return None
        return rec if isinstance(rec, dict) else None

    def enrich(self, df: pl.DataFrame) -> pl.DataFrame:
        if self._city is None and self._asn is None:
            return df
        for side in SIDES:
            ip_col = f"{side}.ip"
            if ip_col not in df.columns:
                continue
            types = ecs_types(self._names(side))
            new = self.lookup_unique(df.get_column(ip_col), self.lookup, types)
            written = {
                name: dtype
                for name, dtype in types.items()
                if (self._city is not None and ".geo." in name)
                or (self._asn is not None and ".as." in name)
            }
            df = merge(df, new, written)
        return df
