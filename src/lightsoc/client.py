"""Read access for CLI commands: the store directly, or a running server's API.

DuckDB allows one writing process. When `lightsoc run` holds a data
directory, read commands started with the same `--data-dir` find its URL and
a read token in `<data_dir>/run/server.json` and ask its API instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import httpx

from lightsoc.output import event_rows
from lightsoc.runtime import EVENTS_FILE, read_server_file
from lightsoc.store.base import StoreLockedError
from lightsoc.store.events_duckdb import DuckDBEventStore
from lightsoc.timeutil import since_range
from lightsoc.web.api import merged_stats


class ReaderError(RuntimeError):
    """A read could not be done; the message says why and what to do."""


class Reader(Protocol):
    def search(self, q: str, since: str, limit: int, fields: list[str] | None) -> list[dict]: ...
    def timeline(self, entity: str, since: str, limit: int) -> list[dict]: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class DirectReader:
    def __init__(self, store: DuckDBEventStore) -> None:
        self.store = store

    def search(self, q: str, since: str, limit: int, fields: list[str] | None) -> list[dict]:
        return event_rows(self.store.search(q, since_range(since), fields, limit))

    def timeline(self, entity: str, since: str, limit: int) -> list[dict]:
        return event_rows(self.store.timeline(entity, since_range(since), limit))

    def stats(self) -> dict[str, Any]:
        return merged_stats(self.store, None)

    def close(self) -> None:
        self.store.close()


class ApiReader:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        try:
            resp = self.http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise ReaderError(f"cannot reach the running server: {exc}") from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail")
            except ValueError:
                detail = resp.text
            raise ReaderError(f"server answered {resp.status_code}: {detail}")
        return resp.json()

    def search(self, q: str, since: str, limit: int, fields: list[str] | None) -> list[dict]:
        f = ",".join(fields) if fields else None
        return self._get("/api/v1/search", q=q, since=since, limit=limit, fields=f)["events"]

    def timeline(self, entity: str, since: str, limit: int) -> list[dict]:
        return self._get(f"/api/v1/timeline/{entity}", since=since, limit=limit)["events"]

    def stats(self) -> dict[str, Any]:
        return self._get("/api/v1/stats")

    def close(self) -> None:
        self.http.close()


def open_reader(data_dir: Path) -> Reader:
    """The running server's API if there is one, else the store read-only."""
    server = read_server_file(data_dir)
    if server is not None:
        return ApiReader(server["url"], server["token"])
    path = Path(data_dir) / EVENTS_FILE
    if not path.exists():
        raise ReaderError(f"no lightsoc data in {data_dir} (run `lightsoc ingest` or `lightsoc run`)")
    try:
        return DirectReader(DuckDBEventStore(path, read_only=True))
    except StoreLockedError:
        raise ReaderError(
            f"{path} is locked by another process and no running server was found in "
            f"{data_dir}/run/server.json; wait for it to finish"
        ) from None
