"""State store: settings, API tokens and other transactional state.

SQLAlchemy Core over SQLite by default (`<data_dir>/state.sqlite`); the same
code runs on PostgreSQL (psycopg 3; `tests/pg.py` runs the state tests on both).
Schema changes are numbered migrations applied in order on open; the applied
version is recorded in `schema_version`.

Where the two differ, this module evens them out: `upsert` (one atomic
statement on both), PostgreSQL sessions in UTC and READ COMMITTED (what the
alert lock relies on), and NUL characters, which PostgreSQL text cannot hold.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import pkgutil
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied", sa.DateTime(timezone=True), nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.JSON, nullable=True),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("scope", sa.String(50), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_used", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    # the user the token acts as (migration users_1); None: a system token
    sa.Column("owner", sa.String(200), nullable=True),
)

TOKEN_PREFIX = "lsoc_"
#: PostgreSQL advisory lock key held while migrating ("lsoc" in ASCII)
MIGRATION_LOCK = 0x6C736F63
TOUCH_SECONDS = 60.0
SCOPES = ("admin", "read", "ingest")


def _m1(conn: Connection) -> None:
    for table in (settings, api_tokens):
        table.create(conn, checkfirst=True)


# Append-only: never edit a released migration, add the next one.
MIGRATIONS: list[Callable[[Connection], None]] = [_m1]

applied_migrations = sa.Table(
    "applied_migrations",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("applied", sa.DateTime(timezone=True), nullable=False),
)

#: Migrations of the feature modules `lightsoc.store.state_*` (rules, intel,
#: alerts, ...), by name: each feature owns its tables and their history, and
#: two features never fight over the next number. Applied in name order.
NAMED_MIGRATIONS: dict[str, Callable[[Connection], None]] = {}


def migration(name: str) -> Callable[[Callable[[Connection], None]], Callable[[Connection], None]]:
    """Register a named migration (`"<feature>_<n>"`); never edit one once released."""

    def deco(fn: Callable[[Connection], None]) -> Callable[[Connection], None]:
        if NAMED_MIGRATIONS.get(name, fn) is not fn:
            raise ValueError(f"migration {name!r} registered twice")
        NAMED_MIGRATIONS[name] = fn
        return fn

    return deco


def _load_feature_tables() -> None:
    import lightsoc.store as store_pkg

    for mod in pkgutil.iter_modules(store_pkg.__path__):
        if mod.name.startswith("state_"):
            importlib.import_module(f"lightsoc.store.{mod.name}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    scope: str
    owner: str | None = None


class StateStore:
    """Transactional state through SQLAlchemy Core."""

    def __init__(self, url: str) -> None:
        url = driver_url(url)
        if _is_pg(url):
            self.engine: Engine = sa.create_engine(
                url,
                # aware datetimes come back in UTC whatever the server's timezone
                connect_args={"options": "-c timezone=UTC"},
                # each statement sees what committed before it: after waiting for the
                # alert lock, a writer reads the alerts the previous holder opened
                isolation_level="READ COMMITTED",
                pool_pre_ping=True,
            )
            sa.event.listen(self.engine, "before_cursor_execute", _strip_nul, retval=True)
        else:
            self.engine = sa.create_engine(url)
            if url.startswith("sqlite"):
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._touched: dict[int, float] = {}
        self.migrate()

    def display_url(self) -> str:
        """The URL with any password masked: for logs and messages."""
        return self.engine.url.render_as_string(hide_password=True)

    @classmethod
    def for_data_dir(cls, data_dir: Path, url: str = "sqlite") -> StateStore:
        if url == "sqlite":
            url = f"sqlite:///{Path(data_dir) / 'state.sqlite'}"
        return cls(url)

    def migrate(self) -> int:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # processes of a split deployment start together: one migrates, the
                # others wait here and then find everything applied (the lock is the
                # transaction's, released at its commit)
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
            for version, step in enumerate(MIGRATIONS, start=1):
                if version > current:
                    step(conn)
                    conn.execute(
                        schema_version.insert().values(version=version, applied=datetime.now(UTC))
                    )
            _load_feature_tables()
            applied_migrations.create(conn, checkfirst=True)
            done = set(conn.execute(sa.select(applied_migrations.c.name)).scalars())
            for name in sorted(NAMED_MIGRATIONS.keys() - done):
                NAMED_MIGRATIONS[name](conn)
                conn.execute(
                    applied_migrations.insert().values(name=name, applied=datetime.now(UTC))
                )
            return len(MIGRATIONS)

    def version(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0

    def close(self) -> None:
        self.engine.dispose()

    # -- settings --------------------------------------------------------
    def get_setting(self, key: str, default: object = None) -> object:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(settings.c.value).where(settings.c.key == key)).first()
        return default if row is None else row[0]

    def set_setting(self, key: str, value: object) -> None:
        with self.engine.begin() as conn:
            upsert(conn, settings, {"key": key, "value": value}, ["key"])

    # -- API tokens ------------------------------------------------------
    def create_token(self, name: str, scope: str, owner: str | None = None) -> str:
        """Create a token (acting as user `owner`, if given) and return it; only
        its hash is stored."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                api_tokens.insert().values(
                    name=name,
                    scope=scope,
                    token_hash=hash_token(token),
                    created=datetime.now(UTC),
                    revoked=False,
                    owner=owner,
                )
            )
        return token

    def has_tokens(self, scope: str | None = None) -> bool:
        q = sa.select(sa.func.count()).select_from(api_tokens).where(~api_tokens.c.revoked)
        if scope:
            q = q.where(api_tokens.c.scope == scope)
        with self.engine.connect() as conn:
            return bool(conn.execute(q).scalar())

    def verify_token(self, token: str) -> TokenInfo | None:
        """The token's identity if it is valid and not revoked."""
        if not token or not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    api_tokens.c.id,
                    api_tokens.c.name,
                    api_tokens.c.scope,
                    api_tokens.c.token_hash,
                    api_tokens.c.owner,
                ).where(api_tokens.c.token_hash == digest, ~api_tokens.c.revoked)
            ).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        self._touch(row.id)
        return TokenInfo(row.id, row.name, row.scope, row.owner)

    def _touch(self, token_id: int) -> None:
        """Record `last_used`, at most once a minute per token, never failing a request.

        Checking a token is a read: a write on every API call would queue
        behind any long write (alerts being raised) and fail the request.
        """
        now = time.monotonic()
        if now - self._touched.get(token_id, -TOUCH_SECONDS) < TOUCH_SECONDS:
            return
        self._touched[token_id] = now
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    api_tokens.update()
                    .where(api_tokens.c.id == token_id)
                    .values(last_used=datetime.now(UTC))
                )
        except sa.exc.OperationalError:  # busy: last_used is advisory
            pass

    def list_tokens(self, owner: str | None = None) -> list[dict[str, object]]:
        """Tokens that are not revoked (never their value), newest first."""
        cols = [api_tokens.c[n] for n in ("id", "name", "scope", "owner", "created", "last_used")]
        q = sa.select(*cols).where(~api_tokens.c.revoked).order_by(api_tokens.c.id.desc())
        if owner is not None:
            q = q.where(api_tokens.c.owner == owner)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def revoke_token(self, token_id: int, owner: str | None = None) -> bool:
        """Revoke one token (only if `owner` owns it, when given)."""
        q = api_tokens.update().where(api_tokens.c.id == token_id, ~api_tokens.c.revoked)
        if owner is not None:
            q = q.where(api_tokens.c.owner == owner)
        with self.engine.begin() as conn:
            return bool(conn.execute(q.values(revoked=True)).rowcount)

    def revoke_tokens(self, name: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                api_tokens.update().where(api_tokens.c.name == name).values(revoked=True)
            ).rowcount


