"""Fixtures shared by every test package."""

from tests.pg import own_pg_cluster, pg_cluster, pg_url, state_url

__all__ = ["own_pg_cluster", "pg_cluster", "pg_url", "state_url"]
