"""Marking events as flagged: what stream rules, intel matches and models append.

A flagged event lists what flagged it in `rule.name`/`rule.id` (appended in
order) and keeps the highest `event.risk_score` of them.
"""

from __future__ import annotations

import polars as pl

_STR_LIST = pl.List(pl.String)


def append_flags(
    df: pl.DataFrame, names: pl.Series | pl.Expr, ids: pl.Series | pl.Expr, score: pl.Series
) -> pl.DataFrame:
    """Append `names`/`ids` (one per row; null: the row is not flagged) to rule.name/rule.id
    and raise event.risk_score to `score` where it is higher."""
    names = pl.lit(names) if isinstance(names, pl.Series) else names
    ids = pl.lit(ids) if isinstance(ids, pl.Series) else ids
    hit = names.is_not_null()
    exprs = []
    for col, value in (("rule.name", names), ("rule.id", ids)):
        old = pl.col(col).cast(_STR_LIST) if col in df.columns else pl.lit(None, _STR_LIST)
        exprs.append(
            pl.when(hit)
            .then(pl.concat_list(old.fill_null(pl.lit([], _STR_LIST)), value))
            .otherwise(old)
            .alias(col)
        )
    old_score = (
        pl.col("event.risk_score").cast(pl.Float64)
        if "event.risk_score" in df.columns
        else pl.lit(None, pl.Float64)
    )
    exprs.append(pl.max_horizontal(old_score, pl.lit(score)).alias("event.risk_score"))
    return df.with_columns(exprs)
