"""Fixtures for the Docker tests: skipped only when no engine answers; images built once.

The images are built by `scripts/build-images.sh` (what `make images` runs) once per session, so
CI builds them on a fresh machine; Docker's layer cache makes later sessions quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from docker_helpers import (
    IMAGES,
    SOURCE_IMAGE,
    TUTORIAL_ROWS,
    Run,
    build_images,
    configured_catalog,
    docker_run,
    engine_error,
    pipeline_stream,
    write_secrets,
)
from psycopg import sql


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
def tutorial_source(source_conn: psycopg.Connection, source_config: dict) -> dict:
    """The tutorial's source table (full_refresh_demo: 1 Mary X, 2 John D); returns the config."""
    source_conn.execute("CREATE TABLE full_refresh_demo(id integer PRIMARY KEY, name VARCHAR(200))")
    for row in TUTORIAL_ROWS:
        source_conn.execute("INSERT INTO full_refresh_demo(id, name) VALUES (%s, %s)", row)
    return source_config


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """An empty directory to mount at /secrets (readable by the image's airbyte user)."""
    return write_secrets(tmp_path / "secrets")


_discovered: dict[str, dict] = {}


@pytest.fixture
def tutorial_catalog(images: dict[str, str], tutorial_source: dict, tmp_path: Path) -> dict:
    """The configured catalog of full_refresh_demo (full refresh | overwrite), from discover.

    Discovered from the image once per session (the stream does not depend on which fresh
    database holds the table); test_discover_lists_the_tutorial_table checks discover itself.
    """
    if "full_refresh_demo" not in _discovered:
        secrets = write_secrets(tmp_path / "discover", config=tutorial_source)
        run = docker_run(
            SOURCE_IMAGE, "discover", "--config", "/secrets/config.json", secrets=secrets
        )
        assert run.returncode == 0, run.explain()
        _discovered["full_refresh_demo"] = pipeline_stream(run.catalog, "full_refresh_demo")
    return configured_catalog([_discovered["full_refresh_demo"]])


def dest_rows(
    conn: psycopg.Connection, table: str, schema: str = "public"
) -> list[tuple[Any, ...]]:
    """(id, name) rows of a normalized destination table, ordered by id."""
    query = sql.SQL("SELECT id, name FROM {}.{} ORDER BY id").format(
        sql.Identifier(schema), sql.Identifier(table)
    )
    return [tuple(row) for row in conn.execute(query).fetchall()]


@pytest.fixture
def read_dest_rows(dest_conn: psycopg.Connection):
    """Reads (id, name) rows of a destination table."""

    def read(table: str) -> list[tuple[Any, ...]]:
        return dest_rows(dest_conn, table)

    return read


@pytest.fixture
def spec_of(images: dict[str, str]) -> Iterator[Any]:
    """`docker run --rm IMAGE spec`, cached per image for the test."""
    cache: dict[str, Run] = {}

    def spec(image: str) -> Run:
        if image not in cache:
            cache[image] = docker_run(image, "spec", network="bridge")
        return cache[image]

    yield spec
