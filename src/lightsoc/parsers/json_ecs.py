"""Generic JSON / ECS NDJSON lines.

Keys may be nested (``{"source": {"ip": ...}}``) or dotted (``{"source.ip": ...}``).
Keys that are ECS fields (`schema.BY_NAME`) are cast to the schema type;
``@timestamp`` may be ISO 8601 or epoch milliseconds. All other keys go to
``labels`` as one JSON object of the flattened dotted keys (keys under a
``labels`` object lose their ``labels.`` prefix).

The batch is decoded in one vectorised `str.json_decode`. Only if that fails
(a malformed line, a non-object line, or one key holding different JSON types
in different lines) does the batch go through a per-row decode. JSON is not
the hot path (syslog and web logs are), so that per-row fallback is fine and
keeps one bad line from failing its whole batch.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import polars as pl

from lightsoc.parsers._apps import json_str
from lightsoc.parsers.base import OK, Parser
from lightsoc.parsers.syslog import as_text, iso8601_utc
from lightsoc.registry import register
from lightsoc.schema import BY_NAME, POLARS_SCHEMA

_TS = POLARS_SCHEMA["@timestamp"]
_NOT_MAPPED = {"labels"}  # computed here, never taken verbatim


@register("parsers", "json")
class JsonParser(Parser):
    """JSON objects, one per record; ECS keys mapped, the rest in `labels`."""

    dataset = "json"
    module = "json"
    auto_priority = 900  # after the specific JSON formats (nginx_json, eve.json, ...)

    def matches(self, raw: pl.Series) -> pl.Series:
        return as_text(raw).str.strip_chars_start().str.starts_with("{").fill_null(False)

    def parse(self, raw: pl.Series) -> pl.DataFrame:
        text = as_text(raw)
        if len(text) == 0:
            return pl.DataFrame({OK: pl.Series(OK, [], dtype=pl.Boolean)})
        try:
            decoded = text.str.json_decode(infer_schema_length=None)
            if not isinstance(decoded.dtype, pl.Struct):
                raise TypeError("not a JSON object per line")
            out = _from_struct(decoded.alias("j"))
            ok = decoded.is_not_null() & self.matches(text)
        except (pl.exceptions.PolarsError, TypeError):
            out, ok = _per_row(text.to_list())
        out = out.with_columns(
            pl.coalesce(_col(out, "event.dataset"), pl.lit(self.dataset)).alias("event.dataset"),
            pl.coalesce(_col(out, "event.module"), pl.lit(self.module)).alias("event.module"),
            pl.coalesce(_col(out, "event.kind"), pl.lit("event")).alias("event.kind"),
            ok.alias(OK),
        )
        # Failed rows carry no fields: only `_ok` False.
        fields = [pl.when(pl.col(OK)).then(pl.col(c)).alias(c) for c in out.columns if c != OK]
        return out.select(*fields, pl.col(OK))


def _col(df: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in df.columns else pl.lit(None, dtype=pl.String)


def _leaves(s: pl.Series, path: tuple[str, ...] = ()) -> list[tuple[str, pl.Series]]:
    """(dotted name, values) of every non-struct value inside a struct series.

    Fields are taken by position: a JSON key such as "*" or "^a$" would be a
    wildcard or a regex to `pl.col` / `struct.field`.
    """
    out: list[tuple[str, pl.Series]] = []
    fields = s.struct.unnest()
    for i, name in enumerate(fields.columns):
        child = fields.to_series(i)
        here = (*path, name)
        if isinstance(child.dtype, pl.Struct):
            out.extend(_leaves(child, here))  # an empty object has no leaves
        else:
            out.append((".".join(here), child))
    return out


def _from_struct(decoded: pl.Series) -> pl.DataFrame:
    """Map a decoded struct column: ECS leaves cast to schema types, others into `labels`."""
    leaves = _leaves(decoded)
    frame = pl.DataFrame([v.alias(f"c{i}") for i, (_, v) in enumerate(leaves)], height=len(decoded))
    by_name: dict[str, list[tuple[pl.Expr, pl.DataType]]] = {}
    for i, (name, values) in enumerate(leaves):
        by_name.setdefault(name, []).append((pl.col(f"c{i}"), values.dtype))
    known: dict[str, tuple[pl.Expr, pl.DataType]] = {}
    unknown: dict[str, pl.Expr] = {}
    for name, spellings in by_name.items():
        if len(spellings) > 1:  # nested and dotted spellings of one key: first non-null wins
            spellings = [(pl.coalesce(*[_as_string(e, t) for e, t in spellings]), pl.String)]
        if name in BY_NAME and name not in _NOT_MAPPED:
            known[name] = spellings[0]
        else:
            unknown[name] = spellings[0][0]
    cols = [_cast(expr, dtype, name).alias(name) for name, (expr, dtype) in known.items()]
    cols.append(_labels_expr(unknown).alias("labels"))
    return frame.with_columns(cols).drop(frame.columns)  # literals broadcast to height


def _labels_expr(unknown: dict[str, pl.Expr]) -> pl.Expr:
    if not unknown:
        return pl.lit(None, dtype=pl.String)
    pieces = [
        pl.when(expr.is_not_null()).then(pl.lit(_json_key(name) + ":") + json_str(expr))
        for name, expr in unknown.items()
    ]
    body = pl.concat_str(pieces, separator=",", ignore_nulls=True)
    return pl.when(body.str.len_bytes() > 0).then("{" + body + "}")


def _json_key(name: str) -> str:
    if name.startswith("labels."):
        name = name[len("labels.") :]
    return json.dumps(name, ensure_ascii=False)


def _cast(expr: pl.Expr, src: pl.DataType, name: str) -> pl.Expr:
    """Cast a decoded JSON value to the schema type of ECS field `name`."""
    dst = POLARS_SCHEMA[name]
    if dst == _TS:
        if src.is_integer():
            return pl.from_epoch(expr, "ms").dt.replace_time_zone("UTC")
        if src.is_float():
            return pl.from_epoch(
                (expr * 1000).cast(pl.Int64, strict=False), "us"
            ).dt.replace_time_zone("UTC")
        if src == pl.String:
            millis = pl.when(expr.str.contains(r"^[0-9]{1,15}$")).then(
                expr.cast(pl.Int64, strict=False)
            )
            epoch = pl.from_epoch(millis, "ms").dt.replace_time_zone("UTC")
            return pl.coalesce(epoch, iso8601_utc(expr))
        return pl.lit(None, dtype=_TS)
    if isinstance(dst, pl.List):
        if isinstance(src, pl.List):
            if src.inner.is_nested():  # [[...], {...}]: each element as JSON text
                el = pl.element()
                return expr.list.eval(pl.when(el.is_not_null()).then(json_str(el)))
            return expr.cast(dst, strict=False)
        if isinstance(src, pl.Struct):
            return pl.lit(None, dtype=dst)
        return pl.when(expr.is_not_null()).then(pl.concat_list(_as_string(expr, src)))
    if dst == pl.String:
        return _as_string(expr, src)
    if isinstance(src, (pl.List, pl.Struct)):
        return pl.lit(None, dtype=dst)
    if dst.is_integer() and src == pl.String:  # "80" and "80.0"
        return pl.coalesce(
            expr.cast(dst, strict=False),
            expr.cast(pl.Float64, strict=False).cast(dst, strict=False),
        )
    return expr.cast(dst, strict=False)


def _as_string(expr: pl.Expr, src: pl.DataType) -> pl.Expr:
    if src == pl.String:
        return expr
    if isinstance(src, (pl.List, pl.Struct)):
        return pl.when(expr.is_not_null()).then(json_str(expr))
    return expr.cast(pl.String, strict=False)


def _loads(line: str | None) -> Any:
    if line is None:
        return None
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            return json.loads(line)  # integers beyond 64 bits
        except ValueError:
            return None


def _flatten(
    obj: dict[str, Any], prefix: str = "", out: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Nested objects to dotted keys; of two spellings of one key the first non-null wins."""
    out = {} if out is None else out
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(v, name + ".", out)
        elif out.get(name) is None:
            out[name] = v
    return out


