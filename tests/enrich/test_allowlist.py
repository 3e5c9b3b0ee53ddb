"""Allow lists: trusted clients and domains from config and state store suppress intel."""

from __future__ import annotations

import polars as pl
import pytest

from lightsoc.enrich.allowlist import AllowListEnricher
from lightsoc.enrich.base import EnrichConfigError
from lightsoc.enrich.chain import apply, build_enrichers
from lightsoc.enrich.intel import IntelEnricher
from lightsoc.enrich.intel_formats import Indicator
from lightsoc.store.state import StateStore
from lightsoc.store.state_intel import IntelStore


def names(df: pl.DataFrame) -> list[list[str] | None]:
    """`rule.name` per row (a batch nothing matched has no such column)."""
    if "rule.name" not in df.columns:
        return [None] * df.height
    return df["rule.name"].to_list()


@pytest.fixture
def state(state_url: str) -> StateStore:
    s = StateStore(state_url)
    yield s
    s.close()


def test_config_entries_mark_rows() -> None:
    e = AllowListEnricher(
        {
            "allow": {
                "source.ip": ["10.100.2.1", "192.168.50.0/24", "2001:db8::/48"],
                "dns.question.registered_domain": ["baidu.com"],
                "dns.question.name": ["corp.example"],
                "user.name": ["backup"],
            }
        }
    )
    df = pl.DataFrame(
        {
            "source.ip": ["10.100.2.1", "192.168.50.7", "2001:db8:0:1::1", "10.100.2.2", None, "x"],
            "dns.question.registered_domain": [None, None, None, "baidu.com", None, None],
            "dns.question.name": [None, None, None, None, "WWW.Corp.Example.", "notcorp.example"],
            "user.name": [None, None, None, None, None, "backup"],
        }
    )
    out = e.enrich(df)
    assert out["_allowed"].to_list() == [True, True, True, True, True, True]
    out = e.enrich(df.with_columns(pl.lit(None, pl.String).alias("user.name")))
    assert out["_allowed"].to_list() == [True, True, True, True, True, False]
    assert e.enrich(pl.DataFrame({"url.path": ["/"]})).columns == ["url.path"]


def test_bad_entries_are_config_errors() -> None:
    with pytest.raises(EnrichConfigError, match="allow.source.ip: 'nope'"):
        AllowListEnricher({"allow": {"source.ip": ["nope"]}})


def test_state_store_entries_and_intel_suppression(state: StateStore) -> None:
    store = IntelStore(state)
    store.replace_source(
        "feed",
        "text",
        "High",
        [
            Indicator("domain", "baidu.com"),
            Indicator("ip", "10.100.2.1"),
            Indicator("ip", "8.8.8.8"),
        ],
    )
    chain = build_enrichers(
        {
            "geoip": False,
            "allowlist": {
                "allow": {"dns.question.registered_domain": ["baidu.com"]},
                "state": state,
                "reload_seconds": 0,
            },
            "intel": {"state": state, "reload_seconds": 0},
        }
    )
    assert [type(e) for e in chain][-2:] == [AllowListEnricher, IntelEnricher]
    df = pl.DataFrame(
        {
            "source.ip": ["10.100.2.1", "10.100.2.1", "10.1.1.1"],
            "destination.ip": ["192.168.1.1", "192.168.1.1", "8.8.8.8"],
            "dns.question.name": ["www.baidu.com", "x.other.org", "www.baidu.com"],
        }
    )
    intel = chain[-1]
    out = apply(chain, df)
    # baidu.com is trusted: the domain hit is suppressed; the resolver IP still matches
    assert out["_allowed"].to_list() == [True, False, True]
    assert names(out) == [None, ["intel:feed"], None]
    looked = intel.lookups
    # a trusted client added to the store applies to later batches
    assert store.add_allow("source.ip", "10.100.2.0/24", "the office resolver")
    assert not store.add_allow("source.ip", "10.100.2.0/24")
    out = apply(chain, df)
    assert out["_allowed"].to_list() == [True, True, True]
    assert names(out) == [None, None, None]
    assert intel.lookups >= looked  # no new lookups were needed for allowed rows
    assert store.allow_entries() == {"source.ip": ["10.100.2.0/24"]}
    assert store.remove_allow("source.ip", "10.100.2.0/24")
    out = apply(chain, df)
    assert names(out) == [None, ["intel:feed"], None]
