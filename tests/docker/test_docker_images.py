"""What Airbyte's platform requires of a connector image, checked on both built images."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from airbyte_cdk.models.connector_metadata import MetadataFile
from docker_helpers import (
    CONNECTORS,
    IMAGES,
    REPO_ROOT,
    docker_run,
    inspect_image,
    package_version,
)

pytestmark = pytest.mark.docker

MAX_IMAGE_BYTES = 600 * 1000 * 1000
ENTRY_SCRIPTS = {name: f"/opt/venv/bin/{name}" for name in CONNECTORS}

# The registry's metadata schema (ConnectorMetadataDefinitionV0): required keys and enumerations.
REGISTRY_REQUIRED = {
    "name", "definitionId", "connectorType", "dockerRepository", "dockerImageTag", "license",
    "documentationUrl", "githubIssueLabel", "connectorSubtype", "releaseStage",
}  # fmt: skip
REGISTRY_ENUMS = {
    "connectorType": {"source", "destination"},
    "connectorSubtype": {
        "api", "database", "datalake", "file", "custom", "message_queue", "unknown", "vectorstore",
    },
    "releaseStage": {"alpha", "beta", "generally_available", "custom"},
    "supportLevel": {"community", "certified", "archived"},
}  # fmt: skip


def sh(image: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell snippet in the image (as its own user, from its own workdir)."""
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def metadata(connector: str) -> dict:
    return yaml.safe_load((REPO_ROOT / connector / "metadata.yaml").read_text())


@pytest.fixture(params=CONNECTORS)
def connector(request: pytest.FixtureRequest, images: dict[str, str]) -> str:
    return request.param


@pytest.fixture
def config(connector: str) -> dict:
    return inspect_image(IMAGES[connector])["Config"]


def test_airbyte_entrypoint_env_equals_entrypoint(connector: str, config: dict) -> None:
    """AIRBYTE_ENTRYPOINT is the ENTRYPOINT, word for word, with absolute paths."""
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["Entrypoint"] == [ENTRY_SCRIPTS[connector]]
    assert env["AIRBYTE_ENTRYPOINT"].split() == config["Entrypoint"]
    assert all(word.startswith("/") for word in env["AIRBYTE_ENTRYPOINT"].split())


def test_labels_name_and_version(connector: str, config: dict) -> None:
    """io.airbyte.name/version match metadata.yaml's dockerRepository/dockerImageTag."""
    data = metadata(connector)["data"]
    assert config["Labels"]["io.airbyte.name"] == data["dockerRepository"]
    assert config["Labels"]["io.airbyte.version"] == data["dockerImageTag"]


def test_version_tag_from_package_version(connector: str) -> None:
    """`make images` also tags the image with the package version, the same image as :dev."""
    version = package_version(connector)
    assert (
        inspect_image(f"pgbyte/{connector}:{version}")["Id"]
        == inspect_image(IMAGES[connector])["Id"]
    )


