"""Test fixtures: one real PostgreSQL server per test session, fresh databases per test.

The server is a throwaway one (initdb in a temp dir, run as the `postgres` OS user when we are
root) unless PGBYTE_TEST_DSN names an existing server, whose user must be able to create
databases.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgbyte.throwaway_pg import ThrowawayServer
from psycopg.conninfo import conninfo_to_dict

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = REPO_ROOT / ".venv" / "bin"


class ExistingServer(ThrowawayServer):
    """A server named by PGBYTE_TEST_DSN: never started or stopped by us."""

    @classmethod
    def from_dsn(cls, dsn: str) -> ExistingServer:
        params = conninfo_to_dict(dsn)
        return cls(
            host=str(params.get("host", "127.0.0.1")),
            port=int(params.get("port", 5432)),
            user=str(params.get("user", "postgres")),
            password=str(params.get("password", "")),
        )

    def start(self) -> None:  # the server already runs
        return None

    def stop(self) -> None:
        return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ThrowawayServer]:
    """The PostgreSQL server every database test uses."""
    dsn = os.environ.get("PGBYTE_TEST_DSN")
    server = ExistingServer.from_dsn(dsn) if dsn else ThrowawayServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_database(pg_server: ThrowawayServer) -> Iterator[callable]:
    """Factory: a fresh, empty database per call, dropped after the test."""
    created: list[str] = []

    def make(prefix: str = "db") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        pg_server.create_database(name)
        created.append(name)
        return name

    yield make
    for name in created:
        pg_server.drop_database(name)


@pytest.fixture
def source_db(make_database) -> str:
    """A fresh source database name."""
    return make_database("src")


@pytest.fixture
def dest_db(make_database) -> str:
    """A fresh destination database name (different from the source's)."""
    return make_database("dst")


@pytest.fixture
def source_conn(pg_server: ThrowawayServer, source_db: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the source database, for setting up tables."""
    with psycopg.connect(pg_server.conninfo(source_db), autocommit=True) as conn:
        yield conn


@pytest.fixture
def dest_conn(pg_server: ThrowawayServer, dest_db: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the destination database, for inspecting tables."""
    with psycopg.connect(pg_server.conninfo(dest_db), autocommit=True) as conn:
        yield conn


@pytest.fixture
def source_config(pg_server: ThrowawayServer, source_db: str) -> dict:
    """A source-postgres config for the source database."""
    return pg_server.connector_config(source_db, schemas=["public"])


@pytest.fixture
def dest_config(pg_server: ThrowawayServer, dest_db: str) -> dict:
    """A destination-postgres config for the destination database."""
    return pg_server.connector_config(dest_db, schema="public")


def console_script(name: str) -> str:
    """Path of an installed console script (the real one, run as a subprocess)."""
    path = BIN_DIR / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: run `make install`")
    return found
