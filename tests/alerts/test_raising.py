"""Raising a batch in memory (`RaiseBatch`) gives exactly what raising one candidate at a time does.

The one-at-a-time results come from separate `raise_alerts` calls (each its
own transaction, so the batch path sees one candidate); the batched results
from one call with all of them, on another real SQLite state store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightsoc.alerts import AlertCandidate, AlertStore
from lightsoc.store.state import StateStore
from lightsoc.store.state_alerts import alert_windows

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

candidates = st.lists(
    st.builds(
        lambda rule, ip, minute, span, sev, count, window, ev: AlertCandidate(
            rule_id=rule,
            rule_name=rule,
            severity=sev,
            entity_type="ip",
            entity_value=ip,
            first_seen=T0 + minute * MIN,
            last_seen=T0 + (minute + span) * MIN,
            count=count,
            event_ids=[f"e{minute}-{ev}"],
            window=None if window is None else (ip, str(window)),
        ),
        st.sampled_from(["r1", "r2"]),
        st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::1"]),
        st.integers(0, 300),
        st.integers(0, 90),
        st.sampled_from(["low", "medium", "high", "critical"]),
        st.integers(1, 5),
        st.none() | st.integers(0, 3),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=40,
)


def _windows(state: StateStore) -> list[tuple]:
    with state.engine.connect() as conn:
        rows = conn.execute(sa.select(alert_windows.c.key, alert_windows.c.count))
        return sorted((r.key, r.count) for r in rows)


def _stored(store: AlertStore) -> list[tuple]:
    return sorted(
        (
            a.rule_id,
            a.entity_value,
            a.first_seen,
            a.last_seen,
            a.count,
            a.severity,
            a.score,
            a.status,
            tuple(a.event_ids),
            a.suppress_until,
        )
        for a in store.find(limit=10_000)
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cands=candidates, closed=st.integers(0, 3))
def test_one_batch_equals_one_at_a_time(tmp_path: Path, cands: list, closed: int) -> None:
    run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    (run / "one").mkdir(parents=True)
    (run / "batch").mkdir()
    one, batch = StateStore.for_data_dir(run / "one"), StateStore.for_data_dir(run / "batch")
    try:
        short = {"r2": timedelta(minutes=30)}  # windows that overlap a candidate's span
        a = AlertStore(one, clock=lambda: T0, rule_suppression=short)
        b = AlertStore(batch, clock=lambda: T0, rule_suppression=short)
        # a first alert an analyst closed: later hits in its window are absorbed silently
        head, rest = cands[:1], cands[1:]
        a.raise_alerts(head)
        b.raise_alerts(head)
        if closed:
            for s in (a, b):
                s.set_status(s.find()[0].id, "closed", "analyst")
        for x in rest[: len(rest) // 2]:
            a.raise_alerts([x])
        # two batches: the second reads what the first wrote (windows included)
        half = len(rest) // 2
        b.raise_alerts(rest[:half])
        batched = b.raise_alerts(rest[half:])
        singles = [c for x in rest[half:] for c in a.raise_alerts([x])]
        assert _stored(a) == _stored(b)
        assert _windows(one) == _windows(batch)
        # each changed alert reported once by the batch, in its final state
        assert len({c.alert.id for c in batched}) == len(batched)
        assert {c.alert.id for c in batched} == {c.alert.id for c in singles}
        final = {x.id: x for x in b.find(limit=10_000)}
        for c in batched:
            assert c.alert.count == final[c.alert.id].count
            assert c.alert.last_seen == final[c.alert.id].last_seen
    finally:
        one.close()
        batch.close()
