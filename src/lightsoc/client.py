"""Read access for CLI commands: the store directly, or a running server's API.

DuckDB allows one writing process. When `lightsoc run` holds a data
directory, read commands started with the same `--data-dir` find its URL and
a read token in `<data_dir>/run/server.json` (mode 0600, written by the
server) and ask its API instead.

This module stays light to import (no DuckDB, FastAPI or pipeline unless a
direct read needs them): every `lightsoc search` pays for what it imports.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from lightsoc.output import event_rows
from lightsoc.store.base import StoreLockedError
from lightsoc.timeutil import since_range

if TYPE_CHECKING:
    from lightsoc.store.base import EventStore

EVENTS_FILE = "events.duckdb"
SERVER_FILE = Path("run") / "server.json"
# A store that is locked but has no server file yet: a server starting up.
SERVER_FILE_WAIT_SECONDS = 5.0


class ReaderError(RuntimeError):
    """A read could not be done; the message says why and what to do."""


class ReaderRequestError(ReaderError):
    """The server rejected the request itself (bad query, bad duration): a usage error."""


class Reader(Protocol):
    def search(self, q: str, since: str, limit: int, fields: list[str] | None) -> list[dict]: ...
    def timeline(self, entity: str, since: str, limit: int) -> list[dict]: ...
    def stats(self) -> dict[str, Any]: ...
    def top(self, field: str, since: str, n: int) -> list[tuple[Any, int]]: ...
    def close(self) -> None: ...


def merged_stats(events: EventStore, live: dict[str, Any] | None) -> dict[str, Any]:
    """Store counts plus, when a pipeline runs, its live per-source metrics."""
    out = events.stats()
    if live:
        by_id = {s["id"]: s for s in out["sources"]}
        for sid, m in live.get("sources", {}).items():
            entry = by_id.get(sid)
            if entry is None:
                entry = {
                    "id": sid,
                    "type": m["type"],
                    "received": 0,
                    "events": 0,
                    "parse_failures": 0,
                    "dropped": 0,
                    "bytes": 0,
                    "last_seen": None,
                }
                out["sources"].append(entry)
            entry.update(
                lag_bytes=m["lag_bytes"],
                errors=m["errors"],
                last_error=m["last_error"],
                skipped_empty=m["skipped_empty"],
                truncated=m["truncated"],
            )
            if "senders" in m:  # network sources: per-sender counters
                entry["senders"] = m["senders"]
        out["pipeline"] = {k: v for k, v in live.items() if k != "sources"}
    return out


class DirectReader:
    def __init__(self, store: Any) -> None:
        self.store = store

    def search(self, q: str, since: str, limit: int, fields: list[str] | None) -> list[dict]:
        from lightsoc import schema

        unknown = [f for f in fields or () if f not in schema.BY_NAME]
        if unknown:  # the same usage error the API gives
            raise ReaderRequestError(f"unknown field(s): {', '.join(unknown)}")
        return event_rows(self.store.search(q, since_range(since), fields, limit))

    def timeline(self, entity: str, since: str, limit: int) -> list[dict]:
        return event_rows(self.store.timeline(entity, since_range(since), limit))

    def stats(self) -> dict[str, Any]:
        return merged_stats(self.store, None)

    def top(self, field: str, since: str, n: int) -> list[tuple[Any, int]]:
        return [(v, c) for v, c in self.store.top(field, "", since_range(since), n)]

    def close(self) -> None:
        self.store.close()


class ApiReader:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        import httpx  # only reads through a running server need it

        self._httpx = httpx
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        try:
            resp = self.http.get(path, params={k: v for k, v in params.items() if v is not None})
        except self._httpx.HTTPError as exc:
            raise ReaderError(f"cannot reach the running server at {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail")
            except ValueError:
                detail = resp.text
            if isinstance(detail, list):  # FastAPI validation errors
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                    for d in detail
                )
            if resp.status_code in (400, 422):
                raise ReaderRequestError(str(detail))
            raise ReaderError(f"server at {self.url} answered {resp.status_code}: {detail}")
        return resp.json()

    def search(self, q: str, since: str, limit: int, fields: list[str] | None) -> list[dict]:
        f = ",".join(fields) if fields else None
        return self._get("/api/v1/search", q=q, since=since, limit=limit, fields=f)["events"]

    def timeline(self, entity: str, since: str, limit: int) -> list[dict]:
        path = f"/api/v1/timeline/{quote(entity, safe='')}"
        return self._get(path, since=since, limit=limit)["events"]

    def stats(self) -> dict[str, Any]:
        return self._get("/api/v1/stats")

    def top(self, field: str, since: str, n: int) -> list[tuple[Any, int]]:
        res = self._get("/api/v1/aggregate/top", field=field, since=since, n=n)
        return [(b["value"], b["count"]) for b in res["buckets"]]

    def close(self) -> None:
        self.http.close()


def open_reader(data_dir: Path, events_url: str = "duckdb") -> Reader:
    """The store read-only if it is free, else the API of the server holding it; a
    shared store (`store.events: clickhouse://...`) directly: it has no lock."""
    from lightsoc.store.events_duckdb import DuckDBEventStore

    if events_url != "duckdb":
        from lightsoc.store.events_clickhouse import ClickHouseEventStore

        return DirectReader(ClickHouseEventStore(events_url))

    path = Path(data_dir) / EVENTS_FILE
    if not path.exists():
        raise ReaderError(
            f"no lightsoc data in {data_dir} (run `lightsoc ingest` or `lightsoc run` "
            "with this --data-dir first)"
        )
    deadline = time.monotonic() + SERVER_FILE_WAIT_SECONDS
    while True:
        try:
            return DirectReader(DuckDBEventStore(path, read_only=True))
        except StoreLockedError:
            server = read_server_file(data_dir)
            if server is not None:
                return ApiReader(server["url"], server["token"])
        if time.monotonic() > deadline:
            raise ReaderError(
                f"{path} is locked by another process and no running server was found in "
                f"{Path(data_dir) / SERVER_FILE}; wait for it to finish"
            )
        time.sleep(0.2)


# -- the server file ---------------------------------------------------------
def write_server_file(data_dir: Path, url: str, token: str) -> Path:
    """Tell CLI commands where the API of this data directory is (mode 0600)."""
    path = Path(data_dir) / SERVER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token, "pid": os.getpid()}, fh)
    os.replace(tmp, path)  # readers never see a half-written file
    return path


def read_server_file(data_dir: Path) -> dict[str, Any] | None:
    """The running server of a data directory, if its process is alive."""
    path = Path(data_dir) / SERVER_FILE
    try:
        info = json.loads(path.read_text())
        server = {"url": str(info["url"]), "token": str(info["token"]), "pid": int(info["pid"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(server["pid"], 0)
    except PermissionError:
        pass  # alive, another user's
    except OSError:
        return None  # a stale file of a killed server
    return server


def remove_server_file(data_dir: Path) -> None:
    """Remove the server file if it is this process's."""
    path = Path(data_dir) / SERVER_FILE
    try:
        if int(json.loads(path.read_text())["pid"]) != os.getpid():
            return
        path.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass
