"""Fixtures shared by every test package."""

from tests.pg import pg_cluster, pg_url, state_url

__all__ = ["pg_cluster", "pg_url", "state_url"]
