"""State store on a real SQLite file."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from lightsoc.store import state as state_mod
from lightsoc.store.state import StateStore, hash_token


def test_migrations_are_recorded_once(tmp_path):
    s = StateStore.for_data_dir(tmp_path)
    assert s.version() == len(state_mod.MIGRATIONS)
    s.close()
    s = StateStore.for_data_dir(tmp_path)  # reopening applies nothing twice
    with s.engine.connect() as conn:
        rows = conn.execute(sa.select(state_mod.schema_version.c.version)).fetchall()
    assert [r[0] for r in rows] == list(range(1, len(state_mod.MIGRATIONS) + 1))
    s.close()


def test_settings_round_trip(tmp_path):
    s = StateStore.for_data_dir(tmp_path)
    assert s.get_setting("x", "dflt") == "dflt"
    s.set_setting("x", {"a": [1, 2]})
    s.set_setting("x", {"a": [3]})
    assert s.get_setting("x") == {"a": [3]}
    s.close()


def test_tokens_hashed_verified_and_revoked(tmp_path):
    s = StateStore.for_data_dir(tmp_path)
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


def test_named_feature_migrations_run_once_in_name_order(tmp_path):
    state = state_mod
    calls: list[str] = []
    for name in ("zz_test_2", "zz_test_1"):
        state.migration(name)(lambda conn, n=name: calls.append(n))
    try:
        StateStore.for_data_dir(tmp_path).close()
        StateStore.for_data_dir(tmp_path).close()  # reopened: nothing again
        assert calls == ["zz_test_1", "zz_test_2"]
        with pytest.raises(ValueError, match="registered twice"):
            state.migration("zz_test_1")(lambda conn: None)
    finally:
        for name in ("zz_test_1", "zz_test_2"):
            state.NAMED_MIGRATIONS.pop(name)
