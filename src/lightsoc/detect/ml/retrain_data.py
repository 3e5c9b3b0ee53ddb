"""The training rows of a scheduled retraining run (`retrain`), gathered per kind.

- web: the stored web events of the window, labelled by the built-in web rules
  (`web_from_store`), and the shipped public training data (`public_web`);
- DGA: names analysts called benign and DNS names a DGA threat-intel feed
  matched (`dga_local`), and the shipped public DGA data (`public_dga`).

Apart from `retrain` (splitting, training, comparing, saving) because reading
the stores and the shipped data is its own concern. Logs under the
`lightsoc.detect.ml.retrain` logger, as before the split.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from lightsoc.detect.ml.modelfile import ModelError
from lightsoc.store.base import TimeRange

if TYPE_CHECKING:
    from lightsoc.store.events_duckdb import DuckDBEventStore
    from lightsoc.store.state import StateStore

log = logging.getLogger("lightsoc.detect.ml.retrain")

#: the seed of every random choice of a retraining run (sampling, split, threshold rows)
SEED = 0
#: distinct (target, label) rows of stored web events trained on at most (benign sampled)
MAX_STORE_ROWS = 200_000
WEB_FIELDS = ["url.original", "url.path", "url.query", "rule.name"]
#: intel feeds whose matches are DGA names (lowercase substring of feed name or provider)
DGA_FEED = "dga"
#: allow-list fields whose values are domain names
_DOMAIN_FIELDS = ("dns.question.name", "domain")


@dataclass
class Labelled:
    """Training rows: values (URL targets or DNS names) and labels (1 = malicious)."""

    values: list[str]
    y: np.ndarray
    description: dict[str, Any]


def sample(y: np.ndarray, n: int | None, seed: int = SEED) -> np.ndarray:
    """Sorted indices of at most `n` rows, each class keeping its share (None: all)."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(idx, max(1, round(n * len(idx) / len(y))), replace=False)
        for idx in (np.flatnonzero(y == c) for c in (0, 1))
        if len(idx)
    ]
    return np.sort(np.concatenate(keep))


def _no_public(e: Exception) -> Labelled:
    """No public rows: the stored ones alone must then hold both classes."""
    log.warning("ml retrain: the shipped public training data is not readable (%s)", e)
    return Labelled([], np.zeros(0, np.int8), {"missing": str(e)})


# -- web -----------------------------------------------------------------------------------
def web_from_store(events: DuckDBEventStore, start: datetime, end: datetime) -> Labelled:
    """Distinct (target, flagged by a web rule) rows of the stored web events in range."""
    from lightsoc.detect.ml import web, web_data

    table = events.read_range(TimeRange(start, end), WEB_FIELDS, "event.category:web")
    df: pl.DataFrame = pl.from_arrow(table)  # type: ignore[assignment]
    n = df.height
    names = sorted(web_data.web_rule_names())
    if n == 0:
        return Labelled([], np.zeros(0, np.int8), {"events": 0})
    rules = df.get_column("rule.name") if "rule.name" in df.columns else None
    if rules is None or rules.dtype != pl.List(pl.String):
        flagged = pl.Series(np.zeros(n, bool))
    else:
        flagged = rules.list.eval(pl.element().is_in(names)).list.any().fill_null(False)
    rows = (
        pl.DataFrame({"t": web.event_targets(df), "y": flagged.cast(pl.Int8)})
        .drop_nulls("t")
        .group_by("t")
        .agg(pl.col("y").max())  # a target a rule flagged once is an attack target
        .sort("t")
    )
    y = rows.get_column("y").to_numpy().astype(np.int8)
    # every attack target, benign ones sampled: a busy site repeats few shapes
    keep = np.flatnonzero(y == 1)
    benign = np.flatnonzero(y == 0)
    room = max(MAX_STORE_ROWS - len(keep), 0)
    if len(benign) > room:
        benign = np.random.default_rng(SEED).choice(benign, room, replace=False)
    idx = np.sort(np.concatenate([keep, benign]))
    targets = rows.get_column("t").to_list()
    desc = {"events": n, "distinct": rows.height, "label": "flagged by a built-in web rule"}
    return Labelled([targets[i] for i in idx], y[idx], desc)


