"""The enricher contract and the shared unique-value lookup machinery.

An enricher takes a batch and returns it with ECS columns added or
overwritten: same rows, same order. Rows it has nothing for keep whatever the
column already held (or null). A batch without the input columns comes back
unchanged.

Lookups never run per row: `Enricher.lookup_unique` calls a function once per
distinct key the enricher has not seen before, keeps the answers in a bounded
polars frame shared across batches (oldest entries evicted first) and joins
them back onto the rows, so a warm batch costs two joins and no Python loop.
"""

from __future__ import annotations

import ipaddress
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import polars as pl

from lightsoc import schema

DEFAULT_CACHE_SIZE = 100_000
_KEY = "__lightsoc_enrich_key"
_HIT = "__lightsoc_enrich_hit"

#: what a lookup function returns for one key: one value per output, or None
Row = tuple[Any, ...] | None


class EnrichConfigError(ValueError):
    """An enricher's configuration is unusable (bad path, bad database, bad CIDR)."""


class FrameCache:
    """Known keys and their lookup results, as one polars frame per namespace.

    Rows are kept in insertion order; past `maxsize` the oldest are dropped.
    A key whose lookup found nothing is kept too (with `_HIT` false), so it is
    not looked up again.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 0:
            raise EnrichConfigError(f"cache_size must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self.frames: dict[str, pl.DataFrame] = {}

    def __len__(self) -> int:
        return sum(f.height for f in self.frames.values())

    def get(self, namespace: str) -> pl.DataFrame | None:
        return self.frames.get(namespace)

    def add(self, namespace: str, new: pl.DataFrame) -> pl.DataFrame:
        """Add looked-up rows; returns the frame to join against (cached or not)."""
        old = self.frames.get(namespace)
        if old is not None and old.schema != new.schema:
            old = None
        both = new if old is None else pl.concat([old, new], how="vertical")
        if self.maxsize == 0:
            return both
        self.frames[namespace] = both.tail(self.maxsize) if both.height > self.maxsize else both
        return both

    def clear(self) -> None:
        self.frames.clear()


class Enricher(ABC):
    """Base class; subclasses register with `@register("enrichers", NAME)`.

    Options common to all enrichers: `cache_size` (entries kept across
    batches, default 100,000; 0 disables the cache).
    """

    #: ECS fields this enricher may write (documentation and wiring)
    outputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        size = self.options.get("cache_size", DEFAULT_CACHE_SIZE)
        try:
            size = int(size)
        except (TypeError, ValueError):
            raise EnrichConfigError(f"cache_size must be an integer, got {size!r}") from None
        self._cache = FrameCache(size)
        self._lock = threading.Lock()
        #: number of real (uncached) lookups performed so far
        self.lookups = 0

    @abstractmethod
    def enrich(self, df: pl.DataFrame) -> pl.DataFrame:
        """Return `df` with this enricher's columns added; same rows, same order."""

    # -- helpers for subclasses -------------------------------------------------

    def lookup_unique(
        self,
        keys: pl.Series,
        fn: Callable[[str], Row],
        out: Mapping[str, pl.DataType],
        namespace: str = "",
    ) -> pl.DataFrame | None:
        """Resolve each distinct key once and return a frame aligned with `keys`.

        `fn(key)` returns a tuple with one value per `out` column, or None when
        it has nothing. Results are cached under `(namespace, key)`. Returns
        None when the column holds no non-null key at all.
        """
        if keys.dtype == pl.Null:
            return None
        if keys.dtype != pl.String:
            keys = keys.cast(pl.String, strict=False)
        uniq = keys.drop_nulls().unique(maintain_order=True)  # faster than unordered here
        if uniq.len() == 0:
            return None
        lookup_schema = {_KEY: pl.String, _HIT: pl.Boolean, **out}
        with self._lock:
            known = self._cache.get(namespace)
            if known is not None and known.schema != lookup_schema:
                known = None  # the same namespace with other outputs: start afresh
            todo = (
                uniq
                if known is None
                else uniq.filter(~uniq.is_in(known.get_column(_KEY).implode()))
            )
            if todo.len():
                width = len(out)
                rows = []
                for key in todo.to_list():
                    self.lookups += 1
                    row = fn(key)
                    rows.append(
                        (key, False, *([None] * width)) if row is None else (key, True, *row)
                    )
                new = pl.DataFrame(rows, schema=lookup_schema, orient="row")
                known = self._cache.add(namespace, new)
        table = known.filter(pl.col(_HIT)).drop(_HIT) if known is not None else None
        if table is None or table.height == 0:
            return None
        aligned = (
            keys.alias(_KEY).to_frame().join(table, on=_KEY, how="left", maintain_order="left")
        )
        return aligned.drop(_KEY)


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address object for `text`, IPv4-mapped IPv6 unwrapped; None if invalid."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ecs_types(names: Sequence[str]) -> dict[str, pl.DataType]:
    """`{name: polars dtype}` for ECS fields, from the schema module."""
    return {name: schema.polars_type(name) for name in names}


def merge(
    df: pl.DataFrame, new: pl.DataFrame | None, types: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """Write the `types` columns of `new` (aligned with `df`) into `df`.

    Where `new` is null the existing value (if the column exists) is kept;
    elsewhere `new` wins. Columns missing from `df` are always added (all
    null when `new` is None), so an enricher's output schema does not depend
    on whether a batch had any hits.
    """
    exprs = []
    for name, dtype in types.items():
        if new is None:
            if name not in df.columns:
                exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        value = new.get_column(name)
        if name in df.columns:
            old = pl.col(name)
            if df.schema[name] != dtype:
                old = old.cast(dtype, strict=False)
            exprs.append(pl.coalesce(pl.lit(value), old).alias(name))
        else:
            exprs.append(pl.lit(value).alias(name))
    return df.with_columns(exprs) if exprs else df
