"""Two writes at once into tables neither has made yet: both succeed, nothing is lost.

Through the console script, as two syncs of two connections sharing a destination run."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from dest_helpers import SCRIPT, catalog_for, count, record, state

PROPS = {"id": {"type": "integer"}, "name": {"type": "string"}}


def _messages(first: int, rows: int) -> bytes:
    lines = []
    for stream in ("a", "b"):
        lines += [record(stream, {"id": i, "name": f"n{i}"}) for i in range(first, first + rows)]
        lines.append(state(stream, {"upto": first + rows}))
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_two_first_writes_into_a_new_schema_both_succeed(
    mode, tmp_path, dest_config, dest_conn
) -> None:
    """Each round: a fresh schema, two writes started together. They ran CREATE SCHEMA / TABLE
    IF NOT EXISTS at once, and one failed ('duplicate key value violates unique constraint
    "pg_type_typname_nsp_index"', a system_error) most times."""
    for round_no in range(6):
        schema = f"race_{uuid.uuid4().hex[:8]}"
        catalog = catalog_for([("a", PROPS), ("b", PROPS)], mode)
        for entry in catalog["streams"]:
            entry["primary_key"] = [["id"]]
        paths = {
            "config": tmp_path / "config.json",
            "catalog": tmp_path / f"catalog{round_no}.json",
        }
        paths["config"].write_text(json.dumps({**dest_config, "schema": schema}))
        paths["catalog"].write_text(json.dumps(catalog))
        procs = []
        for n in range(2):
            proc = subprocess.Popen(
                [SCRIPT, "write", "--config", str(paths["config"]), "--catalog",
                 str(paths["catalog"])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            procs.append((proc, _messages(n * 50, 100)))
        outputs = [proc.communicate(data, timeout=120) for proc, data in procs]
        codes = [proc.returncode for proc, _ in procs]
        assert codes == [0, 0], [out.decode()[-1500:] for out, _ in outputs]
        expected = 150 if mode == "append_dedup" else 200
        for table in ("a", "b"):
            assert count(dest_conn, table, schema) == expected
            assert count(dest_conn, f"_airbyte_raw_{table}", schema) == 200
