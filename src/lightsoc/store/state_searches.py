"""Saved searches: a named query, time range and columns, private or shared.

Anyone who can search may save their own searches (viewers included: a
private saved search changes nothing another user sees). Sharing one with
everybody is a change to shared state, so `shared` needs the analyst role
(the API enforces it); only the owner or an admin deletes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lightsoc.store.state import metadata, migration

if TYPE_CHECKING:
    from lightsoc.store.state import StateStore

MAX_PER_OWNER = 500  # a runaway script cannot fill the state store

saved_searches = sa.Table(
    "saved_searches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("since", sa.String(20), nullable=False),
    sa.Column("fields", sa.Text, nullable=False),  # comma-separated, "" = the defaults
    sa.Column("shared", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_saved_searches_owner", "owner", "name"),
)


@migration("searches_1")
def _searches_1(conn: Connection) -> None:
    saved_searches.create(conn, checkfirst=True)


@dataclass(frozen=True)
class SavedSearch:
    id: int
    owner: str
    name: str
    query: str
    since: str
    fields: str
    shared: bool
    created: datetime

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        created = self.created if self.created.tzinfo else self.created.replace(tzinfo=UTC)
        out["created"] = created.isoformat().replace("+00:00", "Z")
        return out


class SavedSearchLimitError(ValueError):
    """The owner already has MAX_PER_OWNER saved searches."""


class SavedSearches:
    """CRUD over `saved_searches`; ownership is checked by the caller's arguments."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine

    def list(self, viewer: str, limit: int = 200, offset: int = 0) -> list[SavedSearch]:
        """`viewer`'s own searches and everybody's shared ones, by name."""
        t = saved_searches
        sql = (
            sa.select(t)
            .where(sa.or_(t.c.owner == viewer, t.c.shared.is_(True)))
            .order_by(t.c.name, t.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            return [SavedSearch(**row._mapping) for row in conn.execute(sql)]

    def get(self, search_id: int) -> SavedSearch | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(saved_searches).where(saved_searches.c.id == search_id)
            ).first()
        return None if row is None else SavedSearch(**row._mapping)

    def create(
        self, owner: str, name: str, query: str, since: str, fields: str, shared: bool
    ) -> SavedSearch:
        t = saved_searches
        with self.engine.begin() as conn:
            have = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.owner == owner)
            ).scalar_one()
            if have >= MAX_PER_OWNER:
                raise SavedSearchLimitError(f"at most {MAX_PER_OWNER} saved searches per user")
            values = {
                "owner": owner,
                "name": name,
                "query": query,
                "since": since,
                "fields": fields,
                "shared": shared,
                "created": datetime.now(UTC),
            }
            new_id = conn.execute(t.insert().values(**values)).inserted_primary_key[0]
        return SavedSearch(id=int(new_id), **values)

    def delete(self, search_id: int) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(saved_searches.delete().where(saved_searches.c.id == search_id))
        return res.rowcount > 0