def _dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _to_str(v: Any) -> str | None:
    return v if v is None or isinstance(v, str) else _dumps(v)


def _per_row(lines: list[str | None]) -> tuple[pl.DataFrame, pl.Series]:
    """Fallback: decode line by line; bad lines get `_ok` False."""
    rows: list[dict[str, Any]] = []
    ok: list[bool] = []
    for line in lines:
        obj = _loads(line)
        good = isinstance(obj, dict) and line is not None and line.lstrip().startswith("{")
        rows.append(_flatten(obj) if good else {})
        ok.append(good)
    cols: list[pl.Series] = []
    for name in dict.fromkeys(k for r in rows for k in r):
        if name not in BY_NAME or name in _NOT_MAPPED:
            continue
        if isinstance(POLARS_SCHEMA[name], pl.List):
            cols.append(
                pl.Series(name, [_str_list(r.get(name)) for r in rows], dtype=POLARS_SCHEMA[name])
            )
        else:
            s = pl.Series(name, [_to_str(r.get(name)) for r in rows], dtype=pl.String)
            cols.append(s.to_frame().select(_cast(pl.col(name), pl.String, name)).to_series())
    labels: list[str | None] = []
    for r in rows:
        extra = {
            (k[len("labels.") :] if k.startswith("labels.") else k): v
            for k, v in r.items()
            if v is not None and (k not in BY_NAME or k in _NOT_MAPPED)
        }
        labels.append(_dumps(extra) if extra else None)
    cols.append(pl.Series("labels", labels, dtype=pl.String))
    return pl.DataFrame(cols), pl.Series(OK, ok, dtype=pl.Boolean)


def _str_list(v: Any) -> list[str | None] | None:
    if v is None:
        return None
    if isinstance(v, list):
        return [_to_str(x) for x in v]
    return [_to_str(v)]