def test_versions_agree(connector: str) -> None:
    """pyproject version = metadata dockerImageTag = the Dockerfile's default VERSION."""
    dockerfile = (REPO_ROOT / connector / "Dockerfile").read_text()
    (default,) = re.findall(r"^ARG VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert package_version(connector) == metadata(connector)["data"]["dockerImageTag"] == default


def test_runs_as_non_root_airbyte_user(connector: str, config: dict) -> None:
    """The image runs as the non-root user airbyte, named by number (uid:gid 1000:1000) so that
    Kubernetes' runAsNonRoot can verify it without a runAsUser."""
    assert config["User"] == "1000:1000"
    result = sh(IMAGES[connector], "id -un; id -u")
    assert result.stdout.split() == ["airbyte", "1000"], result.stderr


def test_airbyte_dir_is_writable_workdir(connector: str, config: dict) -> None:
    """/airbyte is the working directory and the airbyte user can write there."""
    assert config["WorkingDir"] == "/airbyte"
    result = sh(IMAGES[connector], "touch /airbyte/probe && mkdir /airbyte/d && echo ok")
    assert result.stdout.strip() == "ok", result.stderr


def test_spec_from_another_workdir(connector: str) -> None:
    """`docker run -w /tmp IMAGE spec` works: nothing depends on the working directory."""
    run = docker_run(IMAGES[connector], "spec", network="none", workdir="/tmp")
    assert run.returncode == 0, run.explain()
    (spec,) = run.of_type("SPEC")
    assert spec["spec"]["connectionSpecification"]["properties"]["host"]


def test_no_compilers_caches_or_tests(connector: str) -> None:
    """No compiler, pip cache, installer in the venv, test suite or source tree in the image."""
    script = (
        "for tool in gcc cc g++ make; do command -v $tool; done;"
        "ls -d /root/.cache /airbyte/.cache /src /opt/venv/bin/pip 2>/dev/null;"
        "find /opt/venv -type d -name tests"
    )
    result = sh(IMAGES[connector], script)
    assert result.stdout.strip() == "", result.stdout


def test_modules_precompiled(connector: str) -> None:
    """The connector's modules are byte-compiled at build time (no compile on each start)."""
    package = connector.replace("-", "_")
    script = (
        "python -c 'import importlib.util as u, sys;"
        f' s = u.find_spec("{package}.run");'
        " import os; print(os.path.exists(u.cache_from_source(s.origin)))'"
    )
    result = sh(IMAGES[connector], script)
    assert result.stdout.strip() == "True", result.stdout + result.stderr


def test_image_under_600_mb(connector: str) -> None:
    """Each image stays under 600 MB."""
    size = inspect_image(IMAGES[connector])["Size"]
    assert size < MAX_IMAGE_BYTES, f"{IMAGES[connector]} is {size / 1e6:.0f} MB"


@pytest.mark.parametrize("name", CONNECTORS)
def test_metadata_accepted_by_cdk_model(name: str) -> None:
    """metadata.yaml loads with the CDK's metadata model, as the CDK's docker suites read it."""
    loaded = MetadataFile.from_file(REPO_ROOT / name / "metadata.yaml")
    assert loaded.data.dockerRepository == f"pgbyte/{name}"
    assert loaded.data.language.value == "python"
    assert loaded.data.connectorBuildOptions is not None
    assert loaded.data.connectorBuildOptions.baseImage


@pytest.mark.parametrize("name", CONNECTORS)
def test_metadata_has_registry_fields(name: str) -> None:
    """metadata.yaml has every key the registry requires, with values its schema allows."""
    document = metadata(name)
    assert set(document) == {"metadataSpecVersion", "data"}
    data = document["data"]
    assert set(data) >= REGISTRY_REQUIRED
    for key, allowed in REGISTRY_ENUMS.items():
        assert data.get(key) in allowed, key
    assert data["connectorType"] == name.split("-")[0]
    assert data["connectorSubtype"] == "database"
    uuid.UUID(data["definitionId"])
    assert urlparse(data["documentationUrl"]).scheme == "https"
    assert any(tag.startswith("language:") for tag in data["tags"])


def test_definition_ids_differ() -> None:
    """The two connectors have distinct definition ids."""
    ids = {metadata(name)["data"]["definitionId"] for name in CONNECTORS}
    assert len(ids) == len(CONNECTORS)


def test_build_context_holds_only_sources(images: dict[str, str], tmp_path: Path) -> None:
    """.dockerignore keeps .venv, .git, tests, bench and caches out of the build context."""
    probe = tmp_path / "Dockerfile.probe"
    probe.write_text(
        "FROM python:3.11-slim\nCOPY . /ctx\n"
        "RUN cd /ctx && find . -maxdepth 3 -not -path . | sort > /listing\n"
        'CMD ["cat", "/listing"]\n'
    )
    tag = "pgbyte-test/context-probe:latest"
    build = subprocess.run(
        ["docker", "build", "-q", "-f", str(probe), "-t", tag, str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    try:
        listing = subprocess.run(
            ["docker", "run", "--rm", tag], capture_output=True, text=True, check=True
        ).stdout.split()
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    top = {path.split("/")[1] for path in listing}
    assert top <= {"common", "source-postgres", "destination-postgres", "constraints.txt"}, top
    assert not [p for p in listing if re.search(r"(__pycache__|\.egg-info|/tests?$|\.pyc$)", p)]
