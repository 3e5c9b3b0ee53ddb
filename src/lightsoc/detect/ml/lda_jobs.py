"""Suspicious connects as a job: train on a window, score it, rank, apply feedback.

`run_suspicious_connects` is what the scheduler runs (Spot: daily, or hourly):
with no model it trains on the window itself (plus the replicated benign
ratings) and scores the same records, as Spot does; with a model it scores
with it. `train`/`load` are the `lightsoc ml ... lda` entry points (re-exported
by `lda`), and `candidates` is the scheduler's alert step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lightsoc.detect.ml import lda_feedback as fb
from lightsoc.detect.ml import lda_words as lw
from lightsoc.detect.ml.lda import (
    FEEDBACK_DUPLICATION,
    FEEDBACK_MAX_SHARE,
    KIND,
    THRESHOLD,
    LdaModel,
    fit,
)
from lightsoc.detect.ml.modelfile import ModelError, ModelFile, fingerprint, load, resolve

TOP_N = 250
#: events read from the store for `train --from-store`: the last day, as Spot trains daily
STORE_WINDOW_S = 86_400
STORE_LIMIT = 5_000_000
#: what a record of each type needs to be scored (the store query)
STORE_QUERY = {
    "flow": "_exists_:source.ip AND _exists_:destination.ip AND _exists_:network.transport",
    "dns": "_exists_:dns.question.name",
    "web": "_exists_:url.original",
}
RESULT = ("rank", "score", "suspicion", "lda.doc_a", "lda.word_a", "lda.doc_b", "lda.word_b")


def _state(data_dir: Path | None) -> Any:
    """The data directory's state store if it has one (never creates one)."""
    if data_dir is None or not (Path(data_dir) / "state.sqlite").is_file():
        return None
    from lightsoc.store.state import StateStore

    return StateStore.for_data_dir(Path(data_dir))


def _feedback(state: Any, kind: str) -> tuple[pl.DataFrame | None, list]:
    if state is None:
        return None, []
    from lightsoc.store.state_feedback import FeedbackStore

    store = FeedbackStore(state)
    return store.ratings(kind), store.allowed(kind)


def train_events(
    events: pl.DataFrame,
    kind: str,
    *,
    ratings: pl.DataFrame | None = None,
    duplication: int = FEEDBACK_DUPLICATION,
    max_share: float | None = FEEDBACK_MAX_SHARE,
    params: dict[str, Any] | None = None,
) -> LdaModel:
    """Fit a model on `events` of record type `kind`, benign ratings replicated.

    The replicated tokens are at most `max_share` of the corpus' own (None: no cap).
    """
    popular = lw.popular_domains(events, kind)
    w = lw.words(events, kind, popular)
    cap = None if max_share is None else max_share * w.height
    extra = fb.replicated(ratings, duplication, cap)
    model = fit(w, kind, extra=extra, popular=popular, params=params)
    model.meta["params"]["feedback_duplication"] = duplication
    model.meta["params"]["feedback_max_share"] = max_share
    model.meta["metrics"]["replicated_tokens"] = float(extra[fb.COUNT].sum())
    model.meta["metrics"]["benign_ratings"] = (
        0 if ratings is None else int((ratings["rating"] == 3).sum())
    )
    if "@timestamp" in events.columns and events.height:
        ts = events["@timestamp"]
        model.meta["training"] = {"window": [str(ts.min()), str(ts.max())]}
    return model


