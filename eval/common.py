"""Shared pieces of the evaluation: a throw-away data dir, metrics, tables.

Every section runs the real pipeline: raw lines are written to a file in a
fresh data directory whose config loads only the built-in rule pack, and
`lightsoc.ingest.ingest` parses, enriches, runs the stream rules and then the
correlation rules over the imported span, exactly as `lightsoc ingest` does.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from lightsoc.alerts.model import Alert
from lightsoc.alerts.store import AlertStore
from lightsoc.config import load_config
from lightsoc.detect.ruleset import builtin_dir
from lightsoc.ingest import ingest
from lightsoc.runtime import Stores, open_stores

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BIG = 10_000_000


class Env:
    """A fresh data directory (config: built-in rules only) and its stores."""

    def __init__(self, root: Path | None = None) -> None:
        self._tmp = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lightsoc-eval-")
            root = Path(self._tmp.name)
        self.root = root
        cfg = root / "lightsoc.yml"
        cfg.write_text(f"data_dir: {root / 'data'}\ndetect:\n  rules: [builtin]\n")
        self.config = load_config(cfg)
        self.stores: Stores = open_stores(self.config.data_dir, self.config)
        self.files = 0

    def ingest_lines(self, lines: Iterable[str], suffix: str = ".log") -> dict[str, Any]:
        """Import `lines` as one new file; the ingest summary."""
        self.files += 1
        path = self.root / f"in{self.files}{suffix}"
        with path.open("w", encoding="utf-8", errors="surrogateescape") as fh:
            for line in lines:
                fh.write(line + "\n")
        return self.ingest_paths([path])

    def ingest_paths(self, paths: Sequence[Path]) -> dict[str, Any]:
        return ingest(self.config, self.stores, list(paths)).as_dict()

    def events(self, fields: Sequence[str] | None = None, query: str = "") -> pl.DataFrame:
        """Stored events (all of them, or those matching `query`)."""
        table = self.stores.events.search(query, fields=fields, limit=BIG)
        return pl.from_arrow(table)  # type: ignore[return-value]

    def flagged(self, fields: Sequence[str] = ("event.original", "rule.name")) -> pl.DataFrame:
        """Events some stream rule flagged."""
        return self.events(list(fields), "_exists_:rule.name")

    def alerts(self) -> list[Alert]:
        return AlertStore(self.stores.state).find(limit=BIG)

    def close(self) -> None:
        self.stores.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Rule:
    """What the eval needs to know of a rule in the pack (read from its YAML)."""

    title: str
    name: str | None
    tags: list[str]
    level: str
    correlation: bool
    path: str
    #: the Sigma logsource category ("" if none)
    category: str = ""


def pack_rules() -> list[Rule]:
    """Every rule document of the built-in pack as it is on disk now."""
    base = builtin_dir()
    out: list[Rule] = []
    if base is None:
        return out
    for p in sorted(base.rglob("*.yml")):
        try:
            docs = list(yaml.safe_load_all(p.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError):
            continue  # a rule file being written right now: the loader reports it
        for d in docs:
            if isinstance(d, dict) and d.get("title"):
                out.append(
                    Rule(
                        title=str(d["title"]),
                        name=d.get("name"),
                        tags=[str(t) for t in d.get("tags") or []],
                        level=str(d.get("level") or ""),
                        correlation="correlation" in d,
                        path=str(p.relative_to(base)),
                        category=str((d.get("logsource") or {}).get("category") or ""),
                    )
                )
    return out


@dataclass
class Confusion:
    """A confusion matrix over requests (positive = anomalous/attack)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        return _div(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _div(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float:
        return _div(self.fp, self.fp + self.tn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return _div(2 * p * r, p + r)

    @property
    def accuracy(self) -> float:
        return _div(self.tp + self.tn, self.tp + self.fp + self.tn + self.fn)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "fpr": _round(self.fpr),
            "f1": _round(self.f1),
            "accuracy": _round(self.accuracy),
        }


def confusion(truth: Sequence[bool], flagged: Sequence[bool]) -> Confusion:
    """Count a confusion matrix from per-item labels and predictions."""
    if len(truth) != len(flagged):
        raise ValueError("truth and predictions differ in length")
    tp = sum(1 for t, f in zip(truth, flagged, strict=True) if t and f)
    fp = sum(1 for t, f in zip(truth, flagged, strict=True) if not t and f)
    fn = sum(1 for t, f in zip(truth, flagged, strict=True) if t and not f)
    return Confusion(tp, fp, len(truth) - tp - fp - fn, fn)


def _div(a: float, b: float) -> float:
    # an empty denominator (no positives, no flags) is reported as NaN, not as 0 or 1
    return a / b if b else math.nan


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def pct(x: float | None) -> str:
    """A ratio as a percentage for the tables."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain aligned text: numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_num(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))
    ]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(cells[0]), sep, *(fmt(r) for r in cells[1:])])


def _is_num(s: str) -> bool:
    s = s.rstrip("%")
    try:
        float(s)
    except ValueError:
        return s in ("n/a", "-")
    return True


def target(ok: bool) -> str:
    """The mark printed next to a target figure."""
    return "ok" if ok else "MISSED"
