"""What a finished connector process printed, parsed: shared by the per-component test helpers
(tests/source/source_helpers.py, tests/docker/docker_helpers.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class ConnectorOutput:
    """One finished connector process (or pipeline): exit code and both streams."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every stdout line parsed as JSON: a line that is not JSON fails the test."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def errors(self) -> list[dict[str, Any]]:
        return [m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"]["type"] == "ERROR"]

    @property
    def connection_status(self) -> dict[str, Any]:
        (status,) = self.of_type("CONNECTION_STATUS")
        return status["connectionStatus"]

    @property
    def catalog(self) -> dict[str, Any]:
        (catalog,) = self.of_type("CATALOG")
        return catalog["catalog"]
