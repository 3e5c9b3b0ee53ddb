"""Registered domain and subdomain from the Public Suffix List.

Uses the PSL snapshot bundled in the `publicsuffixlist` package (read from
site-packages; nothing is fetched). Option `public_suffix_list`: path to a
newer `public_suffix_list.dat` to use instead. Private-section suffixes
count (`a.b.c.github.io` -> `c.github.io`); an unknown TLD is treated as a
public suffix (`host.corp.lan` -> `corp.lan`).

Fills:

- `url.domain` -> `url.registered_domain`, `url.subdomain`
- `dns.question.name` -> `dns.question.registered_domain`, `dns.question.subdomain`
- `source.domain` / `destination.domain` -> `<side>.registered_domain`

Names are lower-cased, one trailing dot and a `:port` suffix are removed.
IP literals, single labels (`localhost`), bare public suffixes (`co.uk`),
names with characters that cannot occur in a host name, and empty strings
give null. `subdomain` is everything left of the registered domain
(`a.b.example.com` -> `a.b`), null when there is none.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import polars as pl
from publicsuffixlist import PublicSuffixList

from lightsoc.enrich.base import EnrichConfigError, Enricher, Row, merge, parse_ip
from lightsoc.registry import register
from lightsoc.schema import polars_type

#: input column -> (registered-domain column, subdomain column or None)
TARGETS: dict[str, tuple[str, str | None]] = {
    "url.domain": ("url.registered_domain", "url.subdomain"),
    "dns.question.name": ("dns.question.registered_domain", "dns.question.subdomain"),
    "source.domain": ("source.registered_domain", None),
    "destination.domain": ("destination.registered_domain", None),
}

# Host-name labels: letters, digits, '-', '_' (SRV/DKIM names) and non-ASCII (IDN).
_LABEL = re.compile(r"[a-z0-9_\-\u0080-\U0010ffff]{1,63}")
_SUB = "__lightsoc_subdomain"

_default_psl: PublicSuffixList | None = None
_psl_lock = threading.Lock()


def default_psl() -> PublicSuffixList:
    """The bundled PSL snapshot, parsed once per process."""
    global _default_psl
    with _psl_lock:
        if _default_psl is None:
            _default_psl = PublicSuffixList()  # source=None reads the packaged file
        return _default_psl


def load_psl(path: str | Path) -> PublicSuffixList:
    """A PSL from a `public_suffix_list.dat` file, or `EnrichConfigError`."""
    p = Path(path).expanduser()
    try:
        with p.open("rb") as fh:
            return PublicSuffixList(fh)
    except OSError as exc:
        raise EnrichConfigError(f"domains: public_suffix_list {str(p)!r}: {exc.strerror}") from None


def normalise(name: str) -> str | None:
    """Lower-case host name without port or trailing dot; None if not a DNS name."""
    s = name.strip().lower()
    if not s or s.startswith("["):  # empty, or bracketed IPv6 literal
        return None
    if s.count(":") == 1:
        host, port = s.split(":")
        if port and not port.isdigit():
            return None
        s = host
    if s.endswith("."):
        s = s[:-1]
    if not s or len(s) > 253 or parse_ip(s) is not None:
        return None
    labels = s.split(".")
    if labels[-1].isdigit():  # numeric TLD: an IP-ish string such as 10.1.2
        return None
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return s


def split_domain(psl: PublicSuffixList, name: str) -> Row:
    """(registered_domain, subdomain) for one name, or None."""
    host = normalise(name)
    if host is None:
        return None
    try:
        registered = psl.privatesuffix(host)
    except (ValueError, UnicodeError):
        return None
    if not registered:
        return None
    sub = host[: -len(registered) - 1] if len(host) > len(registered) else None
    return (registered, sub or None)


@register("enrichers", "domains")
class DomainsEnricher(Enricher):
    """Registered domain / subdomain for URL, DNS and endpoint domains."""

    outputs = tuple(c for reg, sub in TARGETS.values() for c in (reg, sub) if c)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        path = self.options.get("public_suffix_list")
        # A configured list is read (and checked) now; the bundled one is parsed
        # on first use, so batches without domains never pay its ~70 ms.
        self._psl = load_psl(path) if path else None

    @property
    def psl(self) -> PublicSuffixList:
        if self._psl is None:
            self._psl = default_psl()
        return self._psl

    def lookup(self, name: str) -> Row:
        """(registered_domain, subdomain) for one name, or None."""
        return split_domain(self.psl, name)

    def enrich(self, df: pl.DataFrame) -> pl.DataFrame:
        for src, (reg_col, sub_col) in TARGETS.items():
            if src not in df.columns:
                continue
            written = {reg_col: polars_type(reg_col)}
            if sub_col:
                written[sub_col] = polars_type(sub_col)
            out = {reg_col: written[reg_col], sub_col or _SUB: polars_type(reg_col)}
            new = self.lookup_unique(df.get_column(src), self.lookup, out)
            df = merge(df, new, written)
        return df
