"""SQL of the dashboard's aggregations over the DuckDB event store, in one scan each.

The store builds the filtered `SELECT ... FROM events WHERE ...` (see
`DuckDBEventStore._select`); these wrap it. Column names come from the schema
only (quoted by the caller); values and sizes travel as parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def histogram_by_sql(inner: str) -> str:
    """Counts per (bucket, value) for the most common values; the rest as value NULL.

    `inner` selects `b` (the time bucket) and `v` (the value) of matching events;
    the query takes one more parameter after `inner`'s: how many values to keep.
    The (bucket, value) counts are materialised once (small: buckets x values), so
    the events are read once, not again to find the top values.
    """
    return _histogram_by(f"SELECT b, v, count(*) AS n FROM ({inner}) GROUP BY 1, 2")  # noqa: S608


def histogram_by_counts_sql(counts: str) -> str:
    """`histogram_by_sql` over partial counts: `counts` selects `t` (a time that
    lies in the same bucket as the events it counts), `v` and `n` (negative to
    subtract; a group left at 0 had no event in the range). One parameter
    before `counts`' (the interval in seconds) and one after (how many values)."""
    return _histogram_by(
        f"SELECT time_bucket(to_seconds(?), t) AS b, v, sum(n) AS n FROM ({counts}) "  # noqa: S608
        "GROUP BY 1, 2 HAVING sum(n) > 0"
    )


def _histogram_by(grouped: str) -> str:
    return (
        f"WITH g AS MATERIALIZED ({grouped}), "  # noqa: S608
        "t AS (SELECT v FROM g WHERE v IS NOT NULL GROUP BY v ORDER BY sum(n) DESC, v LIMIT ?) "
        "SELECT b, CASE WHEN v IN (SELECT v FROM t) THEN v END AS v, sum(n)::BIGINT "
        "FROM g GROUP BY 1, 2 ORDER BY 1, 3 DESC"
    )


def top_counts_sql(counts: str) -> str:
    """The top rows `(f, v, n)` of each field `f` (an index) from partial counts:
    `counts` selects `f`, `v` (never null) and `n` (negative to subtract); one parameter after its own
    (how many per field). Ties rank by value, as in `top_many_sql`."""
    return (
        f"SELECT f, v, sum(n)::BIGINT AS n FROM ({counts}) GROUP BY 1, 2 HAVING sum(n) > 0 "  # noqa: S608
        "QUALIFY row_number() OVER (PARTITION BY f ORDER BY sum(n) DESC, v) <= ? "
        "ORDER BY f, n DESC, v"
    )


def top_many_tail(cols: Sequence[str]) -> str:
    """GROUP BY tail of a select of `top_many_what(cols)`: one grouping set per column."""
    return "GROUP BY GROUPING SETS (" + ", ".join(f"({c})" for c in cols) + ")"


def top_many_what(cols: Sequence[str]) -> str:
    return f"grouping_id({', '.join(cols)}) AS gid, {', '.join(cols)}, count(*) AS n"


def top_many_sql(inner: str, cols: Sequence[str]) -> str:
    """The top rows of each grouping set; one more parameter after `inner`'s: how many.

    In a set's rows only its own column can be non-null; the row where all are
    null counts the events without a value and is ranked last (then dropped).
    """
    null_row = " AND ".join(f"{c} IS NULL" for c in cols)
    order = ", ".join(cols)
    return (
        f"SELECT * FROM ({inner}) QUALIFY row_number() OVER ("  # noqa: S608
        f"PARTITION BY gid ORDER BY ({null_row}), n DESC, {order}) <= ? ORDER BY gid, n DESC"
    )


def top_many_rows(
    names: Sequence[str], rows: Sequence[tuple[Any, ...]], n: int
) -> dict[str, list[tuple[Any, int]]]:
    """{field: [(value, count)]} from `top_many_sql` rows `(gid, *values, n)`.

    `grouping_id` sets a column's bit (the first column is the most significant)
    when the row is NOT grouped by it: the one clear bit names the row's field.
    """
    k = len(names)
    out: dict[str, list[tuple[Any, int]]] = {name: [] for name in names}
    for row in rows:
        gid = int(row[0])
        i = next(j for j in range(k) if not gid & (1 << (k - 1 - j)))
        value = row[1 + i]
        if value is not None and len(out[names[i]]) < n:
            out[names[i]].append((value, int(row[-1])))
    return out