def run_suspicious_connects(
    events: pl.DataFrame,
    kind: str,
    model: LdaModel | None = None,
    top_n: int | None = TOP_N,
    *,
    ratings: pl.DataFrame | None = None,
    allow: Sequence[Any] = (),
    state: Any = None,
    duplication: int = FEEDBACK_DUPLICATION,
    max_share: float | None = FEEDBACK_MAX_SHARE,
    params: dict[str, Any] | None = None,
    own_window: bool | None = None,
) -> pl.DataFrame:
    """The `top_n` most suspicious records of `events`, lowest score first.

    Columns: ``rank`` (1 = most suspicious), ``score`` (the LDA probability),
    ``suspicion`` (share of training records that scored higher), the words
    and documents (``lda.doc_a/word_a/doc_b/word_b``, what a rating stores),
    then the events' own columns. Ratings and the allow list come from
    `state` (a `StateStore`) unless given. With no model, one is trained on
    `events` first; nothing to train on gives an empty result. `own_window`:
    `model` was fitted on `events` (default: only when trained here), so each
    record is scored without its own connection (`LdaModel.without_own_connection`).
    """
    if kind not in lw.KINDS:
        raise ValueError(f"record type must be one of {', '.join(lw.KINDS)}, not {kind!r}")
    if state is not None:
        got_ratings, got_allow = _feedback(state, kind)
        ratings = got_ratings if ratings is None else ratings
        allow = list(allow) + got_allow
    empty = _empty(events)
    if events.height == 0:
        return empty
    if model is None:
        own_window = True if own_window is None else own_window
        try:
            model = train_events(
                events,
                kind,
                ratings=ratings,
                duplication=duplication,
                max_share=max_share,
                params=params,
            )
        except ModelError:
            return empty
    elif model.record_type != kind:
        raise ModelError(f"a {model.record_type} model cannot score {kind} records")
    scored = model.score_events(events, own_window=bool(own_window))
    out = pl.concat(
        [
            scored.select(
                pl.col("lda.score").alias("score"),
                pl.Series("suspicion", model.suspicion(scored["lda.score"].to_numpy())),
                *RESULT[3:],
            ),
            events.drop([c for c in RESULT if c in events.columns]),
        ],
        how="horizontal",
    )
    keep = out["score"].is_not_nan() & ~fb.allowed_mask(events, kind, list(allow))
    out = out.filter(keep).sort("score", maintain_order=True)
    if top_n is not None:
        out = out.head(top_n)
    return out.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank")).select(
        "rank", pl.exclude("rank")
    )


def _empty(events: pl.DataFrame) -> pl.DataFrame:
    cols = {"rank": pl.Int64, "score": pl.Float64, "suspicion": pl.Float64}
    cols.update({c: pl.Utf8 for c in RESULT[3:]})
    return pl.concat(
        [pl.DataFrame(schema=cols), events.clear().drop([c for c in cols if c in events.columns])],
        how="horizontal",
    )


# -- inputs --------------------------------------------------------------------
def parse_lines(lines: Sequence[str]) -> pl.DataFrame:
    """Raw records (any format lightsoc parses: nfdump CSV, Argus, Zeek...) as ECS events."""
    from lightsoc.parsers import get_parser, parse_records

    if not lines:
        return pl.DataFrame()
    return parse_records(pl.DataFrame({"event.original": list(lines)}), get_parser("auto"))


def read_files(paths: Sequence[Path]) -> pl.DataFrame:
    """Parse flow/DNS/web files the way `lightsoc ingest` does (`format: auto`)."""
    frames = []
    for p in paths:
        try:
            text = Path(p).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            raise ModelError(f"{p}: {e.strerror or e}") from None
        frames.append(parse_lines([line for line in text.splitlines() if line.strip()]))
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def read_store(data_dir: Path, kind: str | None = None) -> pl.DataFrame:
    """The store's last day of events of a record type (or of the first type found).

    "Last day" is the 24 hours up to the newest such event, not to now, so an
    import of old flows trains on its own last day.
    """
    from datetime import timedelta

    from lightsoc.client import ReaderError, open_reader

    try:
        reader = open_reader(Path(data_dir))
    except ReaderError as e:
        raise ModelError(str(e)) from None
    try:
        rows: list[dict] = []
        for k in [kind] if kind else list(lw.KINDS):
            rows = reader.search(STORE_QUERY[k], "all", STORE_LIMIT, None)
            if rows:
                break
    finally:
        reader.close()
    if not rows:
        return pl.DataFrame()
    df = pl.DataFrame(rows, infer_schema_length=None)
    if "@timestamp" in df.columns:
        if df["@timestamp"].dtype == pl.Utf8:
            df = df.with_columns(pl.col("@timestamp").str.to_datetime(time_zone="UTC"))
        newest = df["@timestamp"].max()
        df = df.filter(pl.col("@timestamp") > newest - timedelta(seconds=STORE_WINDOW_S))
    return df