def _public_web() -> tuple[tuple[str, ...], np.ndarray, dict[str, Any]]:
    """The shipped recipe's data: all of CSIC 2010 plus `web.augment`'s extras (read per
    run, ~6 s: a weekly job need not hold ~170,000 targets in memory between runs)."""
    from lightsoc.detect.ml import web, web_data

    base = web_data.SHARED_WEB
    normal = web_data.csic_targets(base / web_data.CSIC_NORMAL)
    anomalous = web_data.csic_targets(base / web_data.CSIC_ANOMALOUS)
    y = np.r_[np.zeros(len(normal), np.int8), np.ones(len(anomalous), np.int8)]
    targets, y, extra = web.augment(normal + anomalous, y, "all")
    return tuple(targets), y, {"data": "CSIC 2010 + " + ", ".join(extra)}


def public_web(n: int | None) -> Labelled:
    """`n` rows (class shares kept; None: all) of the shipped web training data."""
    try:
        targets, y, desc = _public_web()
    except (OSError, ModelError) as e:  # an installation without ../shared/data
        return _no_public(e)
    idx = sample(y, n)
    return Labelled([targets[i] for i in idx], y[idx], {**desc, "rows": len(idx)})


# -- DGA -----------------------------------------------------------------------------------
def _name(value: object) -> str | None:
    """A lowercased DNS name without its trailing dot; None for IPs, `*` and empties."""
    if not isinstance(value, str):
        return None
    v = value.strip().lower().rstrip(".")
    if not v or "." not in v or "*" in v or "/" in v:
        return None
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        return v


def analyst_benign(state: StateStore) -> tuple[list[str], dict[str, int]]:
    """Names analysts marked benign: DNS ratings of 3, DNS allow pairs, intel allow domains."""
    from lightsoc.store.state_feedback import BENIGN, FeedbackStore
    from lightsoc.store.state_intel import IntelStore

    found: dict[str, set[str]] = {"ratings": set(), "allow_pairs": set(), "intel_allow": set()}
    try:
        fb = FeedbackStore(state)
        rated = fb.ratings("dns", BENIGN).get_column("domain").to_list()
        found["ratings"] = {n for n in map(_name, rated) if n}
        found["allow_pairs"] = {n for n in (_name(p.value_b) for p in fb.allowed("dns")) if n}
    except Exception as e:  # noqa: BLE001 - a store without the tables: nothing rated
        log.warning("ml retrain dga: analyst ratings not readable (%s)", e)
    try:
        entries = IntelStore(state).allow_entries()
        found["intel_allow"] = {
            n
            for f, values in entries.items()
            if f.endswith(_DOMAIN_FIELDS)
            for n in map(_name, values)
            if n
        }
    except Exception as e:  # noqa: BLE001
        log.warning("ml retrain dga: intel allow list not readable (%s)", e)
    names = sorted(set().union(*found.values()))
    return names, {k: len(v) for k, v in found.items()}


def intel_dga(events: DuckDBEventStore, start: datetime, end: datetime) -> list[str]:
    """Distinct DNS names of stored events a DGA threat-intel feed matched."""
    fields = ["dns.question.name", "threat.feed.name", "threat.indicator.provider"]
    q = "_exists_:dns.question.name AND _exists_:threat.feed.name"
    df: pl.DataFrame = pl.from_arrow(events.read_range(TimeRange(start, end), fields, q))  # type: ignore[assignment]
    if df.height == 0:
        return []
    feed = pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null("") for c in fields[1:] if c in df.columns],
        separator=" ",
    ).str.to_lowercase()
    hits = df.filter(feed.str.contains(DGA_FEED, literal=True)).get_column("dns.question.name")
    return sorted({n for n in map(_name, hits.unique().to_list()) if n})


def dga_local(
    events: DuckDBEventStore, state: StateStore, start: datetime, end: datetime
) -> Labelled:
    """Analyst-benign names (0) and intel-DGA names (1); a name in both counts as benign."""
    benign, counts = analyst_benign(state)
    bad = sorted(set(intel_dga(events, start, end)) - set(benign))
    y = np.r_[np.zeros(len(benign), np.int8), np.ones(len(bad), np.int8)]
    return Labelled(benign + bad, y, {"benign": counts, "intel_dga": len(bad)})


def public_dga(n: int | None, exclude: set[str]) -> Labelled:
    """`n` rows of the shipped DGA training data (None: all), minus names labelled locally."""
    from lightsoc.detect.ml import dga

    try:
        df = dga.read_labelled([dga.DATA])
    except (OSError, ModelError) as e:
        return _no_public(e)
    df = df.filter(~pl.col("domain").str.to_lowercase().is_in(sorted(exclude)))
    y = (df.get_column("label") == "dga").to_numpy().astype(np.int8)
    idx = sample(y, n)
    names = df.get_column("domain").to_list()
    return Labelled([names[i] for i in idx], y[idx], {"data": str(dga.DATA.name), "rows": len(idx)})
