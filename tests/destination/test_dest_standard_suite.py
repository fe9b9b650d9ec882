"""The Airbyte CDK standard destination suite, in-process, against the throwaway server.

The suite reads destination-postgres/acceptance-test-config.yml; secrets/config.json is written
for this session's server before each test (it is gitignored). The image variants run when
PGBYTE_DEST_IMAGE names a built image (e.g. `make images` output) and a Docker engine answers;
building one here would download the CDK's Dockerfile templates.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from airbyte_cdk.test.standard_tests import DestinationTestSuiteBase
from airbyte_cdk.test.standard_tests._job_runner import run_test_job
from airbyte_cdk.test.standard_tests._spec_lint import assert_spec_is_valid, get_single_spec
from airbyte_cdk.test.standard_tests.pytest_hooks import pytest_generate_tests  # noqa: F401
from destination_postgres import DestinationPostgres

CONNECTOR_ROOT = Path(__file__).resolve().parents[2] / "destination-postgres"


IMAGE = os.environ.get("PGBYTE_DEST_IMAGE")


def _docker_ready() -> bool:
    if not IMAGE or shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


@pytest.fixture(autouse=True)
def _secrets_config(pg_server, dest_db) -> None:
    """secrets/config.json → this session's throwaway server and a fresh database."""
    path = CONNECTOR_ROOT / "secrets" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(pg_server.connector_config(dest_db, schema="public")))


@pytest.fixture
def connector_image_override() -> str | None:
    return IMAGE


@pytest.fixture
def connector_base_image_override() -> None:
    return None


class TestDestinationPostgresStandard(DestinationTestSuiteBase):
    """CDK standard tests for destination-postgres."""

    connector = DestinationPostgres

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return CONNECTOR_ROOT

    def test_spec_lint(self) -> None:
        """spec emits one SPEC that passes the CDK's credential-free lint."""
        result = run_test_job(self.create_connector(None), "spec", connector_root=CONNECTOR_ROOT)
        assert_spec_is_valid(get_single_spec(result, connector_name="destination-postgres"),
                             connector_name="destination-postgres")  # fmt: skip


# Image variants: only where they can run (see the module docstring).
for _name in [n for n in dir(DestinationTestSuiteBase) if n.startswith("test_docker_image")]:
    setattr(
        TestDestinationPostgresStandard,
        _name,
        pytest.mark.skipif(
            not _docker_ready(), reason="set PGBYTE_DEST_IMAGE (and run a Docker engine)"
        )(getattr(DestinationTestSuiteBase, _name)),
    )
