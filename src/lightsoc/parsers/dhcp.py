"""DHCP server messages (dnsmasq, ISC dhcpd) as ECS network events (a syslog app parser).

``event.action`` is ``dhcp_`` and the message type (``dhcp_ack``,
``dhcp_request``, ``dhcp_discover``, ``dhcp_offer``, ``dhcp_nak``,
``dhcp_release``, ``dhcp_inform``, ``dhcp_decline``). The leased or
requested address is ``source.ip`` (the schema has no ``client.ip``);
``host.name`` stays the syslog host. The client's MAC, host name and the
interface go to ``labels`` (``dhcp.mac``, ``dhcp.hostname``,
``dhcp.interface``).

- dnsmasq: ``DHCPACK(eth0) 192.168.1.50 aa:bb:cc:dd:ee:ff laptop`` (with
  ``--log-dhcp`` a transaction number comes first);
- ISC dhcpd: ``DHCPACK on 192.168.1.50 to aa:bb:cc:dd:ee:ff (laptop) via
  eth0``, ``DHCPREQUEST for 192.168.1.50 (192.168.1.1) from ... via eth0``,
  ``DHCPDISCOVER from aa:bb:cc:dd:ee:ff via eth0``.
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._apps import IP_RE, Rule, app_parser, apply_rules, json_str

_TYPE = r"DHCP(?P<type>[A-Z]+)"
_MAC = r"(?P<mac>[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5,19})"
_NAME = r"(?: \((?P<name>[^)]*)\))?"
_VIA = r"(?: via (?P<iface>[^ ]+))?"

RULES: tuple[Rule, ...] = (
    # dnsmasq-dhcp
    Rule(
        ("",),
        rf"^(?:[0-9]+ )?{_TYPE}\((?P<iface>[^)]*)\) (?:(?P<ip>[0-9A-Fa-f.:]+) )?{_MAC}"
        r"(?: (?P<name>[^ ]+))?",
    ),
    Rule(("",), rf"^(?:[0-9]+ )?{_TYPE}\((?P<iface>[^)]*)\) (?P<ip>[0-9A-Fa-f.:]+)"),
    # ISC dhcpd
    Rule(("DHCP",), rf"^{_TYPE} (?:on|of) (?P<ip>[^ ]+) (?:to|from) {_MAC}{_NAME}{_VIA}"),
    Rule(("DHCP",), rf"^{_TYPE} for (?P<ip>[^ ]+) (?:\([^)]*\) )?from {_MAC}{_NAME}{_VIA}"),
    Rule(("DHCP",), rf"^{_TYPE} from {_MAC}{_NAME}{_VIA}"),
    Rule(("DHCP",), rf"^{_TYPE} from (?P<ip>[^ ]+){_VIA}"),
    Rule(("DHCP",), rf"^{_TYPE} on (?P<ip>[^ ]+) to {_MAC}{_VIA}"),
)

_LABELS = (("dhcp.hostname", "name"), ("dhcp.mac", "mac"), ("dhcp.interface", "iface"))


@app_parser("dnsmasq-dhcp", "dhcpd")
def parse_dhcp(frame: pl.DataFrame) -> pl.DataFrame:
    """dnsmasq-dhcp and ISC dhcpd lease messages -> network fields."""
    m = apply_rules(frame["message"], RULES)
    ok = pl.col("_rule").is_not_null()
    ip = pl.col("ip").str.strip_chars(":")
    pairs = [
        pl.when(pl.col(c).str.len_bytes() > 0).then(pl.lit(f'"{k}":') + json_str(pl.col(c)))
        for k, c in _LABELS
    ]
    joined = pl.concat_str(pairs, separator=",", ignore_nulls=True)
    return m.select(
        pl.when(ok).then(pl.lit("network")).alias("event.category"),
        pl.when(ok).then(pl.lit("info")).alias("event.type"),
        pl.when(ok).then("dhcp_" + pl.col("type").str.to_lowercase()).alias("event.action"),
        pl.when(ip.str.contains(IP_RE)).then(ip).alias("source.ip"),
        pl.when(ok & (joined.str.len_bytes() > 0)).then("{" + joined + "}").alias("labels"),
        pl.when(ok).then(pl.lit("dhcp")).alias("network.protocol"),
        pl.when(ok).then(pl.lit("dhcp")).alias("event.dataset"),
        pl.when(ok).then(pl.lit("dhcp")).alias("event.module"),
    )
