"""Fixtures for the PyAirbyte tests: one PyAirbyte driver per session, a DuckDB cache per test.

Skipped only when .venv-pyairbyte is absent (`make pyairbyte-venv`, which `make test` runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyairbyte_helpers import PYAIRBYTE_PYTHON, PyAirbyteDriver, local_connector


@pytest.fixture(scope="session")
def pyairbyte(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyAirbyteDriver]:
    """The PyAirbyte driver; every test here is skipped when .venv-pyairbyte is absent."""
    if not PYAIRBYTE_PYTHON.exists():
        pytest.skip(f"{PYAIRBYTE_PYTHON} is absent: run `make pyairbyte-venv`")
    driver = PyAirbyteDriver(tmp_path_factory.mktemp("pyairbyte"))
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    """A DuckDB cache directory of the test's own (laid out as PyAirbyte's default cache)."""
    return str(tmp_path / "cache")


@pytest.fixture
def source(source_config: dict) -> dict[str, Any]:
    """Our source as PyAirbyte gets it: local_executable=.venv/bin/source-postgres."""
    return local_connector("source-postgres", source_config)
