"""The CDK's standard Docker suites (DockerConnectorTestSuite) against pgbyte's images.

What the suite runs, per connector: `spec` in the image and the spec lint; `check` for a valid
config (must succeed) and an invalid one (must fail, and leak no secret); the valid config
validated against the image's spec; for the source, `discover` and a full-refresh `read` of every
discovered stream with record checks.

Adaptations, each for a reason of this test setup rather than of the connectors:
- scenarios come from `get_scenarios()` below rather than an acceptance-test-config.yml, because
  their configs point at the session's throwaway server (written when the class starts);
- the image is the one `make images` built (the `connector_image_override` fixture), not one the
  CDK builds with its own Dockerfile templates;
- `docker run` gets `--network host`: the throwaway server listens on 127.0.0.1 of this machine;
- the spec backward-compatibility test is skipped: it compares with a spec fetched from Airbyte's
  public registry, which this machine cannot reach (and pgbyte's images were never published).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from airbyte_cdk.test.models import ConnectorTestScenario
from airbyte_cdk.test.standard_tests import docker_base
from airbyte_cdk.test.standard_tests.docker_base import DockerConnectorTestSuite
from docker_helpers import REPO_ROOT, TUTORIAL_ROWS

pytestmark = pytest.mark.docker

CDK_HOOKS = "airbyte_cdk.test.standard_tests.pytest_hooks"
# Created at import (collection) time: scenarios name their config files before any fixture runs.
SCENARIO_ROOT = Path(tempfile.mkdtemp(prefix="pgbyte-standard-"))
atexit.register(shutil.rmtree, SCENARIO_ROOT, True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `scenario` from the class's get_scenarios(), unless the CDK's plugin does."""
    if metafunc.config.pluginmanager.has_plugin(CDK_HOOKS):
        return
    if "scenario" in metafunc.fixturenames and metafunc.cls is not None:
        scenarios = metafunc.cls.get_scenarios()
        metafunc.parametrize("scenario", scenarios, ids=[s.id for s in scenarios])


def _with_host_network(run: Any) -> Any:
    def wrapped(cmd: list[str], **kwargs: Any) -> Any:
        if cmd[:2] == ["docker", "run"] and "--network" not in cmd:
            cmd = [*cmd[:2], "--network", "host", *cmd[2:]]
        return run(cmd, **kwargs)

    return wrapped


class PgbyteDockerSuite(DockerConnectorTestSuite):
    """DockerConnectorTestSuite wired to the session's server and pgbyte's built images."""

    connector_dir: str = ""

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return REPO_ROOT / cls.connector_dir

    @classmethod
    def scenario_dir(cls) -> Path:
        return SCENARIO_ROOT / cls.connector_dir

    @classmethod
    def get_scenarios(cls) -> list[ConnectorTestScenario]:
        return [
            ConnectorTestScenario(config_path=cls.scenario_dir() / "config.json"),
            ConnectorTestScenario(
                config_path=cls.scenario_dir() / "invalid_config.json",
                status="failed",
                sections=("connection",),
            ),
        ]

    @classmethod
    def make_config(cls, pg_server: Any, database: str) -> dict[str, Any]:
        raise NotImplementedError

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def scenario_configs(cls, pg_server: Any, images: dict[str, str]) -> Iterator[None]:
        """A database with the tutorial's table, and the scenarios' config files naming it."""
        database = f"std_{uuid.uuid4().hex[:10]}"
        pg_server.create_database(database)
        with psycopg.connect(pg_server.conninfo(database), autocommit=True) as conn:
            conn.execute("CREATE TABLE full_refresh_demo(id integer PRIMARY KEY, name text)")
            for row in TUTORIAL_ROWS:
                conn.execute("INSERT INTO full_refresh_demo VALUES (%s, %s)", row)
        config = cls.make_config(pg_server, database)
        directory = cls.scenario_dir()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(config))
        invalid = {**config, "password": "not-the-password-" + uuid.uuid4().hex[:6]}
        (directory / "invalid_config.json").write_text(json.dumps(invalid))
        try:
            yield
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            pg_server.drop_database(database)

    @pytest.fixture(autouse=True)
    def host_network(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The suite's `docker run`s join the host network (the server is on 127.0.0.1)."""
        monkeypatch.setattr(
            docker_base,
            "run_docker_airbyte_command",
            _with_host_network(docker_base.run_docker_airbyte_command),
        )

    @pytest.fixture
    def connector_image_override(self, images: dict[str, str]) -> str:
        return images[self.connector_dir]

    @pytest.fixture
    def connector_base_image_override(self) -> str | None:
        return None

    @pytest.fixture
    def read_from_streams(self) -> str:
        return "default"

    @pytest.fixture
    def read_scenarios(self) -> str:
        return "default"

    def test_docker_image_spec_backward_compatibility(self) -> None:  # type: ignore[override]
        """Skipped: compares with Airbyte's public registry, which this machine cannot reach."""
        pytest.skip("needs Airbyte's public connector registry (no network access here)")


class TestSourceImage(PgbyteDockerSuite):
    """source-postgres's image: spec, check, config vs spec, discover, read."""

    connector_dir = "source-postgres"

    @classmethod
    def make_config(cls, pg_server: Any, database: str) -> dict[str, Any]:
        return pg_server.connector_config(database, schemas=["public"])


class TestDestinationImage(PgbyteDockerSuite):
    """destination-postgres's image: spec, check, config vs spec (discover/read do not apply)."""

    connector_dir = "destination-postgres"

    @classmethod
    def make_config(cls, pg_server: Any, database: str) -> dict[str, Any]:
        return pg_server.connector_config(database, schema="public")
