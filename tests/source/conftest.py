"""Fixtures for source-postgres tests (helpers live in source_helpers.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from source_helpers import Run, configured_catalog, run_source


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers the CDK standard suite puts on its tests (--strict-markers is on)."""
    config.addinivalue_line("markers", "image_tests: CDK standard tests that build an image")
    config.addinivalue_line("markers", "requires_creds: CDK scenarios that need real credentials")


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[str, Any], str]:
    """Write an object as a JSON file under tmp_path; returns its path."""

    def write(name: str, obj: Any) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(obj))
        return str(path)

    return write


@pytest.fixture
def discover_and_read(
    source_config: dict, write_json: Callable[[str, Any], str]
) -> Callable[..., tuple[Run, Run]]:
    """Discover, configure every stream (or those named) for full refresh, read."""

    def go(*names: str, config: dict | None = None) -> tuple[Run, Run]:
        cfg = write_json("config.json", config or source_config)
        discovered = run_source("discover", "--config", cfg)
        assert discovered.returncode == 0, discovered.stdout + discovered.stderr
        streams = [s for s in discovered.catalog["streams"] if not names or s["name"] in names]
        cat = write_json("catalog.json", configured_catalog(streams))
        return discovered, run_source("read", "--config", cfg, "--catalog", cat)

    return go
