"""The README's shell pipeline: `docker run -i … read | docker run -i … write` between images."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from docker_helpers import (
    DEST_IMAGE,
    SOURCE_IMAGE,
    TUTORIAL_ROWS,
    TutorialDatabases,
    docker_run_argv,
    tutorial_configured_catalog,
    write_secrets,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def piped(
    images: dict[str, str],
    tutorial_dbs: TutorialDatabases,
    tmp_path_factory: pytest.TempPathFactory,
) -> subprocess.CompletedProcess[str]:
    """The tutorial's table piped between the two containers by the shell, as the README shows."""
    root: Path = tmp_path_factory.mktemp("pipeline")
    catalog = tutorial_configured_catalog(tutorial_dbs.source_config, root / "discover")
    src = write_secrets(root / "src", config=tutorial_dbs.source_config, catalog=catalog)
    dst = write_secrets(root / "dst", config=tutorial_dbs.dest_config, catalog=catalog)
    read = docker_run_argv(
        SOURCE_IMAGE, "read", "--config", "/secrets/config.json",
        "--catalog", "/secrets/catalog.json", secrets=src, interactive=True,
    )  # fmt: skip
    write = docker_run_argv(
        DEST_IMAGE, "write", "--config", "/secrets/config.json",
        "--catalog", "/secrets/catalog.json", secrets=dst, interactive=True,
    )  # fmt: skip
    script = f"set -o pipefail; {shlex.join(read)} | {shlex.join(write)}"
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=600, check=False
    )


def test_pipeline_exits_zero(piped: subprocess.CompletedProcess[str]) -> None:
    """Both containers of the pipeline succeed."""
    assert piped.returncode == 0, piped.stdout[-3000:] + piped.stderr[-3000:]


def test_pipeline_loads_the_tutorial_rows(piped, tutorial_dbs: TutorialDatabases) -> None:
    """The normalized table holds exactly 1 Mary X, 2 John D."""
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert tutorial_dbs.dest_rows("full_refresh_demo") == TUTORIAL_ROWS


def test_pipeline_fills_the_raw_table(piped, tutorial_dbs: TutorialDatabases) -> None:
    """_airbyte_raw_full_refresh_demo holds one JSON row per record."""
    assert piped.returncode == 0, piped.stderr[-3000:]
    names = tutorial_dbs.dest_query(
        "SELECT _airbyte_data->>'name' FROM _airbyte_raw_full_refresh_demo ORDER BY 1"
    )
    assert [n for (n,) in names] == sorted(name for _, name in TUTORIAL_ROWS)


def test_pipeline_echoes_the_source_state(piped) -> None:
    """The destination container prints the STATE it committed (the pipeline's last output)."""
    assert '"type":"STATE"' in piped.stdout.replace(" ", ""), piped.stdout[-2000:]
