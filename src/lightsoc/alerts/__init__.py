"""Alerts: the alert model, its state and where alerts are sent.

`model` holds the plain data (no database), `store.AlertStore` keeps alerts
in the state store, `scoring` combines an entity's alerts into a triage score;
`outputs/` delivers them. The names below are imported lazily, so an output
that only needs `lightsoc.alerts.outputs` does not load SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightsoc.alerts.model import (
        ALERT_KEYS,
        ENTITY_TYPES,
        SEVERITIES,
        STATUSES,
        Alert,
        AlertCandidate,
        ChangedAlert,
        EntityScore,
        HistoryEntry,
    )
    from lightsoc.alerts.store import AlertNotFoundError, AlertStore, TransitionError

_EXPORTS = {
    "ALERT_KEYS": "model",
    "ENTITY_TYPES": "model",
    "SEVERITIES": "model",
    "STATUSES": "model",
    "Alert": "model",
    "AlertCandidate": "model",
    "ChangedAlert": "model",
    "EntityScore": "model",
    "HistoryEntry": "model",
    "AlertNotFoundError": "store",
    "AlertStore": "store",
    "TransitionError": "store",
}

__all__ = [
    "ALERT_KEYS",
    "ENTITY_TYPES",
    "SEVERITIES",
    "STATUSES",
    "Alert",
    "AlertCandidate",
    "AlertNotFoundError",
    "AlertStore",
    "ChangedAlert",
    "EntityScore",
    "HistoryEntry",
    "TransitionError",
]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the export is
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
