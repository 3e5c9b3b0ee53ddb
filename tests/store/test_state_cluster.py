"""Leases and heartbeats in the state store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from lightsoc.store.state import StateStore
from lightsoc.store.state_cluster import Heartbeats, Leases, ProcessBeat

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_one_holder_at_a_time_and_takeover_after_expiry(state_url: str) -> None:
    state = StateStore(state_url)
    leases = Leases(state)
    assert leases.acquire("scheduler", "a", ttl=10, now=T0)
    assert not leases.acquire("scheduler", "b", ttl=10, now=T0 + timedelta(seconds=5))
    assert leases.holder("scheduler", now=T0 + timedelta(seconds=5)) == "a"
    # the holder renews; the standby still waits
    assert leases.acquire("scheduler", "a", ttl=10, now=T0 + timedelta(seconds=8))
    assert not leases.acquire("scheduler", "b", ttl=10, now=T0 + timedelta(seconds=15))
    # a stops renewing: b takes over once the lease has run out
    assert leases.acquire("scheduler", "b", ttl=10, now=T0 + timedelta(seconds=18))
    assert not leases.acquire("scheduler", "a", ttl=10, now=T0 + timedelta(seconds=19))
    assert leases.holder("scheduler", now=T0 + timedelta(seconds=19)) == "b"
    assert leases.holder("scheduler", now=T0 + timedelta(seconds=40)) is None
    # other names are independent
    assert leases.acquire("retrain", "a", ttl=10, now=T0 + timedelta(seconds=19))
    state.close()


def test_release_lets_a_standby_in_at_once(state_url: str) -> None:
    state = StateStore(state_url)
    leases = Leases(state)
    assert leases.acquire("scheduler", "a", ttl=60)
    leases.release("scheduler", "b")  # not the holder: no effect
    assert not leases.acquire("scheduler", "b", ttl=60)
    leases.release("scheduler", "a")
    assert leases.acquire("scheduler", "b", ttl=60)
    state.close()


def test_racing_standbys_never_both_win(state_url: str) -> None:
    state = StateStore(state_url)
    leases = Leases(state)
    assert leases.acquire("scheduler", "old", ttl=1, now=T0)
    now = T0 + timedelta(seconds=5)  # expired: everybody may try
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def race(name: str) -> None:
        barrier.wait()
        if leases.acquire("scheduler", name, ttl=30, now=now):
            wins.append(name)

    threads = [threading.Thread(target=race, args=(f"p{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert leases.holder("scheduler", now=now) == wins[0]
    state.close()


def test_heartbeats_are_upserted_listed_and_forgotten(state_url: str) -> None:
    state = StateStore(state_url)
    beats = Heartbeats(state)
    p = ProcessBeat("h1:10:process", "process", "h1", 10, T0, events=5, lag=3)
    beats.beat(p, now=T0)
    p.events, p.events_per_second = 500, 49.5
    beats.beat(p, now=T0 + timedelta(seconds=10))
    beats.beat(ProcessBeat("h2:7:collect", "collect", "h2", 7, T0, detail={"x": 1}), now=T0)
    got = beats.processes(now=T0 + timedelta(seconds=11))
    assert [(b.role, b.events, b.events_per_second, b.lag) for b in got] == [
        ("collect", 0, 0.0, None),
        ("process", 500, 49.5, 3),
    ]
    assert got[1].heartbeat == T0 + timedelta(seconds=10) and got[0].detail == {"x": 1}
    assert [b.id for b in beats.processes(now=T0 + timedelta(days=1, seconds=15))] == []
    beats.beat(p, now=T0)
    beats.remove(p.id)
    assert beats.processes(now=T0) == []
    state.close()
