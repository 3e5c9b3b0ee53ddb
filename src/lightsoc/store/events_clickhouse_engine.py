"""The two ways `ClickHouseEventStore` talks to ClickHouse, behind one small interface.

- `ChdbEngine`: chdb, ClickHouse in-process (`chdb://<dir>`); imported lazily,
  its first import is large.
- `NativeEngine`: a server over the native protocol with clickhouse-driver
  (`clickhouse://user:password@host:9000/db`).

The store writes SQL with `?` placeholders (see `query_clickhouse`); each
engine binds them its own way, never by pasting values into the SQL: chdb as
server-side `{pN:Type}` query parameters, clickhouse-driver as its
`%(pN)s` parameters (escaped by the driver). Results come back as Arrow.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


class Engine(ABC):
    """Runs SQL on one ClickHouse database; thread-safe."""

    db: str
    version: tuple[int, ...]

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """A SELECT's rows as Arrow (ClickHouse's own types)."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A statement without a result (DDL, ALTER, INSERT ... SELECT)."""

    @abstractmethod
    def insert(self, table: str, data: pa.Table, settings: dict[str, Any]) -> None:
        """Insert Arrow columns (named as the table's, already of its types) with
        the given insert settings (e.g. `insert_deduplication_token`)."""

    @abstractmethod
    def close(self) -> None: ...


def _ch_type(value: Any) -> tuple[str, str]:
    """A parameter's ClickHouse type and its text in the escaped format."""
    if isinstance(value, bool):
        return "UInt8", str(int(value))
    if isinstance(value, int):
        return "Int64", str(value)
    if isinstance(value, float):
        return "Float64", repr(value)
    if isinstance(value, str):
        return "String", value.translate(_ESCAPES)
    raise TypeError(f"unsupported query parameter {value!r}")


def _split(sql: str, params: Sequence[Any]) -> list[str]:
    parts = sql.split("?")
    if len(parts) != len(params) + 1:
        raise ValueError(f"{len(parts) - 1} placeholders for {len(params)} parameters")
    return parts


