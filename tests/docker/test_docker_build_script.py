"""scripts/build-images.sh (`make images`): its docker calls, and its error without an engine.

The call tests put a recording stand-in for `docker` first on PATH, so they check what the script
asks of Docker without rebuilding the images.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from docker_helpers import REPO_ROOT, package_version

pytestmark = pytest.mark.docker

SCRIPT = REPO_ROOT / "scripts" / "build-images.sh"
RECORDING_DOCKER = """#!/bin/sh
echo "$*" >> "$DOCKER_CALLS"
case "$1" in
  image) echo 123000000 ;;
esac
exit 0
"""


def run_script(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list]:
    """Run the script with the recording docker; returns the result and the docker calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(RECORDING_DOCKER)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    environ = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_CALLS": str(calls)}
    environ.pop("BASE_IMAGE", None)
    environ.update(env)
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], env=environ, capture_output=True, text=True, check=False
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


def builds(calls: list[str]) -> list[str]:
    return [call for call in calls if call.startswith("build ")]


def test_builds_both_images_with_dev_and_version_tags(tmp_path: Path) -> None:
    """Both connectors are built from the repo root, tagged :dev and :<pyproject version>."""
    result, calls = run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    (source, dest) = builds(calls)
    for call, name in ((source, "source-postgres"), (dest, "destination-postgres")):
        version = package_version(name)
        assert f"--file {name}/Dockerfile" in call
        assert f"--tag pgbyte/{name}:dev --tag pgbyte/{name}:{version}" in call
        assert f"--build-arg VERSION={version}" in call
        assert call.endswith(" .")
        assert "BASE_IMAGE" not in call


def test_base_image_is_passed_through(tmp_path: Path) -> None:
    """BASE_IMAGE=... reaches docker build as --build-arg BASE_IMAGE=..."""
    result, calls = run_script(tmp_path, "source-postgres", BASE_IMAGE="example/python:3.11")
    assert result.returncode == 0, result.stderr
    (call,) = builds(calls)
    assert "--build-arg BASE_IMAGE=example/python:3.11" in call


def test_unknown_connector_is_refused(tmp_path: Path) -> None:
    """A connector name without a Dockerfile fails with a message naming the valid ones."""
    result, calls = run_script(tmp_path, "source-mysql")
    assert result.returncode != 0
    assert "source-postgres, destination-postgres" in result.stderr
    assert builds(calls) == []


def test_no_engine_is_a_clear_error(tmp_path: Path) -> None:
    """With no engine answering, the script stops before building and says how to start one."""
    environ = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "no Docker engine answers" in result.stderr
