"""The parser contract.

A parser turns a column of raw records into ECS columns, vectorised over the
whole batch. It never drops or reorders rows: row i of its output belongs to
row i of its input, and the boolean column `_ok` says whether the record
parsed. The pipeline keeps failed rows as `parse_failure` events.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import polars as pl

OK = "_ok"


class Parser(ABC):
    """Base class; subclasses register with `@register("parsers", NAME)`."""

    #: default `event.dataset` of events this parser produces
    dataset: ClassVar[str] = ""
    #: default `event.module`
    module: ClassVar[str] = ""
    #: order in `format: auto` detection (lower = tried first)
    auto_priority: ClassVar[int] = 100

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @abstractmethod
    def matches(self, raw: pl.Series) -> pl.Series:
        """Boolean series: does each record look like this format (cheap check)."""

    @abstractmethod
    def parse(self, raw: pl.Series) -> pl.DataFrame:
        """Parse records; one output row per input row, with ECS columns and `_ok`."""


def failed(n: int) -> pl.DataFrame:
    """An all-failed parse result of n rows (for formats that cannot apply)."""
    return pl.DataFrame({OK: pl.Series(OK, [False] * n, dtype=pl.Boolean)})
