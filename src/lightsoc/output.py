"""Events as JSON-ready dicts (ECS dotted names; nulls left out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def event_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One dict per event, without null or empty-list fields."""
    rows = []
    for row in table.to_pylist():
        rows.append({k: jsonable(v) for k, v in row.items() if v is not None and v != []})
    return rows
