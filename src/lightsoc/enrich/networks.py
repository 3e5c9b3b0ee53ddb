"""Internal networks: CIDR -> zone name, and ECS `network.direction`.

Options: a mapping of zone name to a list of CIDRs (IPv4 and/or IPv6), e.g.
`{"office": ["10.0.0.0/8"], "dmz": ["192.168.10.0/24"]}`; `cache_size` is
reserved for the cache. A single CIDR string is accepted in place of a list.

With no zones configured, the private ranges count as one zone named
`internal`: RFC 1918 (10/8, 172.16/12, 192.168/16), loopback (127/8, ::1),
link-local (169.254/16, fe80::/10) and unique local IPv6 (fc00::/7).

Fills `source.zone` / `destination.zone` (the most specific matching CIDR
wins) and `network.direction`:

- `internal`  both ends inside a configured zone
- `outbound`  source inside, destination outside
- `inbound`   source outside, destination inside
- `external`  both ends outside

Direction is only set when both `source.ip` and `destination.ip` are valid
addresses; with only one end known (e.g. web access logs) it stays as it was
(normally null). IPv4-mapped IPv6 addresses match IPv4 networks.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import polars as pl

from lightsoc.enrich.base import EnrichConfigError, Enricher, Row, merge, parse_ip
from lightsoc.registry import register
from lightsoc.schema import polars_type

DEFAULT_ZONE = "internal"
DEFAULT_NETWORKS: dict[str, list[str]] = {
    DEFAULT_ZONE: [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
    ]
}
_RESERVED_OPTIONS = ("cache_size",)
_VALID = "__lightsoc_ip_valid"


class _Table:
    """Longest-prefix match for one IP version: one dict per prefix length."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._by_len: dict[int, dict[int, str]] = {}
        self._lens: list[int] = []

    def add(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network, zone: str) -> None:
        plen = net.prefixlen
        # first definition of an identical CIDR wins
        self._by_len.setdefault(plen, {}).setdefault(
            int(net.network_address) >> (self.bits - plen), zone
        )
        self._lens = sorted(self._by_len, reverse=True)

    def match(self, value: int) -> str | None:
        for plen in self._lens:
            zone = self._by_len[plen].get(value >> (self.bits - plen))
            if zone is not None:
                return zone
        return None


def parse_zones(
    config: dict[str, Any],
) -> dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """Validate `{zone: [cidr, ...]}`; raise `EnrichConfigError` naming the bad entry."""
    zones: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    for zone, cidrs in config.items():
        if zone in _RESERVED_OPTIONS:
            continue
        if not isinstance(zone, str) or not zone:
            raise EnrichConfigError(f"networks: zone names must be non-empty strings, got {zone!r}")
        if isinstance(cidrs, str):
            cidrs = [cidrs]
        if not isinstance(cidrs, list | tuple):
            raise EnrichConfigError(f"networks.{zone}: expected a list of CIDRs, got {cidrs!r}")
        nets = []
        for cidr in cidrs:
            try:
                nets.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
            except ValueError:
                raise EnrichConfigError(f"networks.{zone}: {cidr!r} is not a valid CIDR") from None
        zones[zone] = nets
    return zones


@register("enrichers", "networks")
class NetworksEnricher(Enricher):
    """Zone of each endpoint from configured CIDRs, and network direction."""

    outputs = ("source.zone", "destination.zone", "network.direction")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        zones = parse_zones(self.options)
        if not zones:
            zones = parse_zones(DEFAULT_NETWORKS)
        self.zones = zones
        self._v4 = _Table(32)
        self._v6 = _Table(128)
        for zone, nets in zones.items():
            for net in nets:
                (self._v4 if net.version == 4 else self._v6).add(net, zone)

    def zone_of(self, text: str) -> str | None:
        """Zone name of one IP string (None if outside every zone or invalid)."""
        row = self.lookup(text)
        return row[0] if row else None

    def lookup(self, text: str) -> Row:
        """(zone, is-valid-ip) for one IP string; None if it is not an IP."""
        ip = parse_ip(text)
        if ip is None:
            return None
        table = self._v4 if ip.version == 4 else self._v6
        return (table.match(int(ip)), True)

    def enrich(self, df: pl.DataFrame) -> pl.DataFrame:
        valid: dict[str, pl.Series | None] = {}
        for side in ("source", "destination"):
            ip_col = f"{side}.ip"
            if ip_col not in df.columns:
                continue
            zone_col = f"{side}.zone"
            zone_type = polars_type(zone_col)
            new = self.lookup_unique(
                df.get_column(ip_col), self.lookup, {zone_col: zone_type, _VALID: pl.Boolean}
            )
            valid[side] = None if new is None else new.get_column(_VALID)
            df = merge(df, new, {zone_col: zone_type})
        if len(valid) < 2:  # direction needs both ends
            return df
        out = {"network.direction": polars_type("network.direction")}
        src_valid, dst_valid = valid["source"], valid["destination"]
        if src_valid is None or dst_valid is None:
            return merge(df, None, out)
        known = pl.lit(src_valid).fill_null(False) & pl.lit(dst_valid).fill_null(False)
        src_in = pl.col("source.zone").is_not_null()
        dst_in = pl.col("destination.zone").is_not_null()
        direction = (
            pl.when(~known)
            .then(pl.lit(None))
            .when(src_in & dst_in)
            .then(pl.lit("internal"))
            .when(src_in)
            .then(pl.lit("outbound"))
            .when(dst_in)
            .then(pl.lit("inbound"))
            .otherwise(pl.lit("external"))
            .cast(out["network.direction"])
            .alias("network.direction")
        )
        return merge(df, df.select(direction), out)
