"""State store on a real SQLite file and a real PostgreSQL database (`state_url`)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from lightsoc.store import state as state_mod
from lightsoc.store.state import StateStore, driver_url, hash_token


def test_migrations_are_recorded_once(state_url):
    s = StateStore(state_url)
    assert s.version() == len(state_mod.MIGRATIONS)
    s.close()
    s = StateStore(state_url)  # reopening applies nothing twice
    with s.engine.connect() as conn:
        rows = conn.execute(sa.select(state_mod.schema_version.c.version)).fetchall()
    assert [r[0] for r in rows] == list(range(1, len(state_mod.MIGRATIONS) + 1))
    s.close()


def test_settings_round_trip(state_url):
    s = StateStore(state_url)
    assert s.get_setting("x", "dflt") == "dflt"
    s.set_setting("x", {"a": [1, 2]})
    s.set_setting("x", {"a": [3]})
    assert s.get_setting("x") == {"a": [3]}
    s.close()


def test_tokens_hashed_verified_and_revoked(state_url):
    s = StateStore(state_url)
    assert not s.has_tokens("admin")
    token = s.create_token("admin", "admin")
    assert token.startswith("lsoc_") and len(token) > 40
    assert s.has_tokens("admin")
    info = s.verify_token(token)
    assert info is not None and info.scope == "admin" and info.name == "admin"
    assert s.verify_token(token + "x") is None
    assert s.verify_token("") is None
    assert s.verify_token("Bearer " + token) is None
    with s.engine.connect() as conn:
        stored = conn.execute(sa.select(state_mod.api_tokens.c.token_hash)).scalar()
    assert stored == hash_token(token) and token not in stored
    assert s.revoke_tokens("admin") == 1
    assert s.verify_token(token) is None
    s.close()


def test_named_feature_migrations_run_once_in_name_order(state_url):
    state = state_mod
    calls: list[str] = []
    for name in ("zz_test_2", "zz_test_1"):
        state.migration(name)(lambda conn, n=name: calls.append(n))
    try:
        StateStore(state_url).close()
        StateStore(state_url).close()  # reopened: nothing again
        assert calls == ["zz_test_1", "zz_test_2"]
        with pytest.raises(ValueError, match="registered twice"):
            state.migration("zz_test_1")(lambda conn: None)
    finally:
        for name in ("zz_test_1", "zz_test_2"):
            state.NAMED_MIGRATIONS.pop(name)


def test_migrations_build_an_empty_database_and_reopen_idempotently(state_url):
    s = StateStore(state_url)
    tables = set(sa.inspect(s.engine).get_table_names())
    assert set(state_mod.metadata.tables) <= tables  # every feature's tables, none missing
    with s.engine.connect() as conn:
        named = list(conn.execute(sa.select(state_mod.applied_migrations.c.name)).scalars())
    s.close()
    assert sorted(named) == sorted(state_mod.NAMED_MIGRATIONS)
    s = StateStore(state_url)  # a second open changes nothing
    with s.engine.connect() as conn:
        again = list(conn.execute(sa.select(state_mod.applied_migrations.c.name)).scalars())
        locks = conn.execute(sa.text("SELECT count(*) FROM alert_lock")).scalar()
    s.close()
    assert sorted(again) == sorted(named) and locks == 1


def test_concurrent_upserts_never_collide(state_url):
    """Writers creating the same setting / counter row at once: no duplicate-key error."""
    from lightsoc.store.state_rule_flags import RuleFlags

    StateStore(state_url).close()
    threads_n, per_thread = 4, 10
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        s = StateStore(state_url)
        try:
            barrier.wait()
            for i in range(per_thread):
                s.set_setting("shared", {"by": n, "i": i})
                RuleFlags(s).bump()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    s = StateStore(state_url)
    assert RuleFlags(s).version() == threads_n * per_thread
    assert s.get_setting("shared")["i"] == per_thread - 1
    s.close()


def test_times_come_back_aware_utc(state_url):
    """The test cluster's timezone is not UTC: the store's sessions must be."""
    s = StateStore(state_url)
    s.create_token("t", "read")
    [row] = s.list_tokens()
    s.close()
    created = row["created"]
    if created.tzinfo is not None:  # SQLite gives naive UTC back
        assert created.utcoffset() == timedelta(0)
    assert abs(created.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)


def test_nul_characters_are_stored_on_both_backends(state_url):
    """Log-derived text may hold NUL, which PostgreSQL text refuses: still stored, still found."""
    from lightsoc.alerts import AlertCandidate, AlertStore

    s = StateStore(state_url)
    store = AlertStore(s)
    value = "evil\x00host"
    store.raise_alerts(
        [
            AlertCandidate(
                rule_id="r",
                rule_name="r\x00",
                severity="high",
                entity_type="host",
                entity_value=value,
                first_seen=datetime(2026, 11, 1, tzinfo=UTC),
            )
        ]
    )
    [alert] = store.find(since=None, entity=value)
    assert alert.entity_value.replace("\ufffd", "\x00") == value
    s.set_setting("k", {"v": "a\x00b"})
    assert s.get_setting("k")["v"] in ("a\x00b", "a\ufffdb")
    s.close()


def test_postgres_urls_use_psycopg_and_never_show_the_password(pg_url):
    assert driver_url("postgresql://u:pw@h/db") == "postgresql+psycopg://u:pw@h/db"
    assert driver_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert driver_url("sqlite:///x.db") == "sqlite:///x.db"
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    s = StateStore(plain.replace("postgres@", "postgres:s3cret@"))  # trust auth ignores it
    assert s.engine.dialect.driver == "psycopg"
    assert "s3cret" not in s.display_url() and "***" in s.display_url()
    s.close()


def test_a_config_state_url_opens_postgresql_with_the_password_from_env(pg_url, tmp_path):
    from lightsoc.config import load_config

    cfg = tmp_path / "lightsoc.yml"
    libpq_style = pg_url.replace("postgresql+psycopg://postgres@", "postgresql://postgres:${PGPW}@")
    cfg.write_text(f"store:\n  state: {libpq_style}\n")
    config = load_config(cfg, data_dir_override=tmp_path, env={"PGPW": "s3cret"})
    s = StateStore.for_data_dir(config.data_dir, config.store.state)
    s.set_setting("x", 1)
    assert s.get_setting("x") == 1 and "s3cret" not in s.display_url()
    s.close()


def test_watermarks_only_move_forward(state_url):
    from lightsoc.store.state_detect import WatermarkStore

    s = StateStore(state_url)
    wm = WatermarkStore(s)
    t0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    wm.set_many(["a", "b"], t0)
    wm.set_many(["a"], t0 + timedelta(minutes=5))
    wm.set_many(["a", "b"], t0 - timedelta(minutes=5))  # never backwards
    assert wm.get_all() == {"a": t0 + timedelta(minutes=5), "b": t0}
    s.close()


def test_processes_starting_together_on_a_new_postgresql_database_migrate_once(pg_url):
    """The processes of a split deployment start at once: one migrates, the rest wait."""
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    stores: list[StateStore] = []

    def start() -> None:
        barrier.wait()
        try:
            stores.append(StateStore(pg_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(stores) == 6
    with stores[0].engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM applied_migrations")).scalars().all()
    assert len(names) == len(set(names)) > 0
    for s in stores:
        s.close()
