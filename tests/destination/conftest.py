"""Fixtures for the destination tests (helpers live in dest_helpers.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dest_helpers import SCRIPT, WriteResult


@pytest.fixture
def run_write(tmp_path: Path, dest_config: dict[str, Any]):
    """Run `destination-postgres write` with a catalog and stdin bytes; parse its stdout."""
    counter = iter(range(1_000_000))

    def run(catalog: dict[str, Any] | Path, stdin: bytes | Path, config: dict | None = None):
        n = next(counter)
        config_path = tmp_path / f"config{n}.json"
        config_path.write_text(json.dumps(config or dest_config))
        if isinstance(catalog, Path):
            catalog_path = catalog
        else:
            catalog_path = tmp_path / f"catalog{n}.json"
            catalog_path.write_text(json.dumps(catalog))
        data = stdin.read_bytes() if isinstance(stdin, Path) else stdin
        proc = subprocess.run(
            [SCRIPT, "write", "--config", str(config_path),
             "--catalog", str(catalog_path)],
            input=data, capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        stderr = proc.stderr.decode(errors="replace")
        return WriteResult(proc.returncode, messages, stderr, proc.stdout)

    return run


def pytest_configure(config: pytest.Config) -> None:
    """Markers the CDK standard suite's classes carry (this repo runs --strict-markers)."""
    config.addinivalue_line("markers", "image_tests: CDK standard tests run against an image")
    config.addinivalue_line("markers", "requires_creds: CDK scenario that needs credentials")
