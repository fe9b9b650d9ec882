"""The README's shell pipeline: `docker run -i … read | docker run -i … write` between images."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import psycopg
import pytest
from docker_helpers import DEST_IMAGE, SOURCE_IMAGE, TUTORIAL_ROWS, docker_run_argv, write_secrets

pytestmark = pytest.mark.docker


@pytest.fixture
def piped(
    images, tutorial_source: dict, dest_config: dict, tutorial_catalog: dict, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The tutorial's table piped between the two containers by the shell, as the README shows."""
    src = write_secrets(tmp_path / "src", config=tutorial_source, catalog=tutorial_catalog)
    dst = write_secrets(tmp_path / "dst", config=dest_config, catalog=tutorial_catalog)
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


def test_pipeline_loads_the_tutorial_rows(piped, read_dest_rows) -> None:
    """The normalized table holds exactly 1 Mary X, 2 John D."""
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert read_dest_rows("full_refresh_demo") == TUTORIAL_ROWS


def test_pipeline_fills_the_raw_table(piped, dest_conn: psycopg.Connection) -> None:
    """_airbyte_raw_full_refresh_demo holds one JSON row per record."""
    assert piped.returncode == 0, piped.stderr[-3000:]
    rows = dest_conn.execute(
        "SELECT _airbyte_data->>'name' FROM _airbyte_raw_full_refresh_demo ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in rows] == sorted(name for _, name in TUTORIAL_ROWS)


def test_pipeline_echoes_the_source_state(piped) -> None:
    """The destination container prints the STATE it committed (the pipeline's last output)."""
    assert '"type":"STATE"' in piped.stdout.replace(" ", ""), piped.stdout[-2000:]