class ChdbEngine(Engine):
    """chdb's session on a directory; one statement at a time (a lock)."""

    def __init__(self, path: Path, db: str = "lightsoc") -> None:
        try:
            from chdb.session import Session  # large; only when a chdb store is opened
        except ImportError:
            raise RuntimeError(
                "store.events: chdb:// needs the chdb package: pip install 'lightsoc[chdb]'"
            ) from None

        Path(path).mkdir(parents=True, exist_ok=True)
        self.db = db
        self._lock = threading.Lock()
        self._session = Session(str(path))
        self.version = _parse_version(self.query("SELECT version() AS v").column(0)[0].as_py())
        # FINAL may collapse rows per partition only: an event's key (time, id) fixes its day.
        self.execute("SET do_not_merge_across_partitions_select_final = 1")

    def _bind(self, sql: str, params: Sequence[Any]) -> tuple[str, dict[str, str]]:
        parts = _split(sql, params)
        out, named = [parts[0]], {}
        for i, (value, part) in enumerate(zip(params, parts[1:], strict=True)):
            typ, text = _ch_type(value)
            out.append(f"{{p{i}:{typ}}}{part}")
            named[f"p{i}"] = text
        return "".join(out), named

    def query(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        sql, named = self._bind(sql, params)
        with self._lock:
            return self._session.query(sql, "ArrowTable", params=named or None)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        sql, named = self._bind(sql, params)
        with self._lock:
            self._session.query(sql, "CSV", params=named or None)

    def insert(self, table: str, data: pa.Table, settings: dict[str, Any]) -> None:
        cols = ", ".join(f"`{c}`" for c in data.column_names)
        sets = _settings(settings)
        # chdb reads the Arrow table in place through its Python() table function,
        # which finds `rows` by name among this frame's locals.
        rows = data  # noqa: F841 - referenced by name in the SQL below
        sql = f"INSERT INTO {table} ({cols}) {sets} SELECT * FROM Python(rows)"  # noqa: S608
        with self._lock:
            self._session.query(sql, "CSV")

    def close(self) -> None:
        with self._lock:
            self._session.close()


#: A FINAL read opens every column stream of every part at once, each with a read
#: buffer (1 MiB by default): ~100 nullable columns x parts exceed a server's
#: per-query memory on old servers. Smaller buffers keep a wide page cheap.
READ_SETTINGS = {"max_read_buffer_size": 128 * 1024}


class NativeEngine(Engine):
    """A ClickHouse server over the native protocol (clickhouse-driver)."""

    def __init__(self, url: str) -> None:
        from clickhouse_driver import Client

        u = urlsplit(url)
        db = (u.path or "/lightsoc").strip("/") or "lightsoc"
        if not _DB_NAME.fullmatch(db):
            raise ValueError(f"invalid ClickHouse database name {db!r}")
        self.db = db
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {"host": u.hostname or "127.0.0.1", "port": u.port or 9000}
        if u.username:
            kwargs["user"] = unquote(u.username)
        if u.password:
            kwargs["password"] = unquote(u.password)
        self._client = Client(**kwargs)
        self._client.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        self.version = _parse_version(self._client.execute("SELECT version()")[0][0])
        self._read_settings = dict(READ_SETTINGS)
        if self.version[:2] >= (22, 2):  # as ChdbEngine; older servers lack the setting
            self._read_settings["do_not_merge_across_partitions_select_final"] = 1

    @staticmethod
    def _bind(sql: str, params: Sequence[Any]) -> tuple[str, dict[str, Any] | None]:
        if not params:
            _split(sql, params)
            return sql, None
        parts = _split(sql.replace("%", "%%"), params)
        out = [parts[0]] + [f"%(p{i})s{part}" for i, part in enumerate(parts[1:])]
        return "".join(out), {f"p{i}": v for i, v in enumerate(params)}

    def query(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        sql, named = self._bind(sql, params)
        with self._lock:
            cols, types = self._client.execute(
                sql, named, columnar=True, with_column_types=True, settings=self._read_settings
            )
        if not cols:
            cols = [[] for _ in types]
        return pa.table(
            {
                name: pa.array(list(col), _arrow_type(t))
                for (name, t), col in zip(types, cols, strict=True)
            }
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        sql, named = self._bind(sql, params)
        with self._lock:
            self._client.execute(sql, named)

    def insert(self, table: str, data: pa.Table, settings: dict[str, Any]) -> None:
        cols = ", ".join(f"`{c}`" for c in data.column_names)
        columns = [data.column(i).to_pylist() for i in range(data.num_columns)]
        with self._lock:
            self._client.execute(
                f"INSERT INTO {table} ({cols}) VALUES",
                columns,
                columnar=True,
                settings=settings or None,
            )

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()


def _settings(settings: dict[str, Any]) -> str:
    """A SETTINGS clause of our own constant names; values are ints or safe ids."""
    if not settings:
        return ""
    items = []
    for key, value in settings.items():
        if not _DB_NAME.fullmatch(key):
            raise ValueError(f"invalid setting {key!r}")
        if isinstance(value, int):
            items.append(f"{key} = {int(value)}")
        else:
            text = str(value).replace("\\", "\\\\").replace("'", "\\'")
            items.append(f"{key} = '{text}'")
    return "SETTINGS " + ", ".join(items)


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", str(text))[:3])


_SIMPLE = {
    "String": pa.string(),
    "Int64": pa.int64(),
    "Int32": pa.int32(),
    "Int16": pa.int16(),
    "Int8": pa.int8(),
    "UInt64": pa.uint64(),
    "UInt32": pa.uint32(),
    "UInt16": pa.uint16(),
    "UInt8": pa.uint8(),
    "Float64": pa.float64(),
    "Float32": pa.float32(),
}


def _arrow_type(ch: str) -> pa.DataType:
    """The Arrow type of a ClickHouse column type name (the ones the store reads)."""
    ch = ch.strip()
    for wrapper in ("Nullable(", "LowCardinality("):
        if ch.startswith(wrapper):
            return _arrow_type(ch[len(wrapper) : -1])
    if ch.startswith("Array("):
        return pa.list_(_arrow_type(ch[6:-1]))
    if ch in _SIMPLE:
        return _SIMPLE[ch]
    raise TypeError(f"unexpected ClickHouse result type {ch}")


def open_engine(url: str) -> Engine:
    """`chdb://<dir>` or `clickhouse://[user[:password]@]host[:port]/db`."""
    if url.startswith("chdb://"):
        return ChdbEngine(Path(url.removeprefix("chdb://")))
    if url.startswith("clickhouse://"):
        return NativeEngine(url)
    raise ValueError(f"not a ClickHouse URL: {url!r} (chdb://<dir> or clickhouse://host/db)")
