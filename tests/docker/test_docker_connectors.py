"""spec, check, discover, read and write from the images, run with `docker run` as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from docker_helpers import (
    DEST_IMAGE,
    SOURCE_IMAGE,
    TUTORIAL_ROWS,
    docker_run,
    pipeline_stream,
    write_secrets,
)

pytestmark = pytest.mark.docker

CONFIG = "/secrets/config.json"
CATALOG = "/secrets/catalog.json"


@pytest.mark.parametrize("image", [SOURCE_IMAGE, DEST_IMAGE])
def test_spec_emits_one_spec(images: dict[str, str], image: str) -> None:
    """`docker run --rm IMAGE spec` exits 0 with exactly one SPEC naming host/port/database."""
    run = docker_run(image, "spec", network="bridge")
    assert run.returncode == 0, run.explain()
    (spec,) = run.of_type("SPEC")
    properties = spec["spec"]["connectionSpecification"]["properties"]
    assert {"host", "port", "database", "username", "password"} <= set(properties)


def test_source_check_succeeds(images, tutorial_source: dict, tmp_path: Path) -> None:
    """source check with a mounted config reaches the host's PostgreSQL: SUCCEEDED."""
    secrets = write_secrets(tmp_path / "s", config=tutorial_source)
    run = docker_run(SOURCE_IMAGE, "check", "--config", CONFIG, secrets=secrets)
    assert run.returncode == 0, run.explain()
    assert run.connection_status["status"] == "SUCCEEDED", run.explain()


def test_destination_check_succeeds(images, dest_config: dict, tmp_path: Path) -> None:
    """destination check with a mounted config: SUCCEEDED."""
    secrets = write_secrets(tmp_path / "s", config=dest_config)
    run = docker_run(DEST_IMAGE, "check", "--config", CONFIG, secrets=secrets)
    assert run.returncode == 0, run.explain()
    assert run.connection_status["status"] == "SUCCEEDED", run.explain()


@pytest.mark.parametrize(
    ("image", "config_fixture"), [(SOURCE_IMAGE, "source_config"), (DEST_IMAGE, "dest_config")]
)
def test_check_wrong_password_fails_without_echoing_it(
    images, request: pytest.FixtureRequest, tmp_path: Path, image: str, config_fixture: str
) -> None:
    """check with a wrong password: FAILED, and the password is in no output."""
    wrong = "Wr0ng-pa55-" + "x" * 8
    config = {**request.getfixturevalue(config_fixture), "password": wrong}
    secrets = write_secrets(tmp_path / "s", config=config)
    run = docker_run(image, "check", "--config", CONFIG, secrets=secrets)
    assert run.connection_status["status"] == "FAILED", run.explain()
    assert wrong not in run.stdout + run.stderr


def test_discover_lists_the_tutorial_table(images, tutorial_source: dict, tmp_path: Path) -> None:
    """discover from the image reports full_refresh_demo with its id/name columns and key."""
    secrets = write_secrets(tmp_path / "s", config=tutorial_source)
    run = docker_run(SOURCE_IMAGE, "discover", "--config", CONFIG, secrets=secrets)
    assert run.returncode == 0, run.explain()
    stream = pipeline_stream(run.catalog, "full_refresh_demo")
    assert set(stream["json_schema"]["properties"]) == {"id", "name"}
    assert stream["source_defined_primary_key"] == [["id"]]


def test_read_emits_the_tutorial_rows(
    images, tutorial_source: dict, tutorial_catalog: dict, tmp_path: Path
) -> None:
    """read from the image emits Mary X and John D as RECORDs of full_refresh_demo."""
    secrets = write_secrets(tmp_path / "s", config=tutorial_source, catalog=tutorial_catalog)
    run = docker_run(
        SOURCE_IMAGE, "read", "--config", CONFIG, "--catalog", CATALOG, secrets=secrets
    )
    assert run.returncode == 0, run.explain()
    rows = sorted((r["id"], r["name"]) for r in run.records("full_refresh_demo"))
    assert rows == TUTORIAL_ROWS


def test_read_accepts_a_mounted_state(
    images, tutorial_source: dict, tutorial_catalog: dict, tmp_path: Path
) -> None:
    """read --state with a mounted (empty list) state file runs like a first sync."""
    secrets = write_secrets(
        tmp_path / "s", config=tutorial_source, catalog=tutorial_catalog, state=[]
    )
    run = docker_run(
        SOURCE_IMAGE, "read", "--config", CONFIG, "--catalog", CATALOG,
        "--state", "/secrets/state.json", secrets=secrets,
    )  # fmt: skip
    assert run.returncode == 0, run.explain()
    assert len(run.records("full_refresh_demo")) == len(TUTORIAL_ROWS)


def test_write_from_stdin_loads_rows(
    images, dest_config: dict, tutorial_catalog: dict, read_dest_rows, tmp_path: Path
) -> None:
    """`docker run -i IMAGE write` loads RECORDs from stdin and echoes the final STATE."""
    secrets = write_secrets(tmp_path / "s", config=dest_config, catalog=tutorial_catalog)
    lines = [
        {
            "type": "RECORD",
            "record": {
                "stream": "full_refresh_demo",
                "namespace": "public",
                "data": {"id": row_id, "name": name},
                "emitted_at": 1700000000000,
            },
        }
        for row_id, name in TUTORIAL_ROWS
    ]
    state = {
        "type": "STATE",
        "state": {
            "type": "STREAM",
            "stream": {
                "stream_descriptor": {"name": "full_refresh_demo", "namespace": "public"},
                "stream_state": {"done": True},
            },
            "sourceStats": {"recordCount": 2.0},
        },
    }
    stdin = "".join(json.dumps(m) + "\n" for m in [*lines, state])
    run = docker_run(
        DEST_IMAGE, "write", "--config", CONFIG, "--catalog", CATALOG, secrets=secrets, stdin=stdin
    )
    assert run.returncode == 0, run.explain()
    assert len(run.of_type("STATE")) == 1, run.explain()
    assert read_dest_rows("full_refresh_demo") == TUTORIAL_ROWS
