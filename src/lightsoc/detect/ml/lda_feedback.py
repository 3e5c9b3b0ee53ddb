"""Analyst feedback for suspicious connects: replicate benign ratings, drop allowed pairs.

Spot's loop: an analyst rates the top records; a record rated 3 (benign) is
added `duplication` times (Spot: 1000) to the next training corpus, under the
same IPs and words, so the model learns it as usual and similar records stop
surfacing. Ratings 1 and 2 are not replicated: those records stay on the list.
The allow list removes pairs from the results outright.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from lightsoc.detect.ml import lda_words as lw
from lightsoc.store.state_feedback import ANY, BENIGN, AllowPair

COUNT = "n"


def replicated(
    ratings: pl.DataFrame | None, duplication: int, max_tokens: float | None = None
) -> pl.DataFrame:
    """``(doc, word, n)`` to add to the training counts for the benign ratings.

    `max_tokens` caps the replicated total: Spot's factor (1000) assumes a day
    of millions of records; on a small corpus it would outweigh the traffic
    itself and bend every topic towards the rated records.
    """
    empty = pl.DataFrame(schema={lw.DOC: pl.Utf8, lw.WORD: pl.Utf8, COUNT: pl.Float64})
    if ratings is None or ratings.height == 0 or duplication <= 0:
        return empty
    benign = ratings.filter(pl.col("rating") == BENIGN)
    sides = [
        benign.select(pl.col(f"doc_{s}").alias(lw.DOC), pl.col(f"word_{s}").alias(lw.WORD))
        for s in ("a", "b")
        if f"doc_{s}" in benign.columns and f"word_{s}" in benign.columns
    ]
    if not sides:
        return empty
    got = pl.concat(sides).drop_nulls()
    factor = float(duplication)
    if max_tokens is not None and got.height:
        factor = max(1.0, min(factor, max_tokens / got.height))
    return got.group_by(lw.DOC, lw.WORD).agg((pl.len() * factor).alias(COUNT)).sort(lw.DOC, lw.WORD)


def _peer(events: pl.DataFrame, record_type: str) -> list[pl.Expr]:
    """What an allow pair's second value is compared with, per record type."""
    if record_type == "flow":
        return [lw.col(events, "destination.ip").cast(pl.Utf8)]
    if record_type == "dns":
        return [
            lw.col(events, "dns.question.name").cast(pl.Utf8).str.to_lowercase(),
            lw.col(events, "dns.question.registered_domain").cast(pl.Utf8).str.to_lowercase(),
        ]
    return [
        lw.col(events, "url.domain").cast(pl.Utf8).str.to_lowercase(),
        lw.col(events, "url.registered_domain").cast(pl.Utf8).str.to_lowercase(),
        lw.col(events, "destination.ip").cast(pl.Utf8),
    ]


def allowed_mask(
    events: pl.DataFrame, record_type: str, pairs: Sequence[AllowPair | tuple[str, str]]
) -> pl.Series:
    """True for each record an allow-list pair covers (flows: either direction)."""
    if not pairs or events.height == 0:
        return pl.Series("allowed", [False] * events.height, dtype=pl.Boolean)
    table = pl.DataFrame(
        [
            (p.value_a, p.value_b) if isinstance(p, AllowPair) else (p[0], p[1].lower())
            for p in pairs
        ],
        schema={"a": pl.Utf8, "b": pl.Utf8},
        orient="row",
    )
    first = lw.dns_client(events) if record_type == "dns" else lw.col(events, "source.ip")
    cand = events.select(
        pl.int_range(0, pl.len(), dtype=pl.Int64).alias(lw.ROW),
        first.cast(pl.Utf8).alias("x"),
        pl.concat_list(_peer(events, record_type)).alias("y"),
    ).explode("y")
    if record_type == "flow":  # a pair of IPs matches in either direction
        cand = pl.concat(
            [cand, cand.select(lw.ROW, pl.col("y").alias("x"), pl.col("x").alias("y"))]
        )
    exact = cand.join(table, left_on=["x", "y"], right_on=["a", "b"], how="semi")
    whole = cand.join(table.filter(pl.col("b") == ANY), left_on="x", right_on="a", how="semi")
    hit = pl.concat([exact[lw.ROW], whole[lw.ROW]]).unique()
    rows = pl.int_range(0, events.height, eager=True, dtype=pl.Int64)
    return rows.is_in(hit.implode()).alias("allowed")
