"""Threat-intel matching in the stream: IPs, CIDRs, domains (and parents), URLs, file hashes.

Indicators come from the state store (`lightsoc intel load`). The matcher
keeps them as polars frames and resolves each *distinct* value of a batch
once (cached across batches in a `FrameCache`), then joins the answers back:

- `source.ip`, `destination.ip`: a join against the exact IPs, and for IPv4
  CIDRs one integer join per prefix length present (`ip >> (32 - len)`);
  IPv6 CIDRs are checked per distinct address (rare).
- `dns.question.name`, `url.domain`, `destination.domain`: the name and each
  parent (`a.b.evil.com` -> `b.evil.com`, `evil.com`) joined against the
  domains; an IP literal in `url.domain` is matched as an IP.
- `url.original` (with `url.domain` in front when it holds only a path):
  normalised with `intel_formats.normalise_url` and joined against the URLs.
- `file.hash.md5`, `file.hash.sha1`, `file.hash.sha256`: lower-cased and
  joined against the hash indicators of that type. Loaders keep only hex
  strings of 32/40/64/128 digits, and the length is the type (MD5, SHA-1,
  SHA-256, SHA-512): a STIX `file:hashes.'SHA-256'`, a MISP `sha256` or a
  plain-list line of 64 digits all land in the SHA-256 lookup.

Per row the most confident match wins (then the most specific). Matched rows
get `threat.indicator.*`, `threat.feed.name`, `threat.enrichments.matched.*`,
`intel:<source>` appended to `rule.name`/`rule.id`, and `event.risk_score`
raised to 75/50/25 for High/Medium/Low. Rows whose `_allowed` column is true
(see `allowlist.py`) are not looked up.

Options: `state` (a `StateStore`), `reload_seconds` (how often the store's
version counter is polled, default 30; new, changed or expired indicators
are picked up within that time), `background` (build a new index in a
thread and keep matching with the old one meanwhile: a full maltrail
load takes seconds to index). With no indicators loaded the enricher
returns batches unchanged.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from lightsoc.detect.flags import append_flags
from lightsoc.enrich.base import EnrichConfigError, Enricher, ecs_types, merge
from lightsoc.enrich.intel_formats import ECS_TYPE, normalise_url
from lightsoc.registry import register
from lightsoc.sources.base import all_one_shot

if TYPE_CHECKING:
    # state_intel imports SQLAlchemy (~0.3 s): a one-shot `ingest` that gets no
    # intel enricher (see `stream_options`) must not pay for it at start-up.
    from lightsoc.store.state_intel import IndicatorRow

log = logging.getLogger(__name__)

SCORES = {"Low": 25.0, "Medium": 50.0, "High": 75.0}
THREAT_FIELDS = (
    "threat.indicator.type",
    "threat.indicator.name",
    "threat.indicator.provider",
    "threat.indicator.confidence",
    "threat.feed.name",
    "threat.enrichments.matched.field",
    "threat.enrichments.matched.atomic",
)
#: event field -> how its values are matched
MATCH_FIELDS = {
    "source.ip": "ip",
    "destination.ip": "ip",
    "dns.question.name": "domain",
    "url.domain": "domain",
    "destination.domain": "domain",
    "url.original": "url",
    "file.hash.md5": "md5",
    "file.hash.sha1": "sha1",
    "file.hash.sha256": "sha256",
}
#: hash indicator type by its number of hex digits
HASH_TYPES = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
ALLOWED = "_allowed"
_KEY, _IDX, _RANK = "__i_key", "__i_idx", "__i_rank"
_I64 = pl.Int64


def _rank(confidence: str, specificity: int, confidences: Sequence[str]) -> int:
    """Higher is better: confidence first (its place in `confidences`), then how
    specific the indicator is."""
    return confidences.index(confidence) * 1000 + specificity


class IntelIndex:
    """Active indicators as join-ready frames; `idx` points into `meta`."""

    def __init__(self, rows: list[IndicatorRow]) -> None:
        from lightsoc.store.state_intel import CONFIDENCES  # start-up time: see the imports

        best: dict[tuple[str, str], tuple[int, IndicatorRow]] = {}
        for r in rows:
            spec = {"ip": 200, "url": 300, "hash": 300}.get(r.kind)
            if spec is None:
                spec = int(r.value.rsplit("/", 1)[1]) if r.kind == "cidr" else r.value.count(".")
            rank = _rank(r.confidence, spec, CONFIDENCES)
            old = best.get((r.kind, r.value))
            if old is None or rank > old[0]:
                best[(r.kind, r.value)] = (rank, r)
        items = list(best.values())
        self.size = len(items)
        self.generation = 0
        self.meta = pl.DataFrame(
            {
                _IDX: list(range(len(items))),
                "threat.indicator.type": [
                    "ipv6-addr" if r.kind in ("ip", "cidr") and ":" in r.value else ECS_TYPE[r.kind]
                    for _, r in items
                ],
                "threat.indicator.name": [r.value for _, r in items],
                "threat.indicator.provider": [r.source for _, r in items],
                "threat.indicator.confidence": [r.confidence for _, r in items],
                "threat.feed.name": [r.label or r.source for _, r in items],
                "__score": [SCORES[r.confidence] for _, r in items],
            },
            schema_overrides={_IDX: _I64},
        )
        by_kind: dict[str, list[tuple[str, int, int]]] = {}
        self.cidr4: dict[int, pl.DataFrame] = {}
        self.cidr6: list[tuple[ipaddress.IPv6Network, int, int]] = []
        v4: dict[int, list[tuple[int, int, int]]] = {}
        for i, (rank, r) in enumerate(items):
            if r.kind == "cidr":
                net = ipaddress.ip_network(r.value, strict=False)
                if net.version == 4:
                    plen = net.prefixlen
                    v4.setdefault(plen, []).append(
                        (int(net.network_address) >> (32 - plen), i, rank)
                    )
                else:
                    self.cidr6.append((net, i, rank))
            elif r.kind == "hash":  # one frame per hash type: a digest only meets its own kind
                by_kind.setdefault(HASH_TYPES.get(len(r.value), "hash"), []).append(
                    (r.value.lower(), i, rank)
                )
            else:
                by_kind.setdefault(r.kind, []).append((r.value, i, rank))
        self.frames = {
            kind: pl.DataFrame(
                vals, schema={_KEY: pl.String, _IDX: _I64, _RANK: _I64}, orient="row"
            )
            for kind, vals in by_kind.items()
        }
        for plen, vals in v4.items():
            self.cidr4[plen] = pl.DataFrame(
                vals, schema={"__net": _I64, _IDX: _I64, _RANK: _I64}, orient="row"
            )

    # each resolver: distinct keys -> frame (_KEY, _IDX, _RANK) of the matching ones
    def _exact(self, kind: str, keys: pl.DataFrame) -> pl.DataFrame | None:
        frame = self.frames.get(kind)
        return None if frame is None else keys.join(frame, on=_KEY, how="inner")

    def resolve_ip(self, keys: pl.DataFrame) -> list[pl.DataFrame]:
        found = [f for f in [self._exact("ip", keys)] if f is not None]
        if self.cidr4:
            parts = pl.col(_KEY).str.split_exact(".", 3)
            octets = [parts.struct.field(f"field_{i}").cast(_I64, strict=False) for i in range(4)]
            valid = pl.all_horizontal([(o >= 0) & (o <= 255) for o in octets])
            as_int = octets[0] * 16777216 + octets[1] * 65536 + octets[2] * 256 + octets[3]
            ints = keys.select(
                pl.col(_KEY), pl.when(valid).then(as_int).alias("__int")
            ).drop_nulls()
            for plen, frame in self.cidr4.items():
                net = ints.select(
                    pl.col(_KEY), (pl.col("__int") // (1 << (32 - plen))).alias("__net")
                )
                found.append(net.join(frame, on="__net", how="inner").drop("__net"))
        if self.cidr6:
            rows = []
            for key in keys.get_column(_KEY).to_list():
                if ":" not in key:
                    continue
                try:
                    ip = ipaddress.IPv6Address(key)
                except ValueError:
                    continue
                hits = [(rank, i) for net, i, rank in self.cidr6 if ip in net]
                if hits:
                    rank, i = max(hits)
                    rows.append((key, i, rank))
            if rows:
                found.append(
                    pl.DataFrame(
                        rows, schema={_KEY: pl.String, _IDX: _I64, _RANK: _I64}, orient="row"
                    )
                )
        return found

    def resolve_domain(self, keys: pl.DataFrame) -> list[pl.DataFrame]:
        found = self.resolve_ip(keys)  # IP literals in url.domain
        frame = self.frames.get("domain")
        if frame is None:
            return found
        pairs_k: list[str] = []
        pairs_c: list[str] = []
        for key in keys.get_column(_KEY).to_list():
            name = key.strip().lower().rstrip(".")
            labels = name.split(".")
            for i in range(len(labels) - 1):  # the name and its parents, not the bare TLD
                pairs_k.append(key)
                pairs_c.append(".".join(labels[i:]))
        if pairs_k:
            cand = pl.DataFrame({_KEY: pairs_k, "__cand": pairs_c})
            found.append(
                cand.join(frame.rename({_KEY: "__cand"}), on="__cand", how="inner").drop("__cand")
            )
        return found

    def _resolve_hash(self, kind: str, keys: pl.DataFrame) -> list[pl.DataFrame]:
        frame = self.frames.get(kind)
        if frame is None:
            return []
        # sensors log hex in either case; indicators are stored lower-case
        cand = keys.with_columns(pl.col(_KEY).str.strip_chars().str.to_lowercase().alias("__cand"))
        return [cand.join(frame.rename({_KEY: "__cand"}), on="__cand", how="inner").drop("__cand")]

    def resolve_md5(self, keys: pl.DataFrame) -> list[pl.DataFrame]:
        return self._resolve_hash("md5", keys)

    def resolve_sha1(self, keys: pl.DataFrame) -> list[pl.DataFrame]:
        return self._resolve_hash("sha1", keys)

    def resolve_sha256(self, keys: pl.DataFrame) -> list[pl.DataFrame]:
        return self._resolve_hash("sha256", keys)

    def resolve_url(self, keys: pl.DataFrame) -> list[pl.DataFrame]:
        frame = self.frames.get("url")
        if frame is None:
            return []
        norm = [normalise_url(k) for k in keys.get_column(_KEY).to_list()]
        cand = pl.DataFrame(
            {_KEY: keys.get_column(_KEY), "__cand": norm},
            schema={_KEY: pl.String, "__cand": pl.String},
        )
        return [cand.join(frame.rename({_KEY: "__cand"}), on="__cand", how="inner").drop("__cand")]


@register("enrichers", "intel")
class IntelEnricher(Enricher):
    """Match IPs, CIDRs, domains, URLs and file hashes against the loaded indicators."""

    outputs = (*THREAT_FIELDS, "rule.name", "rule.id", "event.risk_score")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        state = self.options.get("state")
        if state is None:
            raise EnrichConfigError("intel: needs the state store (option 'state')")
        from lightsoc.store.state_intel import IntelStore  # start-up time: see the imports

        self.store = state if isinstance(state, IntelStore) else IntelStore(state)
        try:
            self.reload_seconds = float(self.options.get("reload_seconds", 30))
        except (TypeError, ValueError):
            raise EnrichConfigError("intel: reload_seconds must be a number") from None
        self.index: IntelIndex | None = None
        self._version = -1
        #: build new indexes in a thread (the runtime sets this; tests want them at once)
        self.background = bool(self.options.get("background", False))
        self._building: threading.Thread | None = None
        self._checked = 0.0
        self._next_expiry: float | None = None
        #: matched rows so far (metrics, tests)
        self.matches = 0
        self.reloads = 0

    # -- indicator set ------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Reload the indicators if the store changed or one of them expired."""
        now = time.time()
        if not force and now - self._checked < self.reload_seconds:
            if self._next_expiry is None or now < self._next_expiry:
                return
        self._checked = now
        try:
            version = self.store.version()
        except Exception:  # the state store is down: keep matching with what is loaded
            log.warning("intel: the indicator store is unreachable; keeping the loaded set")
            return
        expired = self._next_expiry is not None and now >= self._next_expiry
        if not force and version == self._version and not expired:
            return
        self._version = version
        if self.background and self.reloads:  # the first load is waited for
            # a big list takes seconds to build: keep matching with the old index meanwhile
            if self._building is None or not self._building.is_alive():
                self._building = threading.Thread(
                    target=self._rebuild, args=(now, version), name="intel-reload", daemon=True
                )
                self._building.start()
            return
        self._rebuild(now, version)

    def _rebuild(self, now: float, version: int) -> None:
        try:
            rows = self.store.active_indicators(now)
            index = IntelIndex(rows) if rows else None
            next_expiry = self.store.next_expiry(now)
        except Exception:  # a locked/broken store: keep the old index, retry at the next poll
            log.exception("intel: reloading indicators failed")
            self._version = -1
            return
        with self._lock:
            if index is not None:
                index.generation = version * 1000 + self.reloads
            self.index = index
            self._next_expiry = next_expiry
            self._cache.clear()
        self.reloads += 1
        log.info("intel: %d indicators active (store version %d)", len(rows), version)

    # -- matching -------------------------------------------------------------------
    def _resolve(self, index: IntelIndex, kind: str, keys: pl.Series) -> pl.DataFrame:
        """(_IDX, _RANK) aligned with `keys`; distinct values resolved once and cached."""
        if keys.dtype != pl.String:
            keys = keys.cast(pl.String, strict=False)
        uniq = keys.drop_nulls().unique()
        with self._lock:
            # the index generation in the namespace: answers of a replaced index never mix in
            ns = f"{kind}@{index.generation}"
            known = self._cache.get(ns)
            todo = (
                uniq
                if known is None
                else uniq.filter(~uniq.is_in(known.get_column(_KEY).implode()))
            )
            if todo.len():
                tf = todo.alias(_KEY).to_frame()
                self.lookups += todo.len()
                resolver = getattr(index, f"resolve_{kind}")
                found = [f.select(_KEY, _IDX, _RANK) for f in resolver(tf)]
                if found:
                    best = pl.concat(found).sort(_RANK, descending=True).unique(_KEY, keep="first")
                    new = tf.join(best, on=_KEY, how="left")
                else:
                    new = tf.with_columns(
                        pl.lit(None, _I64).alias(_IDX), pl.lit(None, _I64).alias(_RANK)
                    )
                known = self._cache.add(ns, new)
        hits = None if known is None else known.filter(pl.col(_IDX).is_not_null())
        if hits is None or hits.height == 0:  # the common case: skip the join
            return pl.DataFrame(
                {_IDX: pl.Series([None] * keys.len(), dtype=_I64)},
            ).with_columns(pl.lit(None, _I64).alias(_RANK))
        return (
            keys.alias(_KEY)
            .to_frame()
            .join(hits, on=_KEY, how="left", maintain_order="left")
            .select(_IDX, _RANK)
        )

    def _url_keys(self, df: pl.DataFrame) -> pl.Expr:
        url = pl.col("url.original")
        if "url.domain" not in df.columns:
            return url
        # access logs keep only the path in url.original: put the host in front
        return pl.when(url.str.starts_with("/")).then(pl.col("url.domain") + url).otherwise(url)

    def enrich(self, df: pl.DataFrame) -> pl.DataFrame:
        self.refresh()
        fields = [f for f in MATCH_FIELDS if f in df.columns]
        index = self.index  # one index for the whole batch, even if a reload swaps it
        if index is None or not fields or df.height == 0:
            return df
        allowed = df.get_column(ALLOWED).fill_null(False) if ALLOWED in df.columns else None
        cands: list[tuple[str, pl.Series, pl.Series, pl.Series]] = []
        for field in fields:
            kind = MATCH_FIELDS[field]
            expr = self._url_keys(df) if kind == "url" else pl.col(field)
            keys = df.select(expr.cast(pl.String, strict=False).alias(_KEY)).to_series()
            if allowed is not None:
                keys = keys.zip_with(~allowed, pl.Series([None] * keys.len(), dtype=pl.String))
            res = self._resolve(index, kind, keys)
            cands.append(
                (field, df.get_column(field).cast(pl.String, strict=False), res[_IDX], res[_RANK])
            )
        # the best candidate per row, in field order on ties
        best_idx = pl.lit(None, _I64)
        best_rank = pl.lit(None, _I64)
        best_field = pl.lit(None, pl.String)
        best_atomic = pl.lit(None, pl.String)
        for field, value, idx, rank in cands:
            take = pl.lit(rank).is_not_null() & (best_rank.is_null() | (pl.lit(rank) > best_rank))
            best_idx = pl.when(take).then(pl.lit(idx)).otherwise(best_idx)
            best_field = pl.when(take).then(pl.lit(field)).otherwise(best_field)
            best_atomic = pl.when(take).then(pl.lit(value)).otherwise(best_atomic)
            best_rank = pl.when(take).then(pl.lit(rank)).otherwise(best_rank)
        picked = df.select(
            best_idx.alias(_IDX),
            best_field.alias("threat.enrichments.matched.field"),
            best_atomic.alias("threat.enrichments.matched.atomic"),
        )
        hits = picked.get_column(_IDX).is_not_null()
        n = int(hits.sum())
        if n == 0:
            return df
        self.matches += n
        joined = picked.join(index.meta, on=_IDX, how="left", maintain_order="left")
        df = merge(df, joined, ecs_types(THREAT_FIELDS))
        # `intel:<source>` appended to rule.name/rule.id (null provider: no match)
        tag = pl.lit("intel:") + pl.lit(joined.get_column("threat.indicator.provider"))
        return append_flags(df, tag, tag, joined.get_column("__score"))


