"""`pgbyte sync` with connectors as images (`image:` entries), alone and mixed with `command:`.

Connection files name the password as ${PGBYTE_TEST_PASSWORD}, set only in pgbyte's environment,
so a password found in any output was leaked by pgbyte or a connector, not by the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from docker_helpers import (
    DEST_IMAGE,
    REPO_ROOT,
    SOURCE_IMAGE,
    TUTORIAL_ROWS,
    TutorialDatabases,
)
from pgbyte.docker_runner import CONTAINER_LABEL
from psycopg import sql

pytestmark = pytest.mark.docker

PASSWORD_VAR = "PGBYTE_TEST_PASSWORD"
PGBYTE = str(REPO_ROOT / ".venv" / "bin" / "pgbyte")


def endpoint(kind: str, image: str, console: str, config: dict[str, Any]) -> dict[str, Any]:
    """A connection file's source:/destination: entry: image (host network) or command."""
    config = {**config, "password": "${" + PASSWORD_VAR + "}"}
    if kind == "image":
        return {"image": image, "network": "host", "config": config}
    return {"command": str(REPO_ROOT / ".venv" / "bin" / console), "config": config}


def connection_file(
    directory: Path,
    source_config: dict,
    dest_config: dict,
    *,
    source: str = "image",
    destination: str = "image",
) -> Path:
    body = {
        "name": "docker-conn",
        "source": endpoint(source, SOURCE_IMAGE, "source-postgres", source_config),
        "destination": endpoint(destination, DEST_IMAGE, "destination-postgres", dest_config),
        "prefix": "overwrite_",
        "destination_sync_mode": "overwrite",
    }
    path = directory / "docker-conn.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def env(password: str) -> dict[str, str]:
    return {**os.environ, PASSWORD_VAR: password}


def sync(conn: Path, password: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`pgbyte sync --json` to the end: the process and its summary."""
    run = subprocess.run(
        [PGBYTE, "sync", str(conn), "--json"],
        env=env(password), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    try:
        return run, json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON summary ({run.returncode}):\n{run.stdout}\n{run.stderr[-3000:]}")


def rows(conn: psycopg.Connection, table: str) -> list[tuple]:
    query = sql.SQL("SELECT id, name FROM {} ORDER BY id").format(sql.Identifier(table))
    return [tuple(r) for r in conn.execute(query)]


def our_containers() -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={CONTAINER_LABEL}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return set(out.split())


@pytest.fixture(scope="module")
def both_images(
    images, tutorial_dbs: TutorialDatabases, pg_server, tmp_path_factory: pytest.TempPathFactory
):
    """The tutorial's overwrite connection synced once with both connectors as images."""
    before = our_containers()
    conn = connection_file(
        tmp_path_factory.mktemp("both"), tutorial_dbs.source_config, tutorial_dbs.dest_config
    )
    run, summary = sync(conn, pg_server.password)
    return run, summary, before


def test_sync_with_both_images_succeeds(both_images) -> None:
    """pgbyte sync with image: source and destination exits 0 with 2 records committed."""
    run, summary, _ = both_images
    assert (run.returncode, summary["status"]) == (0, "succeeded"), run.stderr[-3000:]
    assert summary["total"]["records_committed"] == 2


def test_sync_with_both_images_loads_the_tutorial_rows(
    both_images, tutorial_dbs: TutorialDatabases
) -> None:
    """overwrite_full_refresh_demo holds 1 Mary X, 2 John D after the image sync."""
    assert tutorial_dbs.dest_rows("overwrite_full_refresh_demo") == TUTORIAL_ROWS


def test_sync_with_images_leaves_no_container(both_images) -> None:
    """Every container pgbyte created for the sync is removed once it succeeded."""
    _, _, before = both_images
    assert our_containers() <= before


def test_sync_with_images_never_prints_the_password(both_images, pg_server) -> None:
    """The password is in none of pgbyte's output when connectors run as images."""
    run, _, _ = both_images
    assert pg_server.password not in run.stdout + run.stderr


def test_mix_image_source_command_destination(
    images, tutorial_source, dest_config, pg_server, dest_conn, tmp_path: Path
) -> None:
    """An image source piped into a locally installed destination loads the tutorial's rows."""
    conn = connection_file(tmp_path, tutorial_source, dest_config, destination="command")
    run, summary = sync(conn, pg_server.password)
    assert (run.returncode, summary["status"]) == (0, "succeeded"), run.stderr[-3000:]
    assert rows(dest_conn, "overwrite_full_refresh_demo") == TUTORIAL_ROWS


def test_failing_container_is_reported_and_removed(
    images, tutorial_source, dest_config, pg_server, tmp_path: Path
) -> None:
    """A source image that cannot reach its database: sync fails naming why; no container left."""
    before = our_containers()
    bad = {**tutorial_source, "database": "no_such_database_here"}
    conn = connection_file(tmp_path, bad, dest_config)
    run, summary = sync(conn, pg_server.password)
    assert (run.returncode, summary["status"]) == (1, "failed")
    assert "no_such_database_here" in summary["reason"]
    assert our_containers() <= before


@pytest.fixture
def big_source(source_conn: psycopg.Connection, source_config: dict) -> dict:
    """A source table large enough that a sync is still running when it is interrupted."""
    source_conn.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS name"
        " FROM generate_series(1, 300000) AS g"
    )
    source_conn.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
    return source_config


def running_containers(role: str, verb: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--no-trunc", "--filter", f"label={CONTAINER_LABEL}={role}",
         "--format", "{{.ID}} {{.Command}}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line.split()[0] for line in out.splitlines() if f" {verb} " in line + " "]


def test_ctrl_c_removes_the_containers(
    images, big_source, dest_config, pg_server, tmp_path: Path
) -> None:
    """SIGINT during an image sync: pgbyte exits 130 within seconds (the source's container
    ended waiting on output nobody read, up to 330 s) and both containers are removed."""
    before = our_containers()
    conn = connection_file(tmp_path, big_source, dest_config)
    proc = subprocess.Popen(
        [PGBYTE, "sync", str(conn), "--json"],
        env=env(pg_server.password), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not running_containers("destination", "write"):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the write container never started"
            time.sleep(0.1)
        time.sleep(1)  # records are flowing
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=180)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert took < 60, f"pgbyte took {took:.0f} s to end after SIGINT"
    assert our_containers() <= before
