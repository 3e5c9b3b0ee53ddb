"""Registered domain / subdomain from the bundled public suffix list."""

from __future__ import annotations

import socket

import polars as pl
import pytest

from lightsoc import registry
from lightsoc.enrich import domains
from lightsoc.enrich.base import EnrichConfigError
from lightsoc.enrich.domains import DomainsEnricher, normalise
from lightsoc.schema import polars_type


@pytest.fixture(scope="module")
def dom() -> DomainsEnricher:
    return DomainsEnricher()


CASES = [
    # input, registered, subdomain
    ("www.example.co.uk", "example.co.uk", "www"),
    ("a.b.c.github.io", "c.github.io", "a.b"),
    ("example.com", "example.com", None),
    ("WWW.Example.COM", "example.com", "www"),
    ("www.example.com.", "example.com", "www"),
    ("example.com:8080", "example.com", None),
    ("api.example.com:443", "example.com", "api"),
    ("_ldap._tcp.dc.corp.example.org", "example.org", "_ldap._tcp.dc.corp"),
    ("192.168.1.1", None, None),
    ("192.168.1.1:80", None, None),
    ("[2001:db8::1]:443", None, None),
    ("2001:db8::1", None, None),
    ("", None, None),
    ("   ", None, None),
    (".", None, None),
    ("localhost", None, None),
    ("co.uk", None, None),
    ("a..b.com", None, None),
    ("bad host.com", None, None),
    ("exa/mple.com", None, None),
    ("example.com:abc", None, None),
    ("x" * 64 + ".com", None, None),
    ("www.bücher.de", "bücher.de", "www"),
    (None, None, None),
]


def test_registered() -> None:
    assert registry.get("enrichers", "domains") is DomainsEnricher


def test_url_domain_cases(dom: DomainsEnricher) -> None:
    df = pl.DataFrame({"url.domain": [c[0] for c in CASES]}, schema={"url.domain": pl.String})
    out = dom.enrich(df)
    assert out.height == len(CASES)
    got = list(
        zip(out["url.registered_domain"].to_list(), out["url.subdomain"].to_list(), strict=True)
    )
    want = [(c[1], c[2]) for c in CASES]
    for case, g, w in zip(CASES, got, want, strict=True):
        assert g == w, case[0]
    assert out.schema["url.registered_domain"] == polars_type("url.registered_domain")
    assert out["url.domain"].to_list() == df["url.domain"].to_list()  # input untouched


def test_dns_and_endpoint_domains(dom: DomainsEnricher) -> None:
    df = pl.DataFrame(
        {
            "dns.question.name": ["mail.google.com.", "x1y2z3.evil.example.net", None],
            "source.domain": ["host1.corp.example.co.jp", None, "10.0.0.1"],
            "destination.domain": ["S3.Amazonaws.com", "www.example.com", ""],
        }
    )
    out = dom.enrich(df)
    assert out["dns.question.registered_domain"].to_list() == ["google.com", "example.net", None]
    assert out["dns.question.subdomain"].to_list() == ["mail", "x1y2z3.evil", None]
    assert out["source.registered_domain"].to_list() == ["example.co.jp", None, None]
    # s3.amazonaws.com is itself a public suffix (private section): nothing registered
    assert out["destination.registered_domain"].to_list() == [None, "example.com", None]
    assert "source.subdomain" not in out.columns


def test_missing_columns_and_nulls(dom: DomainsEnricher) -> None:
    df = pl.DataFrame({"message": ["a"]})
    assert dom.enrich(df).equals(df)
    out = dom.enrich(pl.DataFrame({"url.domain": pl.Series([None], dtype=pl.String)}))
    assert out["url.registered_domain"].to_list() == [None]
    assert out["url.subdomain"].to_list() == [None]


def test_normalise() -> None:
    assert normalise(" Example.COM. ") == "example.com"
    assert normalise("example.com:8080") == "example.com"
    assert normalise("10.1.2") is None


def test_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(domains, "_default_psl", None)  # force a fresh load of the snapshot
    d = DomainsEnricher()
    out = d.enrich(pl.DataFrame({"url.domain": ["www.example.co.uk"]}))
    assert out["url.registered_domain"].to_list() == ["example.co.uk"]


def test_custom_psl_file(tmp_path) -> None:
    psl = tmp_path / "psl.dat"
    psl.write_text("// test list\ncom\nexample.com\n")
    d = DomainsEnricher({"public_suffix_list": str(psl)})
    out = d.enrich(pl.DataFrame({"url.domain": ["a.b.example.com"]}))
    assert out["url.registered_domain"].to_list() == ["b.example.com"]
    assert out["url.subdomain"].to_list() == ["a"]
    with pytest.raises(EnrichConfigError, match="missing.dat"):
        DomainsEnricher({"public_suffix_list": str(tmp_path / "missing.dat")})


def test_lookups_once_per_unique_value() -> None:
    d = DomainsEnricher()
    names = [f"h{i}.example{i % 7}.com" for i in range(1000)]
    df = pl.DataFrame({"url.domain": [names[i % 1000] for i in range(100_000)]})
    out = d.enrich(df)
    assert d.lookups == 1000
    assert out["url.registered_domain"][8] == "example1.com"