def upsert(
    conn: Connection,
    table: sa.Table,
    values: Mapping[str, Any],
    keys: Sequence[str],
    update: Mapping[str, Any] | None = None,
) -> None:
    """Insert `values`, or on a conflict of the unique `keys` set `update` (default: the
    other values) — one statement, so two writers never both insert (an update of no
    row takes no lock on PostgreSQL). `update` values may be expressions of the row."""
    if update is None:
        update = {k: v for k, v in values.items() if k not in keys}
    if conn.dialect.name == "postgresql":
        stmt: Any = pg_dialect.insert(table)
    elif conn.dialect.name == "sqlite":
        stmt = sqlite_dialect.insert(table)
    else:  # no native upsert: update first (racy without a lock; SQLite/PG never get here)
        if not conn.execute(
            table.update().where(*(table.c[k] == values[k] for k in keys)).values(**update)
        ).rowcount:
            conn.execute(table.insert().values(**values))
        return
    stmt = stmt.values(**values)
    if update:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=dict(update))
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt)


def _no_nul(value: Any) -> Any:  # noqa: ANN401
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {k: _no_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_no_nul(v) for v in value)
    return value


def _strip_nul(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ANN202
    """PostgreSQL text cannot hold NUL (SQLite can): log-derived values (an entity, an
    event summary) may contain one, so it is stored as U+FFFD instead of failing the
    write; lookups go through the same replacement and still match."""
    return statement, _no_nul(parameters)


def driver_url(url: str) -> str:
    """`postgresql://` and `postgres://` (libpq style) as SQLAlchemy's psycopg 3 URL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _is_pg(url: str) -> bool:
    return url.startswith("postgresql")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
