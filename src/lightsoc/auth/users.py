"""Users, passwords and browser sessions in the state store.

Passwords are hashed with argon2id (memory-hard, argon2-cffi's RFC 9106
low-memory profile). A user is locked for `LOCK_MINUTES` after `MAX_FAILURES`
wrong passwords in a row; a wrong password for an unknown or locked user costs
the same hash, so timing tells nothing. Sessions are random cookie values of
which only the sha256 is stored, each with its own CSRF token, an idle timeout
and an absolute lifetime.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lightsoc.auth import LOCALES, ROLES
from lightsoc.store.state import StateStore
from lightsoc.store.state_users import sessions, users

MAX_FAILURES = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")
#: last_seen is written at most this often per session (a read per request, not a write)
TOUCH_SECONDS = 60

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
# check-then-change of the last-admin rule is one step within this process
_ADMIN_CHANGE = threading.Lock()


class UserError(ValueError):
    """A user cannot be created or changed as asked (message says why)."""


class LastAdminError(UserError):
    """The change would leave no enabled admin, and nobody could manage users."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    locale: str
    disabled: bool
    locked_until: datetime | None
    last_login: datetime | None
    created: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "locale": self.locale,
            "disabled": self.disabled,
            "locked_until": self.locked_until,
            "last_login": self.last_login,
            "created": self.created,
        }


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires: datetime
    id_hash: str


class LoginResult:
    """`session_token` set on success; otherwise `reason`: bad_credentials or locked."""

    def __init__(
        self, user: User | None, session_token: str | None, reason: str | None = None
    ) -> None:
        self.user = user
        self.session_token = session_token
        self.reason = reason


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite gives naive UTC back
        return value.replace(tzinfo=UTC)
    return value


