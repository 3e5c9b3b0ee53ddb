"""`AlertStore.severity_histogram`: alerts per severity and bucket of their first hit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lightsoc.alerts import AlertCandidate, AlertStore
from lightsoc.store.state import StateStore

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def test_alerts_are_counted_per_severity_and_bucket(state_url: str) -> None:
    state = StateStore(state_url)
    store = AlertStore(state)
    hits = [  # (minute of first hit, severity, entity)
        (1, "high", "10.0.0.1"),
        (14, "high", "10.0.0.2"),
        (16, "high", "10.0.0.3"),
        (16, "low", "10.0.0.4"),
        (50, "critical", "10.0.0.5"),
    ]
    store.raise_alerts(
        [
            AlertCandidate(
                rule_id=f"r-{ip}",
                rule_name="r",
                severity=sev,
                entity_type="ip",
                entity_value=ip,
                first_seen=T0 + timedelta(minutes=m),
            )
            for m, sev, ip in hits
        ]
    )
    epoch = int(T0.timestamp())
    got = store.severity_histogram(900)
    assert got == {
        "high": [(epoch, 2), (epoch + 900, 1)],
        "low": [(epoch + 900, 1)],
        "critical": [(epoch + 2700, 1)],
    }
    # a time range (by first hit): start inclusive, end exclusive
    window = store.severity_histogram(900, T0 + timedelta(minutes=14), T0 + timedelta(minutes=50))
    assert window == {"high": [(epoch, 1), (epoch + 900, 1)], "low": [(epoch + 900, 1)]}
    state.close()
