"""The test harness itself: a real server with the settings later issues rely on."""

from __future__ import annotations

import psycopg


def test_server_has_logical_wal(pg_server) -> None:
    """The throwaway server runs with wal_level=logical (CDC tests need it)."""
    with psycopg.connect(pg_server.conninfo()) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"


def test_fresh_databases_are_distinct(source_db, dest_db, pg_server) -> None:
    """Source and destination use different, existing databases."""
    assert source_db != dest_db
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert {source_db, dest_db} <= names
