"""Fixtures for the Docker tests: skipped only when no engine answers; images built once.

The images are built by `scripts/build-images.sh` (what `make images` runs) once per session, so
CI builds them on a fresh machine; Docker's layer cache makes later sessions quick.
Every connector verb that imports the CDK costs seconds in a container, so a costly pipeline or
sync is run once per module (`tutorial_dbs`) and several tests each check one thing about it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from docker_helpers import (
    IMAGES,
    TutorialDatabases,
    build_images,
    create_tutorial_table,
    dest_rows,
    engine_error,
    tutorial_configured_catalog,
)


def pytest_configure(config: pytest.Config) -> None:
    """Markers the CDK's standard Docker suites put on their tests (we run with strict markers)."""
    config.addinivalue_line("markers", "image_tests: the CDK's tests of a connector image")
    config.addinivalue_line("markers", "requires_creds: the CDK's scenarios that need secrets")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine answers; otherwise every Docker test is skipped (with the reason)."""
    reason = engine_error()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def images(docker_engine: None) -> dict[str, str]:
    """Both connector images, built (or re-tagged from cache) once per session."""
    build_images()
    return dict(IMAGES)


@pytest.fixture(autouse=True)
def _requires_engine(docker_engine: None) -> None:
    """Every test in tests/docker needs the engine (skipped when none answers)."""


@pytest.fixture
def tutorial_source(pg_server: Any, source_db: str, source_config: dict) -> dict:
    """The tutorial's table in a fresh source database; returns the source config."""
    create_tutorial_table(pg_server.conninfo(source_db))
    return source_config


@pytest.fixture
def read_dest_rows(dest_conn: psycopg.Connection) -> Callable[[str], list[tuple[Any, ...]]]:
    """Reads (id, name) rows of a table in the test's destination database."""

    def read(table: str) -> list[tuple[Any, ...]]:
        return dest_rows(dest_conn, table)

    return read


@pytest.fixture(scope="module")
def tutorial_dbs(pg_server: Any) -> Iterator[TutorialDatabases]:
    """Module-wide databases, so that one costly pipeline or sync serves several tests."""
    suffix = uuid.uuid4().hex[:10]
    source_db, dest_db = f"src_{suffix}", f"dst_{suffix}"
    for name in (source_db, dest_db):
        pg_server.create_database(name)
    create_tutorial_table(pg_server.conninfo(source_db))
    try:
        yield TutorialDatabases(
            source_config=pg_server.connector_config(source_db, schemas=["public"]),
            dest_config=pg_server.connector_config(dest_db, schema="public"),
            dest_conninfo=pg_server.conninfo(dest_db),
        )
    finally:
        for name in (source_db, dest_db):
            pg_server.drop_database(name)


@pytest.fixture
def tutorial_catalog(images: dict[str, str], tutorial_source: dict, tmp_path: Path) -> dict:
    """The tutorial's configured catalog, for a test's own databases."""
    return tutorial_configured_catalog(tutorial_source, tmp_path / "discover")
