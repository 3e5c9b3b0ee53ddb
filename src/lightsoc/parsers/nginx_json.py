"""nginx / openresty JSON access logs (`log_format ... escape=json`).

Each line is one JSON object whose keys are chosen by the `log_format`. A
field map `{json_key: ecs_field}` says where each key goes; the default map
covers the usual nginx variable names, and `options["field_map"]` is merged
over it (its keys win; map a key to `None` to ignore it). Several keys may
map to one field: the first non-empty one wins, user keys first. Special
targets:

- `@timestamp`: `$time_local`, ISO 8601 (`$time_iso8601`, with or without
  fraction, `Z` or offset; no offset means UTC) or epoch seconds (`$msec`).
- `event.duration`: seconds (`$request_time`), stored as nanoseconds.
- `_request_line`: a whole `$request` (`GET /a?b HTTP/1.1`), split into method,
  target and version like the NCSA parsers do.

`url.path` / `url.query` are split from the raw target (no decoding, see
`web_access`). Empty strings and `-` become null. A record is `_ok` when it
is a JSON object with at least one mapped key and a readable time (if any).
Keys the map does not know go to `labels` as a JSON object of strings; they
are discovered from a few sample lines of each batch (a log format has a
fixed key set), while mapped keys are looked for in every line.

Decoding is vectorised: chunks of lines are joined and read with
`pl.read_ndjson` (explicit all-String schema). The NDJSON reader parses each
line on its own, so a line holding two objects or half of one cannot shift
its neighbours (`str.json_decode` parses the column as one JSON array and
can: `{"a":[1` followed by `2]}` decodes as one row). A chunk that fails to
read is split into 64 pieces, recursively, and pieces of at most 64 lines
are decoded line by line with orjson, so one bad line costs little and
breaks nothing.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import orjson
import polars as pl

from lightsoc.parsers.base import OK, Parser
from lightsoc.parsers.web_access import (
    RX_REQUEST_LOOSE,
    TIME_LOCAL_FORMAT,
    as_text,
    dash_null,
    outcome_expr,
    split_url_exprs,
)
from lightsoc.registry import register
from lightsoc.schema import NAMES, POLARS_SCHEMA

REQUEST_LINE = "_request_line"

DEFAULT_FIELD_MAP: dict[str, str] = {
    "remote_addr": "source.ip",
    "ip": "source.ip",
    "client_ip": "source.ip",
    "clientip": "source.ip",
    "remote_port": "source.port",
    "time_local": "@timestamp",
    "time_iso8601": "@timestamp",
    "@timestamp": "@timestamp",
    "timestamp": "@timestamp",
    "time": "@timestamp",
    "msec": "@timestamp",
    "status": "http.response.status_code",
    "statuscode": "http.response.status_code",
    "status_code": "http.response.status_code",
    "request_uri": "url.original",
    "uri": "url.original",
    "request": REQUEST_LINE,
    "request_method": "http.request.method",
    "method": "http.request.method",
    "args": "url.query",
    "query_string": "url.query",
    "http_user_agent": "user_agent.original",
    "user_agent": "user_agent.original",
    "http_referer": "http.request.referrer",
    "referer": "http.request.referrer",
    "referrer": "http.request.referrer",
    "body_bytes_sent": "http.response.body.bytes",
    "host": "url.domain",
    "http_host": "url.domain",
    "server_name": "url.domain",
    "server_addr": "destination.ip",
    "server_port": "destination.port",
    "remote_user": "user.name",
    "server_protocol": "http.version",
    "protocol": "http.version",
    "request_time": "event.duration",
    "hostname": "host.name",
}

_RX_EPOCH = r"^[0-9]{9,10}(?:\.[0-9]+)?$"
#: keys of an ECS event: a nested ECS object or a dotted ECS field
_ECS_JSON = (
    r'"(?:source|destination|event|ecs|dns|network|client|server|agent)"\s*:\s*\{'
    r'|"(?:source|destination|event|dns|network)\.[a-z_]+"\s*:'
)
_ISO_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_ISO_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")
#: lines per NDJSON read: a malformed line costs a re-read of its chunk only
_CHUNK = 16_384
#: pieces of a failing chunk at most this long are decoded line by line
_ROW_FALLBACK = 64
_LABEL_SAMPLE = 32


def build_field_map(extra: dict[str, str | None] | None) -> dict[str, str]:
    """User map merged over the default (user keys first); unknown targets raise."""
    merged: dict[str, str | None] = dict(extra or {})
    for key, target in DEFAULT_FIELD_MAP.items():
        merged.setdefault(key, target)
    out: dict[str, str] = {}
    for key, target in merged.items():
        if not target:
            continue
        dtype = POLARS_SCHEMA.get(target)
        if target != REQUEST_LINE and (dtype is None or isinstance(dtype, pl.List)):
            raise ValueError(
                f"parser nginx_json: field_map maps {key!r} to {target!r}, which is not a "
                f"scalar ECS field in lightsoc.schema (or {REQUEST_LINE!r})"
            )
        out[key] = target
    return out


def parse_time(text: pl.Series) -> pl.Series:
    """UTC datetimes from `$time_local`, ISO 8601 or epoch-seconds strings.

    Formats are tried in turn, each only on the rows still unparsed.
    """
    dtype = pl.Datetime("us", "UTC")
    out = text.str.strptime(dtype, TIME_LOCAL_FORMAT, strict=False)
    attempts: list[Any] = [(f, True) for f in _ISO_FORMATS] + [(f, False) for f in _ISO_NAIVE]
    attempts.append(("epoch", False))
    for fmt, aware in attempts:
        todo = (out.is_null() & text.is_not_null()).arg_true()
        if todo.len() == 0:
            break
        sub = text.gather(todo)
        if fmt == "epoch":
            secs = pl.when(sub.str.contains(_RX_EPOCH)).then(sub.cast(pl.Float64, strict=False))
            got = pl.select((secs * 1e6).round().cast(pl.Int64).cast(dtype)).to_series()
        elif aware:
            got = sub.str.strptime(dtype, fmt, strict=False)
        else:
            naive = sub.str.strptime(pl.Datetime("us"), fmt, strict=False)
            got = naive.dt.replace_time_zone("UTC")
        out = out.scatter(todo, got)
    return out


def _scalar_text(value: Any) -> str | None:
    """A JSON value as text, close to what polars' reader gives for a String field."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _decode_rows(lines: pl.Series, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Line-by-line decode: the slow path for small pieces of a failing batch."""
    rows: list[dict[str, str | None]] = []
    for line in lines.to_list():
        try:
            obj = orjson.loads(line) if line is not None else None
        except orjson.JSONDecodeError:
            obj = None
        obj = obj if isinstance(obj, dict) else {}
        rows.append({k: _scalar_text(obj.get(k)) for k in schema})
    return pl.DataFrame(rows, schema=schema, orient="row")


