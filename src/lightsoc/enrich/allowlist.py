"""Allow lists for noise: trusted clients (IP/CIDR) and trusted domains.

Entries come from the config (`detect.allow: {field: [values]}`) and from
the state store (`lightsoc intel allow add FIELD VALUE`), merged. The
enricher sets a boolean column `_allowed` (true when any entry matches the
row). It is a pipeline-internal column (the store drops it at `conform`):

- the intel matcher and the domain-check lookups skip allowed rows, so a
  trusted resolver or `baidu.com` never costs a lookup;
- the detect stage may skip allowed rows too (`pl.col("_allowed")`).

How a field's values match:

- IP fields (`*.ip`): each value an address or CIDR (IPv4/IPv6), membership
  checked once per distinct address;
- domain fields (`*.domain`, `*.registered_domain`, `dns.question.name`):
  the value or any parent (`baidu.com` allows `www.baidu.com`), case-insensitive;
- any other field: exact string equality.

Options: `allow` (the config dict), `state` (a `StateStore`, optional),
`reload_seconds` (poll of the store's intel version, default 30).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Mapping
from typing import Any

import polars as pl

from lightsoc.enrich.base import EnrichConfigError, Enricher, Row
from lightsoc.registry import register

log = logging.getLogger(__name__)

ALLOWED = "_allowed"
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def field_kind(field: str) -> str:
    if field.endswith(".ip") or field == "ip":
        return "ip"
    if field.endswith((".domain", ".registered_domain")) or field == "dns.question.name":
        return "domain"
    return "exact"


class _Rules:
    """Compiled entries: per field, networks / domains / exact values."""

    def __init__(self, entries: Mapping[str, list[str]]) -> None:
        self.nets: dict[str, list[_Net]] = {}
        self.domains: dict[str, set[str]] = {}
        self.exact: dict[str, list[str]] = {}
        for field, values in entries.items():
            if isinstance(values, str):
                values = [values]
            kind = field_kind(field)
            for raw in values:
                value = str(raw).strip()
                if kind == "ip":
                    try:
                        net = ipaddress.ip_network(value, strict=False)
                    except ValueError:
                        raise EnrichConfigError(
                            f"allow.{field}: {value!r} is not an IP address or CIDR"
                        ) from None
                    self.nets.setdefault(field, []).append(net)
                elif kind == "domain":
                    self.domains.setdefault(field, set()).add(value.lower().strip(".").rstrip("."))
                else:
                    self.exact.setdefault(field, []).append(value)

    def __bool__(self) -> bool:
        return bool(self.nets or self.domains or self.exact)


@register("enrichers", "allowlist")
class AllowListEnricher(Enricher):
    """Sets `_allowed` on rows a trusted client / domain / value entry matches."""

    outputs = (ALLOWED,)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        allow = self.options.get("allow") or {}
        if not isinstance(allow, Mapping):
            raise EnrichConfigError(f"allow: expected a mapping field -> values, got {allow!r}")
        self.config_entries = {str(k): list(v) for k, v in allow.items()}
        state = self.options.get("state")
        self.store: Any = None
        if state is not None:
            from lightsoc.store.state_intel import IntelStore

            self.store = state if isinstance(state, IntelStore) else IntelStore(state)
        self.reload_seconds = float(self.options.get("reload_seconds", 30))
        self._version = -1
        self._checked = 0.0
        self._down = False  # the last look at the store failed
        self.rules = _Rules(self.config_entries)
        #: rows marked allowed so far
        self.allowed = 0

    def refresh(self) -> None:
        """Merge the store's entries in again when its version changed."""
        if self.store is None:
            return
        now = time.monotonic()
        if now - self._checked < self.reload_seconds and (self._version >= 0 or self._down):
            return
        self._checked = now
        merged = {k: list(v) for k, v in self.config_entries.items()}
        try:
            version = self.store.version()
            if version == self._version:
                return
            entries = self.store.allow_entries()
        except Exception as exc:  # the state store is down: keep the entries, look again later
            if not self._down:
                log.warning("allow list: state store unreachable (%s); keeping entries", exc)
            self._down = True
            return
        self._down = False
        for field, values in entries.items():
            merged.setdefault(field, []).extend(values)
        self.rules = _Rules(merged)
        self._version = version
        with self._lock:
            self._cache.clear()

    def _ip_lookup(self, field: str) -> Any:  # noqa: ANN401 - a lookup function
        nets = self.rules.nets[field]

        def fn(text: str) -> Row:
            try:
                ip = ipaddress.ip_address(text.strip())
            except ValueError:
                return None
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            return (True,) if any(ip in n for n in nets if n.version == ip.version) else None

        return fn

    def _domain_lookup(self, field: str) -> Any:  # noqa: ANN401 - a lookup function
        domains = self.rules.domains[field]

        def fn(text: str) -> Row:
            labels = text.strip().lower().rstrip(".").split(".")
            return (
                (True,)
                if any(".".join(labels[i:]) in domains for i in range(len(labels)))
                else None
            )

        return fn

    def enrich(self, df: pl.DataFrame) -> pl.DataFrame:
        self.refresh()
        if not self.rules or df.height == 0:
            return df
        masks: list[pl.Series] = []
        for field, nets_or_domains, make in (
            *((f, v, self._ip_lookup) for f, v in self.rules.nets.items()),
            *((f, v, self._domain_lookup) for f, v in self.rules.domains.items()),
        ):
            if field not in df.columns or not nets_or_domains:
                continue
            # the rule set is part of the namespace: a reload never reuses old answers
            hit = self.lookup_unique(
                df.get_column(field), make(field), {"__hit": pl.Boolean}, f"{field}@{self._version}"
            )
            if hit is not None:
                masks.append(hit.get_column("__hit").fill_null(False))
        for field, values in self.rules.exact.items():
            if field in df.columns:
                col = df.get_column(field).cast(pl.String, strict=False)
                masks.append(col.is_in(values).fill_null(False))
        if not masks:
            return df
        mask = masks[0]
        for m in masks[1:]:
            mask = mask | m
        if ALLOWED in df.columns:
            mask = mask | df.get_column(ALLOWED).fill_null(False)
        self.allowed += int(mask.sum())
        return df.with_columns(mask.alias(ALLOWED))