def train(inputs: list[Path], data_dir: Path | None, from_store: bool) -> ModelFile:
    """`lightsoc ml train lda`: a model of the records in `inputs` or the store's last day."""
    frames = []
    if inputs:
        frames.append(read_files(inputs))
    if from_store:
        if data_dir is None:
            raise ModelError("--from-store needs a data directory")
        frames.append(read_store(data_dir))
    frames = [f for f in frames if f.height]
    if not frames:
        raise ModelError("nothing to train on: give --input FILE... or --from-store")
    events = pl.concat(frames, how="diagonal_relaxed")
    if "_parse_ok" in events.columns:
        events = events.filter(pl.col("_parse_ok").fill_null(False))
    kind = lw.detect_kind(events)
    state = _state(data_dir)
    try:
        ratings, _ = _feedback(state, kind)
    finally:
        if state is not None:
            state.close()
    model = train_events(events, kind, ratings=ratings)
    mf = model.to_file()
    mf.meta["training"] = {
        **mf.meta.get("training", {}),
        "record_type": kind,
        "records": events.height,
        "inputs": [str(p) for p in inputs],
        "from_store": from_store,
        "fingerprint": fingerprint(*[Path(p) for p in inputs]) if inputs else None,
    }
    return mf


class LdaScorer:
    """`lightsoc ml score lda FILE`: one raw record a line, its suspicion in [0, 1]."""

    def __init__(self, model: LdaModel) -> None:
        self.model = model
        self.threshold = float(model.meta.get("threshold", THRESHOLD))

    def score(self, values: Sequence[str] | pl.Series) -> np.ndarray:
        lines = [v if isinstance(v, str) else "" for v in list(values)]
        out = np.full(len(lines), np.nan)
        if not lines:
            return out
        events = parse_lines(lines)
        ok = (
            events["_parse_ok"].fill_null(False).to_numpy()
            if "_parse_ok" in events.columns
            else None
        )
        if ok is None or not ok.any():
            return out
        good = events.filter(pl.Series(ok))
        scores = self.model.score_events(good)["lda.score"].to_numpy()
        out[ok] = self.model.suspicion(scores)
        return out


def load_model(data_dir: Path | None, name: str | None = None) -> LdaModel:
    return LdaModel.from_file(load(resolve(name or KIND, data_dir), KIND))


def load_scorer(data_dir: Path | None, name: str | None = None) -> LdaScorer:
    return LdaScorer(load_model(data_dir, name))


def suspicious_ips(events: pl.DataFrame, kind: str, model: LdaModel) -> pl.DataFrame:
    """IPs ranked by the mean log10 probability of their words (document perplexity).

    A complement to the record list: a host whose records are all a little
    unusual ranks high here though none of them is the rarest of the day.
    ``excess`` (and ``excess_rank``) sums, over an IP's records, how far each
    falls below the day's median record: it weighs evidence, so a scanner's
    thousands of mildly odd probes outrank a small document's few rare words.
    """
    scored = model.score_words(lw.words(events, kind, model.popular))
    scored = scored.with_columns(pl.col("p").log10().alias("lp"))
    median = scored["lp"].median() if scored.height else 0.0
    return (
        scored.group_by(lw.DOC)
        .agg(
            pl.len().alias("records"),
            pl.col("lp").mean().alias("mean_log10"),
            pl.col("lp").min().alias("min_log10"),
            (pl.lit(median) - pl.col("lp")).clip(lower_bound=0).sum().alias("excess"),
        )
        .sort(["excess", lw.DOC], descending=[True, False])
        .with_row_index("excess_rank", 1)
        .sort(["mean_log10", lw.DOC])
        .with_row_index("rank", 1)
        .rename({lw.DOC: "ip"})
    )