def _decode_batch(lines: pl.Series, schema: dict[str, pl.DataType]) -> pl.DataFrame | None:
    """One vectorised NDJSON read of the whole piece, or None if a line breaks it.

    The reader parses each line on its own, so a line holding several values
    or half of one is an error, never a shift of its neighbours; the row
    count is checked all the same.
    """
    data = lines.str.join("\n").to_arrow()[0].as_buffer()
    try:
        got = pl.read_ndjson(io.BytesIO(data), schema=schema, ignore_errors=True)
    except pl.exceptions.PolarsError:
        return None
    return got if got.height == len(lines) else None


def _decode_piece(lines: pl.Series, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Decode a piece in one read; if a line breaks it, retry in 64 smaller pieces."""
    got = _decode_batch(lines, schema)
    if got is not None:
        return got
    if len(lines) <= _ROW_FALLBACK:
        return _decode_rows(lines, schema)
    step = max(_ROW_FALLBACK, -(-len(lines) // 64))
    return pl.concat(
        [_decode_piece(lines.slice(i, step), schema) for i in range(0, len(lines), step)]
    )


def decode_objects(lines: pl.Series, keys: list[str]) -> pl.DataFrame:
    """JSON lines to a frame of `keys` (values as text), one row per line.

    Lines that are not JSON objects give all-null rows. Nested values come
    back as JSON text.
    """
    schema: dict[str, pl.DataType] = {k: pl.String() for k in keys}
    if len(lines) == 0:
        return pl.DataFrame(schema=schema)
    text = lines
    if text.str.contains("[\r\n]").any():  # a raw CR/LF is whitespace or invalid anyway
        text = text.str.replace_all("[\r\n]", " ")
    candidate = (text.str.starts_with("{") & text.str.ends_with("}")).fill_null(False)
    if not candidate.all():
        text = text.str.strip_chars()
        candidate = (text.str.starts_with("{") & text.str.ends_with("}")).fill_null(False)
        text = pl.select(pl.when(candidate).then(text).otherwise(pl.lit("null"))).to_series()
    n = len(text)
    return pl.concat([_decode_piece(text.slice(i, _CHUNK), schema) for i in range(0, n, _CHUNK)])


def _sample_keys(lines: pl.Series) -> list[str]:
    """Top-level keys of a few evenly spaced lines (for `labels`)."""
    n = len(lines)
    step = max(1, n // _LABEL_SAMPLE)
    keys: dict[str, None] = {}
    for line in lines.gather_every(step).head(_LABEL_SAMPLE).to_list():
        try:
            obj = orjson.loads(line) if line else None
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(obj))
    return list(keys)


def _convert(value: pl.Expr, target: str) -> pl.Expr:
    """A (non-empty) String JSON value converted to the target field's type (not times)."""
    dtype = POLARS_SCHEMA[target]
    if target == "event.duration":  # seconds -> nanoseconds
        return (value.cast(pl.Float64, strict=False) * 1e9).round().cast(pl.Int64, strict=False)
    if target == "http.version":
        return value.str.strip_prefix("HTTP/")
    if dtype == pl.String:
        return value
    return value.cast(dtype, strict=False)


@register("parsers", "nginx_json")
class NginxJsonParser(Parser):
    """nginx/openresty JSON access log lines, keys mapped to ECS by `field_map`."""

    dataset = "nginx.access"
    module = "nginx"
    auto_priority = 40

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.field_map = build_field_map(self.options.get("field_map"))
        self.labels: bool = bool(self.options.get("labels", True))
        ip_keys = [k for k, t in self.field_map.items() if t == "source.ip"]
        alts = "|".join(re.escape(orjson.dumps(k).decode()) for k in ip_keys) or "(?!)"
        self._detect = rf"^\s*\{{.*(?:{alts})\s*:"

    def matches(self, raw: pl.Series) -> pl.Series:
        # nginx's `log_format escape=json` is flat; nested ECS objects (Filebeat, Packetbeat:
        # {"source": {"ip": ...}}) or dotted ECS keys are events for the generic JSON parser
        text = as_text(raw)
        return (text.str.contains(self._detect) & ~text.str.contains(_ECS_JSON)).fill_null(False)

    def _batch_keys(self, text: pl.Series) -> list[str]:
        """The JSON keys to decode in this batch.

        Mapped keys seen in a sample of lines, plus (one regex pass) the other
        mapped keys if any line has one; unmapped keys for `labels` come from
        the sample only.
        """
        sample = _sample_keys(text)
        keys = [k for k in sample if k in self.field_map or self.labels]
        unseen = [k for k in self.field_map if k not in sample]
        if unseen:
            alts = "|".join(re.escape(orjson.dumps(k).decode()) for k in unseen)
            if text.str.contains(rf"(?:{alts})\s*:").any():
                keys += unseen
        return keys

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        text = as_text(raw)
        n = len(text)
        keys = self._batch_keys(text)
        extra = [k for k in keys if k not in self.field_map]
        df = decode_objects(text, keys)
        mapped = [k for k in keys if k in self.field_map]
        ok = df.select(pl.any_horizontal(pl.lit(False), *(pl.col(k).is_not_null() for k in mapped)))
        ok = ok.to_series()

        by_target: dict[str, list[str]] = {}
        for key, target in self.field_map.items():
            by_target.setdefault(target, []).append(key)

        def given(target: str) -> pl.Series:  # first non-empty value among the target's keys
            names = [k for k in by_target[target] if k in df.columns]
            if not names:
                return pl.repeat(None, n, dtype=pl.String, eager=True)
            return df.select(pl.coalesce([dash_null(pl.col(k)) for k in names])).to_series()

        cols: dict[str, pl.Series] = {}
        for target in by_target:
            if target == REQUEST_LINE:
                continue
            value = given(target)
            if isinstance(POLARS_SCHEMA[target], pl.Datetime):
                cols[target] = parse_time(value)
                ok = ok & ~(value.is_not_null() & cols[target].is_null())  # unreadable time
            else:
                cols[target] = value.to_frame("v").select(_convert(pl.col("v"), target)).to_series()
        if REQUEST_LINE in by_target:
            req = given(REQUEST_LINE).str.extract_groups(RX_REQUEST_LOOSE).struct.unnest()
            for target, part in (
                ("http.request.method", "method"),
                ("url.original", "target"),
                ("http.version", "version"),
            ):
                cols[target] = cols[target].fill_null(req[part]) if target in cols else req[part]
        if "url.original" in cols:
            split = pl.DataFrame({"t": cols["url.original"]}).select(split_url_exprs(pl.col("t")))
            for target in ("url.path", "url.query"):
                cols[target] = (
                    cols[target].fill_null(split[target]) if target in cols else split[target]
                )
        if extra:
            cols["labels"] = _labels(df, extra)

        order = sorted(cols, key=NAMES.index)
        out = pl.DataFrame([cols[t].alias(t) for t in order], height=n).with_columns(
            pl.lit("event").alias("event.kind"),
            pl.lit("web").alias("event.category"),
            pl.lit("access").alias("event.type"),
        )
        if "http.response.status_code" in out.columns:
            status = pl.col("http.response.status_code")
            out = out.with_columns(outcome_expr(status).alias("event.outcome"))
        ok = ok.fill_null(False).alias(OK)
        blank = not ok.all()  # failed rows carry no half-parsed fields
        return out.select(
            (pl.when(ok).then(pl.col(c)) if blank else pl.col(c)).cast(POLARS_SCHEMA[c]).alias(c)
            for c in out.columns
        ).with_columns(
            pl.lit(self.dataset).alias("event.dataset"),
            pl.lit(self.module).alias("event.module"),
            ok,
        )


def _labels(df: pl.DataFrame, keys: list[str]) -> pl.Series:
    """Unmapped keys as a JSON object of strings (keys with null values left out)."""
    encoded = df.select(pl.struct(keys).struct.json_encode().alias("j"))
    if not df.select(pl.any_horizontal(pl.col(keys).is_null()).any()).item():
        return encoded.to_series().alias("labels")
    text = pl.col("j").str.replace_all(r'"(?:[^"\\]|\\.)*":null,?', "").str.replace(r",\}$", "}")
    return encoded.select(pl.when(text != "{}").then(text).alias("labels")).to_series()