def _hash_session(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not name or len(name) > 200 or not set(name) <= NAME_CHARS:
        raise UserError("user name: 1-200 characters of letters, digits and . _ @ -")
    return name


def check_choice(what: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(f"{what} must be one of {', '.join(allowed)}")
    return value


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password: at most {MAX_PASSWORD} characters")
    return password


def random_password() -> str:
    return secrets.token_urlsafe(15)


class UserStore:
    def __init__(
        self,
        state: StateStore,
        *,
        session_idle: timedelta = timedelta(hours=2),
        session_max: timedelta = timedelta(hours=24),
    ) -> None:
        self.state = state
        self.engine = state.engine
        self.session_idle = session_idle
        self.session_max = session_max

    # -- users -----------------------------------------------------------
    def _user(self, row: sa.Row) -> User:
        return User(
            row.id,
            row.name,
            row.role,
            row.locale,
            bool(row.disabled),
            _utc(row.locked_until),
            _utc(row.last_login),
            _utc(row.created),
        )

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() or 0

    def get(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
        return None if row is None else self._user(row)

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            return [self._user(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]

    def add(self, name: str, role: str, password: str, locale: str = "en") -> User:
        check_name(name)
        check_choice("role", role, ROLES)
        check_choice("locale", locale, LOCALES)
        digest = _hasher.hash(check_password(password))
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    users.insert().values(
                        name=name,
                        role=role,
                        password_hash=digest,
                        locale=locale,
                        disabled=False,
                        failed_logins=0,
                        created=now,
                        updated=now,
                    )
                )
        except sa.exc.IntegrityError:
            raise UserError(f"user {name!r} exists") from None
        user = self.get(name)
        assert user is not None
        return user

    def update(
        self,
        name: str,
        *,
        role: str | None = None,
        password: str | None = None,
        locale: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        """Change a user; a new password or disabling ends their sessions."""
        values: dict[str, object] = {}
        if role is not None:
            values["role"] = check_choice("role", role, ROLES)
        if locale is not None:
            values["locale"] = check_choice("locale", locale, LOCALES)
        if password is not None:
            values.update(
                password_hash=_hasher.hash(check_password(password)),
                failed_logins=0,
                locked_until=None,
            )
        if disabled is not None:
            values["disabled"] = disabled
        user = self.get(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        if not values:
            return user
        values["updated"] = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(users.update().where(users.c.id == user.id).values(**values))
            if password is not None or disabled or role is not None:
                conn.execute(sessions.delete().where(sessions.c.user_id == user.id))
        updated = self.get(name)
        assert updated is not None
        return updated

    def update_checked(
        self,
        name: str,
        *,
        role: str | None = None,
        password: str | None = None,
        locale: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        """`update`, refusing (LastAdminError) to demote or disable the last enabled admin."""
        with _ADMIN_CHANGE:
            user = self.get(name)
            if user is None:
                raise UserError(f"no user {name!r}")
            loses_admin = user.role == "admin" and not user.disabled
            loses_admin = loses_admin and (disabled is True or role not in (None, "admin"))
            if loses_admin and self.admins_enabled() <= 1:
                raise LastAdminError(f"{name} is the last enabled admin")
            return self.update(name, role=role, password=password, locale=locale, disabled=disabled)

    def verify_password(self, name: str, password: str) -> bool:
        """Is `password` the password of enabled user `name`? (Same cost when unknown.)"""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(users.c.password_hash, users.c.disabled).where(users.c.name == name)
            ).first()
        if row is None or row.disabled:
            self._verify(_DUMMY_HASH, password)
            return False
        return self._verify(row.password_hash, password)

    def admins_enabled(self) -> int:
        q = sa.select(sa.func.count()).where(users.c.role == "admin", ~users.c.disabled)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar() or 0

    # -- login and sessions ----------------------------------------------
    def login(self, name: str, password: str, client_ip: str | None = None) -> LoginResult:
        """Check a password; on success open a session and return its cookie value."""
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
        if row is None or row.disabled:
            self._verify(_DUMMY_HASH, password)
            return LoginResult(None, None, "bad_credentials")
        user = self._user(row)
        if user.locked_until is not None and user.locked_until > now:
            self._verify(_DUMMY_HASH, password)
            return LoginResult(user, None, "locked")
        if not self._verify(row.password_hash, password):
            failures = row.failed_logins + 1
            lock = now + timedelta(minutes=LOCK_MINUTES) if failures >= MAX_FAILURES else None
            with self.engine.begin() as conn:
                conn.execute(
                    users.update()
                    .where(users.c.id == user.id)
                    .values(failed_logins=0 if lock else failures, locked_until=lock)
                )
            return LoginResult(user, None, "locked" if lock else "bad_credentials")
        token = secrets.token_urlsafe(32)
        values: dict[str, object] = {"failed_logins": 0, "locked_until": None, "last_login": now}
        if _hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = _hasher.hash(password)
        with self.engine.begin() as conn:
            conn.execute(users.update().where(users.c.id == user.id).values(**values))
            conn.execute(sessions.delete().where(sessions.c.expires < now))
            conn.execute(
                sessions.insert().values(
                    id_hash=_hash_session(token),
                    user_id=user.id,
                    csrf=secrets.token_urlsafe(32),
                    created=now,
                    last_seen=now,
                    expires=now + self.session_max,
                    client_ip=client_ip,
                )
            )
        return LoginResult(user, token)

    @staticmethod
    def _verify(digest: str, password: str) -> bool:
        try:
            return _hasher.verify(digest, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            return False

    def session(self, token: str) -> Session | None:
        """The live session of a cookie value (None if unknown, idle too long or expired)."""
        if not token or len(token) > 200:
            return None
        now = datetime.now(UTC)
        id_hash = _hash_session(token)
        q = (
            sa.select(sessions, users)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id_hash == id_hash)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None or row.disabled:
            return None
        last_seen, expires = _utc(row.last_seen), _utc(row.expires)
        assert last_seen is not None and expires is not None
        if expires <= now or last_seen + self.session_idle <= now:
            self.logout(token)
            return None
        if (now - last_seen).total_seconds() > TOUCH_SECONDS:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        sessions.update().where(sessions.c.id_hash == id_hash).values(last_seen=now)
                    )
            except sa.exc.OperationalError:  # busy: last_seen is advisory for a minute
                pass
        user = User(
            row.user_id,
            row.name,
            row.role,
            row.locale,
            False,
            _utc(row.locked_until),
            _utc(row.last_login),
            _utc(row.created),
        )
        return Session(user, row.csrf, expires, id_hash)

    def logout(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.id_hash == _hash_session(token)))
