"""A real `lightsoc run` with no configured source: HTTP ingest must work on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import LightsocServer, cli, write_config
from tests.web.ui_server import ui_server  # noqa: F401 - the shared UI server fixture


class IngestServer:
    """The server plus its tokens: admin (first start), ingest and read."""

    def __init__(self, server: LightsocServer) -> None:
        self.server = server
        self.url = server.url
        assert server.admin_token, server.output
        self.admin = server.admin_token
        self.read = server.read_token()
        self.ingest = self.new_token("ingest", "shipper")

    def new_token(self, scope: str, name: str) -> str:
        res = cli(
            "user", "token", "--scope", scope, "--name", name, "--data-dir", self.server.data_dir
        )
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("lsoc_"), res.stdout  # only the token
        return lines[0]

    def search(self, q: str, **params: Any) -> dict[str, Any]:
        resp = httpx.get(
            f"{self.url}/api/v1/search",
            params={"q": q, "since": "all", "limit": 10000, **params},
            headers={"Authorization": f"Bearer {self.read}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    def events(self, q: str, **params: Any) -> list[dict[str, Any]]:
        body = self.search(q, order="asc", **params)
        assert body["total"] == len(body["events"])
        return body["events"]


@pytest.fixture(scope="module")
def ingest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    root = tmp_path_factory.mktemp("ingest")
    config = write_config(root / "lightsoc.yml", {}, data_dir=root / "data")
    server = LightsocServer(["--config", config], cwd=root, data_dir=root / "data")
    try:
        server.start()
        yield IngestServer(server)
    finally:
        server.ensure_stopped()
