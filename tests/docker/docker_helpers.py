"""Helpers for the Docker tests: the engine, the images, `docker run` as a user types it.

The connectors run as `docker run --rm ... IMAGE VERB` subprocesses (the docker CLI, exactly as
the README shows), on the host network: the test PostgreSQL listens on 127.0.0.1 of this
machine, which a container reaches only with `--network host`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from connector_output import ConnectorOutput
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parents[2]
CONNECTORS = ("source-postgres", "destination-postgres")
IMAGES = {name: f"pgbyte/{name}:dev" for name in CONNECTORS}
SOURCE_IMAGE = IMAGES["source-postgres"]
DEST_IMAGE = IMAGES["destination-postgres"]
TUTORIAL_ROWS = [(1, "Mary X"), (2, "John D")]
BUILD_TIMEOUT = 1800  # a cold build downloads the CDK and its dependencies from PyPI


def engine_error() -> str | None:
    """None when a Docker engine answers, else why not (the reason the tests are skipped)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {exc})"
    return None


def build_images() -> None:
    """`scripts/build-images.sh` (what `make images` runs); layer-cached after the first time."""
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-images.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"scripts/build-images.sh failed ({result.returncode}):\n{tail}")


def package_version(connector: str) -> str:
    with open(REPO_ROOT / connector / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def inspect_image(image: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)[0]


class Run(ConnectorOutput):
    """One finished `docker run` (or shell pipeline)."""

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [
            m["record"]["data"] for m in self.of_type("RECORD") if m["record"]["stream"] == stream
        ]

    def explain(self) -> str:
        out, err = self.stdout[-3000:], self.stderr[-3000:]
        return f"exit {self.returncode}\nstdout:\n{out}\nstderr:\n{err}"


def docker_run_argv(
    image: str,
    *args: str,
    secrets: Path | None = None,
    network: str = "host",
    interactive: bool = False,
    workdir: str | None = None,
) -> list[str]:
    """The README's `docker run` line: --rm, host network, secrets mounted at /secrets."""
    argv = ["docker", "run", "--rm", "--network", network]
    if interactive:
        argv.append("-i")
    if secrets is not None:
        argv += ["-v", f"{secrets}:/secrets:ro"]
    if workdir is not None:
        argv += ["-w", workdir]
    return [*argv, image, *args]


def docker_run(
    image: str,
    *args: str,
    secrets: Path | None = None,
    stdin: str | None = None,
    network: str = "host",
    workdir: str | None = None,
    timeout: float = 600,
) -> Run:
    argv = docker_run_argv(
        image,
        *args,
        secrets=secrets,
        network=network,
        interactive=stdin is not None,
        workdir=workdir,
    )
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def write_secrets(directory: Path, **files: Any) -> Path:
    """JSON files in a directory the image's `airbyte` user (uid 1000) can read when mounted.

    Test credentials only (a throwaway server): the directory is 0755 and the files 0644 because
    the container's user is not the test's user.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    for name, payload in files.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(payload))
        os.chmod(path, 0o644)
    return directory


def configured_catalog(
    streams: list[dict[str, Any]],
    *,
    sync_mode: str = "full_refresh",
    destination_sync_mode: str = "overwrite",
) -> dict[str, Any]:
    """A configured catalog selecting the given discovered streams."""
    return {
        "streams": [
            {
                "stream": stream,
                "sync_mode": sync_mode,
                "destination_sync_mode": destination_sync_mode,
                **(
                    {"primary_key": stream["source_defined_primary_key"]}
                    if stream.get("source_defined_primary_key")
                    else {}
                ),
            }
            for stream in streams
        ]
    }


def pipeline_stream(catalog: dict[str, Any], name: str) -> dict[str, Any]:
    (stream,) = [s for s in catalog["streams"] if s["name"] == name]
    return stream


def containers_with_label(label: str) -> list[str]:
    """Ids of the containers (running or not) that carry `label`."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def create_tutorial_table(conninfo: str) -> None:
    """The tutorial's source table: full_refresh_demo with 1 Mary X, 2 John D."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE full_refresh_demo(id integer PRIMARY KEY, name VARCHAR(200))")
        for row in TUTORIAL_ROWS:
            conn.execute("INSERT INTO full_refresh_demo(id, name) VALUES (%s, %s)", row)


def dest_rows(
    conn: psycopg.Connection, table: str, schema: str = "public"
) -> list[tuple[Any, ...]]:
    """(id, name) rows of a normalized destination table, ordered by id."""
    query = sql.SQL("SELECT id, name FROM {}.{} ORDER BY id").format(
        sql.Identifier(schema), sql.Identifier(table)
    )
    return [tuple(row) for row in conn.execute(query).fetchall()]


@dataclass(frozen=True)
class TutorialDatabases:
    """A source database holding the tutorial's table and an empty destination database."""

    source_config: dict[str, Any]
    dest_config: dict[str, Any]
    dest_conninfo: str

    def dest_rows(self, table: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dest_conninfo) as conn:
            return dest_rows(conn, table)

    def dest_query(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dest_conninfo) as conn:
            return [tuple(row) for row in conn.execute(query).fetchall()]


_discovered: dict[str, dict] = {}


def tutorial_configured_catalog(source_config: dict[str, Any], directory: Path) -> dict:
    """The configured catalog of full_refresh_demo (full refresh | overwrite), from discover.

    Discovered from the image once per session (the stream does not depend on which fresh
    database holds the table); test_discover_lists_the_tutorial_table checks discover itself.
    """
    if "full_refresh_demo" not in _discovered:
        secrets = write_secrets(directory, config=source_config)
        run = docker_run(
            SOURCE_IMAGE, "discover", "--config", "/secrets/config.json", secrets=secrets
        )
        assert run.returncode == 0, run.explain()
        _discovered["full_refresh_demo"] = pipeline_stream(run.catalog, "full_refresh_demo")
    return configured_catalog([_discovered["full_refresh_demo"]])
