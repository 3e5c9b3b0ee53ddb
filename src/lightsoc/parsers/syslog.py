"""Syslog: RFC 3164 (BSD), RFC 5424 and RFC 3339-stamped file lines, vectorised.

Per row, whichever of these fits:

- ``<PRI>Mmm dd hh:mm:ss host app[pid]: msg`` (PRI optional, host/tag lenient);
- ``<PRI>1 2003-10-11T22:14:15.003Z host app procid msgid [SD] msg``;
- ``2024-01-15T10:00:00.123456+01:00 host app[pid]: msg`` (modern rsyslog/Debian);
- ``2013-08-11 03:56:40 app: msg`` (a daemon's own file in syslog shape);
- ``@400000004c91b044077a9e94 app: msg`` (daemontools/s6 multilog: the TAI64N label is
  the timestamp).

The common shape is matched by one strict regex over the whole batch; only
rows it misses go through the 5424 and the lenient regexes. Messages of apps
that have an app parser (see `lightsoc.parsers._apps`) are then parsed by it;
PAM failure lines that no app parser classified go to `lightsoc.parsers.pam`.

Options: ``timezone`` (for timestamps without a zone; default UTC) and
``now`` (reference time for year inference of BSD timestamps; default the
current UTC time; `parse(raw, now=...)` overrides it).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from lightsoc.parsers import pam
from lightsoc.parsers._apps import ROW, AppFunc, app_key, app_parsers, json_str
from lightsoc.parsers.base import OK, Parser
from lightsoc.registry import register
from lightsoc.schema import polars_type

_BSD_TS = r"[A-Za-z]{3} {1,2}[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
_ISO_TS = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
_HOST = r"[^ \[\]]*[^ \[\]:]"  # no brackets, not ending in ':' (so "sshd[1]:" is no host)
_PRI = r"<(?P<pri>[0-9]{1,3})>"

#: the common case: BSD timestamp, host, tag with optional pid, colon
STRICT = (
    rf"^(?P<hdr>(?:{_PRI})?(?P<bsd>{_BSD_TS}) (?P<host>{_HOST}) "
    r"(?P<app>[^ :\[\]]+)(?:\[(?P<pid>[^\]]*)\])?: ?)"
)
#: BSD or ISO timestamp (with fraction), host and tag each optional, "[app]:" allowed
LENIENT = (
    rf"^(?P<hdr>(?:{_PRI})?(?:(?P<bsd>{_BSD_TS})(?:\.[0-9]+)?|(?P<iso>{_ISO_TS}))(?: +|$)"
    rf"(?:(?P<host>{_HOST}) +)?"
    r"(?:\[?(?P<app>[^ :\[\]]+)(?:\]:? ?|(?:\[(?P<pid>[^\]]*)\])?: ?))?)"
)
_SD_ELEMENT = r"\[(?:[^\]\"\\]|\\.|\"(?:[^\"\\]|\\.)*\")*\]"
RFC5424 = (
    rf"^(?P<hdr>{_PRI}(?P<ver>[0-9]{{1,2}}) (?P<iso>[^ ]+) (?P<host>[^ ]+) (?P<app>[^ ]+) "
    rf"(?P<pid>[^ ]+) (?P<msgid>[^ ]+) (?P<sd>-|(?:{_SD_ELEMENT})+)(?: |$))"
)
#: ISO-stamped file lines (rsyslog RSYSLOG_FileFormat, Debian 12+)
STRICT_ISO = (
    rf"^(?P<hdr>(?:{_PRI})?(?P<iso>{_ISO_TS}) (?P<host>{_HOST}) "
    r"(?P<app>[^ :\[\]]+)(?:\[(?P<pid>[^\]]*)\])?: ?)"
)
#: daemontools/s6 multilog lines: a TAI64N label instead of a syslog timestamp, then the
#: tag (``@400000004c91b044077a9e94 imap-login: Info: ...``)
TAI64N = (
    rf"^(?P<hdr>@(?P<tai>[0-9a-fA-F]{{24}}) +(?:(?P<host>{_HOST}) +)?"
    r"(?P<app>[^ :\[\]]+)(?:\[(?P<pid>[^\]]*)\])?: ?)"
)
_CASCADE = (STRICT, STRICT_ISO, RFC5424, LENIENT, TAI64N)
_DETECT = (
    r"^(?:<[0-9]{1,3}>[0-9]{1,2} (?:-|[0-9]{4}-)|(?:<[0-9]{1,3}>)?"
    r"(?:[A-Za-z]{3} {1,2}[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    # "2013-08-11 03:56:40 app: msg" (a daemon's own log file in syslog shape); the tag is
    # required so that other space-stamped formats (nfdump, argus text output) stay theirs
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)? "
    r"[A-Za-z][A-Za-z0-9_.-]*(?:\([^) ]*\)|\[[0-9]+\])?: )"
    r"|@[0-9a-fA-F]{24} )"
)
_GROUPS = ("hdr", "pri", "bsd", "iso", "host", "app", "pid", "msgid", "sd", "tai")
#: TAI64 labels count from 2^62; TAI runs 10 s ahead of UTC at the epoch (daemontools'
#: tai64nlocal convention: later leap seconds are not subtracted)
_TAI_EPOCH = 2**62 + 10
_REPEATED = r"^message repeated [0-9]+ times: \[ ?(.*?) ?\]$"
_TS = polars_type("@timestamp")
log = logging.getLogger(__name__)


def as_text(raw: pl.Series) -> pl.Series:
    """Raw records as a String series (Binary decoded as UTF-8, invalid bytes replaced)."""
    if raw.dtype == pl.String:
        return raw
    if raw.dtype == pl.Binary:
        try:
            return raw.cast(pl.String)
        except pl.exceptions.PolarsError:  # invalid UTF-8 somewhere: decode leniently
            return pl.Series(
                raw.name,
                [None if b is None else b.decode("utf-8", "replace") for b in raw.to_list()],
                dtype=pl.String,
            )
    return raw.cast(pl.String, strict=False)


def iso8601_utc(text: pl.Expr, timezone: str = "UTC") -> pl.Expr:
    """Parse ISO 8601 / RFC 3339 timestamps to UTC; zone-less ones are taken in `timezone`."""
    norm = text.str.replace(" ", "T", literal=True).str.replace("Z", "+00:00", literal=True)
    zoned = norm.str.strptime(_TS, "%Y-%m-%dT%H:%M:%S%.f%z", strict=False)
    naive = norm.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False)
    return pl.coalesce(zoned, _localise(naive, timezone))


def tai64n_utc(label: pl.Expr) -> pl.Expr:
    """A TAI64N label's 24 hex digits (without the ``@``) to a UTC timestamp."""
    secs = label.str.slice(0, 16).str.to_integer(base=16, strict=False) - _TAI_EPOCH
    nanos = label.str.slice(16, 8).str.to_integer(base=16, strict=False)
    micros = secs * 1_000_000 + nanos // 1000
    return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC").cast(_TS)


