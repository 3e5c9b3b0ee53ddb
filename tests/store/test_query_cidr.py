"""CIDR searches on IP fields: the prefix shortcut must match exactly what the
numeric check alone matches, including odd spellings stored as text."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pytest

from lightsoc.store.query import Compiled, compile_query
from lightsoc.store.query_sql import _ipv4_between

IPS = [
    "10.1.2.3",
    "10.12.3.4",
    "10.1.0.0",
    "10.1.255.255",
    "10.10.1.1",
    "110.1.2.3",
    "100.1.2.3",
    "10.01.2.3",  # a leading zero: the numeric check reads it as 10.1.2.3
    "010.1.2.3",  # not an address for the numeric check
    "10.1.2",
    "10.1.2.3.4",
    "10.1.x.y",
    "10.1.256.1",
    "10.1.2.3 ",
    "10.1.16.5",
    "10.1.15.255",
    "10.1.31.255",
    "10.1.32.0",
    "10.0.0.5",
    "10.0.0.05",
    "10.00.0.5",
    "10.0.0.50",
    "0.0.0.0",
    "00.0.0.0",
    "1.2.3.4",
    "01.02.3.4",
    "11.0.0.1",
    "255.255.255.255",
    "fe80::1",
    "10.",
    "",
    None,
]
NETS = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.16.0/20",
    "10.1.2.0/24",
    "10.1.2.0/25",
    "10.1.2.3/32",
    "10.0.0.5/32",
    "0.0.0.0/0",
    "0.0.0.0/8",
    "10.0.0.0/7",
    "1.2.0.0/16",
    "1.2.3.4/255.255.0.0",
    "255.255.255.255/32",
    "10.1.2.99/16",  # host bits set: the network 10.1.0.0/16
]


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    tbl = pa.table(
        {
            "i": list(range(len(IPS))),
            "source.ip": IPS,
            "dns.resolved_ip": [[ip] if ip is not None else None for ip in IPS],
        }
    )
    c.register("tbl", tbl)
    c.execute("CREATE TABLE events AS SELECT * FROM tbl")
    yield c
    c.close()


def _rows(con: duckdb.DuckDBPyConnection, where: Compiled) -> set[int]:
    sql = f"SELECT i FROM events WHERE {where.sql}"  # noqa: S608 - compiled predicate
    return {r[0] for r in con.execute(sql, where.params).fetchall()}


def _reference(con: duckdb.DuckDBPyConnection, cidr: str) -> set[int]:
    """What the plain numeric check (the compiler's output before the shortcut) matches."""
    net = ipaddress.ip_network(cidr, strict=False)
    lo, hi = int(net.network_address), int(net.broadcast_address)
    return _rows(con, _ipv4_between(Compiled('"source.ip"', []), lo, hi))


def _ips(rows: set[int]) -> set[str | None]:
    return {IPS[i] for i in rows}


@pytest.mark.parametrize("cidr", NETS)
def test_cidr_matches_the_numeric_check(con: duckdb.DuckDBPyConnection, cidr: str) -> None:
    fields = {"source.ip": pa.string(), "dns.resolved_ip": pa.list_(pa.string())}
    want = _reference(con, cidr)
    assert _rows(con, compile_query(f"source.ip:{cidr}", fields=fields)) == want
    assert _rows(con, compile_query(f"dns.resolved_ip:{cidr}", fields=fields)) == want
    # NOT keeps every other row, absent values (NULL) included
    negated = _rows(con, compile_query(f"NOT source.ip:{cidr}", fields=fields))
    assert negated == set(range(len(IPS))) - want


def test_cidr_edge_cases(con: duckdb.DuckDBPyConnection) -> None:
    fields = {"source.ip": pa.string()}

    def match(cidr: str) -> set[str | None]:
        return _ips(_rows(con, compile_query(f"source.ip:{cidr}", fields=fields)))

    b16 = match("10.1.0.0/16")
    assert {"10.1.2.3", "10.1.0.0", "10.1.255.255", "10.01.2.3"} <= b16
    assert not {"10.12.3.4", "10.10.1.1", "110.1.2.3", "10.1.x.y", "10.1.2", "10.1.256.1"} & b16
    assert match("10.1.16.0/20") == {"10.1.16.5", "10.1.31.255"}
    assert match("10.0.0.5/32") == {"10.0.0.5", "10.0.0.05", "10.00.0.5"}
    every_v4 = match("0.0.0.0/0")
    assert "1.2.3.4" in every_v4 and "fe80::1" not in every_v4 and "10.1.x.y" not in every_v4
    # whole octets compare as text: the prefix shortcut, not the per-row split
    sql = compile_query("source.ip:10.1.0.0/16", fields=fields).sql
    assert "starts_with" in sql and "split_part" not in sql
    assert compile_query("source.ip:10.0.0.0/8", fields=fields).params == ["10."]
