"""Our images driven by PyAirbyte: `ab.get_source("source-postgres", docker_image=...)`.

PyAirbyte runs `docker run --rm -i --volume ... IMAGE VERB` with the config and catalog in a
mounted temp dir; use_host_network=True lets the container reach the test server on 127.0.0.1.
Skipped when no Docker engine answers (as tests/docker); the images are (re)built once per
session by scripts/build-images.sh, layer-cached, so that they hold the code under test.
"""

from __future__ import annotations

import subprocess
from typing import Any

import psycopg
import pytest
from pyairbyte_helpers import (
    REPO_ROOT,
    PyAirbyteDriver,
    id_names,
    image_connector,
    ok,
    tutorial_table,
)

SOURCE_IMAGE = "pgbyte/source-postgres:dev"
DEST_IMAGE = "pgbyte/destination-postgres:dev"
BUILD_TIMEOUT = 1800  # a cold build downloads the CDK and its dependencies from PyPI


@pytest.fixture(scope="session")
def images() -> None:
    """Both images built from the working tree; the tests are skipped when no engine answers."""
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        pytest.skip(f"no Docker engine answers: {info.stderr.strip()[-300:]}")
    build = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-images.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]


@pytest.fixture
def source(images: None, source_config: dict, source_conn: psycopg.Connection) -> dict[str, Any]:
    """The source image, over the tutorial table."""
    tutorial_table(source_conn)
    return image_connector("source-postgres", SOURCE_IMAGE, source_config)


@pytest.fixture
def destination(images: None, dest_config: dict) -> dict[str, Any]:
    return image_connector("destination-postgres", DEST_IMAGE, dest_config)


def test_docker_check(pyairbyte: PyAirbyteDriver, source: dict) -> None:
    """source.check() passes with the source image."""
    ok(pyairbyte.call("check", source=source))


def test_docker_discover(pyairbyte: PyAirbyteDriver, source: dict) -> None:
    """get_available_streams() of the source image lists the tutorial table."""
    assert ok(pyairbyte.call("discover", source=source))["streams"] == ["full_refresh_demo"]


def test_docker_read_into_cache(pyairbyte: PyAirbyteDriver, source: dict, cache_dir: str) -> None:
    """source.read() with the source image caches the tutorial's two rows."""
    result = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    rows = id_names(result, "full_refresh_demo")
    assert rows == [(1, "Mary X"), (2, "John D")]


def test_docker_incremental_second_read(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """The state PyAirbyte mounts into the container makes the second read return only the
    new row."""
    ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    source_conn.execute("INSERT INTO full_refresh_demo VALUES (3, 'Jane Y')")
    assert ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))["processed_records"] == 1


def test_docker_destination_check(pyairbyte: PyAirbyteDriver, destination: dict) -> None:
    """destination.check() passes with the destination image."""
    ok(pyairbyte.call("check_destination", destination=destination))


def test_docker_write_tutorial(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    destination: dict,
    dest_conn: psycopg.Connection,
) -> None:
    """Source image → PyAirbyte → destination image fills the raw and typed tutorial tables."""
    ok(pyairbyte.call("write", source=source, destination=destination))
    raw = dest_conn.execute(
        "SELECT _airbyte_data FROM public._airbyte_raw_full_refresh_demo ORDER BY 1"
    ).fetchall()
    typed = dest_conn.execute(
        "SELECT id, name FROM public.full_refresh_demo ORDER BY id"
    ).fetchall()
    assert (raw, typed) == (
        [({"id": 1, "name": "Mary X"},), ({"id": 2, "name": "John D"},)],
        [(1, "Mary X"), (2, "John D")],
    )