# -- the scheduled job ---------------------------------------------------------------
#: stored fields a run reads (for `jobs.WindowJob.fields`)
FIELDS = (
    "@timestamp",
    "event.id",
    "event.dataset",
    "source.ip",
    "source.port",
    "source.bytes",
    "source.packets",
    "destination.ip",
    "destination.port",
    "destination.bytes",
    "destination.packets",
    "network.transport",
    "network.bytes",
    "network.packets",
    "dns.type",
    "dns.question.name",
    "dns.question.registered_domain",
    "dns.question.subdomain",
    "dns.question.type",
    "dns.response_code",
    "url.original",
    "url.path",
    "url.query",
    "url.domain",
    "url.registered_domain",
    "http.request.method",
    "http.response.status_code",
    "user_agent.original",
)


def candidates(
    events: pl.DataFrame,
    start: Any,
    end: Any,
    threshold: float | None,
    *,
    state: Any = None,
    top: int = 50,
    duplication: int = FEEDBACK_DUPLICATION,
    record: Callable[[str, pl.DataFrame, Any, Any, int], None] | None = None,
) -> list[Any]:
    """Alert candidates of one daily run: the `top` suspicious connects of each record type.

    Per record type (by `event.dataset`, as `jobs` groups them) the window is
    trained and scored (Spot), ratings and the allow list from `state`
    applied; the `top` distinct connections (IP pairs, by their lowest-scored
    record) each become one low-severity candidate (`threshold`: only records
    whose suspicion reaches it). Distinct pairs rather than raw records: a scan's
    thousands of rare probes would otherwise fill the list and hide the others.
    `record(kind, ranked, start, end, records)`, if given, receives each record
    type's whole ranking (before the threshold) and its window's record count:
    the job keeps the top rows for the web UI (`store.state_connects`).
    """
    from lightsoc.alerts.model import AlertCandidate
    from lightsoc.detect.ml.jobs import DNS_DATASETS, FLOW_DATASETS, WEB_DATASETS

    out: list[AlertCandidate] = []
    if events.height == 0 or "event.dataset" not in events.columns:
        if record is not None:  # an empty window is a run too: the UI says so
            for kind in lw.KINDS:
                record(kind, _empty(events), start, end, 0)
        return out
    day = end.date().isoformat()
    for kind, datasets in (("flow", FLOW_DATASETS), ("dns", DNS_DATASETS), ("web", WEB_DATASETS)):
        part = events.filter(pl.col("event.dataset").is_in(datasets))
        ranked = run_suspicious_connects(
            part, kind, None, None, state=state, duplication=duplication
        )
        if record is not None:
            record(kind, ranked, start, end, part.height)
        if threshold is not None:
            ranked = ranked.filter(pl.col("suspicion") >= threshold)
        if ranked.height == 0:
            continue
        ids = pl.col("event.id") if "event.id" in ranked.columns else pl.lit(None, pl.Utf8)
        pairs = (
            ranked.group_by("lda.doc_a", "lda.doc_b", maintain_order=True)
            .agg(
                pl.len().alias("n"),
                pl.col("rank").min().alias("rank"),
                pl.col("suspicion").max().alias("suspicion"),
                pl.col("@timestamp").min().alias("first"),
                pl.col("@timestamp").max().alias("last"),
                ids.head(5).alias("ids"),
            )
            .head(top)
        )  # groups in order of their first (lowest-scored) record
        for r in pairs.iter_rows(named=True):  # at most `top` rows
            a, b = r["lda.doc_a"], r["lda.doc_b"]
            what = f"{a} -> {b}" if b else f"{a}"
            out.append(
                AlertCandidate(
                    rule_id=f"ml-lda-{kind}",
                    rule_name=f"ML Suspicious Connect ({kind})",
                    severity="low",
                    entity_type="ip",
                    entity_value=str(a),
                    first_seen=r["first"] or start,
                    last_seen=r["last"],
                    count=int(r["n"]),
                    score=round(100 * float(r["suspicion"]), 1)
                    if r["suspicion"] == r["suspicion"]
                    else None,
                    event_ids=[i for i in r["ids"] if i],
                    window=("lda", kind, str(a), str(b), day),
                    description=(
                        f"{kind} suspicious connect: {what}, "
                        f"{r['n']} records, the rarest #{r['rank']} of the day's records (LDA)"
                    ),
                    tags=["ml", "lda", "suspicious-connect"],
                )
            )
    return out
