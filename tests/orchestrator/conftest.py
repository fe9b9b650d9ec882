"""Fixtures of the orchestrator tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from orchestrator_helpers import RunningSync


@pytest.fixture
def running_syncs() -> Iterator[list[RunningSync]]:
    """Background syncs, killed at the end of the test whatever happened."""
    started: list[RunningSync] = []
    yield started
    for run in started:
        run.kill()
