"""UserStore on real SQLite and PostgreSQL state stores: passwords, lockout, sessions, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from lightsoc.auth import token_role
from lightsoc.auth.audit import AuditLog
from lightsoc.auth.users import MAX_FAILURES, UserError, UserStore
from lightsoc.store.state import StateStore
from lightsoc.store.state_users import sessions, users


@pytest.fixture
def store(state_url: str) -> Iterator[UserStore]:
    state = StateStore(state_url)
    yield UserStore(state)
    state.close()


def test_passwords_are_argon2id_hashes_never_the_text(store: UserStore) -> None:
    store.add("ana", "analyst", "correct horse battery")
    with store.engine.connect() as conn:
        digest = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert digest.startswith("$argon2id$") and "correct horse" not in digest
    assert store.login("ana", "correct horse battery").session_token
    assert store.login("ana", "correct horse batterY").session_token is None


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("", "viewer", "long-enough-pw", "user name"),
        ("a b", "viewer", "long-enough-pw", "user name"),
        ("<script>", "viewer", "long-enough-pw", "user name"),
        ("ok", "root", "long-enough-pw", "role must be one of viewer, analyst, admin"),
        ("ok", "viewer", "short", "at least 10 characters"),
        ("ok", "viewer", "x" * 1025, "at most 1024"),
    ],
)
def test_bad_users_are_refused_with_the_reason(
    store: UserStore, name: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        store.add(name, role, password)
    assert store.count() == 0


def test_a_name_is_taken_once(store: UserStore) -> None:
    store.add("ana", "analyst", "first-password")
    with pytest.raises(UserError, match="exists"):
        store.add("ana", "viewer", "second-password")


def test_lockout_after_consecutive_failures_then_unlock_by_time(store: UserStore) -> None:
    store.add("vic", "viewer", "the-right-password")
    results = [store.login("vic", f"wrong-{i}").reason for i in range(MAX_FAILURES)]
    assert results == ["bad_credentials"] * (MAX_FAILURES - 1) + ["locked"]
    assert store.login("vic", "the-right-password").reason == "locked"
    with store.engine.begin() as conn:  # the lock ran out
        conn.execute(users.update().values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    assert store.login("vic", "the-right-password").session_token


def test_a_success_resets_the_failure_count(store: UserStore) -> None:
    store.add("vic", "viewer", "the-right-password")
    for _ in range(MAX_FAILURES - 1):
        store.login("vic", "wrong")
    assert store.login("vic", "the-right-password").session_token
    assert [store.login("vic", "wrong").reason for _ in range(MAX_FAILURES - 1)] == [
        "bad_credentials"
    ] * (MAX_FAILURES - 1)


def test_unknown_and_disabled_users_look_alike(store: UserStore) -> None:
    store.add("gone", "viewer", "the-right-password")
    store.update("gone", disabled=True)
    assert store.login("gone", "the-right-password").reason == "bad_credentials"
    assert store.login("nobody", "the-right-password").reason == "bad_credentials"


def test_sessions_hash_their_token_expire_and_end_on_password_change(store: UserStore) -> None:
    store.add("ana", "analyst", "the-right-password")
    token = store.login("ana", "the-right-password", "127.0.0.1").session_token
    assert token
    session = store.session(token)
    assert session and session.user.name == "ana" and len(session.csrf) >= 32
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sessions.c.id_hash)).scalar_one() != token
    assert store.session(token + "x") is None
    # idle too long
    with store.engine.begin() as conn:
        conn.execute(sessions.update().values(last_seen=datetime.now(UTC) - timedelta(hours=3)))
    assert store.session(token) is None
    # a new password ends every session of the user
    token = store.login("ana", "the-right-password").session_token
    assert token and store.session(token)
    store.update("ana", password="another-password")
    assert store.session(token) is None
    # absolute lifetime
    token = store.login("ana", "another-password").session_token
    with store.engine.begin() as conn:
        conn.execute(sessions.update().values(expires=datetime.now(UTC)))
    assert store.session(token) is None


def test_disabling_or_demoting_ends_sessions(store: UserStore) -> None:
    store.add("adm", "admin", "the-right-password")
    token = store.login("adm", "the-right-password").session_token
    store.update("adm", role="viewer")
    assert store.session(token) is None
    assert store.admins_enabled() == 0


def test_tokens_act_as_their_owner_capped_by_scope(state_url: str) -> None:
    state = StateStore(state_url)
    token = state.create_token("automation", "admin", owner="ana")
    info = state.verify_token(token)
    assert info is not None and info.owner == "ana"
    assert token_role("admin", "analyst") == "analyst"
    assert token_role("read", "admin") == "viewer"
    assert token_role("ingest", "admin") is None
    assert token_role("admin", None) == "admin"  # the first-start system token
    listed = state.list_tokens("ana")
    assert [t["name"] for t in listed] == ["automation"] and "token_hash" not in listed[0]
    assert state.revoke_token(listed[0]["id"], owner="bob") is False
    assert state.revoke_token(listed[0]["id"], owner="ana") is True
    assert state.verify_token(token) is None


def test_the_audit_log_keeps_who_did_what(state_url: str) -> None:
    audit = AuditLog(StateStore(state_url))
    audit.record("adm", "user_add", "ana", client_ip="127.0.0.1", role="analyst")
    audit.record("ana", "login", client_ip="127.0.0.1")
    audit.record("ana", "login_bad_credentials", client_ip="127.0.0.1")
    rows = audit.find(action="login")
    assert [r["action"] for r in rows] == ["login_bad_credentials", "login"]
    assert audit.find(actor="adm")[0]["detail"] == {"role": "analyst"}
    assert rows[0]["at"].tzinfo is not None


def test_an_old_state_store_gains_the_token_owner_column(state_url: str) -> None:
    pg = state_url.startswith("postgresql")
    serial = "SERIAL PRIMARY KEY" if pg else "INTEGER PRIMARY KEY"
    ts = "TIMESTAMP WITH TIME ZONE" if pg else "DATETIME"
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:  # the api_tokens table as migration 1 made it before users
        conn.execute(
            sa.text(
                f"CREATE TABLE api_tokens (id {serial}, name VARCHAR(200) NOT NULL,"
                " scope VARCHAR(50) NOT NULL, token_hash VARCHAR(64) NOT NULL UNIQUE,"
                f" created {ts} NOT NULL, last_used {ts}, revoked BOOLEAN NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                f"CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied {ts} NOT NULL)"
            )
        )
        conn.execute(sa.text("INSERT INTO schema_version VALUES (1, '2026-01-01 00:00:00')"))
    engine.dispose()
    state = StateStore(state_url)
    token = state.create_token("x", "read", owner="ana")
    assert state.verify_token(token).owner == "ana"