def _localise(naive: pl.Expr, timezone: str) -> pl.Expr:
    if timezone == "UTC":
        return naive.dt.replace_time_zone("UTC")
    local = naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


def bsd_utc(bsd: pl.Series, now: datetime, timezone: str = "UTC") -> pl.Series:
    """Parse year-less ``Mmm dd hh:mm:ss`` to UTC, picking the latest year not > now + 1 day.

    Candidate years are the local year of `now`, the one before and (only
    around New Year, for senders whose clock runs ahead) the one after.
    """
    local_now = now.astimezone(ZoneInfo(timezone))
    limit = pl.lit(now + timedelta(days=1), dtype=_TS)
    fmt = "%Y %b %d %H:%M:%S"
    frame = bsd.to_frame("b")

    def at(year: int) -> pl.Expr:
        parsed = (pl.lit(f"{year} ") + pl.col("b")).str.strptime(
            pl.Datetime("us"), fmt, strict=False
        )
        return _localise(parsed, timezone)

    years = [local_now.year]
    if (local_now + timedelta(days=1)).year > local_now.year:
        years.insert(0, local_now.year + 1)
    cands = frame.select(at(y).alias(str(y)) for y in years)
    out = cands.select(
        pl.coalesce(pl.when(pl.col(str(y)) <= limit).then(pl.col(str(y))) for y in years)
    ).to_series()
    # Only when needed (year rollover, Feb 29): the previous year.
    if (out.is_null() & bsd.is_not_null()).any():
        prev = frame.select(at(local_now.year - 1)).to_series()
        out = out.fill_null(prev)
    return out.alias("bsd")


