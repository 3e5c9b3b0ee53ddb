"""Paged lists refuse offsets past the bound with 422, not a database overflow (500)."""

from __future__ import annotations

import pytest

from lightsoc.web.api import MAX_OFFSET
from tests.web.ui_server import UiServer

LISTS = [
    "/api/v1/cases",
    "/api/v1/alerts",
    "/api/v1/rules",
    "/api/v1/audit",
    "/api/v1/search",
    "/alerts",
    "/cases",
    "/settings",
    "/api/v1/saved-searches",
]


@pytest.mark.parametrize("path", LISTS)
def test_an_offset_past_the_bound_is_refused(ui_server: UiServer, path: str) -> None:
    adm = ui_server.login("adm")
    # 2**63 once reached SQLite as an integer it cannot hold (found by schemathesis)
    for offset in (2**63, MAX_OFFSET + 1):
        got = adm.get(path, params={"offset": offset})
        assert got.status_code == 422, (path, offset, got.status_code, got.text[:200])
    got = adm.get(path, params={"offset": MAX_OFFSET})
    assert got.status_code == 200, (path, got.status_code, got.text[:200])