def stream_options(
    config: Any,  # noqa: ANN401 - Config
    stores: Any,  # noqa: ANN401 - runtime.Stores
    sources: Sequence[Any] = (),
) -> dict[str, Any]:
    """Enricher options for allow lists, intel and domain lookups (runtime wiring).

    Intel joins the chain when the data directory has a state store (where
    `lightsoc intel load` writes) or the process is long-running (`run`: a
    source that is not a one-shot import): it is then a no-op until
    indicators exist and picks up the first load within `reload_seconds`.
    A one-shot `ingest` into a fresh directory gets only the config allow list.
    """
    allow = dict(getattr(getattr(config, "detect", None), "allow", None) or {})
    lookup = getattr(getattr(config, "enrich", None), "domain_lookup", None)
    long_running = not all_one_shot(sources)
    has_state = (
        long_running
        or getattr(stores, "_state", None) is not None
        or getattr(stores, "state_url", "sqlite") != "sqlite"
        or (stores.data_dir / "state.sqlite").exists()
    )
    opts: dict[str, Any] = {}
    if has_state:
        opts["allowlist"] = {"allow": allow, "state": stores.state}
        opts["intel"] = {"state": stores.state, "background": True}
        if lookup is not None:
            opts["domain_lookup"] = {**lookup.model_dump(), "state": stores.state}
    elif allow:
        opts["allowlist"] = {"allow": allow}
    return opts