def structured_data_json(sd: pl.Series) -> pl.Series:
    """RFC 5424 structured data (``[id k="v"]...``) to JSON ``{"id": {"k": "v"}}`` strings."""
    frame = pl.DataFrame({ROW: pl.int_range(len(sd), eager=True, dtype=pl.UInt32), "sd": sd})
    has = frame.filter(pl.col("sd").is_not_null() & (pl.col("sd") != "-"))
    if has.height == 0:
        return pl.Series("sd", [None] * len(sd), dtype=pl.String)
    elements = (
        has.select(
            ROW, pl.col("sd").str.extract_all(r"\[(?:[^\]\"\\]|\\.|\"(?:[^\"\\]|\\.)*\")*\]")
        )
        .explode("sd", empty_as_null=True)
        .with_row_index("_e")
        .with_columns(
            pl.col("sd").str.extract(r"^\[([^ \]]+)").alias("id"),
            pl.col("sd").str.extract_all(r"[^ =\]\[]+=\"(?:[^\"\\]|\\.)*\"").alias("p"),
        )
        .explode("p", empty_as_null=True)
        .with_columns(
            pl.col("p").str.extract(r"^([^=]+)=").alias("k"),
            pl.col("p")
            .str.extract(r"=\"(.*)\"$")
            .str.replace_all(r"\\([\"\\\]])", "$1")
            .alias("v"),
        )
        .with_columns(
            pl.when(pl.col("k").is_not_null())
            .then(json_str(pl.col("k")) + ":" + json_str(pl.col("v")))
            .alias("pair")
        )
    )
    per_element = elements.group_by("_e", maintain_order=True).agg(
        pl.first(ROW),
        (json_str(pl.first("id")) + ":{" + pl.col("pair").drop_nulls().str.join(",") + "}").alias(
            "el"
        ),
    )
    per_row = per_element.group_by(ROW, maintain_order=True).agg(
        ("{" + pl.col("el").str.join(",") + "}").alias("json")
    )
    return frame.join(per_row, on=ROW, how="left").sort(ROW)["json"].alias("sd")


def _extract(frame: pl.DataFrame, pattern: str) -> pl.DataFrame:
    """Header groups of `pattern` for each row of `frame` (ROW, raw), missing groups as null."""
    cols = frame["raw"].str.extract_groups(pattern).struct.unnest()
    missing = [pl.lit(None, dtype=pl.String).alias(g) for g in _GROUPS if g not in cols.columns]
    cols = cols.with_columns(missing).select(_GROUPS)
    if pattern is RFC5424:  # "-" is the NILVALUE (kept for the timestamp: valid, unknown)
        cols = cols.with_columns(
            pl.when(pl.col(g) != "-").then(pl.col(g)).alias(g)
            for g in ("host", "app", "pid", "msgid")
        )
    return pl.concat([frame, cols], how="horizontal")


def split_header(text: pl.Series) -> pl.DataFrame:
    """Header groups for every row: each regex of the cascade runs on what the previous missed."""
    remaining = pl.DataFrame(
        {ROW: pl.int_range(len(text), eager=True, dtype=pl.UInt32), "raw": text}
    )
    parts: list[pl.DataFrame] = []
    for i, pattern in enumerate(_CASCADE):
        got = _extract(remaining, pattern)
        miss = got["hdr"].is_null()
        if i == len(_CASCADE) - 1 or not miss.any():
            parts.append(got)  # unmatched rows of the last regex stay, with null groups
            break
        parts.append(got.filter(~miss))
        remaining = remaining.filter(miss)
    if len(parts) == 1:
        return parts[0]
    return pl.concat(parts).sort(ROW)


