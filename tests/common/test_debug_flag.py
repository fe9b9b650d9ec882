"""`--debug` on the connectors: DEBUG LOG messages of the connection and of every statement run
(never the password); none without the flag. `spec --help` prints usage, not the spec."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def _run(program: str, *args: str, stdin: bytes = b"") -> tuple[int, list[dict], str]:
    proc = subprocess.run([str(BIN / program), *args], input=stdin, capture_output=True,
                          timeout=120, check=False)  # fmt: skip
    out = proc.stdout.decode()
    messages = [json.loads(line) for line in out.splitlines() if line.strip()]
    return proc.returncode, messages, out + proc.stderr.decode()


def _debug_lines(messages: list[dict]) -> list[str]:
    return [m["log"]["message"] for m in messages
            if m["type"] == "LOG" and m["log"]["level"] == "DEBUG"]  # fmt: skip


def _catalog(stream: dict, mode: str) -> dict:
    return {"streams": [{"stream": stream, "sync_mode": "full_refresh",
                         "destination_sync_mode": mode}]}  # fmt: skip


@pytest.fixture
def files(tmp_path, source_conn, source_config, dest_config) -> dict[str, str]:
    source_conn.execute("CREATE TABLE debug_me (id int PRIMARY KEY, name text)")
    source_conn.execute("INSERT INTO debug_me VALUES (1, 'a'), (2, 'b')")
    paths = {}
    for name, obj in (("source", source_config), ("dest", dest_config)):
        paths[name] = str(tmp_path / f"{name}.json")
        Path(paths[name]).write_text(json.dumps(obj))
    return paths


def test_source_debug_logs_connection_and_statements(files, source_config, tmp_path) -> None:
    """check, discover and read with --debug log where they connect, the server's version and
    their SQL; the password appears nowhere. The same read without --debug logs no DEBUG."""
    password = str(source_config["password"])
    for verb in ("check", "discover"):
        code, messages, text = _run("source-postgres", verb, "--config", files["source"],
                                    "--debug")  # fmt: skip
        assert code == 0, text
        lines = _debug_lines(messages)
        host, port, db = source_config["host"], source_config["port"], source_config["database"]
        assert lines[0].startswith(f"Connecting to {host}:{port}, database {db!r}"), lines
        assert any(line.startswith("Connected: PostgreSQL 15") for line in lines), lines
        assert any(line.startswith("SQL: ") for line in lines), lines
        assert password not in text
        assert messages[-1]["type"] == ("CONNECTION_STATUS" if verb == "check" else "CATALOG")
    (stream,) = [s for s in messages[-1]["catalog"]["streams"] if s["name"] == "debug_me"]
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(_catalog(stream, "overwrite")))
    args = ("read", "--config", files["source"], "--catalog", str(catalog))
    code, messages, text = _run("source-postgres", *args, "--debug")
    assert code == 0, text
    assert len([m for m in messages if m["type"] == "RECORD"]) == 2
    statements = [line for line in _debug_lines(messages) if line.startswith("SQL: ")]
    assert any('"debug_me"' in line and "COPY" in line for line in statements), statements
    assert password not in text
    code, messages, text = _run("source-postgres", *args)
    assert code == 0, text
    assert _debug_lines(messages) == []
    assert len([m for m in messages if m["type"] == "RECORD"]) == 2


def test_destination_debug_logs_its_statements(files, dest_config, dest_conn, tmp_path) -> None:
    """write --debug logs its connections and statements (the second connection's COPY into a
    stage included), the records still land, and the password appears nowhere."""
    stream = {"name": "debug_me", "json_schema": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}}},
        "supported_sync_modes": ["full_refresh"]}  # fmt: skip
    catalog = tmp_path / "dcatalog.json"
    catalog.write_text(json.dumps(_catalog(stream, "append")))
    record = {"type": "RECORD", "record": {"stream": "debug_me", "data": {}, "emitted_at": 1}}
    records = b""
    for i in range(3):
        record["record"]["data"] = {"id": i}
        records += json.dumps(record).encode() + b"\n"
    code, messages, text = _run("destination-postgres", "write", "--config", files["dest"],
                                "--catalog", str(catalog), "--debug", stdin=records)  # fmt: skip
    assert code == 0, text
    lines = _debug_lines(messages)
    assert any(line.startswith("Connected: PostgreSQL 15") for line in lines), lines
    statements = [line for line in lines if line.startswith("SQL: ")]
    assert any("COPY" in line for line in statements), statements
    assert any('"debug_me"' in line for line in statements), statements
    assert str(dest_config["password"]) not in text
    assert dest_conn.execute("SELECT count(*) FROM debug_me").fetchone()[0] == 3
    code, messages, _ = _run("destination-postgres", "check", "--config", files["dest"])
    assert _debug_lines(messages) == [] and messages[-1]["type"] == "CONNECTION_STATUS"


@pytest.mark.parametrize("program", ["source-postgres", "destination-postgres"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_spec_help_prints_usage_not_the_spec(program, flag) -> None:
    proc = subprocess.run([str(BIN / program), "spec", flag], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"usage: {program} spec"), proc.stdout
    assert '"SPEC"' not in proc.stdout


def test_debug_lines_to_a_reader_that_left_do_not_break_the_write(
    files, dest_conn, tmp_path
) -> None:
    """write --debug whose stdout reader is gone from the start: a DEBUG line that cannot be
    written does not stop the statement it is about (the clean-up after the failure drops the
    overwrite's temporaries), and the write ends as it does without --debug."""
    streams = [
        {
            "stream": {
                "name": f"s{i}",
                "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
                "supported_sync_modes": ["full_refresh"],
            },
            "sync_mode": "full_refresh",
            "destination_sync_mode": "overwrite",
        }
        for i in range(5)
    ]
    catalog = tmp_path / "many.json"
    catalog.write_text(json.dumps({"streams": streams}))
    records = b"".join(json.dumps({"type": "RECORD", "record": {
        "stream": f"s{i}", "data": {"id": 1}, "emitted_at": 1}}).encode() + b"\n"
        for i in range(5))  # fmt: skip
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [str(BIN / "destination-postgres"), "write", "--config", files["dest"], "--catalog",
             str(catalog), "--debug"], input=records, stdout=write_end, stderr=subprocess.PIPE,
            timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 1, proc.stderr
    assert b"the reader of its output" in proc.stderr and b"Traceback" not in proc.stderr
    left = dest_conn.execute(
        "SELECT count(*) FROM pg_class WHERE relname LIKE '%%airbyte_tmp%%'"
    ).fetchone()[0]
    assert left == 0
