"""The console scripts' lean `spec` prints exactly what the CDK connector classes return."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import orjson
import pytest
from airbyte_cdk.models import AirbyteMessage, AirbyteMessageSerializer, Type

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def _cdk_spec(name: str) -> dict:
    if name == "source-postgres":
        from source_postgres.source import SourcePostgres

        spec = SourcePostgres().spec(logging.getLogger("test"))
    else:
        from destination_postgres.destination import DestinationPostgres

        spec = DestinationPostgres().spec(logging.getLogger("test"))
    message = AirbyteMessage(type=Type.SPEC, spec=spec)
    return AirbyteMessageSerializer.dump(message)


@pytest.mark.parametrize("name", ["source-postgres", "destination-postgres"])
def test_lean_spec_equals_cdk_spec(name: str) -> None:
    """`<connector> spec` prints one SPEC message equal to the CDK class's spec()."""
    out = subprocess.run([str(BIN / name), "spec"], capture_output=True, check=True).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    # Through the CDK's own model, so defaults it fills in (supportsDBT, ...) compare equal.
    lean = AirbyteMessageSerializer.dump(AirbyteMessageSerializer.load(orjson.loads(lines[0])))
    assert lean == _cdk_spec(name)