@register("parsers", "syslog")
class SyslogParser(Parser):
    """Syslog lines (RFC 3164, RFC 5424, RFC 3339 file format) plus app sub-parsers."""

    dataset = "syslog"
    module = "system"
    auto_priority = 60

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.timezone: str = str(self.options.get("timezone") or "UTC")
        ZoneInfo(self.timezone)  # fail early on a bad zone name
        now = self.options.get("now")
        self.now: datetime | None = datetime.fromisoformat(now) if isinstance(now, str) else now
        self.apps: bool = bool(self.options.get("apps", True))

    def matches(self, raw: pl.Series) -> pl.Series:
        return as_text(raw).str.contains(_DETECT).fill_null(False)

    def parse(self, raw: pl.Series, now: datetime | None = None) -> pl.DataFrame:
        now = now or self.now or datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        text = as_text(raw)
        h = split_header(text)
        ts = bsd_utc(h["bsd"], now, self.timezone)
        if h["iso"].is_not_null().any():
            ts = ts.fill_null(h.select(iso8601_utc(pl.col("iso"), self.timezone)).to_series())
        if h["tai"].is_not_null().any():
            ts = ts.fill_null(h.select(tai64n_utc(pl.col("tai"))).to_series())
        h = h.with_columns(ts.alias("@timestamp"))
        nil = pl.col("iso") == "-"  # RFC 5424 NILVALUE timestamp: valid, unknown time
        pri = pl.col("pri").cast(pl.Int32, strict=False)
        pri = pl.when(pri <= 191).then(pri)

        msg = pl.col("raw").str.strip_prefix(pl.col("hdr")).str.strip_prefix("\ufeff")
        ok = pl.col("hdr").is_not_null() & (
            pl.col("@timestamp").is_not_null() | nil.fill_null(False)
        )
        sd = structured_data_json(h["sd"])
        out = h.select(
            ROW,
            pl.col("@timestamp"),
            (pri // 8).alias("log.syslog.facility.code"),
            (pri % 8).alias("log.syslog.severity.code"),
            pl.col("host").alias("log.syslog.hostname"),
            pl.col("host").alias("host.name"),
            pl.col("app").alias("log.syslog.appname"),
            pl.col("app").alias("process.name"),
            pl.col("pid").alias("log.syslog.procid"),
            pl.col("pid").cast(pl.Int64, strict=False).alias("process.pid"),
            pl.col("msgid").alias("log.syslog.msgid"),
            sd.alias("log.syslog.structured_data"),
            msg.alias("message"),
            pl.lit("event").alias("event.kind"),
            pl.lit(self.dataset).alias("event.dataset"),
            pl.lit(self.module).alias("event.module"),
            ok.alias(OK),
        )
        if self.apps:
            out = _apply_pam(_apply_apps(out))
        out = out.drop(ROW)
        if out[OK].all():
            return out
        # Failed rows carry no fields: only `_ok` False.
        return out.select(
            pl.when(pl.col(OK)).then(pl.col(c)).alias(c) if c != OK else pl.col(OK)
            for c in out.columns
        )


def _apply_apps(out: pl.DataFrame) -> pl.DataFrame:
    """Run app parsers on the messages of their apps and overlay their columns."""
    apps = app_parsers()
    if not apps:
        return out
    # App names are few: normalise the distinct ones, not every row.
    names = out.filter(pl.col(OK))["process.name"].unique().drop_nulls()
    keys = names.to_frame().select(app_key(pl.col("process.name"))).to_series().to_list()
    by_func: dict[AppFunc, dict[str, str]] = {}
    for raw_name, key in zip(names.to_list(), keys, strict=True):
        if key in apps:
            by_func.setdefault(apps[key], {})[raw_name] = key
    results: list[pl.DataFrame] = []
    for func, name_to_key in by_func.items():
        app = pl.col("process.name")
        if len(set(name_to_key.values())) == 1:
            key_expr = pl.lit(next(iter(name_to_key.values())))
        else:
            key_expr = app.replace_strict(name_to_key, return_dtype=pl.String)
        msg = pl.col("message")
        unwrapped = pl.when(msg.str.starts_with("message repeated ")).then(
            msg.str.replace(_REPEATED, "$1")
        )
        sub = out.filter(pl.col(OK) & app.is_in(list(name_to_key))).select(
            ROW,
            pl.coalesce(unwrapped, msg).alias("message"),
            key_expr.alias("_app"),
            pl.col("host.name").alias("_host"),
            pl.col("process.pid").alias("_pid"),
            pl.col("@timestamp").alias("_ts"),
        )
        # A broken app parser (possibly a plugin) costs its app fields, not the batch.
        try:
            res = func(sub.drop(ROW))
            if res.height != sub.height:
                raise ValueError(f"returned {res.height} rows for {sub.height}")
        except Exception:
            log.exception(
                "syslog app parser %s failed; its rows keep syslog fields only", func.__name__
            )
            continue
        results.append(res.with_columns(sub[ROW]))
    return _overlay(out, results)


def _apply_pam(out: pl.DataFrame) -> pl.DataFrame:
    """PAM failure lines of programs no app parser classified (see `lightsoc.parsers.pam`)."""
    cand = pl.col(OK) & pl.col("message").str.contains(pam.MARKER, literal=True).fill_null(False)
    if "event.action" in out.columns:
        cand = cand & pl.col("event.action").is_null()
    sub = out.filter(cand)
    if sub.height == 0:
        return out
    res = pam.parse_pam(
        sub.select("message", app_key(pl.col("process.name")).fill_null("").alias("_app"))
    )
    return _overlay(out, [res.with_columns(sub[ROW])])


def _overlay(out: pl.DataFrame, results: list[pl.DataFrame]) -> pl.DataFrame:
    """Overlay sub-parser columns (frames with ROW) on `out`: their non-null values win."""
    if not results:
        return out
    res = pl.concat(results, how="diagonal_relaxed")
    if len(results) > 1:
        res = res.sort(ROW)
    suffixed = res.rename(lambda c: c if c == ROW else c + "\0")
    if res.height == out.height:  # every row went to an app parser: rows align
        joined = pl.concat([out, suffixed.drop(ROW)], how="horizontal")
    else:
        joined = out.join(suffixed, on=ROW, how="left", maintain_order="left")
    overlay = []
    for c in res.columns:
        if c == ROW:
            continue
        if c in out.columns:
            overlay.append(pl.coalesce(pl.col(c + "\0").cast(out.schema[c]), pl.col(c)).alias(c))
        else:
            overlay.append(pl.col(c + "\0").alias(c))
    return joined.with_columns(overlay).select(
        *out.columns, *[c for c in res.columns if c not in out.columns and c != ROW]
    )
